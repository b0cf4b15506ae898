"""V-NIAH grid memory against its model: peak ≈ KV(longest cell) + one chunk's activations +
the embeddings in use.

    python benchmarks/bench_vniah_memory.py [--frames 24,48,96] [--layers 16] [--hidden 256]
    python benchmarks/bench_vniah_memory.py --sequence-parallel 2    (per-rank peak on 2 gloo ranks)

A tiny LongVA with many layers (a large KV cache per token, a small vocabulary) scores a grid of
one frame count x depths (0.2, 0.8) x 2 needles, cells in insertion-index order as the ``longva``
adapter runs them, on a synthetic haystack whose embeddings are cached beforehand. Each frame
count runs in a fresh process; memory is the peak RSS growth during the grid (``VmHWM`` reset
through ``/proc/self/clear_refs``), so the weights do not count. The table gives the measured peak
beside the model's terms and the growth ratio (peak growth / KV growth) between consecutive frame
counts; target ≤ 1.35.

``--sequence-parallel W`` also runs each grid on W gloo processes sharing one KV cache
(``longva_sharded_kv``; every rank runs every cell) and prints each rank's peak growth between
frame counts against the single process's (target ≤ 0.65 for W = 2).

Every measured process runs with glibc's default (adaptive) mmap threshold, as users run it; the
scorer sizes its KV cache for the longest cell first (``reserve``, as the ``longva`` adapter does),
so it is allocated once. ``--heap fixed`` sets ``MALLOC_MMAP_THRESHOLD_=65536`` in the measured
processes instead, to see how much of a peak is freed blocks left in the heap. The whole lmms-eval
process (what a user measures) is ``bench_vniah_lmms_eval.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from _measure import measure  # noqa: E402

DEPTHS = (0.2, 0.8)
NEEDLES = (0, 1)
CHUNK = 1024


def _checkpoint(layers: int, hidden: int) -> str:
    from longva_plugins.testing import make_tiny_checkpoint

    path = os.path.join(tempfile.gettempdir(), f"longva-bench-kv-{layers}x{hidden}")
    if not os.path.isfile(os.path.join(path, "config.json")):
        make_tiny_checkpoint(path, seed=0, num_shards=1, hidden_size=hidden, num_layers=layers)
    return path


def _scorer(layers, hidden, cache_dir, attn):
    from longva_plugins.models.longva import LongVAForCausalLM, LongVAProcessor
    from longva_plugins.vniah.cache import EmbeddingCache
    from longva_plugins.vniah.haystack import SyntheticHaystack
    from longva_plugins.vniah.needles import synthetic_needles
    from longva_plugins.vniah.scoring import VNIAHScorer

    path = _checkpoint(layers, hidden)
    if attn.startswith("longva_"):
        import longva_plugins.attention  # noqa: F401  (registers the ring names)
    model = LongVAForCausalLM.from_pretrained(path, attn_implementation=attn)
    processor = LongVAProcessor.from_pretrained(path)
    return VNIAHScorer(model, processor, SyntheticHaystack(seed=0, size=(48, 64)), synthetic_needles()[:2],
                       "synthetic:v1", cache=EmbeddingCache(cache_dir), prefill_chunk_size=CHUNK)


def _cells(frames):
    from longva_plugins.vniah.grid import cell_order_key

    return sorted(((frames, d, k) for d in DEPTHS for k in NEEDLES), key=lambda c: cell_order_key(*c))


def grid(frames, layers, hidden, cache_dir, attn, setup_only=False, state=None):
    if setup_only:
        scorer = _scorer(layers, hidden, cache_dir, attn)
        scorer.reserve(frames)  # the longest cell to come, as the adapter plans a grid
        scorer.haystack_embeds(frames)  # embeddings on disk already: the grid's cost is the LM
        for k in NEEDLES:
            scorer.needle_embeds(k)
        return scorer
    for cell in _cells(frames):
        state.score(*cell)


def _rank(rank, world, store, queue, frames, layers, hidden, cache_dir):
    import gc

    import torch
    import torch.distributed as dist

    from _measure import _status_kib

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    state = grid(frames, layers, hidden, cache_dir, "longva_sharded_kv", setup_only=True)
    dist.barrier()
    gc.collect()
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    grid(frames, layers, hidden, cache_dir, "longva_sharded_kv", state=state)
    queue.put((rank, max(_status_kib("VmHWM") - before, 0) / 1024.0, state._prefix_cache.stored()))
    dist.barrier()
    dist.destroy_process_group()


def sequence_parallel_peaks(world, frames, layers, hidden, cache_dir) -> list[tuple[int, float, int]]:
    """``(rank, peak MiB growth, KV tokens stored)`` of each of ``world`` gloo ranks running the grid."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    store = os.path.join(tempfile.mkdtemp(), "store")
    procs = [ctx.Process(target=_rank, args=(r, world, store, queue, frames, layers, hidden, cache_dir))
             for r in range(world)]
    for proc in procs:
        proc.start()
    results = []
    while len(results) < world:  # a crashed rank must stop the benchmark, not hang it
        try:
            results.append(queue.get(timeout=5))
        except Exception:
            if any(proc.exitcode not in (None, 0) for proc in procs):
                for proc in procs:
                    proc.terminate()
                raise RuntimeError("a sequence-parallel rank failed; see its traceback above") from None
    for proc in procs:
        proc.join()
    return sorted(results)


