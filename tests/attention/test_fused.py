"""The fused kernel (torch's CPU flash op with its log-sum-exp) against a float64 plain softmax, and
its fallback to the tiled kernel where the op does not apply."""

from __future__ import annotations

import pytest
import torch
from ring_reference import reference_general

from longva_plugins.attention import fused
from longva_plugins.attention.fused import fused_applies, fused_backward, fused_forward


def _inputs(lq, lk, heads, kv_heads, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed + lq * 100 + lk)
    make = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)  # noqa: E731
    q, k, v = make(2, heads, lq, 8), make(2, kv_heads, lk, 8), make(2, kv_heads, lk, 8)
    return q, k, v, make(2, heads, lq, 8)


@pytest.mark.parametrize("lq,lk,causal", [(37, 37, True), (37, 37, False), (5, 40, True), (1, 29, True),
                                          (33, 70, True), (20, 50, False)])
@pytest.mark.parametrize("heads,kv_heads", [(4, 2), (3, 3), (8, 2)])
@pytest.mark.parametrize("native", [True, False], ids=["native-gqa", "per-group"])
def test_fused_forward_and_backward_match_float64_softmax(lq, lk, causal, heads, kv_heads, native, monkeypatch):
    monkeypatch.setattr(fused, "native_gqa", lambda: native)
    q, k, v, dout = _inputs(lq, lk, heads, kv_heads)
    assert fused_applies(q, k, causal)
    out, lse = fused_forward(q, k, v, causal, 0.3)
    ref_out, ref_lse = reference_general(q, k, v, causal, scale=0.3)
    torch.testing.assert_close(out, ref_out, atol=1e-12, rtol=0)
    torch.testing.assert_close(lse, ref_lse, atol=1e-12, rtol=0)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    reference_general(*leaves, causal, scale=0.3)[0].backward(dout)
    for got, want in zip(fused_backward(dout, q, k, v, out, lse, causal, 0.3), leaves):
        torch.testing.assert_close(got, want.grad, atol=1e-11, rtol=0)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-5), (torch.bfloat16, 6e-2)])
def test_fused_lower_precision_accumulates_in_float32(dtype, tol):
    q, k, v, dout = _inputs(48, 48, 4, 2)
    out, lse = fused_forward(q.to(dtype), k.to(dtype), v.to(dtype), True)
    assert out.dtype == torch.float32 and lse.dtype == torch.float32
    ref_out, _ = reference_general(q, k, v, True)
    assert (out.double() - ref_out).abs().max() < tol
    grads = fused_backward(dout.to(dtype), q.to(dtype), k.to(dtype), v.to(dtype), out, lse, True)
    assert all(g.dtype == torch.float32 for g in grads)


def test_fused_falls_back_to_the_tiled_kernel_where_the_op_does_not_apply():
    q, k, v, dout = _inputs(6, 4, 4, 2)  # more queries than keys under a causal mask
    assert not fused_applies(q, k, True)
    padding = torch.ones(2, 4, dtype=torch.bool)
    padding[0, :2] = False
    assert not fused_applies(q, k, False, key_padding=padding)
    for causal, pad in ((True, None), (False, padding)):
        out, lse = fused_forward(q, k, v, causal, key_padding=pad)
        ref_out, ref_lse = reference_general(q, k, v, causal, key_padding=pad)
        torch.testing.assert_close(out, ref_out, atol=1e-12, rtol=0)
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        reference_general(*leaves, causal, key_padding=pad)[0].backward(dout)
        for got, want in zip(fused_backward(dout, q, k, v, out, lse, causal, key_padding=pad), leaves):
            torch.testing.assert_close(got, want.grad, atol=1e-11, rtol=0)


def test_ring_step_gradients_from_the_final_output_add_up(monkeypatch):
    """A ring splits keys over blocks; block gradients formed from the *final* out/lse sum to the whole."""
    from longva_plugins.attention.block import merge_partial

    q, k, v, dout = _inputs(16, 32, 4, 2)
    first, second = slice(0, 20), slice(20, 32)
    o1, l1 = fused_forward(q, k[:, :, first], v[:, :, first], False)
    o2, l2 = fused_forward(q, k[:, :, second], v[:, :, second], False)
    out, lse = merge_partial(o1, l1, o2, l2)
    ref_out, _ = reference_general(q, k, v, False)
    torch.testing.assert_close(out, ref_out, atol=1e-12, rtol=0)
    g1 = fused_backward(dout, q, k[:, :, first], v[:, :, first], out, lse, False)
    g2 = fused_backward(dout, q, k[:, :, second], v[:, :, second], out, lse, False)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    reference_general(*leaves, False)[0].backward(dout)
    torch.testing.assert_close(g1[0] + g2[0], leaves[0].grad, atol=1e-11, rtol=0)
    torch.testing.assert_close(torch.cat([g1[1], g2[1]], dim=2), leaves[1].grad, atol=1e-11, rtol=0)
    torch.testing.assert_close(torch.cat([g1[2], g2[2]], dim=2), leaves[2].grad, atol=1e-11, rtol=0)


def test_longva_causal_attention_equals_sdpa_in_a_model_with_a_kv_cache():
    """The adapter's CPU default: chunked prefill over a cache and decode equal transformers' sdpa."""
    import longva_plugins.attention  # noqa: F401  (registers longva_causal)
    from longva_plugins.models.longva import LongVAForCausalLM
    from longva_plugins.testing import make_tiny_checkpoint

    import tempfile

    path = make_tiny_checkpoint(tempfile.mkdtemp(), seed=3, num_shards=1)
    embeds = torch.randn(1, 45, 64, generator=torch.Generator().manual_seed(0))
    logits = {}
    for name in ("sdpa", "longva_causal"):
        model = LongVAForCausalLM.from_pretrained(path, attn_implementation=name)
        positions = list(range(45))
        logits[name] = model.prefill(embeds, chunk_size=16, logits_positions=positions).logits
        cache = model.prefill(embeds[:, :40], chunk_size=7, past_key_values=model.new_cache(capacity=64)).past_key_values
        logits[name + "/cache"] = model.prefill(embeds[:, 40:], past_key_values=cache, logits_positions=[0, 4]).logits
    torch.testing.assert_close(logits["longva_causal"], logits["sdpa"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(logits["longva_causal/cache"], logits["sdpa/cache"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(logits["sdpa/cache"], logits["sdpa"][[40, 44]], atol=1e-4, rtol=1e-4)
