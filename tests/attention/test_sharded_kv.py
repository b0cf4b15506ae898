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
        # 20 + 21 + 4 tokens at the end, each forward's tokens split so the shares end even
        assert sum(rec["stored"]) == 45 and rec["local_len"] == rec["stored"][rank]
        assert rec["stored"] == records[0]["stored"]
    # the prefill's chunks split 4/3, 3/4, 4/3, 3/4, 1/1 (ranks 0/1: tokens 0-3, 7-9, 14-17, 21-23,
    # 28 on rank 0); cropped to 20: 11 / 9; the 21 new tokens 10 / 11; the 4 decoded ones
    # alternately, the rank holding fewer first: 23 / 22
    assert records[0]["stored"] == [23, 22]


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


def test_split_new_tokens_evens_the_shares():
    """Water-filling: the ranks holding fewest take the new tokens; the largest share after is the
    smallest possible, and lower ranks take the remainder."""
    import random

    from longva_plugins.attention.sharded_kv import split_new_tokens

    assert split_new_tokens([0, 0], 7) == [4, 3]
    assert split_new_tokens([10, 4], 3) == [0, 3]
    assert split_new_tokens([10, 4], 9) == [2, 7]  # 12 / 11: the lower rank takes the odd one
    assert split_new_tokens([5, 5, 5], 1) == [1, 0, 0]
    rng = random.Random(0)
    for _ in range(500):
        held = [rng.randrange(0, 50) for _ in range(rng.randrange(1, 5))]
        new = rng.randrange(0, 120)
        counts = split_new_tokens(held, new)
        assert sum(counts) == new and min(counts) >= 0
        after = [h + c for h, c in zip(held, counts)]
        # no split does better: the largest share is max(largest held, ceil(all tokens / ranks))
        assert max(after) == max(max(held), -(-(sum(held) + new) // len(held)))
        if max(held) - min(held) <= 1:  # shares even before: even after
            assert max(after) - min(after) <= 1


def test_growing_layer_keeps_a_range_of_the_new_tokens():
    """``put(keep=(first, stop))``: the attention of that forward reads every new token; afterwards
    the layer holds exactly the kept ones after the stored ones, in a buffer allocated once."""
    from longva_plugins.attention.sharded_kv import GrowingLayer

    layer, kept = GrowingLayer(capacity=40), []
    buffer = None
    for new, keep in ((6, (0, 3)), (8, (5, 8)), (4, False), (10, (2, 7)), (5, True), (3, (3, 3))):
        k = torch.randn(1, 2, new, 4)
        keys, values = layer.put(k, -k, keep=keep)
        assert torch.equal(keys[..., -new:, :], k) and torch.equal(values[..., -new:, :], -k)
        first, stop = ((0, new) if keep else (0, 0)) if isinstance(keep, bool) else keep
        kept.append(k[..., first:stop, :])
        want = torch.cat(kept, dim=-2)
        assert layer.get_seq_length() == want.shape[-2]
        assert torch.equal(layer.keys, want) and torch.equal(layer.values, -want)
        buffer = buffer or layer._buffers[0].data_ptr()
        assert layer._buffers[0].data_ptr() == buffer and layer._buffers[0].shape[-2] == 40
    layer.crop(5)
    assert torch.equal(layer.keys, torch.cat(kept, dim=-2)[..., :5, :])
    with pytest.raises(ValueError, match="not a range"):
        layer.put(torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4), keep=(2, 5))