def kv_bytes_per_token(layers: int, hidden: int) -> int:
    heads, kv_heads = 4, 2  # make_tiny_checkpoint's
    return 2 * layers * kv_heads * (hidden // heads) * 4  # K and V, float32


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", default="24,48,96")
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--attn", default="longva_ring_zigzag",
                        help="attention of the LM: longva_ring_zigzag (tiled, O(tile^2) per chunk) or sdpa")
    parser.add_argument("--sequence-parallel", type=int, default=1, help="also run on this many gloo ranks")
    parser.add_argument("--heap", choices=("default", "fixed"), default="default",
                        help="fixed: MALLOC_MMAP_THRESHOLD_=65536 in the measured processes (see above)")
    args = parser.parse_args()
    if args.heap == "fixed":  # read by glibc when each (spawned) measured process starts
        os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")
    from rich.console import Console
    from rich.table import Table

    _checkpoint(args.layers, args.hidden)
    cache_dir = tempfile.mkdtemp()
    per_token = kv_bytes_per_token(args.layers, args.hidden)
    table = Table(title=f"V-NIAH grid (depths {DEPTHS} x {len(NEEDLES)} needles), tiny LongVA {args.layers} layers x "
                        f"hidden {args.hidden}, attention {args.attn}: {per_token // 1024} KiB of KV per token")
    for col in ("frames", "tokens (longest cell)", "KV MiB", "embeddings MiB", "model MiB", "measured MiB",
                "s", "growth / KV growth"):
        table.add_column(col, justify="right")
    sp = args.sequence_parallel
    if sp > 1:
        for col in (f"per-rank MiB (x{sp})", "per-rank growth / single growth"):
            table.add_column(col, justify="right")
    previous = None
    for frames in [int(x) for x in args.frames.split(",")]:
        seconds, peak = measure(grid, frames, args.layers, args.hidden, cache_dir, args.attn)
        extra = []
        if sp > 1:
            # its own cache folder: the single process's finished cells must not be served
            ranks = sequence_parallel_peaks(sp, frames, args.layers, args.hidden, f"{cache_dir}-sp{frames}")
            rank_peak = max(p for _, p, _ in ranks)
            Console().print(f"{frames} frames on {sp} ranks: " + ", ".join(
                f"rank {r} peak {p:.0f} MiB, {n} KV tokens" for r, p, n in ranks))
            extra = [f"{rank_peak:.0f}", "-" if previous is None else
                     f"{(rank_peak - previous[2]) / (peak - previous[1]):.2f}"]
        tokens = (frames + 1) * 144 + 64  # frames, needle, and ~64 text tokens
        kv = tokens * per_token / 2**20
        embeds = (frames + 1) * 144 * args.hidden * 4 / 2**20  # the tail and prefix blocks in use
        ratio = "-" if previous is None else f"{(peak - previous[1]) / (kv - previous[0]):.2f}"
        table.add_row(str(frames), str(tokens), f"{kv:.0f}", f"{embeds:.0f}", f"{kv + embeds:.0f}", f"{peak:.0f}",
                      f"{seconds:.1f}", ratio, *extra)
        Console().print(f"{frames} frames: peak {peak:.0f} MiB, KV {kv:.0f} MiB, {seconds:.1f} s")
        previous = (kv, peak, float(extra[0]) if extra else None)
    Console().print(table)


if __name__ == "__main__":
    main()
