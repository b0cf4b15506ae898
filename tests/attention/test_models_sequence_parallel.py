"""End to end: a tiny Qwen2 and the tiny LongVA give the same logits and parameter gradients with
the sequence split over 2 gloo processes (zigzag ring attention) as in one process."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from ring_reference import tiny_qwen2

pytestmark = pytest.mark.distributed
WORLD = 2


def _qwen2(attn):
    return tiny_qwen2(attn, eval_mode=False)


def _loss_sum(logits, labels):
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum")


def _batch():
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 97, (1, 22), generator=gen)  # 22 tokens: padded to 24 for 2 x 2 chunks
    return ids, ids.clone()


def _worker(rank, store, out_dir):
    import longva_plugins.attention  # noqa: F401  (registers the attention names)
    from longva_plugins.attention import ZIGZAG, shard_batch

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    try:
        model = _qwen2(ZIGZAG)
        ids, labels = _batch()
        shard = shard_batch(ids, labels, WORLD, rank, pad_id=0)
        logits = model(input_ids=shard["input_ids"], position_ids=shard["position_ids"]).logits
        loss = _loss_sum(logits, shard["labels"])
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        for g in grads.values():
            dist.all_reduce(g)
        torch.save({"logits": logits.detach(), "loss": loss.detach(), "grads": grads}, os.path.join(out_dir, f"qwen_{rank}.pt"))

        from longva_plugins.models.longva import LongVAForCausalLM
        from longva_plugins.testing import ensure_tiny_checkpoint

        lv = LongVAForCausalLM.from_pretrained(ensure_tiny_checkpoint(os.environ["LONGVA_TEST_CACHE"]),
                                               attn_implementation=ZIGZAG, torch_dtype=torch.float64)
        embeds = torch.load(os.path.join(out_dir, "embeds.pt"))
        length = embeds.shape[1]
        positions = torch.arange(length).unsqueeze(0)
        from longva_plugins.attention.sequence_parallel import zigzag_split

        local = zigzag_split(embeds, WORLD, rank)
        with torch.no_grad():
            out = lv(inputs_embeds=local, position_ids=zigzag_split(positions, WORLD, rank)).logits
        torch.save(out, os.path.join(out_dir, f"longva_{rank}.pt"))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_sequence_parallel_matches_single_process(tmp_path, monkeypatch):
    from longva_plugins.attention.sequence_parallel import shard_batch, zigzag_unshard
    from longva_plugins.models.longva import LongVAForCausalLM, LongVAProcessor
    from longva_plugins.testing import ensure_tiny_checkpoint

    cache = tmp_path / "cache"
    monkeypatch.setenv("LONGVA_TEST_CACHE", str(cache))
    ckpt = ensure_tiny_checkpoint(cache)
    reference_lv = LongVAForCausalLM.from_pretrained(ckpt, attn_implementation="sdpa", torch_dtype=torch.float64)
    processor = LongVAProcessor.from_pretrained(ckpt)
    frames = torch.randint(0, 255, (2, 40, 40, 3), dtype=torch.uint8).numpy()
    visual = reference_lv.encode_video(processor.preprocess_frames(frames))
    embeds = reference_lv.embed_multimodal(processor.tokenize(processor.build_prompt("What is this?")), [visual])
    embeds = embeds[:, : embeds.shape[1] // 4 * 4]  # a length split into 2 x 2 chunks
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    torch.save(embeds.detach(), out_dir / "embeds.pt")
    mp.spawn(_worker, args=(str(tmp_path / "store"), str(out_dir)), nprocs=WORLD, join=True)

    # Qwen2: logits and gradients
    model = _qwen2("sdpa")  # eager softmax runs in float32; SDPA keeps float64
    ids, labels = _batch()
    full = shard_batch(ids, labels, 1, 0, pad_id=0)  # same shift and padding, one shard
    logits = model(input_ids=full["input_ids"], position_ids=full["position_ids"]).logits
    _loss_sum(logits, full["labels"]).backward()
    parts = [torch.load(out_dir / f"qwen_{r}.pt") for r in range(WORLD)]
    sp_logits = zigzag_unshard([p["logits"] for p in parts])
    assert sp_logits.shape[1] == 24, "22 tokens padded to a multiple of 2 x world size"
    # causal: the padding at the end changes no earlier position
    torch.testing.assert_close(sp_logits[:, : logits.shape[1]], logits.detach(), atol=1e-10, rtol=0)
    for name, param in model.named_parameters():
        torch.testing.assert_close(parts[0]["grads"][name], param.grad, atol=1e-10, rtol=0, msg=name)

    # LongVA: prefill logits with the sequence split across ranks
    with torch.no_grad():
        want = reference_lv(inputs_embeds=embeds).logits
    got = zigzag_unshard([torch.load(out_dir / f"longva_{r}.pt") for r in range(WORLD)])
    torch.testing.assert_close(got, want, atol=1e-9, rtol=0)
