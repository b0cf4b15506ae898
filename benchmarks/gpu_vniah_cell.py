"""One long V-NIAH cell on a random model with LongVA-7B's language-model shapes, peak memory
against the memory model (weights + KV of the cell + one chunk's activations + embeddings).

    python benchmarks/gpu_vniah_cell.py --frames 1000            # CUDA, bfloat16, LongVA-7B shapes
    python benchmarks/gpu_vniah_cell.py --scale tiny --frames 8  # the same code path on CPU

The haystack and needle embeddings are random ``(frames, 144, hidden)`` blocks (the vision tower
is not part of the cell's cost); the cell runs as :class:`VNIAHScorer` runs it: the prefix
prefilled into one KV cache, then the tail and the answer scored on it, in chunks, with logits
at the answer only. Run by ``benchmarks/gpu_check.sh``.
"""

from __future__ import annotations

import argparse
import time

import torch

LONGVA_7B = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                 num_key_value_heads=4, vocab_size=152064)
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=512)
TOKENS_PER_FRAME = 144


def build(scale: str, device, dtype):
    from transformers import CLIPVisionConfig

    from longva_plugins.models.longva import LongVAForCausalLM
    from longva_plugins.models.longva.configuration_longva import LongVAConfig

    shapes = LONGVA_7B if scale == "paper" else TINY
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                              image_size=336, patch_size=14)
    config = LongVAConfig(vision_config=vision, max_position_embeddings=1 << 20, rope_theta=1e9,
                          tie_word_embeddings=False, mm_hidden_size=32, **shapes)
    config._attn_implementation = "flash_attention_2" if device.type == "cuda" and _has_flash() else "sdpa"
    with torch.device(device):
        model = LongVAForCausalLM(config).to(dtype).eval()
    return model


def _has_flash() -> bool:
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=("paper", "tiny"), default="paper")
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--depth", type=float, default=0.5)
    parser.add_argument("--chunk", type=int, default=8192)
    parser.add_argument("--json", help="also write the measurement to this JSON file (benchmarks/gpu_check.py reads it)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.scale == "paper" and device.type != "cuda":
        print("gpu_vniah_cell: LongVA-7B shapes need a CUDA device; use --scale tiny on CPU")
        return 0
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    start = time.perf_counter()
    model = build(args.scale, device, dtype)
    config = model.config
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    kv_per_token = 2 * config.num_hidden_layers * config.num_key_value_heads * (
        config.hidden_size // config.num_attention_heads) * torch.finfo(dtype).bits // 8
    gen = torch.Generator(device=device).manual_seed(0)
    haystack = torch.randn(args.frames, TOKENS_PER_FRAME, config.hidden_size, generator=gen, device=device, dtype=dtype)
    needle = torch.randn(1, TOKENS_PER_FRAME, config.hidden_size, generator=gen, device=device, dtype=dtype)
    prompt_pre = torch.randn(1, 14, config.hidden_size, generator=gen, device=device, dtype=dtype)
    question = torch.randn(1, 30, config.hidden_size, generator=gen, device=device, dtype=dtype)
    answer = torch.randint(0, 100, (3,), generator=gen, device=device)
    idx = int(args.depth * args.frames)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated() if device.type == "cuda" else 0
    with torch.no_grad():
        prefix = torch.cat([prompt_pre, haystack[:idx].reshape(1, -1, config.hidden_size)], dim=1)
        cache = model.prefill(prefix, chunk_size=args.chunk).past_key_values
        del prefix
        tail = torch.cat([needle.reshape(1, -1, config.hidden_size),
                          haystack[idx:].reshape(1, -1, config.hidden_size), question], dim=1)
        result = model.score_continuation(tail, answer, chunk_size=args.chunk, past_key_values=cache)
    tokens = 14 + (args.frames + 1) * TOKENS_PER_FRAME + 30 + 3
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = float("nan")
    embeds = (args.frames + 1) * TOKENS_PER_FRAME * config.hidden_size * torch.finfo(dtype).bits // 8
    print(f"{args.scale} shapes, {args.frames} frames ({tokens} tokens), depth {args.depth}, {dtype}, "
          f"{config._attn_implementation}: nll {result.nll_mean:.3f}, {time.perf_counter() - start:.1f} s")
    print(f"weights {weights / 2**30:.2f} GiB | KV model {tokens * kv_per_token / 2**30:.2f} GiB | "
          f"embeddings {embeds / 2**30:.2f} GiB | measured peak above weights+inputs {peak / 2**30:.2f} GiB")
    if args.json:
        import json
        import math

        from longva_plugins.fileio import atomic_write_text

        total = torch.cuda.max_memory_allocated() if device.type == "cuda" else float("nan")
        record = {"scale": args.scale, "frames": args.frames, "tokens": tokens, "depth": args.depth,
                  "dtype": str(dtype).replace("torch.", ""), "attention": config._attn_implementation,
                  "nll": float(result.nll_mean), "seconds": time.perf_counter() - start,
                  "weights_gib": weights / 2**30, "kv_model_gib": tokens * kv_per_token / 2**30,
                  "embeddings_gib": embeds / 2**30,
                  "peak_above_inputs_gib": None if math.isnan(peak) else peak / 2**30,
                  "peak_total_gib": None if math.isnan(total) else total / 2**30}
        atomic_write_text(args.json, json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
