"""V-NIAH cell cost: chunked answer-only scoring vs a plain full forward, and the embedding cache.

    python benchmarks/bench_vniah.py [--frames 10,25,50] [--vocab 152064] [--grid-frames 8]

Table 1: peak memory and time of scoring one cell (haystack embeddings given) with the chunked
prefill + logits only at the answer span, against one forward over the whole sequence with
full-vocabulary float32 logits at every position (what the reference's ``eval_forward`` does).
Table 2: a grid (2 frame counts x 5 depths x 5 needles) on a video haystack (an mp4 sampled at
1 FPS, as in the paper): our path (embedding cache + the KV cache of the shared prefix before the
needle, cropped per cell) against the naive loop that decodes, encodes and runs every cell's whole
sequence. Measurements run in separate processes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from _measure import measure  # noqa: E402
from bench_model_chunked import _checkpoint  # noqa: E402


def _scorer(vocab, cache_dir):
    from longva_plugins.models.longva import LongVAForCausalLM, LongVAProcessor
    from longva_plugins.vniah.cache import EmbeddingCache
    from longva_plugins.vniah.haystack import SyntheticHaystack
    from longva_plugins.vniah.needles import synthetic_needles
    from longva_plugins.vniah.scoring import VNIAHScorer

    path = _checkpoint(vocab)
    model = LongVAForCausalLM.from_pretrained(path)
    processor = LongVAProcessor.from_pretrained(path)
    return VNIAHScorer(model, processor, SyntheticHaystack(seed=0, size=(64, 96)), synthetic_needles(), "synthetic:v1",
                       cache=EmbeddingCache(cache_dir), prefill_chunk_size=2048)


def _cell_inputs(num_frames, vocab):
    import torch

    scorer = _scorer(vocab, tempfile.mkdtemp())
    block = scorer.cell_block(num_frames, 0.5, 0)
    prompt = scorer.prompt_embeds(block, scorer.needles[0].question)
    answer = scorer.processor.tokenize(scorer.needles[0].answer)
    return scorer.model, prompt, answer, torch


def cell_chunked(num_frames, vocab, setup_only=False, state=None):
    if setup_only:
        return _cell_inputs(num_frames, vocab)
    model, prompt, answer, torch = state
    model.score_continuation(prompt, answer, chunk_size=2048)


def cell_full(num_frames, vocab, setup_only=False, state=None):
    if setup_only:
        return _cell_inputs(num_frames, vocab)
    model, prompt, answer, torch = state
    with torch.no_grad():
        embeds = torch.cat([prompt, model.get_input_embeddings()(answer).unsqueeze(0)], dim=1)
        logits = model(inputs_embeds=embeds).logits.float()  # (1, L, V) like eval_forward
        logits.argmax(-1)


def _haystack_video(seconds: int) -> str:
    from bench_video_decode import make_video

    return make_video(os.path.join(tempfile.gettempdir(), f"longva-bench-haystack-{seconds}s.mp4"), seconds, gop=24)


def grid_run(frames, use_cache, vocab, setup_only=False, state=None):
    from longva_plugins.vniah.haystack import VideoHaystack

    video = _haystack_video(frames + 2)
    if setup_only:
        scorer = _scorer(vocab, tempfile.mkdtemp())
        scorer.haystack = VideoHaystack(video)
        return scorer
    scorer = state
    scorer.reuse_prefix = use_cache
    depths, needles = (0.0, 0.25, 0.5, 0.75, 1.0), range(5)
    for n in (frames // 2, frames):
        for d in depths:
            for k in needles:
                if not use_cache:  # the naive loop: decode, encode and run the whole sequence per cell
                    scorer.haystack = VideoHaystack(video)
                    scorer.cache = type(scorer.cache)(tempfile.mkdtemp())
                    scorer.store = type(scorer.store)(tempfile.mkdtemp())
                scorer.score(n, d, k)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", default="10,25,50")
    parser.add_argument("--vocab", type=int, default=152064)
    parser.add_argument("--grid-frames", type=int, default=32)
    args = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    _checkpoint(args.vocab)
    console = Console()
    table = Table(title=f"One V-NIAH cell, tiny LongVA with vocab {args.vocab}, 1 thread")
    for col in ("frames", "full s", "chunked s", "full MiB", "chunked MiB", "memory ratio"):
        table.add_column(col, justify="right")
    for n in [int(x) for x in args.frames.split(",")]:
        ft, fm = measure(cell_full, n, args.vocab)
        ct, cm = measure(cell_chunked, n, args.vocab)
        table.add_row(str(n), f"{ft:.2f}", f"{ct:.2f}", f"{fm:.0f}", f"{cm:.0f}", f"{fm / max(cm, 1):.1f}x")
    console.print(table)
    _haystack_video(args.grid_frames + 2)
    grid = Table(title=f"Grid on an mp4 haystack: {args.grid_frames // 2} and {args.grid_frames} frames x 5 depths x 5 needles")
    for col in ("naive s", "cached s", "speed-up"):
        grid.add_column(col, justify="right")
    slow, _ = measure(grid_run, args.grid_frames, False, args.vocab)
    fast, _ = measure(grid_run, args.grid_frames, True, args.vocab)
    grid.add_row(f"{slow:.2f}", f"{fast:.2f}", f"{slow / fast:.1f}x")
    console.print(grid)


if __name__ == "__main__":
    main()
