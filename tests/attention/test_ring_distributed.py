"""Ring and zigzag attention across gloo processes against a single-process float64 reference.

Spawned processes (no fixed ports: a FileStore in tmp_path), world sizes 2 and 4, float64 /
float32 / bfloat16, GQA, a length that needs padding, and a process subgroup. Tolerances: float64
1e-10; float32 1e-5 (outputs) and 5e-5 (gradients); bfloat16 5e-2 (inputs rounded to 8 bits of
mantissa; statistics and merges are float32).
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from ring_reference import make_inputs, reference_attention

pytestmark = pytest.mark.distributed

TOLERANCE = {torch.float64: (1e-10, 1e-10), torch.float32: (1e-5, 5e-5), torch.bfloat16: (5e-2, 5e-2)}
CONFIGS = [  # (variant, dtype, heads, kv_heads, length)
    ("zigzag", torch.float64, 4, 4, 16),
    ("ring", torch.float64, 4, 4, 16),
    ("zigzag", torch.float64, 4, 2, 24),  # GQA
    ("ring", torch.float32, 4, 1, 16),
    ("zigzag", torch.float32, 6, 2, 32),
    ("zigzag", torch.bfloat16, 4, 2, 16),
    ("zigzag", torch.float64, 4, 2, 13),  # needs padding
    ("zigzag-bl", torch.float64, 4, 2, 16),  # q/k/v as transformers passes them: views of (B, L, H, D)
    ("ring-bl", torch.float32, 4, 2, 16),
]


def _heads_view(t):
    """The same values as a ``(B, H, L, D)`` view of ``(B, L, H, D)`` storage (not contiguous)."""
    view = t.transpose(1, 2).contiguous().transpose(1, 2)
    assert not view.is_contiguous()
    return view


def _shard(x, variant, world, rank):
    from longva_plugins.attention.sequence_parallel import contiguous_split, zigzag_split

    return (zigzag_split if variant.startswith("zigzag") else contiguous_split)(x, world, rank, dim=2)


def _run_config(cfg_index, variant, dtype, heads, kv_heads, length, group, world, rank, out_dir, tag):
    from longva_plugins.attention import ring_attention_func, zigzag_ring_attention_func
    from longva_plugins.attention.sequence_parallel import pad_to_multiple

    q, k, v, dout = make_inputs(cfg_index, 2, heads, kv_heads, length, 8)
    multiple = 2 * world
    padded = [pad_to_multiple(t, multiple, dim=2) for t in (q, k, v, dout)]
    if padded[3].shape[2] != length:
        padded[3][:, :, length:] = 0  # padding rows carry no gradient
    local = [_shard(t, variant, world, rank).to(dtype).clone() for t in padded]
    lq, lk, lv, ldout = local
    for t in (lq, lk, lv):
        t.requires_grad_()
    func = zigzag_ring_attention_func if variant.startswith("zigzag") else ring_attention_func
    inputs = [_heads_view(t) for t in (lq, lk, lv)] if variant.endswith("-bl") else (lq, lk, lv)
    out, lse = func(*inputs, causal=True, group=group)
    out.backward(ldout)
    torch.save({"out": out.detach().double(), "lse": lse.detach().double(), "dq": lq.grad.double(),
                "dk": lk.grad.double(), "dv": lv.grad.double()}, os.path.join(out_dir, f"{tag}_{cfg_index}_{rank}.pt"))


def _worker(rank, world, store_path, out_dir, subgroup):
    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        if subgroup:
            groups = [dist.new_group([0, 1]), dist.new_group([2, 3])]
            mine = groups[rank // 2]
            _run_config(100 + rank // 2, "zigzag", torch.float64, 4, 2, 16, mine, 2, rank % 2, out_dir, f"sub{rank // 2}")
        else:
            for index, (variant, dtype, heads, kv_heads, length) in enumerate(CONFIGS):
                _run_config(index, variant, dtype, heads, kv_heads, length, None, world, rank, out_dir, "w")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _spawn(world, tmp_path, subgroup=False):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    mp.spawn(_worker, args=(world, str(tmp_path / "store"), str(out_dir), subgroup), nprocs=world, join=True)
    return out_dir


def _assemble(out_dir, tag, index, variant, world):
    from longva_plugins.attention.sequence_parallel import zigzag_unshard

    parts = [torch.load(out_dir / f"{tag}_{index}_{r}.pt") for r in range(world)]
    result = {}
    for key in ("out", "lse", "dq", "dk", "dv"):
        shards = [p[key] for p in parts]
        result[key] = zigzag_unshard(shards, dim=2) if variant.startswith("zigzag") else torch.cat(shards, dim=2)
    return result


def _check(result, index, heads, kv_heads, length, dtype):
    q, k, v, dout = make_inputs(index, 2, heads, kv_heads, length, 8)
    q, k, v = (t.clone().requires_grad_() for t in (q, k, v))
    ref_out, ref_lse = reference_attention(q, k, v)
    ref_out.backward(dout)
    atol_out, atol_grad = TOLERANCE[dtype]
    crop = slice(0, length)  # padding rows are not part of the sequence
    checks = [("out", result["out"][:, :, crop], ref_out), ("lse", result["lse"][:, :, crop], ref_lse),
              ("dq", result["dq"][:, :, crop], q.grad), ("dk", result["dk"][:, :, crop], k.grad),
              ("dv", result["dv"][:, :, crop], v.grad)]
    for name, got, want in checks:
        atol = atol_out if name in ("out", "lse") else atol_grad
        diff = (got - want.detach()).abs().max().item()
        assert diff <= atol * max(1.0, want.detach().abs().max().item()), f"{name}: max |diff| {diff:.3g} ({dtype})"


@pytest.mark.parametrize("world", [2, 4])
def test_ring_and_zigzag_match_reference(world, tmp_path):
    out_dir = _spawn(world, tmp_path)
    for index, (variant, dtype, heads, kv_heads, length) in enumerate(CONFIGS):
        _check(_assemble(out_dir, "w", index, variant, world), index, heads, kv_heads, length, dtype)


def test_process_subgroups_run_independent_rings(tmp_path):
    out_dir = _spawn(4, tmp_path, subgroup=True)
    for g in range(2):
        _check(_assemble(out_dir, f"sub{g}", 100 + g, "zigzag", 2), 100 + g, 4, 2, 16, torch.float64)
