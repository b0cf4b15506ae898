"""Sequence-parallel inference: a KV cache split over the ranks of a group.

Long-video inference appends to one long KV cache (V-NIAH grows a haystack prefix, then a cell's
tail; generation appends one token at a time). With :class:`ShardedKVCache` and the attention
name ``longva_sharded_kv`` every rank of the group runs the same forward over the same *new*
tokens (replicated, with their global positions), and

- each layer's attention sees this rank's stored share of the history followed by the new
  tokens: every rank attends over its history share (all of it visible), and the partial
  outputs are exchanged (point to point, into buffers the cache allocates once) and merged in
  rank order with the new tokens' causal attention over themselves (:func:`merge_over_ranks`)
  -- the same result on every rank, equal to one process's;
- the new tokens' K/V are split over the ranks so that the shares end as even as they can
  (:func:`split_new_tokens`: the ranks holding the fewest tokens take them, each a contiguous
  range, rank order; every rank takes the same decision), so no rank ever stores more than
  ``ceil(tokens / W)`` of them -- a whole chunk on one rank would leave the shares a chunk apart
  and overflow buffers sized for an even share.

Each rank's buffers hold its share plus, while a forward runs, the new tokens written after it
(the attention reads them there): ``capacity`` (the longest global sequence) and ``chunk`` (the
most tokens one forward appends) size them once, ``ceil(capacity / W) + chunk`` tokens, so a
V-NIAH grid never reallocates them (a growing buffer leaves freed blocks behind in the heap, and
the process's memory then grows with them).

``get_seq_length`` is the global length; :meth:`ShardedKVCache.crop` cuts the *global* sequence
(every rank drops its tokens at or after the cut). Without a group (or with one rank) the cache
keeps every token (a ``DynamicCache`` whose layers append without re-concatenating) and the
attention name is transformers' causal attention on the tiled kernel, so the same code runs in one
process.
"""

from __future__ import annotations

import weakref

import torch

from longva_plugins.models.longva.cache_longva import GrowingCache, GrowingLayer

SHARDED_KV = "longva_sharded_kv"


def _group_rank(group) -> tuple[int, int]:
    from longva_plugins.distributed import group_rank, group_size

    return group_size(group), group_rank(group)


def split_new_tokens(held: list[int], new: int) -> list[int]:
    """How many of ``new`` tokens each rank stores, given the tokens ``held`` by each: the ranks
    holding the fewest fill up to a common level (lower ranks first for the last tokens), so the
    largest share after is as small as it can be -- never above ``ceil((sum(held) + new) / W)``
    when the shares were even before."""
    low, high = min(held), min(held) + new  # the smallest level the new tokens fill up to
    while low < high:
        mid = (low + high) // 2
        if sum(max(0, mid - h) for h in held) >= new:
            high = mid
        else:
            low = mid + 1
    counts = [max(0, low - 1 - h) for h in held]  # every rank below the level, up to one under it
    rest = new - sum(counts)
    for rank, h in enumerate(held):  # the last tokens one each, to the lowest ranks one under it
        if rest and h + counts[rank] == low - 1:
            counts[rank] += 1
            rest -= 1
    return counts


