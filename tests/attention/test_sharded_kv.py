"""Sequence-parallel inference: a tiny Qwen2 with its KV cache split over 2 gloo ranks
(``ShardedKVCache`` + ``longva_sharded_kv``) gives one process's logits for chunked prefill, a crop
back into the history followed by another continuation, and greedy decode steps; each rank
holds about half the cache."""

from __future__ import annotations

import os

import pytest
import torch
from ring_reference import spawn_ranks, tiny_qwen2

WORLD = 2
CHUNK = 7


def _ids():
    return torch.randint(0, 97, (1, 41), generator=torch.Generator().manual_seed(3))


def _script(model, cache):
    """Prefill 30 tokens in chunks, crop back to 20, continue with 21 other tokens, decode 4 greedily."""
    from longva_plugins.vniah.scoring import crop_to

    ids = _ids()
    embed = model.get_input_embeddings()
    record = {"chunks": []}

    def run(piece_ids):
        start = cache.get_seq_length()
        positions = torch.arange(start, start + piece_ids.shape[1])
        return model(inputs_embeds=embed(piece_ids), past_key_values=cache, use_cache=True,
                     cache_position=positions).logits

    with torch.no_grad():
        for start in range(0, 30, CHUNK):
            record["chunks"].append(run(ids[:, start:min(30, start + CHUNK)]))
        record["length_after_prefill"] = cache.get_seq_length()
        crop_to(cache, 20)  # what the V-NIAH scorer calls between cells
        record["length_after_crop"] = cache.get_seq_length()
        record["continued"] = run(ids[:, 20:41])
        token, steps = record["continued"][:, -1:].argmax(-1), []
        for _ in range(4):
            logits = run(token)
            steps.append(logits)
            token = logits[:, -1:].argmax(-1)
        record["decode"] = steps
    return record


def _worker(rank, out_dir):
    import longva_plugins.attention  # noqa: F401  (registers the attention names)
    from longva_plugins.attention import SHARDED_KV, ShardedKVCache

    cache = ShardedKVCache()
    record = _script(tiny_qwen2(SHARDED_KV), cache)
    record["stored"] = [cache.stored(r) for r in range(WORLD)]
    record["local_len"] = cache.layers[0].keys.shape[-2]
    torch.save(record, os.path.join(out_dir, f"rank{rank}.pt"))


@pytest.mark.distributed
def test_sharded_kv_cache_over_two_ranks_equals_one_process(tmp_path):
    from transformers import DynamicCache

    spawn_ranks(_worker, WORLD, tmp_path)
    reference = _script(tiny_qwen2("sdpa"), DynamicCache())
    assert reference["length_after_prefill"] == 30 and reference["length_after_crop"] == 20
    records = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    for rank, rec in enumerate(records):
        assert rec["length_after_prefill"] == 30 and rec["length_after_crop"] == 20
        for got, want in zip(rec["chunks"] + [rec["continued"]] + rec["decode"],
                             reference["chunks"] + [reference["continued"]] + reference["decode"]):
            torch.testing.assert_close(got, want, atol=1e-10, rtol=0)
        # 20 + 21 + 4 tokens at the end: chunks of 21 and 1 are kept by whichever rank holds fewer
        assert sum(rec["stored"]) == 45 and rec["local_len"] == rec["stored"][rank]
        assert rec["stored"] == records[0]["stored"]
    # after the prefill (7, 7, 7, 7, 2 tokens alternately kept) and the crop to 20: 13 + 7
    # tokens, then 21 go to rank 1 and the 4 decoded tokens to rank 0: 17 / 28
    assert records[0]["stored"] == [17, 28]


def test_sharded_kv_name_is_plain_causal_attention_in_one_process():
    import longva_plugins.attention  # noqa: F401
    from longva_plugins.attention import SHARDED_KV, ShardedKVCache

    ours = _script(tiny_qwen2(SHARDED_KV), ShardedKVCache())
    reference = _script(tiny_qwen2("sdpa"), __import__("transformers").DynamicCache())
    for got, want in zip(ours["chunks"] + [ours["continued"]] + ours["decode"],
                         reference["chunks"] + [reference["continued"]] + reference["decode"]):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=0)


def test_growing_cache_with_a_capacity_allocates_each_layer_once():
    """A cache sized for its longest sequence never reallocates while it grows and is cropped."""
    from longva_plugins.attention.sharded_kv import GrowingCache

    cache = GrowingCache(capacity=50)
    buffers = None
    for length in (10, 30, 12, 50, 5):
        grow = length - cache.get_seq_length()
        if grow > 0:
            k = torch.randn(1, 2, grow, 4)
            cache.update(k, k.clone(), 0)
        else:
            cache.crop(length)
        assert cache.get_seq_length() == length and cache.layers[0].keys.shape[-2] == length
        buffers = buffers or cache.layers[0]._buffers
        assert cache.layers[0]._buffers is buffers and buffers[0].shape[-2] == 50
    k = torch.randn(1, 2, 60, 4)  # past the capacity: it grows
    cache.update(k, k, 0)
    assert cache.get_seq_length() == 65 and cache.layers[0]._buffers[0].shape[-2] >= 65
