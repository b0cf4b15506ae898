"""Ring attention for transformers models through the public registries (no monkeypatching).

After :func:`register` (run on import of :mod:`longva_plugins.attention`), a model loaded with
``attn_implementation="longva_ring_zigzag"`` (or ``"longva_ring"``) behaves as follows:

- **without a sequence-parallel group** (no ``torch.distributed``, world size 1, or no group set
  with :func:`set_sequence_parallel_group` on a single-rank group): exactly like transformers'
  causal attention, on the tiled kernel -- padding masks (left or right), any length, chunked
  prefill and decode steps over a KV cache, so the model can ``generate``;
- **with a group of W > 1 ranks**: each rank feeds its shard of the sequence (zigzag or
  contiguous, with the matching ``position_ids``; see :func:`.sequence_parallel.shard_batch`) and
  K/V travel round the ring. A call over a KV cache (fewer queries than keys: new tokens,
  replicated on every rank, after this rank's share of the history in a
  :class:`.sharded_kv.ShardedKVCache`) attends over every rank's share: partial outputs and
  log-sum-exps are all-gathered and merged (the ``longva_sharded_kv`` name does only this).
  Padding inside a sharded batch is refused before any compute. Shapes, dtypes, devices
  and head counts are compared across ranks first, so a mismatch is an error on every rank, not
  a hang.

``longva_causal`` is the same causal attention in one process only (never a ring, whatever
process group exists): the block kernel chosen by the ``longva_attention_kernel`` hook -- torch's
fused flash op on CPU, flash-attn on CUDA in half precision, the tiled kernel elsewhere -- with
``O(L)`` memory and no mask tensor, also for new tokens over a long KV cache (the ``longva``
adapter's default on CPU, where transformers' ``sdpa`` builds a ``(Lq, Lk)`` mask per chunk).

The mask function registered beside the attention names hands the attention a ``(B, Lk)`` key
padding mask (or ``None`` without padding) instead of a 4D mask.
"""

from __future__ import annotations

import torch

from longva_plugins.distributed import get_sequence_parallel_group, group_size, set_sequence_parallel_group

ZIGZAG = "longva_ring_zigzag"
RING = "longva_ring"
CAUSAL = "longva_causal"
_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_across_ranks(query, key, value, group, padded: bool) -> None:
    """All-gather a few numbers describing this rank's call and raise, on every rank, when they
    differ (a mismatch would otherwise end in a gloo/NCCL error or a hang)."""
    from longva_plugins.distributed import all_gather_tensors
    from longva_plugins.errors import SettingError

    device_kind = 1 if query.device.type == "cuda" else 0
    mine = torch.tensor([query.shape[0], query.shape[1], query.shape[2], query.shape[3], key.shape[1], key.shape[2],
                         value.shape[2], _DTYPES.index(query.dtype) if query.dtype in _DTYPES else -1, device_kind,
                         int(padded)], dtype=torch.long, device=query.device)
    table = torch.stack(all_gather_tensors(mine, group))
    if not (table == table[0]).all():
        names = ("batch", "heads", "q_len", "head_dim", "kv_heads", "k_len", "v_len", "dtype", "cuda", "padded")

        def show(name, value):
            value = int(value)
            return f"{name}={str(_DTYPES[value]).replace('torch.', '') if name == 'dtype' and value >= 0 else value}"

        rows = "; ".join(f"rank {r}: " + ", ".join(show(n, v) for n, v in zip(names, row)) for r, row in enumerate(table))
        raise SettingError(f"sequence-parallel attention got different shapes/dtypes/devices on different ranks: {rows}")
    if int(table[0, -1]):
        raise SettingError("padding inside a sequence-parallel batch is not supported: each rank must hold its shard "
                          "of unpadded sequences (pack the batch, or use batch size 1 with pad_to_multiple)")


