"""Block kernel over flash-attn on CUDA, forward and backward (``pip install 'longva-plugins[gpu]'``).

Same interface as :data:`~longva_plugins.attention.block.TORCH_KERNEL`: ``q (B, H, Lq, D)``,
``k, v (B, Hk, Lk, D)`` -> ``(out (B, H, Lq, D), lse (B, H, Lq))`` and the backward given the
final output and log-sum-exp. flash-attn handles GQA natively and aligns causal masks
bottom-right (flash-attn >= 2.1), as the ring plans expect. It runs float16 / bfloat16 only:
float32 inputs are refused with a message (``kernel="auto"`` sends them to the tiled torch kernel),
never cast silently.
"""

from __future__ import annotations

import inspect

import torch

from longva_plugins.attention.block import AttentionKernel, check_heads

HALF = (torch.float16, torch.bfloat16)


def flash_available(device, dtype: torch.dtype | None = None) -> bool:
    """flash-attn is installed, ``device`` is CUDA and ``dtype`` (when given) is half precision."""
    if torch.device(device).type != "cuda" or (dtype is not None and dtype not in HALF):
        return False
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True


def _require(q):
    try:
        import flash_attn.flash_attn_interface as interface
    except ImportError as exc:
        raise ImportError("the flash_attn kernel needs flash-attn: pip install 'longva-plugins[gpu]'") from exc
    if q.dtype not in HALF or q.device.type != "cuda":
        from longva_plugins.errors import SettingError

        raise SettingError(f"the flash_attn kernel runs float16/bfloat16 on CUDA; got {q.dtype} on {q.device}. "
                          "Use kernel='auto' (the tiled torch kernel for float32) or cast the model to bfloat16.")
    return interface


def _bhld(x):  # (B, H, L, D) -> (B, L, H, D), what flash-attn takes
    return x.transpose(1, 2).contiguous()


def flash_forward(q, k, v, causal: bool, softmax_scale: float | None = None):
    interface = _require(q)
    check_heads(q.shape[1], k.shape[1])
    scale = softmax_scale if softmax_scale is not None else q.shape[-1] ** -0.5
    out, lse, _ = interface.flash_attn_func(_bhld(q), _bhld(k), _bhld(v), softmax_scale=scale, causal=causal,
                                            return_attn_probs=True)
    return out.transpose(1, 2).float(), lse.float()  # (B, H, Lq, D), (B, H, Lq)


def flash_backward(dout, q, k, v, out, lse, causal: bool, softmax_scale: float | None = None):
    """dq, dk, dv of one block from the final ``out``/``lse`` (flash-attn's own backward)."""
    interface = _require(q)
    scale = softmax_scale if softmax_scale is not None else q.shape[-1] ** -0.5
    qb, kb, vb = _bhld(q), _bhld(k), _bhld(v)
    dq, dk, dv = torch.empty_like(qb), torch.empty_like(kb), torch.empty_like(vb)
    backward = interface._flash_attn_backward
    # The keyword set changed across flash-attn 2.x releases: pass the ones this version takes.
    values = dict(dout=_bhld(dout.to(q.dtype)), q=qb, k=kb, v=vb, out=_bhld(out.to(q.dtype)),
                  softmax_lse=lse.float().contiguous(), dq=dq, dk=dk, dv=dv, dropout_p=0.0, softmax_scale=scale,
                  causal=causal, window_size=(-1, -1), window_size_left=-1, window_size_right=-1, softcap=0.0,
                  alibi_slopes=None, deterministic=False, rng_state=None)
    accepted = inspect.signature(backward).parameters
    backward(**{name: values[name] for name in accepted if name in values})
    return dq.transpose(1, 2), dk.transpose(1, 2), dv.transpose(1, 2)


FLASH_KERNEL = AttentionKernel("flash_attn", flash_forward, flash_backward)

__all__ = ["FLASH_KERNEL", "flash_available", "flash_backward", "flash_forward"]
