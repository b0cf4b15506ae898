"""The ring forward and backward drivers shared by every variant.

A variant is a *plan*: for the key/value block that came from ring position ``src`` at this
rank, which (query slice, key slice, causal) sub-blocks to compute. Forward: K/V travel round the
ring while each rank merges partial outputs with :func:`~.block.merge_partial`. Backward: K/V and
their gradient accumulators travel together; after a full turn dK/dV arrive back home.
"""

from __future__ import annotations

from typing import Callable

import torch

from longva_plugins.attention.block import acc_dtype, block_attention, block_attention_backward, merge_partial
from longva_plugins.attention.comm import RingComm

#: plan(rank, src, world, q_len, k_len) -> list of (q_slice, k_slice, causal)
Plan = Callable[[int, int, int, int, int], list]


def resolve_kernel(name: str, device) -> Callable:
    """The block kernel chosen through the ``longva_attention_kernel`` hook (first result wins)."""
    from longva_plugins.plugins import get_plugin_manager

    kernel = get_plugin_manager().hook.longva_attention_kernel(name=name, device=device)
    if kernel is None:
        from longva_plugins.errors import ConfigError

        raise ConfigError(f"no attention kernel named {name!r} for device {device}; use 'auto' or 'torch'")
    return kernel


def ring_forward(q, k, v, plan: Plan, softmax_scale, group, kernel: Callable = block_attention):
    """Returns ``out`` (B, H, Lq, D) in the accumulation dtype and ``lse`` (B, H, Lq)."""
    comm = RingComm(group)
    world, rank = comm.world_size, comm.rank
    acc = acc_dtype(q.dtype)
    b, h, lq, d = q.shape
    out = torch.zeros(b, h, lq, d, dtype=acc, device=q.device)
    lse = torch.full((b, h, lq), float("-inf"), dtype=acc, device=q.device)
    cur_k, cur_v = k, v
    for step in range(world):
        if step + 1 < world:
            comm.start([cur_k, cur_v])
        src = (rank - step) % world
        for q_sl, k_sl, causal in plan(rank, src, world, lq, cur_k.shape[2]):
            block_out, block_lse = kernel(q[:, :, q_sl], cur_k[:, :, k_sl], cur_v[:, :, k_sl], causal, softmax_scale)
            block_out, block_lse = block_out.to(acc), block_lse.to(acc)
            out[:, :, q_sl], lse[:, :, q_sl] = merge_partial(out[:, :, q_sl], lse[:, :, q_sl], block_out, block_lse)
        if step + 1 < world:
            cur_k, cur_v = comm.wait()
    return out, lse


def ring_backward(dout, q, k, v, out, lse, plan: Plan, softmax_scale, group):
    """Returns ``dq, dk, dv`` with the shapes (and accumulation dtype) of q, k, v."""
    kv_comm, grad_comm = RingComm(group), RingComm(group)
    world, rank = kv_comm.world_size, kv_comm.rank
    acc = acc_dtype(q.dtype)
    dq = torch.zeros(q.shape, dtype=acc, device=q.device)
    dk_travel = torch.zeros(k.shape, dtype=acc, device=k.device)
    dv_travel = torch.zeros(v.shape, dtype=acc, device=v.device)
    cur_k, cur_v = k, v
    for step in range(world):
        if step + 1 < world:
            kv_comm.start([cur_k, cur_v])
        src = (rank - step) % world
        for q_sl, k_sl, causal in plan(rank, src, world, q.shape[2], cur_k.shape[2]):
            bdq, bdk, bdv = block_attention_backward(
                dout[:, :, q_sl], q[:, :, q_sl], cur_k[:, :, k_sl], cur_v[:, :, k_sl],
                out[:, :, q_sl], lse[:, :, q_sl], causal, softmax_scale,
            )
            dq[:, :, q_sl] += bdq
            dk_travel[:, :, k_sl] += bdk
            dv_travel[:, :, k_sl] += bdv
        # the gradient accumulators follow their K/V block one hop further round the ring
        grad_comm.start([dk_travel, dv_travel])
        dk_travel, dv_travel = grad_comm.wait()
        if step + 1 < world:
            cur_k, cur_v = kv_comm.wait()
    return dq, dk_travel, dv_travel


class RingAttentionFunction(torch.autograd.Function):
    """Autograd wrapper: forward and backward both run round the ring."""

    @staticmethod
    def forward(ctx, q, k, v, plan, softmax_scale, group, kernel="auto"):
        scale = softmax_scale if softmax_scale is not None else q.shape[-1] ** -0.5
        out, lse = ring_forward(q, k, v, plan, scale, group, resolve_kernel(kernel, q.device))
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.plan, ctx.scale, ctx.group = plan, scale, group
        return out.to(q.dtype), lse

    @staticmethod
    def backward(ctx, dout, dlse):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = ring_backward(dout, q, k, v, out, lse, ctx.plan, ctx.scale, ctx.group)
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None, None, None, None


__all__ = ["Plan", "RingAttentionFunction", "resolve_kernel", "ring_backward", "ring_forward"]
