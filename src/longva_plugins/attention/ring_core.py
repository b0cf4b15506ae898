"""The ring forward and backward drivers shared by every variant.

A variant is a *plan*: for the key/value block that came from ring position ``src`` at this
rank, which (query slice, key slice, causal) sub-blocks to compute. Forward: K/V travel round the
ring while each rank merges partial outputs with :func:`~.block.merge_partial`. Backward: K/V and
their gradient accumulators travel together, each transfer overlapping the next block's compute;
after a full turn dK/dV arrive back home.
"""

from __future__ import annotations

from typing import Callable

import torch

from longva_plugins.attention.block import TORCH_KERNEL, AttentionKernel, acc_dtype, merge_partial, output_buffer
from longva_plugins.attention.comm import RingComm

#: plan(rank, src, world, q_len, k_len) -> list of (q_slice, k_slice, causal)
Plan = Callable[[int, int, int, int, int], list]


def resolve_kernel(name: str, device, dtype: torch.dtype | None = None) -> AttentionKernel:
    """The block kernel chosen through the ``longva_attention_kernel`` hook (first result wins)."""
    from longva_plugins.plugins import get_plugin_manager

    kernel = get_plugin_manager().hook.longva_attention_kernel(name=name, device=device, dtype=dtype)
    if kernel is None:
        from longva_plugins.errors import SettingError

        raise SettingError(f"no attention kernel named {name!r} for device {device} and dtype {dtype}; "
                          "allowed: 'auto', 'torch' (tiled), 'fused' (torch's fused CPU op, tiled where it does "
                          "not apply) or 'flash_attn' (CUDA, float16/bfloat16, flash-attn installed)")
    return kernel


def ring_forward(q, k, v, plan: Plan, softmax_scale, group, kernel: AttentionKernel = TORCH_KERNEL,
                 key_padding=None):
    """Returns ``out`` (B, H, Lq, D) in the accumulation dtype and ``lse`` (B, H, Lq)."""
    comm = RingComm(group)
    world, rank = comm.world_size, comm.rank
    acc = acc_dtype(q.dtype)
    b, h, lq, d = q.shape
    if world == 1:  # one block: the kernel's own result (padding only possible here)
        (q_sl, k_sl, causal), = plan(0, 0, 1, lq, k.shape[2])
        extra = {"key_padding": key_padding} if key_padding is not None else {}
        out, lse = kernel.forward(q, k, v, causal, softmax_scale, **extra)
        return out.to(acc), lse.to(acc)
    out = output_buffer(b, h, lq, d, acc, q.device)
    lse = torch.full((b, h, lq), float("-inf"), dtype=acc, device=q.device)
    cur_k, cur_v = k, v
    for step in range(world):
        if step + 1 < world:
            comm.start([cur_k, cur_v])
        src = (rank - step) % world
        for q_sl, k_sl, causal in plan(rank, src, world, lq, cur_k.shape[2]):
            block_out, block_lse = kernel.forward(q[:, :, q_sl], cur_k[:, :, k_sl], cur_v[:, :, k_sl], causal, softmax_scale)
            merge_partial(out[:, :, q_sl], lse[:, :, q_sl], block_out.to(acc), block_lse.to(acc), inplace=True)
        if step + 1 < world:
            cur_k, cur_v = comm.wait()
    return out, lse


