"""Single-process float64 reference attention (causal, GQA) and helpers for the ring tests."""

from __future__ import annotations

import torch


def reference_attention(q, k, v, causal=True, scale=None):
    """Plain softmax attention in float64 with autograd: returns out (B,H,L,D) and lse (B,H,L)."""
    scale = scale if scale is not None else q.shape[-1] ** -0.5
    group = q.shape[1] // k.shape[1]
    kk = k.repeat_interleave(group, dim=1)
    vv = v.repeat_interleave(group, dim=1)
    scores = torch.einsum("bhqd,bhkd->bhqk", q, kk) * scale
    if causal:
        length = q.shape[2]
        mask = torch.ones(length, length, dtype=torch.bool).tril()
        scores = scores.masked_fill(~mask, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    out = torch.einsum("bhqk,bhkd->bhqd", torch.softmax(scores, dim=-1), vv)
    return out, lse


def make_inputs(seed, batch, heads, kv_heads, length, dim):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, length, dim, generator=gen, dtype=torch.float64)
    k = torch.randn(batch, kv_heads, length, dim, generator=gen, dtype=torch.float64)
    v = torch.randn(batch, kv_heads, length, dim, generator=gen, dtype=torch.float64)
    dout = torch.randn(batch, heads, length, dim, generator=gen, dtype=torch.float64)
    return q, k, v, dout


def tiny_qwen2(attn: str, dtype=torch.float64, eval_mode: bool = True, **config):
    """The tests' tiny Qwen2 (vocabulary 97, hidden 32, 4 heads over 2 KV heads, 2 layers), seed 0."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=256, **config)
    config._attn_implementation = attn
    model = Qwen2ForCausalLM(config).to(dtype)
    return model.eval() if eval_mode else model


def _rank_entry(rank, world, store, out_dir, body):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        body(rank, out_dir)
    finally:
        dist.destroy_process_group()


def spawn_ranks(body, world: int, tmp_path) -> None:
    """Run ``body(rank, out_dir)`` (a module-level function) on ``world`` gloo processes."""
    import torch.multiprocessing as mp

    mp.spawn(_rank_entry, args=(world, str(tmp_path / "store"), str(tmp_path), body), nprocs=world, join=True)


def reference_general(q, k, v, causal, key_padding=None, scale=None):
    """float64 plain softmax for Lq <= Lk (bottom-right causal) and key padding, with autograd."""
    scale = scale if scale is not None else q.shape[-1] ** -0.5
    group = q.shape[1] // k.shape[1]
    kk, vv = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = torch.einsum("bhqd,bhkd->bhqk", q, kk) * scale
    lq, lk = q.shape[2], k.shape[2]
    keep = torch.ones(q.shape[0], 1, lq, lk, dtype=torch.bool)
    if causal:
        keep &= torch.ones(lq, lk, dtype=torch.bool).tril(lk - lq)
    if key_padding is not None:
        keep &= key_padding[:, None, None, :]
    scores = scores.masked_fill(~keep, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    probs = torch.nan_to_num(torch.exp(scores - lse.unsqueeze(-1)))
    return torch.einsum("bhqk,bhkd->bhqd", probs, vv), lse
