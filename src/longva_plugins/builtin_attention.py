"""Built-in attention plugin: block kernels for the ring (flash-attn on CUDA; torch's fused flash op
on CPU; the tiled torch kernel everywhere else).

It lives outside :mod:`longva_plugins.attention` so that building the plugin manager (which every
video read does) does not import that package, whose import registers the attention names in
transformers and so imports transformers' modeling stack (seconds).
"""

from __future__ import annotations

from longva_plugins.hookspecs import hookimpl


@hookimpl
def longva_attention_kernel(name, device, dtype):
    from longva_plugins.attention.flash import FLASH_KERNEL, flash_available

    if name == "flash_attn" or (name == "auto" and flash_available(device, dtype)):
        return FLASH_KERNEL
    if name == "fused" or (name == "auto" and str(device).startswith("cpu")):
        from longva_plugins.attention.fused import FUSED_KERNEL  # falls back to the tiled kernel per call

        return FUSED_KERNEL
    if name in ("auto", "torch"):
        from longva_plugins.attention.block import TORCH_KERNEL

        return TORCH_KERNEL
    return None