def ring_backward(dout, q, k, v, out, lse, plan: Plan, softmax_scale, group, kernel: AttentionKernel = TORCH_KERNEL,
                  key_padding=None):
    """Returns ``dq, dk, dv`` with the shapes (and accumulation dtype) of q, k, v.

    The dK/dV accumulator of the block held at step ``s`` is sent on while step ``s + 1``
    computes, and received (with the next block's contributions added) only when needed.
    """
    kv_comm, grad_comm = RingComm(group), RingComm(group)
    world, rank = kv_comm.world_size, kv_comm.rank
    acc = acc_dtype(q.dtype)
    if world == 1:
        (q_sl, k_sl, causal), = plan(0, 0, 1, q.shape[2], k.shape[2])
        extra = {"key_padding": key_padding} if key_padding is not None else {}
        dq, dk, dv = kernel.backward(dout, q, k, v, out, lse, causal, softmax_scale, **extra)
        return dq.to(acc), dk.to(acc), dv.to(acc)
    dq = torch.zeros(q.shape, dtype=acc, device=q.device)
    cur_k, cur_v = k, v
    for step in range(world):
        if step + 1 < world:
            kv_comm.start([cur_k, cur_v])
        src = (rank - step) % world
        block_dk = torch.zeros(k.shape, dtype=acc, device=k.device)
        block_dv = torch.zeros(v.shape, dtype=acc, device=v.device)
        for q_sl, k_sl, causal in plan(rank, src, world, q.shape[2], cur_k.shape[2]):
            kernel.backward_add(
                (dq[:, :, q_sl], block_dk[:, :, k_sl], block_dv[:, :, k_sl]),
                dout[:, :, q_sl], q[:, :, q_sl], cur_k[:, :, k_sl], cur_v[:, :, k_sl],
                out[:, :, q_sl], lse[:, :, q_sl], causal, softmax_scale,
            )
        if step:  # the accumulator of this block, from the previous rank (sent during our compute)
            travel_dk, travel_dv = grad_comm.wait()
            block_dk += travel_dk
            block_dv += travel_dv
        # the accumulator follows its K/V block one hop further round the ring
        grad_comm.start([block_dk, block_dv])
        if step + 1 < world:
            cur_k, cur_v = kv_comm.wait()
    dk, dv = grad_comm.wait()  # after a full turn: our own block's gradients
    return dq, dk, dv


class BlockAttentionFunction(torch.autograd.Function):
    """One process, one block: the kernel's own forward and backward (no ring, whatever group or
    default process group exists). ``causal`` is bottom-right aligned (a KV cache's new tokens)."""

    @staticmethod
    def forward(ctx, q, k, v, causal, softmax_scale, kernel="auto", key_padding=None):
        scale = softmax_scale if softmax_scale is not None else q.shape[-1] ** -0.5
        resolved = resolve_kernel(kernel, q.device, q.dtype)
        extra = {"key_padding": key_padding} if key_padding is not None else {}
        out, lse = resolved.forward(q, k, v, causal, scale, **extra)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.causal, ctx.scale, ctx.kernel, ctx.extra = causal, scale, resolved, extra
        return out.to(q.dtype), lse

    @staticmethod
    def backward(ctx, dout, dlse):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = ctx.kernel.backward(dout, q, k, v, out, lse, ctx.causal, ctx.scale, **ctx.extra)
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None, None, None, None


class RingAttentionFunction(torch.autograd.Function):
    """Autograd wrapper: forward and backward both run round the ring."""

    @staticmethod
    def forward(ctx, q, k, v, plan, softmax_scale, group, kernel="auto", key_padding=None):
        scale = softmax_scale if softmax_scale is not None else q.shape[-1] ** -0.5
        resolved = resolve_kernel(kernel, q.device, q.dtype)
        out, lse = ring_forward(q, k, v, plan, scale, group, resolved, key_padding)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.plan, ctx.scale, ctx.group, ctx.kernel, ctx.key_padding = plan, scale, group, resolved, key_padding
        return out.to(q.dtype), lse

    @staticmethod
    def backward(ctx, dout, dlse):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = ring_backward(dout, q, k, v, out, lse, ctx.plan, ctx.scale, ctx.group, ctx.kernel,
                                   ctx.key_padding)
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None, None, None, None, None


__all__ = ["BlockAttentionFunction", "Plan", "RingAttentionFunction", "resolve_kernel", "ring_backward", "ring_forward"]
