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

import functools

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

SHARDED_KV = "longva_sharded_kv"


def _group_rank(group) -> tuple[int, int]:
    import torch.distributed as dist

    from longva_plugins.attention.transformers_integration import group_size

    world = group_size(group)
    return world, (dist.get_rank(group) if world > 1 else 0)


class GrowingLayer(DynamicLayer):
    """A cache layer whose K/V live in preallocated buffers: appending copies only the new tokens
    (``DynamicLayer`` re-concatenates the whole history every chunk), cropping copies nothing,
    and new tokens can be handed to the attention without being kept (placed after the stored
    ones, overwritten by the next call) -- what a rank that does not keep a chunk needs.
    ``keys``/``values`` are views of the stored tokens.

    ``capacity``: tokens to allocate at the first write (a caller that knows its longest sequence
    allocates once: no growth, no freed buffers left behind in the heap). Past it the buffers grow
    by a quarter."""

    def __init__(self, capacity: int = 0, **kwargs):
        super().__init__(**kwargs)
        self._buffers: tuple[torch.Tensor, torch.Tensor] | None = None
        self._length = 0
        self.capacity = capacity

    def _reserve(self, key_states, value_states, needed: int) -> None:
        capacity = 0 if self._buffers is None else self._buffers[0].shape[-2]
        if needed <= capacity:
            return
        if self._buffers is None and self.capacity >= needed:
            capacity = self.capacity
        else:  # at most 25% unused; each token copied ~4 times
            capacity = max(needed, capacity + capacity // 4, 256)
        fresh = tuple(t.new_empty(*t.shape[:-2], capacity, t.shape[-1]) for t in (key_states, value_states))
        if self._length:
            for new, old in zip(fresh, self._buffers):
                new[..., :self._length, :] = old[..., :self._length, :]
        self._buffers = fresh

    def put(self, key_states, value_states, keep: bool = True):
        """Write the new tokens after the stored ones; return the views ``stored + new``."""
        end = self._length + key_states.shape[-2]
        self._reserve(key_states, value_states, end)
        keys, values = self._buffers
        keys[..., self._length:end, :] = key_states
        values[..., self._length:end, :] = value_states
        if keep:
            self._length = end
        self._sync(key_states.device)
        return keys[..., :end, :], values[..., :end, :]

    def update(self, key_states, value_states, *args, **kwargs):
        return self.put(key_states, value_states, keep=True)

    def keep_first(self, length: int) -> None:
        """Drop the stored tokens from ``length`` on (no copy)."""
        self._length = max(0, min(self._length, length))
        if self._buffers is not None:
            self._sync(self._buffers[0].device)

    def crop(self, tokens_to_remove: int) -> None:
        """Negative: drop that many tokens (``DynamicLayer``'s convention); otherwise keep that many."""
        self.keep_first(self._length - abs(tokens_to_remove) if tokens_to_remove < 0 else tokens_to_remove)

    def _sync(self, device) -> None:
        self.device, self.is_initialized = device, True
        self.keys = self._buffers[0][..., :self._length, :]
        self.values = self._buffers[1][..., :self._length, :]

    def get_seq_length(self) -> int:
        return self._length


class GrowingCache(DynamicCache):
    """A ``DynamicCache`` of :class:`GrowingLayer` layers, each allocated for ``capacity`` tokens
    at its first write (``config`` is accepted for ``DynamicCache``'s signature). For prefill and
    teacher-forced scoring; ``generate`` with beams needs a plain ``DynamicCache``."""

    def __init__(self, capacity: int = 0, config=None):
        super().__init__()
        self.capacity = capacity
        self.layer_class_to_replicate = functools.partial(GrowingLayer, capacity=capacity)

    def _layer(self, layer_idx: int) -> GrowingLayer:
        while len(self.layers) <= layer_idx:
            self.layers.append(self.layer_class_to_replicate())
        return self.layers[layer_idx]

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        return self._layer(layer_idx).put(key_states, value_states, keep=True)


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
    import torch.distributed as dist

    from longva_plugins.attention.block import merge_partial
    from longva_plugins.attention.ring_core import resolve_kernel

    kernel = resolve_kernel("auto", query.device, query.dtype)
    world, _ = _group_rank(group)
    if world == 1:
        out, _ = kernel.forward(query, key, value, True, softmax_scale, key_padding=key_padding)
        return out
    from longva_plugins.attention.transformers_integration import refuse_sharded_padding

    refuse_sharded_padding(key_padding, group)
    new = query.shape[2]
    hist_out, hist_lse = kernel.forward(query, key[:, :, :-new], value[:, :, :-new], False, softmax_scale)
    outs = [torch.empty(hist_out.shape, dtype=hist_out.dtype, device=hist_out.device) for _ in range(world)]
    lses = [torch.empty_like(hist_lse) for _ in range(world)]
    dist.all_gather(outs, hist_out.contiguous(), group=group)
    dist.all_gather(lses, hist_lse.contiguous(), group=group)
    merged, merged_lse = None, None
    for part_out, part_lse in zip(outs, lses):
        merged, merged_lse = merge_partial(merged, merged_lse, part_out, part_lse)
    own_out, own_lse = kernel.forward(query, key[:, :, -new:], value[:, :, -new:], True, softmax_scale)
    merged, _ = merge_partial(merged, merged_lse, own_out, own_lse)
    return merged


__all__ = ["SHARDED_KV", "GrowingCache", "GrowingLayer", "ShardedKVCache", "sharded_kv_attention"]
