"""GPU checks of the block kernel and its bf16 bound (skipped without CUDA)."""

from __future__ import annotations

import pytest
import torch
from ring_reference import make_inputs, reference_attention

from longva_plugins.attention.block import block_attention

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("dtype,atol", [(torch.float32, 1e-5), (torch.bfloat16, 5e-2)])
def test_block_attention_on_cuda(dtype, atol):
    q, k, v, _ = make_inputs(0, 2, 8, 2, 256, 64)
    out, lse = block_attention(q.cuda().to(dtype), k.cuda().to(dtype), v.cuda().to(dtype), causal=True)
    ref_out, ref_lse = reference_attention(q, k, v)
    assert (out.double().cpu() - ref_out).abs().max() <= atol
    assert (lse.double().cpu() - ref_lse).abs().max() <= atol


def test_flash_kernel_matches_reference():
    pytest.importorskip("flash_attn")
    from longva_plugins.attention.flash import flash_block_attention

    q, k, v, _ = make_inputs(1, 2, 8, 2, 256, 64)
    out, lse = flash_block_attention(q.cuda().bfloat16(), k.cuda().bfloat16(), v.cuda().bfloat16(), causal=True)
    ref_out, ref_lse = reference_attention(q, k, v)
    assert (out.double().cpu() - ref_out).abs().max() <= 5e-2
    assert (lse.double().cpu() - ref_lse).abs().max() <= 5e-2
