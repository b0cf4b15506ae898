"""Zigzag ring attention (LongVA's long-context training, docs/longva-numerics.md §5).

The sequence is cut into ``2W`` chunks; rank ``r`` holds chunks ``r`` and ``2W-1-r``, so every
rank does the same amount of causal work. With the local query halves ``(r, 2W-1-r)`` and a K/V
block from rank ``s`` holding ``(s, 2W-1-s)``:

- ``s == r``: causal attention over the local sequence (local order is global order);
- ``s < r``: every local query sees K/V chunk ``s`` fully, chunk ``2W-1-s`` not at all;
- ``s > r``: only the second query half (chunk ``2W-1-r``) sees K/V, and sees all of it.
"""

from __future__ import annotations

from longva_plugins.attention.ring_core import RingAttentionFunction

_ALL = slice(None)


def zigzag_plan(rank, src, world, q_len, k_len):
    if src == rank:
        return [(_ALL, _ALL, True)]
    if src < rank:
        return [(_ALL, slice(0, k_len // 2), False)]
    return [(slice(q_len // 2, None), _ALL, False)]


def zigzag_ring_attention_func(q, k, v, causal: bool = True, softmax_scale: float | None = None, group=None,
                               kernel: str = "auto", key_padding=None):
    """Causal zigzag ring attention over a sequence sharded with :func:`.sequence_parallel.zigzag_split`.

    Args:
        q: ``(B, H, L_local, D)``; k, v: ``(B, Hk, L_local, D)``; ``L_local`` even (two chunks) when
            the group has more than one rank; any length (and ``key_padding``) in one process.
    Returns:
        ``(out (B, H, L_local, D), lse (B, H, L_local))``; differentiable in q, k, v.
    """
    from longva_plugins.attention.ring import ring_attention_func
    from longva_plugins.attention.sequence_parallel import refuse_sharded_padding
    from longva_plugins.distributed import group_size

    if not causal:
        return ring_attention_func(q, k, v, causal=False, softmax_scale=softmax_scale, group=group, kernel=kernel,
                                   key_padding=key_padding)
    refuse_sharded_padding(key_padding, group)
    if group_size(group) > 1 and q.shape[2] % 2:
        from longva_plugins.errors import SettingError

        raise SettingError(f"zigzag shards hold two equal chunks; local length {q.shape[2]} is odd: pad the sequence "
                          "to a multiple of 2 x world size (sequence_parallel.pad_to_multiple)")
    return RingAttentionFunction.apply(q, k, v, zigzag_plan, softmax_scale, group, kernel, key_padding)


__all__ = ["zigzag_plan", "zigzag_ring_attention_func"]
