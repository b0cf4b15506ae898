"""Ring attention for transformers models through the public registries (no monkeypatching).

After :func:`register` (run on import of :mod:`longva_plugins.attention`), a model loaded with
``attn_implementation="longva_ring_zigzag"`` (or ``"longva_ring"``) behaves as follows:

- **without a sequence-parallel group** (no ``torch.distributed``, world size 1, or no group set
  with :func:`set_sequence_parallel_group` on a single-rank group): exactly like transformers'
  causal attention, on the tiled kernel -- padding masks (left or right), any length, chunked
  prefill and decode steps over a KV cache, so the model can ``generate``;
- **with a group of W > 1 ranks**: each rank feeds its shard of the sequence (zigzag or
  contiguous, with the matching ``position_ids``; see :func:`.sequence_parallel.shard_batch`) and
  K/V travel round the ring. A decode step (fewer local queries than local keys: the new tokens,
  replicated on every rank, against each rank's KV shard) attends over every shard: each rank
  computes its partial attention, the partial outputs and log-sum-exps are all-gathered and
  merged. Padding inside a sharded batch is refused before any compute. Shapes, dtypes, devices
  and head counts are compared across ranks first, so a mismatch is an error on every rank, not
  a hang.

The mask function registered beside the attention names hands the attention a ``(B, Lk)`` key
padding mask (or ``None`` without padding) instead of a 4D mask.
"""

from __future__ import annotations

import torch

ZIGZAG = "longva_ring_zigzag"
RING = "longva_ring"
_GROUP = None
_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def set_sequence_parallel_group(group) -> None:
    """Use ``group`` (a ``torch.distributed`` process group) for the registered attention functions."""
    global _GROUP
    _GROUP = group


def group_size(group) -> int:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(group)


def refuse_sharded_padding(key_padding, group) -> None:
    """Key padding is supported in one process only; with a group of several ranks it is refused."""
    if key_padding is not None and group_size(group) > 1:
        from longva_plugins.errors import ConfigError

        raise ConfigError("key padding inside a sequence-parallel batch is not supported; shard unpadded sequences")


def check_across_ranks(query, key, value, group, padded: bool) -> None:
    """All-gather a few numbers describing this rank's call and raise, on every rank, when they
    differ (a mismatch would otherwise end in a gloo/NCCL error or a hang)."""
    import torch.distributed as dist

    from longva_plugins.errors import ConfigError

    device_kind = 1 if query.device.type == "cuda" else 0
    mine = torch.tensor([query.shape[0], query.shape[1], query.shape[2], query.shape[3], key.shape[1], key.shape[2],
                         value.shape[2], _DTYPES.index(query.dtype) if query.dtype in _DTYPES else -1, device_kind,
                         int(padded)], dtype=torch.long, device=query.device)
    gathered = [torch.empty_like(mine) for _ in range(dist.get_world_size(group))]
    dist.all_gather(gathered, mine, group=group)
    table = torch.stack(gathered)
    if not (table == table[0]).all():
        names = ("batch", "heads", "q_len", "head_dim", "kv_heads", "k_len", "v_len", "dtype", "cuda", "padded")

        def show(name, value):
            value = int(value)
            return f"{name}={str(_DTYPES[value]).replace('torch.', '') if name == 'dtype' and value >= 0 else value}"

        rows = "; ".join(f"rank {r}: " + ", ".join(show(n, v) for n, v in zip(names, row)) for r, row in enumerate(table))
        raise ConfigError(f"sequence-parallel attention got different shapes/dtypes/devices on different ranks: {rows}")
    if int(table[0, -1]):
        raise ConfigError("padding inside a sequence-parallel batch is not supported: each rank must hold its shard "
                          "of unpadded sequences (pack the batch, or use batch size 1 with pad_to_multiple)")


def decode_attention(query, key, value, softmax_scale, group):
    """New tokens (replicated on every rank) against the KV shards of all ranks: each rank's
    partial attention over its shard, all-gathered and merged by log-sum-exp. Returns
    ``(B, H, Lq, D)`` in the query dtype. Causal order within the new tokens is respected only
    for a single token (the decode step); several new tokens must be prefilled instead."""
    import torch.distributed as dist

    from longva_plugins.attention.block import block_attention, merge_partial

    if query.shape[2] != 1:
        from longva_plugins.errors import ConfigError

        raise ConfigError(f"a sequence-parallel decode step takes one new token per rank; got {query.shape[2]} "
                          "(prefill longer inputs sharded with shard_batch)")
    out, lse = block_attention(query, key, value, causal=False, softmax_scale=softmax_scale)
    world = dist.get_world_size(group)
    outs = [torch.empty_like(out) for _ in range(world)]
    lses = [torch.empty_like(lse) for _ in range(world)]
    dist.all_gather(outs, out.contiguous(), group=group)
    dist.all_gather(lses, lse.contiguous(), group=group)
    merged, merged_lse = None, None
    for part_out, part_lse in zip(outs, lses):
        merged, merged_lse = merge_partial(merged, merged_lse, part_out, part_lse)
    return merged.to(query.dtype)


def _make(func):
    def attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
        # query (B, H, Lq, D), key/value (B, Hk, Lk, D): GQA heads are not expanded
        from longva_plugins.attention.block import check_heads

        check_heads(query.shape[1], key.shape[1])
        padding = attention_mask if isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 2 else None
        if group_size(_GROUP) > 1:
            check_across_ranks(query, key, value, _GROUP, padding is not None)
            if query.shape[2] < key.shape[2]:
                return decode_attention(query, key, value, scaling, _GROUP).transpose(1, 2).contiguous(), None
        out, _ = func(query, key, value, causal=True, softmax_scale=scaling, group=_GROUP, key_padding=padding)
        return out.transpose(1, 2).contiguous(), None  # (B, Lq, H, D)

    return attention_forward


def key_padding_mask(batch_size: int, q_length: int, kv_length: int, q_offset: int = 0, kv_offset: int = 0,
                     mask_function=None, attention_mask=None, **kwargs):
    """The mask function of the ring names: a ``(B, kv_length)`` bool key mask, or ``None``
    without padding (the kernels apply causality themselves)."""
    from transformers.masking_utils import prepare_padding_mask

    if attention_mask is None:
        return None
    padding = prepare_padding_mask(attention_mask.bool(), kv_length, kv_offset)[:, kv_offset:kv_offset + kv_length]
    return None if bool(padding.all()) else padding


def register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    from longva_plugins.attention.ring import ring_attention_func
    from longva_plugins.attention.zigzag import zigzag_ring_attention_func

    AttentionInterface.register(ZIGZAG, _make(zigzag_ring_attention_func))
    AttentionInterface.register(RING, _make(ring_attention_func))
    AttentionMaskInterface.register(ZIGZAG, key_padding_mask)
    AttentionMaskInterface.register(RING, key_padding_mask)


__all__ = ["RING", "ZIGZAG", "check_across_ranks", "decode_attention", "group_size", "key_padding_mask",
           "refuse_sharded_padding", "register", "set_sequence_parallel_group"]
