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
errors that grow with the ring size (docs/longva-numerics.md §5).
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
        from longva_plugins.errors import SettingError

        raise SettingError(f"{heads} query heads are not a multiple of {kv_heads} key/value heads (grouped-query "
                          "attention needs num_attention_heads % num_key_value_heads == 0)")


def output_buffer(b: int, h: int, length: int, d: int, dtype, device, factory=torch.zeros) -> torch.Tensor:
    """An attention output ``(B, H, L, D)`` stored as ``(B, L, H, D)``: the layout transformers'
    attention functions return, so handing it back (``transpose(1, 2).contiguous()``) copies nothing
    and the tensor saved for backward is the one returned."""
    return factory(b, length, h, d, dtype=dtype, device=device).transpose(1, 2)


def _grouped(x: torch.Tensor, hk: int) -> torch.Tensor:
    b, h, length, d = x.shape
    return x.view(b, hk, h // hk, length, d)  # (B, Hk, G, L, D)


def _query_tile(x: torch.Tensor, hk: int, q0: int, q1: int, acc: torch.dtype) -> torch.Tensor:
    """Rows ``[q0, q1)`` of ``x (B, H, L, D)`` as ``(B * Hk, G * Tq, D)`` in ``acc`` (may be a view of ``x``):
    one batched matmul then covers every query head of a key/value head."""
    b, h, _, d = x.shape
    return _grouped(x, hk)[:, :, :, q0:q1].to(acc).reshape(b * hk, (h // hk) * (q1 - q0), d)


def _kv_tile(x: torch.Tensor, k0: int, k1: int, acc: torch.dtype) -> torch.Tensor:
    """Rows ``[k0, k1)`` of ``x (B, Hk, L, D)`` as ``(B * Hk, Tk, D)``."""
    b, hk, _, d = x.shape
    return x[:, :, k0:k1].to(acc).reshape(b * hk, k1 - k0, d)


def _key_range(q0: int, q1: int, lk: int, causal: bool, offset: int) -> int:
    """End of the keys any query in ``[q0, q1)`` can see (query i sees key j when j <= i + offset)."""
    return min(lk, q1 + offset) if causal else lk


def _tile_scores(qt, kt, b, q0, q1, k0, k1, causal, offset, key_padding):
    """``(B * Hk, G * Tq, Tk)`` scores ``qt @ kt^T`` of a tile, causal and padding masks applied
    (masked scores are ``-inf``)."""
    scores = torch.bmm(qt, kt.transpose(1, 2))
    if causal and k1 - 1 > q0 + offset:  # the tile crosses the diagonal
        rows = torch.arange(q0, q1, device=qt.device).unsqueeze(1) + offset
        cols = torch.arange(k0, k1, device=qt.device).unsqueeze(0)
        scores.view(scores.shape[0], -1, q1 - q0, k1 - k0).masked_fill_(cols > rows, float("-inf"))
    if key_padding is not None:
        hidden = ~key_padding[:, k0:k1].view(b, 1, 1, k1 - k0)
        scores.view(b, -1, scores.shape[1], k1 - k0).masked_fill_(hidden, float("-inf"))
    return scores


def _shapes(q, k, softmax_scale, tile):
    """``(b, h, lq, d, hk, lk, scale, acc, tile, offset)`` of a kernel call, heads checked."""
    b, h, lq, d = q.shape
    hk, lk = k.shape[1], k.shape[2]
    check_heads(h, hk)
    scale = softmax_scale if softmax_scale is not None else d ** -0.5
    return b, h, lq, d, hk, lk, scale, acc_dtype(q.dtype), tile or default_tile(), lk - lq


def _store_rows(target: torch.Tensor, hk: int, q0: int, q1: int, rows: torch.Tensor, add: bool = False) -> None:
    """Write (or add) ``rows (B * Hk, G * Tq, ...)`` into rows ``[q0, q1)`` of ``target (B, H, L, ...)``."""
    b, h = target.shape[:2]
    view = target.view(b, hk, h // hk, *target.shape[2:])[:, :, :, q0:q1]
    rows = rows.view(view.shape)
    view.add_(rows) if add else view.copy_(rows)


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
    out = output_buffer(b, h, lq, d, acc, q.device, torch.empty)
    lse = torch.empty(b, h, lq, dtype=acc, device=q.device)
    for q0 in range(0, lq, tile):
        q1 = min(lq, q0 + tile)
        qt = _query_tile(q, hk, q0, q1, acc) * scale  # (N, M, D), N = B*Hk, M = G*Tq (a new tensor: never scale q in place)
        row_max = torch.full(qt.shape[:-1], float("-inf"), dtype=acc, device=q.device)  # (N, M)
        row_sum = torch.zeros_like(row_max)
        acc_out = torch.zeros_like(qt)
        end = _key_range(q0, q1, lk, causal, offset)
        for k0 in range(0, end, tile):
            k1 = min(end, k0 + tile)
            scores = _tile_scores(qt, _kv_tile(k, k0, k1, acc), b, q0, q1, k0, k1, causal, offset, key_padding)
            new_max = torch.maximum(row_max, scores.amax(-1))
            safe_max = new_max.masked_fill(torch.isinf(new_max), 0.0)
            probs = scores.sub_(safe_max.unsqueeze(-1)).exp_()  # (N, M, Tk), in place of the scores
            correction = (row_max - safe_max).exp_()  # 0 where nothing was seen yet
            row_sum.mul_(correction).add_(probs.sum(-1))
            acc_out.mul_(correction.unsqueeze(-1)).baddbmm_(probs, _kv_tile(v, k0, k1, acc))
            row_max = new_max
        seen = row_sum > 0
        safe_sum = row_sum.clamp_min(1e-30)
        _store_rows(out, hk, q0, q1, acc_out.div_(safe_sum.unsqueeze(-1)).masked_fill_(~seen.unsqueeze(-1), 0.0))
        _store_rows(lse, hk, q0, q1, (row_max + safe_sum.log()).masked_fill_(~seen, float("-inf")))
    return out, lse


def block_attention_backward(dout, q, k, v, out, lse, causal: bool, softmax_scale: float | None = None,
                             key_padding=None, tile: int | None = None, grads=None):
    """Gradients of one block given the *final* output and log-sum-exp of the query rows.

    Using the global ``out``/``lse`` makes per-block gradients add up exactly to the gradient of
    the full attention (the flash-attention backward identity). Tile by tile; no stored
    probabilities, and ``delta = rowsum(dout * out)`` is formed per query tile too.

    ``grads``: optional ``(dq, dk, dv)`` accumulators (accumulation dtype, shapes of q, k, v; views
    such as a ring's query slice are fine) that the gradients are added into in place, so a ring
    step allocates no gradient-sized temporaries.

    Returns ``dq (B, H, Lq, D)``, ``dk, dv (B, Hk, Lk, D)`` in the accumulation dtype (``grads`` when given).
    """
    b, h, lq, d, hk, lk, scale, acc, tile, offset = _shapes(q, k, softmax_scale, tile)
    if grads is None:
        grads = (torch.zeros(b, h, lq, d, dtype=acc, device=q.device),
                 torch.zeros(b, hk, lk, d, dtype=acc, device=q.device),
                 torch.zeros(b, hk, lk, d, dtype=acc, device=q.device))
    dk, dv = grads[1], grads[2]
    lse_rows = lse.unsqueeze(-1)  # (B, H, Lq, 1): reuses the row helpers
    for q0 in range(0, lq, tile):
        q1 = min(lq, q0 + tile)
        scaled = _query_tile(q, hk, q0, q1, acc) * scale  # (N, M, D), a new tensor
        dot = _query_tile(dout, hk, q0, q1, acc)
        row_lse = _query_tile(lse_rows, hk, q0, q1, acc)  # (N, M, 1)
        row_lse = row_lse.masked_fill(torch.isinf(row_lse), float("inf"))  # unseen rows: p = 0
        row_delta = (dot * _query_tile(out, hk, q0, q1, acc)).sum(-1, keepdim=True)  # (N, M, 1)
        dq_tile = torch.zeros_like(dot)
        end = _key_range(q0, q1, lk, causal, offset)
        for k0 in range(0, end, tile):
            k1 = min(end, k0 + tile)
            kt, vt = _kv_tile(k, k0, k1, acc), _kv_tile(v, k0, k1, acc)
            probs = _tile_scores(scaled, kt, b, q0, q1, k0, k1, causal, offset, key_padding).sub_(row_lse).exp_()
            _add_kv_rows(dv, k0, k1, torch.bmm(probs.transpose(1, 2), dot))
            dscores = torch.bmm(dot, vt.transpose(1, 2)).sub_(row_delta).mul_(probs)  # dS / scale
            dq_tile.baddbmm_(dscores, kt)
            _add_kv_rows(dk, k0, k1, torch.bmm(dscores.transpose(1, 2), scaled))  # scale folded into `scaled`
        _store_rows(grads[0], hk, q0, q1, dq_tile.mul_(scale), add=True)
    return grads


def _add_kv_rows(target: torch.Tensor, k0: int, k1: int, rows: torch.Tensor) -> None:
    """Add ``rows (B * Hk, Tk, D)`` into rows ``[k0, k1)`` of ``target (B, Hk, L, D)``."""
    view = target[:, :, k0:k1]
    view.add_(rows.view(view.shape))


def merge_partial(out, lse, block_out, block_lse, inplace: bool = False):
    """Numerically stable merge of two partial attentions over disjoint key sets.

    ``out``/``lse`` may be ``None`` (nothing accumulated yet). All in the accumulation dtype.
    ``inplace=True`` writes the result into ``out``/``lse`` (views allowed) and scales ``block_out``
    in place: a ring step then needs no output-sized temporaries.
    """
    if out is None:
        return block_out, block_lse
    new_lse = torch.logaddexp(lse, block_lse)
    # exp(-inf - -inf) would be nan: rows with no visible key so far keep weight 0
    w_old = torch.nan_to_num(torch.exp(lse - new_lse)).unsqueeze(-1)
    w_new = torch.nan_to_num(torch.exp(block_lse - new_lse)).unsqueeze(-1)
    if not inplace:
        return out * w_old + block_out * w_new, new_lse
    out.mul_(w_old).add_(block_out.mul_(w_new))
    lse.copy_(new_lse)
    return out, lse


@dataclass(frozen=True)
class AttentionKernel:
    """A block kernel: ``forward(q, k, v, causal, softmax_scale) -> (out, lse)`` and
    ``backward(dout, q, k, v, out, lse, causal, softmax_scale) -> (dq, dk, dv)``, both with the
    interface of :func:`block_attention` / :func:`block_attention_backward`."""

    name: str
    forward: Callable
    backward: Callable
    #: ``backward`` takes ``grads=(dq, dk, dv)`` and adds into them in place
    accumulates: bool = False

    def backward_add(self, grads, dout, q, k, v, out, lse, causal, softmax_scale, **kwargs):
        """Adds this block's ``(dq, dk, dv)`` into the accumulators ``grads`` (in place)."""
        if self.accumulates:
            self.backward(dout, q, k, v, out, lse, causal, softmax_scale, grads=grads, **kwargs)
            return
        for total, part in zip(grads, self.backward(dout, q, k, v, out, lse, causal, softmax_scale, **kwargs)):
            total += part.to(total.dtype)


TORCH_KERNEL = AttentionKernel("torch", block_attention, block_attention_backward, accumulates=True)


__all__ = [
    "AttentionKernel",
    "DEFAULT_TILE",
    "TORCH_KERNEL",
    "acc_dtype",
    "block_attention",
    "block_attention_backward",
    "check_heads",
    "merge_partial",
    "output_buffer",
]
