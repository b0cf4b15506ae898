"""Block kernel over flash-attn on CUDA (optional: ``pip install 'longva-plugins[gpu]'``).

Same interface as :func:`~longva_plugins.attention.block.block_attention`: ``q (B, H, Lq, D)``,
``k, v (B, Hk, Lk, D)`` -> ``(out (B, H, Lq, D), lse (B, H, Lq))``. flash-attn handles GQA natively
and aligns causal masks bottom-right (flash-attn >= 2.1), as the ring plans expect. Only the
forward block runs here; the ring backward uses the exact PyTorch block gradient with the merged
output and log-sum-exp.
"""

from __future__ import annotations

import torch


def flash_available(device) -> bool:
    if torch.device(device).type != "cuda":
        return False
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True


def flash_block_attention(q, k, v, causal: bool, softmax_scale: float | None = None):
    try:
        from flash_attn import flash_attn_func
    except ImportError as exc:
        raise ImportError("the flash_attn kernel needs flash-attn: pip install 'longva-plugins[gpu]'") from exc
    scale = softmax_scale if softmax_scale is not None else q.shape[-1] ** -0.5
    dtype = q.dtype if q.dtype in (torch.float16, torch.bfloat16) else torch.bfloat16
    out, lse, _ = flash_attn_func(
        q.transpose(1, 2).to(dtype), k.transpose(1, 2).to(dtype), v.transpose(1, 2).to(dtype),
        softmax_scale=scale, causal=causal, return_attn_probs=True,
    )
    return out.transpose(1, 2).float(), lse.float()  # (B, H, Lq, D), (B, H, Lq)


__all__ = ["flash_available", "flash_block_attention"]
