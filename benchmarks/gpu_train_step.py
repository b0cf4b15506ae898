"""One LoRA training step on a random model with LongVA-7B's language-model shapes, peak GPU memory
against the training memory model (``longva_plugins.training.memory.estimate``).

    python benchmarks/gpu_train_step.py --frames 64              # CUDA, bf16 base, LoRA r 64, checkpointing
    python benchmarks/gpu_train_step.py --scale tiny --frames 4  # the same code path on CPU

The sample is ``frames x 144`` random visual embeddings and 256 text tokens, loss on the last 32
(an answer); the step runs as the Trainer runs it under ``bf16: true``: autocast, backward, AdamW
on the fp32 LoRA matrices and projector. Run by ``benchmarks/gpu_check.sh``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def main() -> int:
    from gpu_vniah_cell import LONGVA_7B, TINY, TOKENS_PER_FRAME, build

    from longva_plugins.training.config import LongVATrainingConfig
    from longva_plugins.training.memory import GIB, LONGVA_7B as MODEL_7B, estimate
    from longva_plugins.training.peft_utils import apply_lora
    from longva_plugins.training.run import keep_trainable_in_float32

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=("paper", "tiny"), default="paper")
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--json", help="also write the measurement to this JSON file (gpu_check.py reads it)")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    model = build(args.scale, device, torch.bfloat16 if cuda else torch.float32)
    model.train()
    for param in model.parameters():
        param.requires_grad = False
    model = apply_lora(model, LongVATrainingConfig(lora_r=64 if args.scale == "paper" else 8, lora_dropout=0.0))
    keep_trainable_in_float32(model)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    model.get_base_model().logits_at_labels_only = True  # as the training entry points set it
    hidden = model.config.hidden_size
    tokens = args.frames * TOKENS_PER_FRAME + 256
    embeds = torch.randn(1, tokens, hidden, device=device, dtype=torch.bfloat16 if cuda else torch.float32)
    labels = torch.full((1, tokens), -100, dtype=torch.long, device=device)
    labels[0, -32:] = torch.randint(0, model.config.vocab_size, (32,), device=device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
        loss = model(inputs_embeds=embeds, labels=labels).loss
    loss.backward()
    optimizer.step()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    shapes = LONGVA_7B if args.scale == "paper" else TINY
    dims = {**MODEL_7B, "layers": shapes["num_hidden_layers"], "hidden": shapes["hidden_size"],
            "intermediate": shapes["intermediate_size"], "heads": shapes["num_attention_heads"],
            "kv_heads": shapes["num_key_value_heads"], "vocab": shapes["vocab_size"], "tower_params": 0,
            "tower_hidden": 32, "patches_per_frame": 0}  # (random visual embeddings: no projector runs)
    model_gib = estimate(args.frames, r=64 if args.scale == "paper" else 8, model=dims).total / GIB
    row = {"scale": args.scale, "frames": args.frames, "tokens": tokens, "loss": loss.item(), "seconds": seconds,
           "peak_gib": torch.cuda.max_memory_allocated() / GIB if cuda else None, "memory_model_gib": model_gib}
    print(json.dumps(row))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(row, handle)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
