"""V-NIAH cell cost: chunked answer-only scoring vs a plain full forward, and the embedding cache.

    python benchmarks/bench_vniah.py [--frames 10,25,50] [--vocab 152064] [--grid-frames 8]

Table 1: peak memory and time of scoring one cell (haystack embeddings given) with the chunked
prefill + logits only at the answer span, against one forward over the whole sequence with
full-vocabulary float32 logits at every position (what the reference's ``eval_forward`` does).
Table 2: a grid (2 frame counts x 5 depths x 5 needles) on a video haystack (an mp4 sampled at
1 FPS, as in the paper): our path (embedding cache + the KV cache of the shared prefix before the
needle, cropped per cell) against the naive loop that decodes, encodes and runs every cell's whole
sequence. Table 3: the grid against the reference's own loop on the same cached embeddings and the
same model (16 layers x hidden 256, vocabulary 512, so the LM dominates, not the logits): the
original computes every cell as one full forward over ``[prefix | haystack with the needle |
question | answer]`` with logits at every position (``eval_forward``); ours scores the cells in
insertion-index order on one KV cache. Both must give the same outcome for every cell (checked).
The two bound columns say what any exact sharing of this grid's computation can gain: the ratio of
tokens prefilled (reached where the linear layers dominate the cost) and of causal-attention work
(where attention dominates: long contexts); the measured speed-up lies between them.
Measurements run in separate processes.
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


DEPTHS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def _grid_scorer(cache_dir):
    from bench_vniah_memory import _checkpoint as kv_checkpoint

    from longva_plugins.models.longva import LongVAForCausalLM, LongVAProcessor
    from longva_plugins.vniah.cache import EmbeddingCache
    from longva_plugins.vniah.haystack import SyntheticHaystack
    from longva_plugins.vniah.needles import synthetic_needles
    from longva_plugins.vniah.scoring import VNIAHScorer

    path = kv_checkpoint(16, 256)
    from longva_plugins.attention import CAUSAL  # the adapter's default on CPU, for both loops

    model = LongVAForCausalLM.from_pretrained(path, attn_implementation=CAUSAL)
    processor = LongVAProcessor.from_pretrained(path)
    model.valid_vocab_size = len(processor)
    return VNIAHScorer(model, processor, SyntheticHaystack(seed=0, size=(48, 64)), synthetic_needles()[:2],
                       "synthetic:v1", cache=EmbeddingCache(cache_dir))


def _grid_cells(frames_list):
    from longva_plugins.vniah.grid import cell_order_key

    cells = [(n, d, k) for n in frames_list for d in DEPTHS for k in range(2)]
    return sorted(cells, key=lambda c: cell_order_key(*c))


def grid_vs_reference(frames_list, mode, cache_dir, out_file, setup_only=False, state=None):
    """``mode``: ``ours`` (one KV cache, insertion-index order) or ``reference`` (a full forward per cell)."""
    import json

    import torch

    if setup_only:
        scorer = _grid_scorer(cache_dir)
        scorer.haystack_embeds(max(frames_list))  # cached embeddings, as both loops start from
        for k in range(2):
            scorer.needle_embeds(k)
        scorer.reserve(max(frames_list))
        return scorer
    scorer, outcomes = state, {}
    model = scorer.model
    for n, d, k in _grid_cells(frames_list):
        if mode == "ours":
            correct = scorer.score(n, d, k)["correct"]
        else:
            needle = scorer.needles[k]
            answer = scorer.processor.tokenize(needle.answer)
            with torch.no_grad():
                prompt = scorer.prompt_embeds(scorer.cell_block(n, d, k), needle.question)
                full = torch.cat([prompt, model.get_input_embeddings()(answer).unsqueeze(0)], dim=1)
                logits = model(inputs_embeds=full).logits.float()  # (1, L, V) at every position
                p = prompt.shape[1]
                pred = model.masked_argmax(logits[0, p - 1:p - 1 + answer.numel()])
            correct = int(bool((pred == answer).all()))
        outcomes[f"{n}/{d}/{k}"] = correct
    with open(out_file, "w") as handle:
        json.dump(outcomes, handle)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", default="10,25,50")
    parser.add_argument("--vocab", type=int, default=152064)
    parser.add_argument("--grid-frames", type=int, default=32)
    parser.add_argument("--reference-frames", default="32,64", help="frame counts of the grid vs reference loop")
    parser.add_argument("--only-reference", action="store_true", help="run table 3 only")
    args = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if args.only_reference:
        return reference_table(console, [int(x) for x in args.reference_frames.split(",")])
    _checkpoint(args.vocab)
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
    reference_table(console, [int(x) for x in args.reference_frames.split(",")])


def sharing_bounds(frames_list) -> tuple[float, float]:
    """What exact sharing can save on this grid: reference / ours in tokens prefilled (the bound
    where linear layers dominate) and in causal-attention work, ``sum (end^2 - start^2) / 2`` over
    the spans each loop computes (the bound where attention dominates). Frames as units."""
    from longva_plugins.vniah.grid import insertion_index

    ref_tokens = ref_attention = 0.0
    spans = []  # (start, end) of every span our loop prefills
    prefix = 0
    held = None
    for n, d, k in _grid_cells(frames_list):
        length = n + 1
        ref_tokens += length
        ref_attention += length ** 2 / 2
        idx = insertion_index(d, n)
        if held is not None and held[:2] == (idx, k) and held[2] <= n:
            spans.append((idx + 1 + held[2] - idx, length))
        else:
            if idx > prefix:
                spans.append((prefix, idx))
                prefix = idx
            spans.append((idx, length))
        held = (idx, k, n)
    ours_tokens = sum(b - a for a, b in spans)
    ours_attention = sum((b * b - a * a) / 2 for a, b in spans)
    return ref_tokens / ours_tokens, ref_attention / ours_attention


def reference_table(console, frames_list):
    import json

    from rich.table import Table

    cache_dir = tempfile.mkdtemp()
    table = Table(title=f"Grid {frames_list} frames x {len(DEPTHS)} depths x 2 needles on cached embeddings, "
                        "16 layers x 256: the reference's loop (a full forward per cell) vs ours (one KV cache)")
    for col in ("cells", "reference s", "ours s", "speed-up", "bound: tokens", "bound: attention", "reference MiB",
                "ours MiB", "same outcomes"):
        table.add_column(col, justify="right")
    files = {mode: os.path.join(cache_dir, f"{mode}.json") for mode in ("reference", "ours")}
    # each run gets its own copy of the embeddings folder state: the cell store of one must not serve the other
    ref_t, ref_m = measure(grid_vs_reference, frames_list, "reference", os.path.join(cache_dir, "ref"), files["reference"])
    our_t, our_m = measure(grid_vs_reference, frames_list, "ours", os.path.join(cache_dir, "ours"), files["ours"])
    outcomes = {mode: json.loads(open(path).read()) for mode, path in files.items()}
    same = outcomes["reference"] == outcomes["ours"]
    token_bound, attention_bound = sharing_bounds(frames_list)
    table.add_row(str(len(outcomes["ours"])), f"{ref_t:.1f}", f"{our_t:.1f}", f"{ref_t / our_t:.2f}x",
                  f"{token_bound:.2f}x", f"{attention_bound:.2f}x", f"{ref_m:.0f}", f"{our_m:.0f}",
                  "yes" if same else "NO")
    console.print(table)
    if not same:
        raise SystemExit("the two loops disagree on some cell")


if __name__ == "__main__":
    main()