def _make(func):
    def attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
        # query (B, H, Lq, D), key/value (B, Hk, Lk, D): GQA heads are not expanded
        padding = _key_padding(query, key, attention_mask)
        group = get_sequence_parallel_group()
        if group_size(group) > 1:
            if query.shape[2] < key.shape[2]:  # new tokens over a ShardedKVCache's history
                return _sharded(query, key, value, padding, scaling), None
            check_across_ranks(query, key, value, group, padding is not None)
        out, _ = func(query, key, value, causal=True, softmax_scale=scaling, group=group, key_padding=padding)
        return out.transpose(1, 2).contiguous(), None  # (B, Lq, H, D)

    return attention_forward


def _key_padding(query, key, attention_mask):
    """Heads checked; the ``(B, Lk)`` key padding mask our mask function made, or ``None``."""
    from longva_plugins.attention.block import check_heads

    check_heads(query.shape[1], key.shape[1])
    return attention_mask if isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 2 else None


def _sharded(query, key, value, padding, scaling):
    """The new tokens (replicated) against this rank's history share plus themselves; ``(B, Lq, H, D)``."""
    from longva_plugins.attention.sharded_kv import sharded_kv_attention

    new, group = query.shape[2], get_sequence_parallel_group()
    if group_size(group) > 1:  # the new tokens are the same on every rank; histories differ in length
        check_across_ranks(query, key[:, :, -new:], value[:, :, -new:], group, padding is not None)
    out = sharded_kv_attention(query, key, value, scaling, group, key_padding=padding)
    return out.to(query.dtype).transpose(1, 2).contiguous()


def causal_forward(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """``longva_causal``: causal attention over one block in this process (see the module docs)."""
    from longva_plugins.attention.ring_core import BlockAttentionFunction

    padding = _key_padding(query, key, attention_mask)
    out, _ = BlockAttentionFunction.apply(query, key, value, True, scaling, "auto", padding)
    return out.transpose(1, 2).contiguous(), None  # (B, Lq, H, D)


def sharded_kv_forward(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """``longva_sharded_kv``: every call is new tokens over a :class:`.sharded_kv.ShardedKVCache`."""
    return _sharded(query, key, value, _key_padding(query, key, attention_mask), scaling), None


def key_padding_mask(batch_size: int, q_length: int, kv_length: int, q_offset: int = 0, kv_offset: int = 0,
                     mask_function=None, attention_mask=None, **kwargs):
    """The mask function of the ring names: a ``(B, kv_length)`` bool key mask, or ``None``
    without padding (the kernels apply causality themselves)."""
    from transformers.masking_utils import prepare_padding_mask

    if attention_mask is None:
        return None
    padding = prepare_padding_mask(attention_mask.bool(), kv_length, kv_offset)[:, kv_offset:kv_offset + kv_length]
    return None if bool(padding.all()) else padding


def _sharded_kv_cache(config, capacity: int = 0, chunk: int = 0):
    from longva_plugins.attention.sharded_kv import ShardedKVCache

    return ShardedKVCache(group=get_sequence_parallel_group(), config=config, capacity=capacity, chunk=chunk)


def register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    from longva_plugins.attention.ring import ring_attention_func
    from longva_plugins.attention.zigzag import zigzag_ring_attention_func

    from longva_plugins.attention.sharded_kv import SHARDED_KV
    from longva_plugins.models.longva.cache_longva import register_kv_cache

    AttentionInterface.register(ZIGZAG, _make(zigzag_ring_attention_func))
    AttentionInterface.register(RING, _make(ring_attention_func))
    AttentionInterface.register(SHARDED_KV, sharded_kv_forward)
    register_kv_cache(SHARDED_KV, _sharded_kv_cache)
    AttentionInterface.register(CAUSAL, causal_forward)
    for name in (ZIGZAG, RING, SHARDED_KV, CAUSAL):
        AttentionMaskInterface.register(name, key_padding_mask)


# set_sequence_parallel_group / get_sequence_parallel_group live in longva_plugins.distributed (re-exported)
__all__ = ["CAUSAL", "RING", "ZIGZAG", "causal_forward", "check_across_ranks", "get_sequence_parallel_group",
           "key_padding_mask", "register", "set_sequence_parallel_group", "sharded_kv_forward"]
