"""Block attention, its backward and the log-sum-exp merge, against a float64 reference."""

from __future__ import annotations

import pytest
import torch
from ring_reference import make_inputs, reference_attention

from longva_plugins.attention.block import block_attention, block_attention_backward, merge_partial


@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (4, 2), (6, 1)])
def test_block_matches_reference_with_gqa(heads, kv_heads):
    q, k, v, _ = make_inputs(0, 2, heads, kv_heads, 12, 8)
    out, lse = block_attention(q, k, v, causal=True)
    ref_out, ref_lse = reference_attention(q, k, v)
    torch.testing.assert_close(out, ref_out, atol=1e-12, rtol=0)
    torch.testing.assert_close(lse, ref_lse, atol=1e-12, rtol=0)


def test_merge_of_two_key_halves_equals_full_attention():
    q, k, v, _ = make_inputs(1, 1, 4, 2, 10, 8)
    a_out, a_lse = block_attention(q, k[:, :, :4], v[:, :, :4], causal=False)
    b_out, b_lse = block_attention(q, k[:, :, 4:], v[:, :, 4:], causal=False)
    out, lse = merge_partial(a_out, a_lse, b_out, b_lse)
    ref_out, ref_lse = reference_attention(q, k, v, causal=False)
    torch.testing.assert_close(out, ref_out, atol=1e-12, rtol=0)
    torch.testing.assert_close(lse, ref_lse, atol=1e-12, rtol=0)


def test_merge_handles_rows_without_visible_keys():
    out = torch.zeros(1, 1, 2, 4, dtype=torch.float64)
    lse = torch.full((1, 1, 2), float("-inf"), dtype=torch.float64)
    b_out, b_lse = torch.ones(1, 1, 2, 4, dtype=torch.float64), torch.tensor([[[0.0, float("-inf")]]], dtype=torch.float64)
    merged, merged_lse = merge_partial(out, lse, b_out, b_lse)
    assert torch.isfinite(merged).all() and merged[0, 0, 0].eq(1).all() and merged[0, 0, 1].eq(0).all()


def test_block_backward_matches_autograd():
    q, k, v, dout = make_inputs(2, 1, 4, 2, 9, 8)
    q, k, v = (t.clone().requires_grad_() for t in (q, k, v))
    ref_out, _ = reference_attention(q, k, v)
    ref_out.backward(dout)
    out, lse = block_attention(q.detach(), k.detach(), v.detach(), causal=True)
    dq, dk, dv = block_attention_backward(dout, q.detach(), k.detach(), v.detach(), out, lse, causal=True)
    for got, want in ((dq, q.grad), (dk, k.grad), (dv, v.grad)):
        torch.testing.assert_close(got, want, atol=1e-11, rtol=0)


def test_bfloat16_inputs_accumulate_in_float32():
    q, k, v, _ = make_inputs(3, 1, 2, 2, 8, 8)
    out, lse = block_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), causal=True)
    assert out.dtype == torch.float32 and lse.dtype == torch.float32
    ref_out, _ = reference_attention(q, k, v)
    assert (out.double() - ref_out).abs().max() < 3e-2


def test_kernel_hook_resolves_torch_kernel_on_cpu():
    from longva_plugins.attention.ring_core import resolve_kernel
    from longva_plugins.errors import ConfigError

    assert resolve_kernel("auto", torch.device("cpu")) is block_attention
    assert resolve_kernel("torch", torch.device("cpu")) is block_attention
    with pytest.raises(ConfigError, match="no attention kernel named 'nosuch'"):
        resolve_kernel("nosuch", torch.device("cpu"))
