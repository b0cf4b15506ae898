"""Single-process float64 reference attention (causal, GQA) and helpers for the ring tests."""

from __future__ import annotations

import torch


def reference_attention(q, k, v, causal=True, scale=None):
    """Plain softmax attention in float64 with autograd: returns out (B,H,L,D) and lse (B,H,L)."""
    scale = scale if scale is not None else q.shape[-1] ** -0.5
    group = q.shape[1] // k.shape[1]
    kk = k.repeat_interleave(group, dim=1)
    vv = v.repeat_interleave(group, dim=1)
    scores = torch.einsum("bhqd,bhkd->bhqk", q, kk) * scale
    if causal:
        length = q.shape[2]
        mask = torch.ones(length, length, dtype=torch.bool).tril()
        scores = scores.masked_fill(~mask, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    out = torch.einsum("bhqk,bhkd->bhqd", torch.softmax(scores, dim=-1), vv)
    return out, lse


def make_inputs(seed, batch, heads, kv_heads, length, dim):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, length, dim, generator=gen, dtype=torch.float64)
    k = torch.randn(batch, kv_heads, length, dim, generator=gen, dtype=torch.float64)
    v = torch.randn(batch, kv_heads, length, dim, generator=gen, dtype=torch.float64)
    dout = torch.randn(batch, heads, length, dim, generator=gen, dtype=torch.float64)
    return q, k, v, dout
