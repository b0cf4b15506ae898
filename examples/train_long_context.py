"""Long-context text training with the sequence split over processes (zigzag ring attention).

    python -m torch.distributed.run --standalone --nproc_per_node 2 examples/train_long_context.py [--steps 5]

The paper's first stage on a toy scale: random "documents" packed with separators into sequences,
a tiny Qwen2 whose attention is `longva_ring_zigzag`, gradients summed over the sequence-parallel
group. Runs on CPU with gloo (or NCCL on GPUs). Works with one process too.
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--seq-len", type=int, default=512)
    args = parser.parse_args()
    from transformers import Qwen2Config, Qwen2ForCausalLM

    import longva_plugins.attention  # noqa: F401  (registers longva_ring_zigzag)
    from longva_plugins.training.long_context import all_reduce_gradients, pack_documents, sequence_parallel_loss

    use_cuda = torch.cuda.is_available()
    if "WORLD_SIZE" in os.environ:
        dist.init_process_group("nccl" if use_cuda else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=args.seq_len * 2)
    config._attn_implementation = "longva_ring_zigzag"
    # on GPUs the model runs in bfloat16, so the flash-attn kernel is used when installed
    model = Qwen2ForCausalLM(config).to(device, torch.bfloat16 if use_cuda else torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(1)
    docs = [torch.randint(1, 256, (int(n),), generator=gen).tolist() for n in torch.randint(50, 400, (64,), generator=gen)]
    batches = pack_documents(docs, args.seq_len, separator_id=0)
    for step in range(args.steps):
        loss, tokens = sequence_parallel_loss(model, batches[step % len(batches)].unsqueeze(0))
        loss.backward()
        all_reduce_gradients(model)
        optimizer.step()
        optimizer.zero_grad()
        total = loss.detach().clone()
        if dist.is_initialized():
            dist.all_reduce(total)
        if rank == 0:
            print(f"step {step + 1}/{args.steps} loss {total.item():.4f} ({int(tokens)} tokens)", flush=True)
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
