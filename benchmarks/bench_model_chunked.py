"""Chunked long-video path vs a plain full forward, on the tiny LongVA, at growing frame counts.

    python benchmarks/bench_model_chunked.py [--frames 10,25,50] [--chunk 2048] [--vocab 152064]

"chunked" = chunked CLIP encoding + chunked prefill over a KV cache + logits only at the last
position (what generation needs). "full" = all frames through CLIP at once and one forward over
the whole sequence producing full-vocabulary logits at every position. Each measurement runs in
its own process; memory is the growth of peak RSS during the call. The tiny model gets LongVA-7B's
vocabulary size (152064) by default, because full-vocabulary logits (L x V float32) are what makes
the plain path blow up on long videos; with a 512-token toy vocabulary the LM's own activations
dominate and chunking buys nothing on CPU.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from _measure import measure  # noqa: E402


def _checkpoint(vocab):
    import tempfile
    from pathlib import Path

    from longva_plugins.testing import make_tiny_checkpoint

    path = Path(tempfile.gettempdir()) / f"longva-bench-tiny-vocab{vocab}"
    if not (path / "config.json").is_file():
        make_tiny_checkpoint(path, vocab_size=vocab, num_shards=1)
    return path


def _inputs(num_frames, vocab):
    import numpy as np
    import torch

    from longva_plugins.models.longva import LongVAForCausalLM, LongVAProcessor

    path = _checkpoint(vocab)
    model = LongVAForCausalLM.from_pretrained(path)
    processor = LongVAProcessor.from_pretrained(path)
    frames = np.random.default_rng(0).integers(0, 255, (num_frames, 336, 336, 3), dtype=np.uint8)
    pixels = processor.preprocess_frames(frames)
    ids = processor.tokenize(processor.build_prompt("What happens in the video?"))
    return model, pixels, ids, torch


def run_chunked(num_frames, chunk, vocab, setup_only=False, state=None):
    if setup_only:
        return _inputs(num_frames, vocab)
    model, pixels, ids, torch = state
    with torch.no_grad():
        visual = model.encode_video(pixels, chunk_size=16)
        embeds = model.embed_multimodal(ids, [visual])
        model.prefill(embeds, chunk_size=chunk)


def run_full(num_frames, chunk, vocab, setup_only=False, state=None):
    if setup_only:
        return _inputs(num_frames, vocab)
    model, pixels, ids, torch = state
    with torch.no_grad():
        visual = model.encode_video(pixels, chunk_size=len(pixels))
        embeds = model.embed_multimodal(ids, [visual])
        model(inputs_embeds=embeds).logits.float()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", default="10,25,50")
    parser.add_argument("--chunk", type=int, default=2048)
    parser.add_argument("--vocab", type=int, default=152064, help="vocabulary size of the tiny model")
    args = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    _checkpoint(args.vocab)
    table = Table(title=f"LongVA tiny (vocab {args.vocab}): chunked path vs full forward, 1 thread")
    for col in ("frames", "tokens", "full s", "chunked s", "time ratio", "full MiB", "chunked MiB", "memory ratio"):
        table.add_column(col, justify="right")
    for n in [int(x) for x in args.frames.split(",")]:
        full_t, full_m = measure(run_full, n, args.chunk, args.vocab)
        chunk_t, chunk_m = measure(run_chunked, n, args.chunk, args.vocab)
        table.add_row(str(n), str(n * 144 + 30), f"{full_t:.2f}", f"{chunk_t:.2f}", f"{full_t / chunk_t:.2f}x",
                      f"{full_m:.0f}", f"{chunk_m:.0f}", f"{full_m / max(chunk_m, 1):.1f}x")
    Console().print(table)


if __name__ == "__main__":
    main()
