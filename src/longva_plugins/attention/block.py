"""Block attention with log-sum-exp, its backward, and the one log-sum-exp merge.

Shapes (``B`` batch, ``H`` query heads, ``Hk`` key/value heads dividing ``H``, ``Lq``/``Lk``
lengths, ``D`` head dim): ``q (B, H, Lq, D)``, ``k, v (B, Hk, Lk, D)``. Grouped-query attention is
handled here by viewing the query heads as ``(Hk, H // Hk)`` groups, so key/value tensors are never
expanded (and never travel expanded between ranks).

Numerics: scores, softmax statistics and partial outputs are kept in float32 (float64 inputs
stay float64), whatever the input dtype; merging bf16 partial outputs is the known source of
errors that grow with the ring size (longva-reference.md §5).
"""

from __future__ import annotations

import torch


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype: float64 stays float64, everything else accumulates in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _grouped(q: torch.Tensor, hk: int) -> torch.Tensor:
    b, h, lq, d = q.shape
    return q.view(b, hk, h // hk, lq, d)  # (B, Hk, G, Lq, D)


def block_attention(q, k, v, causal: bool, softmax_scale: float | None = None):
    """Attention of one query block over one key/value block.

    ``causal`` masks key ``j`` for query ``i`` when ``j > i + (Lk - Lq)`` (bottom-right aligned, so a
    query block at the end of the key block sees all earlier keys).

    Returns:
        ``out (B, H, Lq, D)`` in the accumulation dtype and ``lse (B, H, Lq)``.
    """
    scale = softmax_scale if softmax_scale is not None else q.shape[-1] ** -0.5
    acc = acc_dtype(q.dtype)
    hk = k.shape[1]
    qg = _grouped(q, hk).to(acc)
    scores = torch.einsum("bkgqd,bkld->bkgql", qg, k.to(acc)) * scale  # (B, Hk, G, Lq, Lk)
    if causal:
        lq, lk = q.shape[2], k.shape[2]
        mask = torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril(lk - lq)
        scores = scores.masked_fill(~mask, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)  # (B, Hk, G, Lq)
    probs = torch.exp(scores - lse.unsqueeze(-1))
    probs = torch.nan_to_num(probs)  # fully masked rows (lse = -inf) contribute nothing
    out = torch.einsum("bkgql,bkld->bkgqd", probs, v.to(acc))
    b, h, lq, d = q.shape
    return out.reshape(b, h, lq, d), lse.reshape(b, h, lq)


def block_attention_backward(dout, q, k, v, out, lse, causal: bool, softmax_scale: float | None = None):
    """Gradients of one block given the *final* output and log-sum-exp of the query rows.

    Using the global ``out``/``lse`` makes per-block gradients add up exactly to the gradient of
    the full attention (the flash-attention backward identity).

    Returns ``dq (B, H, Lq, D)``, ``dk, dv (B, Hk, Lk, D)`` in the accumulation dtype.
    """
    scale = softmax_scale if softmax_scale is not None else q.shape[-1] ** -0.5
    acc = acc_dtype(q.dtype)
    hk = k.shape[1]
    qg, kf, vf = _grouped(q, hk).to(acc), k.to(acc), v.to(acc)
    dog, og = _grouped(dout, hk).to(acc), _grouped(out, hk).to(acc)
    lseg = lse.view(*og.shape[:-1]).to(acc)  # (B, Hk, G, Lq)
    scores = torch.einsum("bkgqd,bkld->bkgql", qg, kf) * scale
    if causal:
        lq, lk = q.shape[2], k.shape[2]
        mask = torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril(lk - lq)
        scores = scores.masked_fill(~mask, float("-inf"))
    probs = torch.nan_to_num(torch.exp(scores - lseg.unsqueeze(-1)))
    dv = torch.einsum("bkgql,bkgqd->bkld", probs, dog)
    dprobs = torch.einsum("bkgqd,bkld->bkgql", dog, vf)
    delta = (dog * og).sum(-1, keepdim=True)  # (B, Hk, G, Lq, 1)
    dscores = probs * (dprobs - delta) * scale
    dq = torch.einsum("bkgql,bkld->bkgqd", dscores, kf)
    dk = torch.einsum("bkgql,bkgqd->bkld", dscores, qg)
    return dq.reshape(q.shape), dk, dv


def merge_partial(out, lse, block_out, block_lse):
    """Numerically stable merge of two partial attentions over disjoint key sets.

    ``out``/``lse`` may be ``None`` (nothing accumulated yet). All in the accumulation dtype.
    """
    if out is None:
        return block_out, block_lse
    new_lse = torch.logaddexp(lse, block_lse)
    # exp(-inf - -inf) would be nan: rows with no visible key so far keep weight 0
    w_old = torch.nan_to_num(torch.exp(lse - new_lse)).unsqueeze(-1)
    w_new = torch.nan_to_num(torch.exp(block_lse - new_lse)).unsqueeze(-1)
    return out * w_old + block_out * w_new, new_lse


__all__ = ["acc_dtype", "block_attention", "block_attention_backward", "merge_partial"]
