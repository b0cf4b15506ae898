"""GPU checks of the attention kernels (skipped without CUDA; flash-attn ones without flash-attn)."""

from __future__ import annotations

import pytest
import torch
from ring_reference import make_inputs, reference_attention

from longva_plugins.attention.block import TORCH_KERNEL, block_attention, block_attention_backward

pytestmark = pytest.mark.gpu


def _reference_with_grads(seed, heads=8, kv_heads=2, length=512, dim=64):
    q, k, v, dout = make_inputs(seed, 2, heads, kv_heads, length, dim)
    q, k, v = (t.clone().requires_grad_() for t in (q, k, v))
    out, lse = reference_attention(q, k, v)
    out.backward(dout)
    return q.detach(), k.detach(), v.detach(), dout, out.detach(), lse.detach(), (q.grad, k.grad, v.grad)


@pytest.mark.parametrize("dtype,atol", [(torch.float32, 1e-4), (torch.bfloat16, 6e-2)])
def test_tiled_kernel_forward_and_backward_on_cuda(dtype, atol):
    q, k, v, dout, ref_out, ref_lse, ref_grads = _reference_with_grads(0)
    cq, ck, cv, cdout = (t.cuda().to(dtype) for t in (q, k, v, dout))
    out, lse = block_attention(cq, ck, cv, causal=True, tile=128)
    assert (out.double().cpu() - ref_out).abs().max() <= atol
    assert (lse.double().cpu() - ref_lse).abs().max() <= atol
    grads = block_attention_backward(cdout, cq, ck, cv, out, lse, causal=True, tile=128)
    for got, want in zip(grads, ref_grads):
        assert (got.double().cpu() - want).abs().max() <= 10 * atol


def test_flash_kernel_forward_and_backward_match_float64():
    pytest.importorskip("flash_attn")
    from longva_plugins.attention.flash import FLASH_KERNEL

    q, k, v, dout, ref_out, ref_lse, ref_grads = _reference_with_grads(1)
    bq, bk, bv, bdout = (t.cuda().bfloat16() for t in (q, k, v, dout))
    out, lse = FLASH_KERNEL.forward(bq, bk, bv, True, None)
    assert (out.double().cpu() - ref_out).abs().max() <= 6e-2
    assert (lse.double().cpu() - ref_lse).abs().max() <= 6e-2
    grads = FLASH_KERNEL.backward(bdout, bq, bk, bv, out, lse, True, None)
    for got, want in zip(grads, ref_grads):
        assert got.shape == want.shape
        assert (got.double().cpu() - want).abs().max() <= 0.5


def test_auto_picks_flash_for_half_and_torch_for_float32_and_never_casts():
    pytest.importorskip("flash_attn")
    from longva_plugins.attention.flash import FLASH_KERNEL
    from longva_plugins.attention.ring_core import resolve_kernel
    from longva_plugins.errors import SettingError

    device = torch.device("cuda")
    assert resolve_kernel("auto", device, torch.bfloat16) is FLASH_KERNEL
    assert resolve_kernel("auto", device, torch.float32) is TORCH_KERNEL
    q = torch.randn(1, 2, 16, 64, device=device)
    with pytest.raises(SettingError, match="float16/bfloat16"):
        FLASH_KERNEL.forward(q, q, q, True, None)


def test_zigzag_name_generates_like_sdpa_on_cuda():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    import longva_plugins.attention  # noqa: F401  (registers the names)

    config = Qwen2Config(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).cuda().bfloat16().eval()
    ids = torch.randint(0, 128, (1, 37), device="cuda")
    expected = model.generate(ids, max_new_tokens=8, do_sample=False)
    model.config._attn_implementation = "longva_ring_zigzag"
    assert torch.equal(model.generate(ids, max_new_tokens=8, do_sample=False), expected)
