"""Tiled block attention with log-sum-exp (the flash-attention algorithm in plain torch), its
backward, and the one log-sum-exp merge.

Shapes (``B`` batch, ``H`` query heads, ``Hk`` key/value heads dividing ``H``, ``G = H // Hk``,
``Lq``/``Lk`` lengths, ``D`` head dim, ``Tq``/``Tk`` tile sizes): ``q (B, H, Lq, D)``,
``k, v (B, Hk, Lk, D)``. Grouped-query attention views the query heads as ``(Hk, G)`` groups, so
key/value tensors are never expanded (and never travel expanded between ranks).

Forward: each query tile runs an online softmax over the key tiles it can see (running max,
running sum, rescaled output), so memory is ``O(Tq * Tk)`` per head group plus the ``O(L * D)``
inputs and outputs, never ``Lq * Lk``. Causal tiles entirely above the diagonal are skipped.
Backward: recomputes each tile's probabilities from ``q, k, lse`` and uses
``delta = rowsum(dout * out)``; no probability matrix is stored.

Numerics: scores, softmax statistics and partial outputs are kept in float32 (float64 inputs
stay float64), whatever the input dtype; merging bf16 partial outputs is the known source of
errors that grow with the ring size (longva-reference.md §5).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import torch

#: Default query and key tile length (``$LONGVA_ATTENTION_TILE`` overrides it). Measured on CPU
#: (benchmarks/bench_ring_attention.py, 4K-8K tokens): 128 gives 1.2-1.4x SDPA's peak memory at
#: 1.6x its time; 512 gave 3-4x the memory and was no faster.
DEFAULT_TILE = 128


def default_tile() -> int:
    return int(os.environ.get("LONGVA_ATTENTION_TILE") or DEFAULT_TILE)


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype: float64 stays float64, everything else accumulates in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_heads(heads: int, kv_heads: int) -> None:
    """Grouped-query attention needs the query heads to be a multiple of the key/value heads."""
    if kv_heads <= 0 or heads % kv_heads:
        from longva_plugins.errors import ConfigError

        raise ConfigError(f"{heads} query heads are not a multiple of {kv_heads} key/value heads (grouped-query "
                          "attention needs num_attention_heads % num_key_value_heads == 0)")


def _grouped(x: torch.Tensor, hk: int) -> torch.Tensor:
    b, h, length, d = x.shape
    return x.view(b, hk, h // hk, length, d)  # (B, Hk, G, L, D)


def _key_range(q0: int, q1: int, lk: int, causal: bool, offset: int) -> int:
    """End of the keys any query in ``[q0, q1)`` can see (query i sees key j when j <= i + offset)."""
    return min(lk, q1 + offset) if causal else lk


def _tile_scores(qt, kt, q0, q1, k0, k1, causal, offset, key_padding):
    """``(B, Hk, G, Tq, Tk)`` scores of a tile with the causal and padding masks applied."""
    scores = torch.einsum("bkgqd,bkld->bkgql", qt, kt)
    if causal and k1 - 1 > q0 + offset:  # the tile crosses the diagonal
        rows = torch.arange(q0, q1, device=qt.device).unsqueeze(1) + offset
        cols = torch.arange(k0, k1, device=qt.device).unsqueeze(0)
        scores = scores.masked_fill(cols > rows, float("-inf"))
    if key_padding is not None:
        keep = key_padding[:, k0:k1].view(key_padding.shape[0], 1, 1, 1, k1 - k0)
        scores = scores.masked_fill(~keep, float("-inf"))
    return scores


def _shapes(q, k, softmax_scale, tile):
    """``(b, h, lq, d, hk, lk, scale, acc, tile, offset)`` of a kernel call, heads checked."""
    b, h, lq, d = q.shape
    hk, lk = k.shape[1], k.shape[2]
    check_heads(h, hk)
    scale = softmax_scale if softmax_scale is not None else d ** -0.5
    return b, h, lq, d, hk, lk, scale, acc_dtype(q.dtype), tile or default_tile(), lk - lq


def block_attention(q, k, v, causal: bool, softmax_scale: float | None = None, key_padding=None,
                    tile: int | None = None):
    """Attention of one query block over one key/value block, tile by tile.

    ``causal`` masks key ``j`` for query ``i`` when ``j > i + (Lk - Lq)`` (bottom-right aligned, so a
    query block at the end of the key block -- a decode step -- sees all earlier keys).
    ``key_padding`` ``(B, Lk)`` bool marks the keys that exist (False = padding).

    Returns:
        ``out (B, H, Lq, D)`` in the accumulation dtype and ``lse (B, H, Lq)`` (``-inf`` and a zero
        output for rows that see no key).
    """
    b, h, lq, d, hk, lk, scale, acc, tile, offset = _shapes(q, k, softmax_scale, tile)
    qg = _grouped(q, hk)
    out = torch.zeros(b, hk, h // hk, lq, d, dtype=acc, device=q.device)
    lse = torch.full((b, hk, h // hk, lq), float("-inf"), dtype=acc, device=q.device)
    for q0 in range(0, lq, tile):
        q1 = min(lq, q0 + tile)
        qt = qg[:, :, :, q0:q1].to(acc) * scale  # (B, Hk, G, Tq, D)
        row_max = torch.full(qt.shape[:-1], float("-inf"), dtype=acc, device=q.device)  # (B, Hk, G, Tq)
        row_sum = torch.zeros_like(row_max)
        acc_out = torch.zeros_like(qt)
        for k0 in range(0, _key_range(q0, q1, lk, causal, offset), tile):
            k1 = min(_key_range(q0, q1, lk, causal, offset), k0 + tile)
            scores = _tile_scores(qt, k[:, :, k0:k1].to(acc), q0, q1, k0, k1, causal, offset, key_padding)
            new_max = torch.maximum(row_max, scores.amax(-1))
            safe_max = torch.where(torch.isinf(new_max), torch.zeros_like(new_max), new_max)
            probs = torch.exp(scores - safe_max.unsqueeze(-1))  # (B, Hk, G, Tq, Tk)
            correction = torch.exp(row_max - safe_max)  # 0 where nothing was seen yet
            row_sum = row_sum * correction + probs.sum(-1)
            acc_out = acc_out * correction.unsqueeze(-1) + torch.einsum("bkgql,bkld->bkgqd", probs, v[:, :, k0:k1].to(acc))
            row_max = new_max
        seen = row_sum > 0
        out[:, :, :, q0:q1] = torch.where(seen.unsqueeze(-1), acc_out / row_sum.clamp_min(1e-30).unsqueeze(-1), 0.0)
        lse[:, :, :, q0:q1] = torch.where(seen, row_max + torch.log(row_sum.clamp_min(1e-30)), float("-inf"))
    return out.reshape(b, h, lq, d), lse.reshape(b, h, lq)


def block_attention_backward(dout, q, k, v, out, lse, causal: bool, softmax_scale: float | None = None,
                             key_padding=None, tile: int | None = None):
    """Gradients of one block given the *final* output and log-sum-exp of the query rows.

    Using the global ``out``/``lse`` makes per-block gradients add up exactly to the gradient of
    the full attention (the flash-attention backward identity). Tile by tile; no stored probabilities.

    Returns ``dq (B, H, Lq, D)``, ``dk, dv (B, Hk, Lk, D)`` in the accumulation dtype.
    """
    b, h, lq, d, hk, lk, scale, acc, tile, offset = _shapes(q, k, softmax_scale, tile)
    qg, dog = _grouped(q, hk), _grouped(dout, hk)
    lseg = lse.reshape(b, hk, h // hk, lq).to(acc)
    delta = (dog.to(acc) * _grouped(out, hk).to(acc)).sum(-1)  # (B, Hk, G, Lq)
    dq = torch.zeros(b, hk, h // hk, lq, d, dtype=acc, device=q.device)
    dk = torch.zeros(b, hk, lk, d, dtype=acc, device=q.device)
    dv = torch.zeros_like(dk)
    for q0 in range(0, lq, tile):
        q1 = min(lq, q0 + tile)
        qt = qg[:, :, :, q0:q1].to(acc)
        dot = dog[:, :, :, q0:q1].to(acc)
        row_lse = lseg[:, :, :, q0:q1]
        row_lse = torch.where(torch.isinf(row_lse), torch.full_like(row_lse, float("inf")), row_lse)  # unseen rows: p = 0
        row_delta = delta[:, :, :, q0:q1].unsqueeze(-1)
        scaled = qt * scale
        end = _key_range(q0, q1, lk, causal, offset)
        for k0 in range(0, end, tile):
            k1 = min(end, k0 + tile)
            kt, vt = k[:, :, k0:k1].to(acc), v[:, :, k0:k1].to(acc)
            scores = _tile_scores(scaled, kt, q0, q1, k0, k1, causal, offset, key_padding)
            probs = torch.exp(scores - row_lse.unsqueeze(-1))  # (B, Hk, G, Tq, Tk)
            dv[:, :, k0:k1] += torch.einsum("bkgql,bkgqd->bkld", probs, dot)
            dscores = probs * (torch.einsum("bkgqd,bkld->bkgql", dot, vt) - row_delta) * scale
            dq[:, :, :, q0:q1] += torch.einsum("bkgql,bkld->bkgqd", dscores, kt)
            dk[:, :, k0:k1] += torch.einsum("bkgql,bkgqd->bkld", dscores, qt)
    return dq.reshape(b, h, lq, d), dk, dv


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


@dataclass(frozen=True)
class AttentionKernel:
    """A block kernel: ``forward(q, k, v, causal, softmax_scale) -> (out, lse)`` and
    ``backward(dout, q, k, v, out, lse, causal, softmax_scale) -> (dq, dk, dv)``, both with the
    interface of :func:`block_attention` / :func:`block_attention_backward`."""

    name: str
    forward: Callable
    backward: Callable


TORCH_KERNEL = AttentionKernel("torch", block_attention, block_attention_backward)


__all__ = [
    "AttentionKernel",
    "DEFAULT_TILE",
    "TORCH_KERNEL",
    "acc_dtype",
    "block_attention",
    "block_attention_backward",
    "check_heads",
    "merge_partial",
]
