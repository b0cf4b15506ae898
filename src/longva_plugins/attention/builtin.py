"""Built-in attention plugin: the pure-PyTorch block kernel (any device, float64/32/bf16)."""

from __future__ import annotations

from longva_plugins.hookspecs import hookimpl


@hookimpl
def longva_attention_kernel(name, device):
    if name in ("auto", "torch"):
        from longva_plugins.attention.block import block_attention

        return block_attention
    return None
