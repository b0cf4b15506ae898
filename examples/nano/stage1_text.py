"""LongVA-nano stage 1: the language model learns text needle-in-a-haystack at one length range.

    python examples/nano/stage1_text.py --checkpoint IN --out OUT --max-length 512 --steps 200
    python -m torch.distributed.run --standalone --nproc_per_node 2 examples/nano/stage1_text.py ...

Under torchrun the sequence is split over the ranks (zigzag ring attention, gloo on CPU) and the
gradients are summed over them; every rank draws the same batch from the same seed. Only the
language model trains (the CLIP tower and projector are not used by text). ``--steps 0`` only
evaluates: the answer's argmax accuracy at each of ``--eval-lengths``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
import torch.distributed as dist


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="LongVA checkpoint folder to start from")
    parser.add_argument("--out", help="where the trained checkpoint goes (required when --steps > 0)")
    parser.add_argument("--min-length", type=int, default=64, help="shortest sample, tokens")
    parser.add_argument("--max-length", type=int, default=512, help="longest sample, tokens")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=0, help="linear warm-up steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-lengths", default="", help="comma-separated lengths to evaluate after training")
    parser.add_argument("--eval-samples", type=int, default=48)
    parser.add_argument("--report", help="JSON file the evaluation is written to")
    return parser.parse_args()


@torch.no_grad()
def evaluate(model, task, lengths, samples: int, seed: int) -> dict:
    """Argmax accuracy of the answer's first token, by length (one process, SDPA)."""
    model.eval()
    out = {}
    for length in lengths:
        rng = np.random.default_rng([seed, 99991, length])
        hits = 0
        for start in range(0, samples, 8):
            ids, labels = task.batch(rng, min(8, samples - start), length)
            logits = model(input_ids=ids).logits
            first = (labels != -100).int().argmax(dim=1)  # position of the answer's first token
            pred = logits[torch.arange(len(ids)), first - 1].argmax(-1)
            hits += int((pred == ids[torch.arange(len(ids)), first]).sum())
        out[length] = hits / samples
    model.train()
    return out


def main():
    args = parse_args()
    from longva_plugins.attention import ZIGZAG
    from longva_plugins.fileio import atomic_write_text
    from longva_plugins.models.longva import LongVAForCausalLM, LongVAProcessor
    from longva_plugins.nano.build import save_checkpoint
    from longva_plugins.nano.text import TextNeedleTask
    from longva_plugins.training.long_context import all_reduce_gradients, sequence_parallel_loss

    distributed = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
    if distributed:
        dist.init_process_group("gloo")
        torch.set_num_threads(1)
    rank = dist.get_rank() if distributed else 0
    torch.manual_seed(args.seed)
    attn = ZIGZAG if distributed else "sdpa"
    model = LongVAForCausalLM.from_pretrained(args.checkpoint, attn_implementation=attn, torch_dtype=torch.float32)
    processor = LongVAProcessor.from_pretrained(args.checkpoint)
    task = TextNeedleTask(processor)
    for name, param in model.named_parameters():
        param.requires_grad = "vision_tower" not in name and "mm_projector" not in name
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / args.warmup) if args.warmup else 1.0)
    model.train()
    start, losses = time.time(), []
    for step in range(args.steps):
        rng = np.random.default_rng([args.seed, args.max_length, step])  # the same batch on every rank
        length = int(rng.integers(args.min_length, args.max_length + 1))
        ids, labels = task.batch(rng, args.batch, length)
        loss, _ = sequence_parallel_loss(model, ids, labels=labels, pad_id=processor.pad_token_id)
        loss.backward()
        all_reduce_gradients(model)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        total = loss.detach().clone()
        if distributed:
            dist.all_reduce(total)
        losses.append(total.item())
        if rank == 0 and ((step + 1) % 25 == 0 or step + 1 == args.steps):
            print(f"[stage1 {args.max_length}] step {step + 1}/{args.steps} loss {np.mean(losses[-25:]):.4f} "
                  f"({time.time() - start:.0f} s)", flush=True)
    if rank == 0 and args.steps:
        model.config._attn_implementation = "sdpa"
        save_checkpoint(model, args.checkpoint, args.out)
        print(f"[stage1 {args.max_length}] saved {args.out} ({time.time() - start:.0f} s)", flush=True)
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    if rank == 0 and args.eval_lengths:
        if distributed:  # evaluate in one process with SDPA: reload what was saved
            model = LongVAForCausalLM.from_pretrained(args.out, attn_implementation="sdpa", torch_dtype=torch.float32)
        lengths = [int(x) for x in args.eval_lengths.split(",")]
        accuracy = evaluate(model, task, lengths, args.eval_samples, args.seed)
        print("[stage1] text NIAH accuracy by length: " + ", ".join(f"{k}: {v:.2f}" for k, v in accuracy.items()), flush=True)
        if args.report:
            atomic_write_text(args.report, json.dumps({str(k): v for k, v in accuracy.items()}, indent=2))


if __name__ == "__main__":
    main()
