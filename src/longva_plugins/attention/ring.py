"""Plain ring attention: rank ``r`` holds the ``r``-th contiguous chunk of the sequence.

Causal work is unbalanced (rank 0 attends one block, the last rank all of them); prefer
:mod:`.zigzag` for causal models. Non-causal attention is balanced either way.
"""

from __future__ import annotations

from longva_plugins.attention.ring_core import RingAttentionFunction

_ALL = slice(None)


def ring_plan(causal: bool):
    def plan(rank, src, world, q_len, k_len):
        if not causal:
            return [(_ALL, _ALL, False)]
        if src == rank:
            return [(_ALL, _ALL, True)]
        return [(_ALL, _ALL, False)] if src < rank else []

    return plan


_PLANS = {True: ring_plan(True), False: ring_plan(False)}


def ring_attention_func(q, k, v, causal: bool = True, softmax_scale: float | None = None, group=None,
                        kernel: str = "auto", key_padding=None):
    """Ring attention over a sequence sharded contiguously across ``group``.

    Args:
        q: ``(B, H, L_local, D)``; k, v: ``(B, Hk, L_local, D)`` with ``H % Hk == 0`` (GQA).
        kernel: ``"auto"``, ``"torch"`` (tiled) or ``"flash_attn"`` (see the ``longva_attention_kernel`` hook).
        key_padding: ``(B, Lk)`` bool, False for padded keys; one process only.
    Returns:
        ``(out (B, H, L_local, D), lse (B, H, L_local))``; differentiable in q, k, v.
    """
    from longva_plugins.attention.sequence_parallel import refuse_sharded_padding

    refuse_sharded_padding(key_padding, group)
    return RingAttentionFunction.apply(q, k, v, _PLANS[causal], softmax_scale, group, kernel, key_padding)


__all__ = ["ring_attention_func", "ring_plan"]
