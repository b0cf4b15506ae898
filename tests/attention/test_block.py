"""Block attention, its backward and the log-sum-exp merge, against a float64 reference."""

from __future__ import annotations

import pytest
import torch
from ring_reference import make_inputs, reference_attention, reference_general

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


def test_kernel_hook_resolves_the_fused_kernel_on_cpu_and_torch_by_name():
    from longva_plugins.attention.block import TORCH_KERNEL
    from longva_plugins.attention.fused import FUSED_KERNEL
    from longva_plugins.attention.ring_core import resolve_kernel
    from longva_plugins.errors import SettingError

    assert resolve_kernel("auto", torch.device("cpu"), torch.bfloat16) is FUSED_KERNEL
    assert resolve_kernel("fused", torch.device("cpu"), torch.float32) is FUSED_KERNEL
    assert resolve_kernel("torch", torch.device("cpu"), torch.float32) is TORCH_KERNEL
    with pytest.raises(SettingError, match="no attention kernel named 'nosuch'"):
        resolve_kernel("nosuch", torch.device("cpu"))


@pytest.mark.parametrize("lq,lk,tile,causal", [(37, 37, 8, True), (37, 37, 8, False), (5, 40, 16, True),
                                                (1, 29, 8, True), (64, 64, 64, True), (33, 70, 7, True)])
@pytest.mark.parametrize("heads,kv_heads", [(4, 2), (3, 3)])
def test_tiled_forward_and_backward_match_float64_softmax(lq, lk, tile, causal, heads, kv_heads):
    gen = torch.Generator().manual_seed(lq * 100 + lk)
    q = torch.randn(2, heads, lq, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, kv_heads, lk, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, kv_heads, lk, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    dout = torch.randn(2, heads, lq, 8, generator=gen, dtype=torch.float64)
    ref_out, ref_lse = reference_general(q, k, v, causal)
    ref_out.backward(dout)
    out, lse = block_attention(q.detach(), k.detach(), v.detach(), causal=causal, tile=tile)
    torch.testing.assert_close(out, ref_out.detach(), atol=1e-12, rtol=0)
    torch.testing.assert_close(lse, ref_lse.detach(), atol=1e-12, rtol=0)
    grads = block_attention_backward(dout, q.detach(), k.detach(), v.detach(), out, lse, causal=causal, tile=tile)
    for got, want in zip(grads, (q.grad, k.grad, v.grad)):
        torch.testing.assert_close(got, want, atol=1e-11, rtol=0)


def test_key_padding_masks_keys_and_rows_without_keys_are_zero():
    gen = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(2, 2, 12, 8, generator=gen, dtype=torch.float64) for _ in range(3))
    padding = torch.ones(2, 12, dtype=torch.bool)
    padding[1, :5] = False  # left padding of the second row
    out, lse = block_attention(q, k, v, causal=True, key_padding=padding, tile=4)
    ref_out, ref_lse = reference_general(q, k, v, True, padding)
    torch.testing.assert_close(out, ref_out, atol=1e-12, rtol=0)
    assert torch.equal(torch.isinf(lse), torch.isinf(ref_lse)) and out[1, :, :5].eq(0).all()
    torch.testing.assert_close(lse[torch.isfinite(lse)], ref_lse[torch.isfinite(ref_lse)], atol=1e-12, rtol=0)


def test_heads_not_divisible_by_kv_heads_is_a_clear_error():
    from longva_plugins.errors import SettingError

    q, k, v, _ = make_inputs(0, 1, 5, 2, 4, 8)
    with pytest.raises(SettingError, match="5 query heads are not a multiple of 2"):
        block_attention(q, k, v, causal=True)


@pytest.mark.parametrize("heads,kv_heads,length,tile", [(4, 4, 8, 8), (4, 2, 11, 4), (2, 1, 6, 16)])
def test_kernel_leaves_inputs_untouched_and_accumulates_into_views(heads, kv_heads, length, tile):
    """Tiles may be views of the inputs (one head per group, one tile): nothing is scaled in
    place; gradients added into ``grads`` views equal the freshly allocated ones plus the start."""
    q, k, v, dout = make_inputs(5, 2, heads, kv_heads, length, 8)
    before = [t.clone() for t in (q, k, v, dout)]
    out, lse = block_attention(q, k, v, causal=True, tile=tile)
    fresh = block_attention_backward(dout, q, k, v, out, lse, causal=True, tile=tile)
    for got, want in zip((q, k, v, dout), before):
        assert torch.equal(got, want)
    # accumulate into the second half of bigger buffers that already hold ones
    bufs = [torch.ones(t.shape[0], t.shape[1], 2 * t.shape[2], t.shape[3], dtype=t.dtype) for t in (q, k, v)]
    views = tuple(b[:, :, t.shape[2]:] for b, t in zip(bufs, (q, k, v)))
    block_attention_backward(dout, q, k, v, out, lse, causal=True, tile=tile, grads=views)
    for buf, grad, t in zip(bufs, fresh, (q, k, v)):
        assert torch.equal(buf[:, :, :t.shape[2]], torch.ones_like(grad))
        torch.testing.assert_close(buf[:, :, t.shape[2]:], grad + 1, atol=1e-12, rtol=0)