class ShardedKVCache(GrowingCache):
    """A KV cache whose history is split over the ranks of ``group`` (see the module docs).
    ``capacity``: tokens of the whole (global) sequence; ``chunk``: the most tokens one forward
    appends. Each rank allocates ``ceil(capacity / W) + chunk`` tokens per layer at its first
    write (one rank: ``capacity``)."""

    def __init__(self, group=None, config=None, capacity: int = 0, chunk: int = 0):
        world, rank = _group_rank(group)
        per_rank = capacity if world == 1 else -(-capacity // world) + chunk
        super().__init__(capacity=per_rank if capacity > 0 else 0)
        self.group = group
        self.world, self.rank = world, rank
        #: per rank, the ``(global_start, length)`` runs of tokens it stores, in global order
        self.segments: list[list[tuple[int, int]]] = [[] for _ in range(self.world)]
        self.total = 0
        self._keep: tuple[int, int] = (0, 0)
        #: the buffers this cache's attention exchanges partial results in (see merge_over_ranks)
        self.exchange = PartialExchange(chunk)

    def stored(self, rank: int | None = None) -> int:
        """Tokens held by ``rank`` (default: this rank)."""
        return sum(n for _, n in self.segments[self.rank if rank is None else rank])

    def _begin(self, new: int) -> None:
        """A forward over ``new`` tokens starts (layer 0): split them over the ranks
        (:func:`split_new_tokens`), each rank a contiguous range in rank order."""
        global _ACTIVE
        _ACTIVE = weakref.ref(self.exchange)
        counts = split_new_tokens([self.stored(r) for r in range(self.world)], new)
        first = 0
        for rank, count in enumerate(counts):
            if count:
                self.segments[rank].append((self.total + first, count))
            if rank == self.rank:
                self._keep = (first, first + count)
            first += count
        self.total += new

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        if layer_idx == 0:
            self._begin(key_states.shape[-2])
        return self._layer(layer_idx).put(key_states, value_states, keep=self._keep)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.total

    def crop(self, max_length: int) -> None:
        """Keep the first ``max_length`` tokens of the global sequence (negative: drop that many)."""
        keep_total = max_length if max_length >= 0 else self.total + max_length
        keep_total = max(0, min(self.total, keep_total))
        for rank in range(self.world):
            self.segments[rank] = [(start, min(n, keep_total - start)) for start, n in self.segments[rank]
                                   if start < keep_total]
        for layer in self.layers:
            layer.keep_first(self.stored())
        self.total = keep_total


def sharded_kv_attention(query, key, value, softmax_scale, group, key_padding=None):
    """``query (B, H, Lq, D)``: the new tokens (the same on every rank); ``key``/``value``
    ``(B, Hk, Lh + Lq, D)``: this rank's history share followed by the new tokens. Returns
    ``(B, H, Lq, D)`` in the accumulation dtype, identical on every rank."""
    from longva_plugins.attention.ring_core import resolve_kernel

    kernel = resolve_kernel("auto", query.device, query.dtype)
    world, _ = _group_rank(group)
    if world == 1:
        out, _ = kernel.forward(query, key, value, True, softmax_scale, key_padding=key_padding)
        return out
    from longva_plugins.attention.sequence_parallel import refuse_sharded_padding

    refuse_sharded_padding(key_padding, group)
    new = query.shape[2]
    hist_out, hist_lse = kernel.forward(query, key[:, :, :-new], value[:, :, :-new], False, softmax_scale)
    own_out, own_lse = kernel.forward(query, key[:, :, -new:], value[:, :, -new:], True, softmax_scale)
    return merge_over_ranks(hist_out, hist_lse, own_out, own_lse, group)


class PartialExchange:
    """Buffers in which the ranks of a group exchange their partial attentions (see
    :func:`merge_over_ranks`), allocated at the first exchange for ``tokens`` queries (grown if a
    later call needs more) and reused by every layer and forward after: a collective that
    allocates its own buffers per call (gloo's all-gather and all-reduce do, in their worker
    threads) leaves tens of MiB of freed blocks in each rank's heap over a V-NIAH grid."""

    def __init__(self, tokens: int = 0):
        self.tokens = tokens
        self._buffers: dict[tuple, torch.Tensor] = {}

    def take(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """A contiguous buffer shaped like ``like`` (``(B, H, Lq, ...)``), reused across calls."""
        numel, key = like.numel(), (name, like.dtype, like.device)
        buffer = self._buffers.get(key)
        if buffer is None or buffer.numel() < numel:
            queries = like.shape[2]
            size = max(numel, numel // queries * self.tokens) if queries else numel
            buffer = self._buffers[key] = torch.empty(size, dtype=like.dtype, device=like.device)
        return buffer[:numel].view(tuple(like.shape))


#: the exchange of the :class:`ShardedKVCache` whose forward runs now (its attention has no other
#: way to the cache: transformers hands an attention function the cache's K/V, not the cache)
_ACTIVE: "weakref.ref[PartialExchange] | None" = None


def _active_exchange() -> PartialExchange:
    exchange = _ACTIVE() if _ACTIVE is not None else None
    return exchange if exchange is not None else PartialExchange()


def merge_over_ranks(out, lse, own_out, own_lse, group, exchange: PartialExchange | None = None):
    """Merge each rank's partial attention ``out (B, H, Lq, D)`` / ``lse (B, H, Lq)`` (over its
    history share; ``-inf`` rows where it holds none) with ``own_out`` / ``own_lse`` (the new
    tokens over themselves, the same on every rank). Every rank sends its partial to every other
    (one batch of point-to-point sends and receives into the reused buffers of ``exchange``) and
    merges them all in rank order, then the new tokens' block: the same operations on the same numbers, so
    the same result on every rank. Returns ``(B, H, Lq, D)`` in the accumulation dtype."""
    from longva_plugins.attention.block import merge_partial
    from longva_plugins.distributed import exchange_tensors

    exchange = exchange if exchange is not None else _active_exchange()
    world, me = _group_rank(group)
    outs, lses = [], []
    for rank in range(world):
        part_out, part_lse = exchange.take(f"{rank}.out", out), exchange.take(f"{rank}.lse", lse)
        if rank == me:
            part_out.copy_(out), part_lse.copy_(lse)
        outs.append(part_out), lses.append(part_lse)
    exchange_tensors([[o, l] for o, l in zip(outs, lses)], group)
    merged, merged_lse = outs[0], lses[0]
    for part_out, part_lse in zip(outs[1:], lses[1:]):
        merge_partial(merged, merged_lse, part_out, part_lse, inplace=True)
    merge_partial(merged, merged_lse, own_out, own_lse, inplace=True)
    return merged


__all__ = ["SHARDED_KV", "GrowingCache", "GrowingLayer", "PartialExchange", "ShardedKVCache", "merge_over_ranks", "sharded_kv_attention",
           "split_new_tokens"]  # the cache layers: models/longva/cache_longva.py
