"""Long-context text training: packing, and sequence-parallel training equal to one process."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from longva_plugins.training.long_context import pack_documents


def test_pack_documents_with_separators():
    packed = pack_documents([[1, 2, 3], [4, 5], [6, 7, 8, 9]], seq_len=4, separator_id=0)
    assert packed.tolist() == [[1, 2, 3, 0], [4, 5, 0, 6], [7, 8, 9, 0]]


def _model():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    import longva_plugins.attention  # noqa: F401

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=128)
    config._attn_implementation = "longva_ring_zigzag"
    return Qwen2ForCausalLM(config).double()


def _batch():
    gen = torch.Generator().manual_seed(3)
    docs = [torch.randint(1, 50, (n,), generator=gen).tolist() for n in (7, 11, 5, 9)]
    return pack_documents(docs, seq_len=17, separator_id=0)[:1]  # 17 tokens: padding needed


def _worker(rank, world, store, out_dir):
    from longva_plugins.training.long_context import all_reduce_gradients, sequence_parallel_loss

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        model = _model()
        loss, _ = sequence_parallel_loss(model, _batch())
        loss.backward()
        all_reduce_gradients(model)
        total = loss.detach().clone()
        dist.all_reduce(total)
        torch.save({"loss": total, "grads": {n: p.grad for n, p in model.named_parameters()}},
                   os.path.join(out_dir, f"r{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.distributed
def test_two_process_training_step_equals_one_process(tmp_path):
    from longva_plugins.training.long_context import sequence_parallel_loss

    mp.spawn(_worker, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    model = _model()
    loss, tokens = sequence_parallel_loss(model, _batch())  # not initialised: one process, whole sequence
    loss.backward()
    assert tokens.item() == 16  # 17 tokens, the last has no target
    result = torch.load(tmp_path / "r0.pt")
    torch.testing.assert_close(result["loss"], loss.detach(), atol=1e-10, rtol=0)
    for name, param in model.named_parameters():
        torch.testing.assert_close(result["grads"][name], param.grad, atol=1e-10, rtol=0, msg=name)
