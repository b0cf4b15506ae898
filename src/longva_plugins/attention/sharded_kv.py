"""Sequence-parallel inference: a KV cache split over the ranks of a group.

Long-video inference appends to one long KV cache (V-NIAH grows a haystack prefix, then a cell's
tail; generation appends one token at a time). With :class:`ShardedKVCache` and the attention
name ``longva_sharded_kv`` every rank of the group runs the same forward over the same *new*
tokens (replicated, with their global positions), and

- each layer's attention sees this rank's stored share of the history followed by the new
  tokens: every rank attends over its history share (all of it visible), the partial outputs and
  log-sum-exps are all-gathered and merged in rank order, and the new tokens' causal attention
  over themselves is merged last -- the same result on every rank, equal to one process's;
- the new tokens' K/V are stored by one rank only (the one holding the fewest tokens, the lowest
  rank on ties: every rank takes the same decision), so each rank holds about 1/W of the cache.

``get_seq_length`` is the global length; :meth:`ShardedKVCache.crop` cuts the *global* sequence
(every rank drops its tokens at or after the cut). Without a group (or with one rank) the cache
keeps every token (a ``DynamicCache`` whose layers append without re-concatenating) and the
attention name is transformers' causal attention on the tiled kernel, so the same code runs in one
process.
"""

from __future__ import annotations

from longva_plugins.models.longva.cache_longva import GrowingCache, GrowingLayer

SHARDED_KV = "longva_sharded_kv"


def _group_rank(group) -> tuple[int, int]:
    from longva_plugins.distributed import group_rank, group_size

    return group_size(group), group_rank(group)


class ShardedKVCache(GrowingCache):
    """A KV cache whose history is split over the ranks of ``group`` (see the module docs).
    ``capacity``: tokens of the whole (global) sequence; each rank allocates its share."""

    def __init__(self, group=None, config=None, capacity: int = 0):
        world, rank = _group_rank(group)
        super().__init__(capacity=-(-capacity // world))
        self.group = group
        self.world, self.rank = world, rank
        #: per rank, the ``(global_start, length)`` runs of tokens it stores, in global order
        self.segments: list[list[tuple[int, int]]] = [[] for _ in range(self.world)]
        self.total = 0
        self._owner = 0

    def stored(self, rank: int | None = None) -> int:
        """Tokens held by ``rank`` (default: this rank)."""
        return sum(n for _, n in self.segments[self.rank if rank is None else rank])

    def _begin(self, new: int) -> None:
        """A forward over ``new`` tokens starts (layer 0): choose the rank that keeps them."""
        held = [self.stored(r) for r in range(self.world)]
        self._owner = held.index(min(held))
        self.segments[self._owner].append((self.total, new))
        self.total += new

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        if layer_idx == 0:
            self._begin(key_states.shape[-2])
        return self._layer(layer_idx).put(key_states, value_states, keep=self._owner == self.rank)

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
    from longva_plugins.attention.block import merge_partial
    from longva_plugins.attention.ring_core import resolve_kernel
    from longva_plugins.distributed import all_gather_tensors

    kernel = resolve_kernel("auto", query.device, query.dtype)
    world, _ = _group_rank(group)
    if world == 1:
        out, _ = kernel.forward(query, key, value, True, softmax_scale, key_padding=key_padding)
        return out
    from longva_plugins.attention.sequence_parallel import refuse_sharded_padding

    refuse_sharded_padding(key_padding, group)
    new = query.shape[2]
    hist_out, hist_lse = kernel.forward(query, key[:, :, :-new], value[:, :, :-new], False, softmax_scale)
    outs, lses = all_gather_tensors(hist_out, group), all_gather_tensors(hist_lse, group)
    merged, merged_lse = None, None
    for part_out, part_lse in zip(outs, lses):
        merged, merged_lse = merge_partial(merged, merged_lse, part_out, part_lse)
    own_out, own_lse = kernel.forward(query, key[:, :, -new:], value[:, :, -new:], True, softmax_scale)
    merged, _ = merge_partial(merged, merged_lse, own_out, own_lse)
    return merged


__all__ = ["SHARDED_KV", "GrowingCache", "GrowingLayer", "ShardedKVCache", "sharded_kv_attention"]  # the cache layers: models/longva/cache_longva.py
