"""Ring attention for transformers models through the public registries (no monkeypatching).

After :func:`register` (run on import of :mod:`longva_plugins.attention`), any model that reads
``config._attn_implementation`` (Qwen2, :class:`~longva_plugins.models.longva.LongVAForCausalLM`)
runs sequence-parallel with ``attn_implementation="longva_ring_zigzag"`` (or ``"longva_ring"``),
provided each rank feeds its shard of the sequence with the matching ``position_ids`` (see
:func:`.sequence_parallel.shard_batch`). The process group is the default group unless set with
:func:`set_sequence_parallel_group`. Masks are not materialised: the kernels are causal.
"""

from __future__ import annotations

ZIGZAG = "longva_ring_zigzag"
RING = "longva_ring"
_GROUP = None


def set_sequence_parallel_group(group) -> None:
    """Use ``group`` (a ``torch.distributed`` process group) for the registered attention functions."""
    global _GROUP
    _GROUP = group


def _make(func):
    def attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
        # query (B, H, L_local, D), key/value (B, Hk, L_local, D): GQA heads are not expanded
        out, _ = func(query, key, value, causal=True, softmax_scale=scaling, group=_GROUP)
        return out.transpose(1, 2).contiguous(), None  # (B, L_local, H, D)

    return attention_forward


def _no_mask(*args, **kwargs):
    return None


def register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    from longva_plugins.attention.ring import ring_attention_func
    from longva_plugins.attention.zigzag import zigzag_ring_attention_func

    AttentionInterface.register(ZIGZAG, _make(zigzag_ring_attention_func))
    AttentionInterface.register(RING, _make(ring_attention_func))
    AttentionMaskInterface.register(ZIGZAG, _no_mask)
    AttentionMaskInterface.register(RING, _no_mask)


__all__ = ["RING", "ZIGZAG", "register", "set_sequence_parallel_group"]
