"""Built-in attention plugin: block kernels for the ring (pure PyTorch; flash-attn on CUDA)."""

from __future__ import annotations

from longva_plugins.hookspecs import hookimpl


@hookimpl
def longva_attention_kernel(name, device):
    if name == "flash_attn" or (name == "auto" and _flash(device)):
        from longva_plugins.attention.flash import flash_block_attention

        return flash_block_attention
    if name in ("auto", "torch"):
        from longva_plugins.attention.block import block_attention

        return block_attention
    return None


def _flash(device) -> bool:
    from longva_plugins.attention.flash import flash_available

    return flash_available(device)
