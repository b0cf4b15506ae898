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
(every rank drops its tokens at or after the cut). Without a group (or with one rank) the cache is
a plain :class:`~transformers.DynamicCache` and the attention name is transformers' causal
attention on the tiled kernel, so the same code runs in one process.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

SHARDED_KV = "longva_sharded_kv"


def _group_rank(group) -> tuple[int, int]:
    import torch.distributed as dist

    from longva_plugins.attention.transformers_integration import group_size

    world = group_size(group)
    return world, (dist.get_rank(group) if world > 1 else 0)


class ShardedKVCache(DynamicCache):
    """A KV cache whose history is split over the ranks of ``group`` (see the module docs)."""

    def __init__(self, group=None, config=None):
        super().__init__(config=config)
        self.group = group
        self.world, self.rank = _group_rank(group)
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
        if self._owner == self.rank:
            return super().update(key_states, value_states, layer_idx, *args, **kwargs)
        layer = self.layers[layer_idx] if layer_idx < len(self.layers) else None
        if layer is None or not layer.is_initialized or layer.keys.numel() == 0:
            return key_states, value_states
        return torch.cat([layer.keys, key_states], dim=-2), torch.cat([layer.values, value_states], dim=-2)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.total

    def crop(self, max_length: int) -> None:
        """Keep the first ``max_length`` tokens of the global sequence (negative: drop that many)."""
        keep_total = max_length if max_length >= 0 else self.total + max_length
        keep_total = max(0, min(self.total, keep_total))
        for rank in range(self.world):
            self.segments[rank] = [(start, min(n, keep_total - start)) for start, n in self.segments[rank]
                                   if start < keep_total]
        local = self.stored()
        for layer in self.layers:
            if layer.is_initialized and layer.keys.numel() and layer.keys.shape[-2] > local:
                layer.keys = layer.keys[..., :local, :]
                layer.values = layer.values[..., :local, :]
        self.total = keep_total


def sharded_kv_attention(query, key, value, softmax_scale, group, key_padding=None):
    """``query (B, H, Lq, D)``: the new tokens (the same on every rank); ``key``/``value``
    ``(B, Hk, Lh + Lq, D)``: this rank's history share followed by the new tokens. Returns
    ``(B, H, Lq, D)`` in the accumulation dtype, identical on every rank."""
    import torch.distributed as dist

    from longva_plugins.attention.block import block_attention, merge_partial

    world, _ = _group_rank(group)
    if world == 1:
        out, _ = block_attention(query, key, value, causal=True, softmax_scale=softmax_scale, key_padding=key_padding)
        return out
    from longva_plugins.attention.transformers_integration import refuse_sharded_padding

    refuse_sharded_padding(key_padding, group)
    new = query.shape[2]
    hist_out, hist_lse = block_attention(query, key[:, :, :-new], value[:, :, :-new], causal=False,
                                         softmax_scale=softmax_scale)
    outs = [torch.empty(hist_out.shape, dtype=hist_out.dtype, device=hist_out.device) for _ in range(world)]
    lses = [torch.empty_like(hist_lse) for _ in range(world)]
    dist.all_gather(outs, hist_out.contiguous(), group=group)
    dist.all_gather(lses, hist_lse.contiguous(), group=group)
    merged, merged_lse = None, None
    for part_out, part_lse in zip(outs, lses):
        merged, merged_lse = merge_partial(merged, merged_lse, part_out, part_lse)
    own_out, own_lse = block_attention(query, key[:, :, -new:], value[:, :, -new:], causal=True,
                                       softmax_scale=softmax_scale)
    merged, _ = merge_partial(merged, merged_lse, own_out, own_lse)
    return merged


__all__ = ["SHARDED_KV", "ShardedKVCache", "sharded_kv_attention"]
