"""The ring attention names as drop-in transformers attention: without a group they behave like
`sdpa` (padding, any length, generation with a KV cache); with a group, decode steps attend over
every rank's KV shard, and mismatched calls fail on every rank instead of hanging."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from ring_reference import spawn_ranks, tiny_qwen2

import longva_plugins.attention  # noqa: F401  (registers the attention names)
from longva_plugins.attention import RING, ZIGZAG


def _qwen2(attn, dtype=torch.float64):
    return tiny_qwen2(attn, dtype, pad_token_id=0)


@pytest.mark.parametrize("name", [ZIGZAG, RING])
@pytest.mark.parametrize("length", [7, 12])
def test_generation_equals_sdpa_for_odd_and_even_prompts(name, length):
    ids = torch.randint(1, 97, (1, length), generator=torch.Generator().manual_seed(length))
    reference = _qwen2("sdpa").generate(ids, max_new_tokens=6, do_sample=False)
    ours = _qwen2(name).generate(ids, max_new_tokens=6, do_sample=False)
    assert torch.equal(ours, reference)


@pytest.mark.parametrize("name", [ZIGZAG, RING])
def test_left_padded_batch_equals_each_row_alone(name):
    gen = torch.Generator().manual_seed(3)
    rows = [torch.randint(1, 97, (n,), generator=gen) for n in (9, 5)]
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):], mask[i, width - len(row):] = row, 1
    model = _qwen2(name)
    with torch.no_grad():
        batched = model(input_ids=ids, attention_mask=mask).logits
        sdpa = _qwen2("sdpa")(input_ids=ids, attention_mask=mask).logits
        for i, row in enumerate(rows):
            real = slice(width - len(row), None)
            torch.testing.assert_close(batched[i, real], sdpa[i, real], atol=1e-12, rtol=0)
            # alone, the row's positions start at 0 instead of after the padding: equal up to RoPE rounding
            alone = _qwen2("sdpa")(input_ids=row.unsqueeze(0)).logits[0]
            torch.testing.assert_close(batched[i, real], alone, atol=1e-8, rtol=0)
    padded_generation = model.generate(ids, attention_mask=mask, max_new_tokens=4, do_sample=False)
    sdpa_generation = _qwen2("sdpa").generate(ids, attention_mask=mask, max_new_tokens=4, do_sample=False)
    assert torch.equal(padded_generation, sdpa_generation)


# --------------------------------------------------------------------------- two gloo ranks
WORLD = 2


def _decode_inputs():
    gen = torch.Generator().manual_seed(11)
    q = torch.randn(2, 4, 1, 8, generator=gen, dtype=torch.float64)
    k = torch.randn(2, 2, 30, 8, generator=gen, dtype=torch.float64)
    v = torch.randn(2, 2, 30, 8, generator=gen, dtype=torch.float64)
    return q, k, v


def _decode_worker(rank, out_dir):
    from longva_plugins.attention.sharded_kv import sharded_kv_attention

    q, k, v = _decode_inputs()
    history = slice(0, 17) if rank == 0 else slice(17, 29)  # uneven history shares
    # what a ShardedKVCache hands the attention: this rank's history, then the new token
    local_k = torch.cat([k[:, :, history], k[:, :, 29:]], dim=2)
    local_v = torch.cat([v[:, :, history], v[:, :, 29:]], dim=2)
    torch.save(sharded_kv_attention(q, local_k, local_v, None, None), os.path.join(out_dir, f"decode_{rank}.pt"))


@pytest.mark.distributed
def test_decode_step_over_two_kv_shards_equals_one_process(tmp_path):
    from longva_plugins.attention.block import block_attention

    spawn_ranks(_decode_worker, WORLD, tmp_path)
    q, k, v = _decode_inputs()
    expected, _ = block_attention(q, k, v, causal=True)
    for rank in range(WORLD):
        torch.testing.assert_close(torch.load(tmp_path / f"decode_{rank}.pt"), expected, atol=1e-12, rtol=0)


def _mismatch_worker(rank, store, out_dir):
    from transformers import AttentionInterface

    import longva_plugins.attention  # noqa: F401  (registers the names)

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        length = 8 if rank == 0 else 12  # the ranks disagree on the local length
        q = torch.randn(1, 4, length, 8)
        k = v = torch.randn(1, 2, length, 8)
        try:
            AttentionInterface()["longva_ring_zigzag"](None, q, k, v, None)
            outcome = "no error"
        except Exception as exc:  # the SettingError naming both ranks' shapes
            outcome = f"{type(exc).__name__}: {exc}"
        with open(os.path.join(out_dir, f"mismatch_{rank}.txt"), "w") as handle:
            handle.write(outcome)
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
@pytest.mark.timeout(120)
def test_cross_rank_shape_mismatch_raises_on_both_ranks(tmp_path):
    mp.spawn(_mismatch_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD, join=True)
    for rank in range(WORLD):
        text = (tmp_path / f"mismatch_{rank}.txt").read_text()
        assert text.startswith("SettingError") and "q_len=8" in text and "q_len=12" in text, text
