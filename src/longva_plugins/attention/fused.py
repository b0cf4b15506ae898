"""Block kernel over torch's fused flash-attention op on CPU, forward and backward.

``torch.ops.aten._scaled_dot_product_flash_attention_for_cpu`` (what SDPA runs on CPU) returns
the log-sum-exp a ring step needs, and its backward takes the output and log-sum-exp to use --
so a block's gradients can be formed from the *final* ones, as the ring needs. Same interface as
:data:`~longva_plugins.attention.block.TORCH_KERNEL`: ``q (B, H, Lq, D)``, ``k, v (B, Hk, Lk, D)``.

- Grouped-query attention: recent torch runs it natively (one call, K/V never expanded; probed
  once). Where the op wants as many key/value heads as query heads, the query heads that share
  key/value head ``j`` (heads ``j * G + g``) are run as ``G`` calls over the strided views
  ``q[:, g::G]``, each against the unexpanded K/V.
- Causality: the op's ``is_causal`` aligns the mask top-left; the kernels here align it
  bottom-right (new tokens after a KV cache see the whole history). With ``Lq < Lk`` the block is
  computed as the history ``k[:, :, :Lk-Lq]`` (no mask) and the last ``Lq`` keys (causal,
  square), merged by log-sum-exp. No mask tensor is ever built.
- Where the op does not apply (key padding, CUDA, more queries than keys under ``causal``, an
  empty block) the call goes to the tiled kernel, which handles every case.

Outputs are returned in the accumulation dtype (float32 for half inputs), as the tiled kernel's.
"""

from __future__ import annotations

import functools

import torch

from longva_plugins.attention.block import (
    AttentionKernel,
    acc_dtype,
    block_attention,
    block_attention_backward,
    check_heads,
    merge_partial,
    output_buffer,
)

FUSED_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def _op():
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu


def _op_backward():
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward


@functools.cache
def native_gqa() -> bool:
    """Whether this torch's fused CPU op takes fewer key/value heads than query heads."""
    q, kv = torch.zeros(1, 2, 2, 8), torch.zeros(1, 1, 2, 8)
    try:
        out, lse = _op()(q, kv, kv, 0.0, True)
        _op_backward()(out, q, kv, kv, out, lse, 0.0, True)
    except (RuntimeError, ValueError):
        return False
    return True


def _head_groups(h: int, hk: int) -> int:
    """How many calls cover the query heads: 1 with native GQA, else ``H // Hk``."""
    check_heads(h, hk)
    return 1 if h == hk or native_gqa() else h // hk


def fused_applies(q, k, causal: bool, key_padding=None) -> bool:
    """Whether the fused CPU op computes this block (else the tiled kernel does)."""
    if key_padding is not None or q.device.type != "cpu" or q.dtype not in FUSED_DTYPES:
        return False
    lq, lk = q.shape[2], k.shape[2]
    if lq == 0 or lk == 0 or (causal and lq > lk):
        return False
    return hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu")


def _pieces(lq: int, lk: int, causal: bool) -> list[tuple[slice, bool]]:
    """The key slices (and the op's ``is_causal``) one block is computed as."""
    if not causal or lq == 1:  # one new token (a decode step) sees every key
        return [(slice(0, lk), False)]
    if lq == lk:
        return [(slice(0, lk), True)]
    return [(slice(0, lk - lq), False), (slice(lk - lq, lk), True)]


def fused_forward(q, k, v, causal: bool, softmax_scale: float | None = None, key_padding=None):
    """``(out (B, H, Lq, D), lse (B, H, Lq))`` in the accumulation dtype (see the module docs)."""
    if not fused_applies(q, k, causal, key_padding):
        return block_attention(q, k, v, causal, softmax_scale, key_padding=key_padding)
    b, h, lq, d = q.shape
    hk, lk = k.shape[1], k.shape[2]
    groups = _head_groups(h, hk)
    scale = softmax_scale if softmax_scale is not None else d ** -0.5
    acc = acc_dtype(q.dtype)
    pieces = _pieces(lq, lk, causal)

    def heads(qg):  # (out, lse) of the query heads qg over every piece, merged
        out, lse = None, None
        for keys, is_causal in pieces:
            part_out, part_lse = _op()(qg, k[:, :, keys], v[:, :, keys], 0.0, is_causal, scale=scale)
            out, lse = merge_partial(out, lse, part_out.to(acc), part_lse.to(acc))
        return out, lse

    if groups == 1:  # every head in one call per piece
        return heads(q)
    out = output_buffer(b, h, lq, d, acc, q.device, torch.empty)
    lse = torch.empty(b, h, lq, dtype=acc, device=q.device)
    for g in range(groups):
        # q[:, g::groups] (B, Hk, Lq, D): the query heads of every key/value head
        out[:, g::groups], lse[:, g::groups] = heads(q[:, g::groups])
    return out, lse


def fused_backward(dout, q, k, v, out, lse, causal: bool, softmax_scale: float | None = None, key_padding=None):
    """``dq, dk, dv`` (accumulation dtype) of one block from the *final* ``out``/``lse``."""
    if not fused_applies(q, k, causal, key_padding):
        return block_attention_backward(dout, q, k, v, out, lse, causal, softmax_scale, key_padding=key_padding)
    b, h, lq, d = q.shape
    hk, lk = k.shape[1], k.shape[2]
    groups = _head_groups(h, hk)
    scale = softmax_scale if softmax_scale is not None else d ** -0.5
    acc = acc_dtype(q.dtype)
    grad_out = dout.to(q.dtype)
    final_out = out.to(q.dtype)
    # the op's own log-sum-exp is float32 for half inputs, float64 for float64 ones
    lse_dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    pieces = _pieces(lq, lk, causal)
    if groups == 1 and len(pieces) == 1:  # the op's gradients are the block's
        keys, is_causal = pieces[0]
        grads = _op_backward()(grad_out, q, k, v, final_out, lse.to(lse_dtype), 0.0, is_causal, scale=scale)
        return tuple(g.to(acc) for g in grads)
    # gradients in the layout of their inputs: autograd then hands them on without a copy
    dq = torch.zeros_like(q, dtype=acc)
    dk = torch.zeros_like(k, dtype=acc)
    dv = torch.zeros_like(v, dtype=acc)
    for g in range(groups):
        qg, og, dog = q[:, g::groups], final_out[:, g::groups], grad_out[:, g::groups]
        lg = lse[:, g::groups].to(lse_dtype).contiguous()  # (B, Hk, Lq)
        for keys, is_causal in pieces:
            dqg, dkg, dvg = _op_backward()(dog, qg, k[:, :, keys], v[:, :, keys], og, lg, 0.0, is_causal, scale=scale)
            dq[:, g::groups] += dqg
            dk[:, :, keys] += dkg
            dv[:, :, keys] += dvg
    return dq, dk, dv


FUSED_KERNEL = AttentionKernel("fused", fused_forward, fused_backward)

__all__ = ["FUSED_DTYPES", "FUSED_KERNEL", "fused_applies", "fused_backward", "fused_forward"]
