"""V-NIAH memory of the user's whole run: ``lmms-eval --model longva --tasks vniah`` per frame count.

    python benchmarks/bench_vniah_lmms_eval.py [--frames 24,48,96] [--layers 16] [--hidden 256] [--limit 4]
                                               [--sequence-parallel 2]

What a user measures with ``/usr/bin/time -v``: each frame count runs the real lmms-eval CLI in a
fresh process (``LONGVA_VNIAH_GRID="frames=N:N:1;depths=0.2,0.8"``, ``--limit``, its own empty
cache folder, default allocator settings, nothing set that the user would not set), and its
peak resident set size is read from the kernel (``wait4``'s ``ru_maxrss``: the process's whole
life, model load included). The KV cache of the longest cell is computed from the checkpoint's
config (float32, ``(frames + 1) * 144`` tokens). Printed: peak, KV, and the growth ratio
``(peak growth) / (KV growth)`` between consecutive frame counts (target <= 1.35: what grows with
the frame count is the KV cache, not copies, masks or heap holes).

With ``--sequence-parallel W`` each frame count also runs as the user runs sequence parallelism,
``torchrun --nproc_per_node W -m lmms_eval ... --model_args ...,sequence_parallel=W`` on CPU/gloo,
each rank's peak read the same way (``_rank_peak.py`` is its parent); printed is the largest
rank's peak and ``(per-rank peak growth) / (single-process peak growth)`` between consecutive
frame counts, and the same ratio over the whole span (first to last frame count: the growth is
largest there, so the heap's run-to-run noise of ~10-20 MiB weighs least). Target <= 0.65 at
W = 2: the KV cache is split, so each rank's memory should grow about half as fast.

The scorer-level benchmark (``bench_vniah_memory.py``) measures the grid alone; this one is the
number a user sees.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _checkpoint(layers: int, hidden: int) -> str:
    from longva_plugins.testing import make_tiny_checkpoint

    path = os.path.join(tempfile.gettempdir(), f"longva-bench-kv-{layers}x{hidden}")
    if not os.path.isfile(os.path.join(path, "config.json")):
        make_tiny_checkpoint(path, seed=0, num_shards=1, hidden_size=hidden, num_layers=layers)
    return path


def kv_mib(checkpoint: str, frames: int) -> float:
    """float32 K and V of the longest cell's ``(frames + 1) * tokens_per_frame`` visual tokens."""
    config = json.loads(Path(checkpoint, "config.json").read_text())
    head_dim = config["hidden_size"] // config["num_attention_heads"]
    per_token = 2 * config["num_hidden_layers"] * config["num_key_value_heads"] * head_dim * 4
    tokens_per_frame = (24 // config.get("mm_spatial_pool_stride", 2)) ** 2
    return (frames + 1) * tokens_per_frame * per_token / 2**20


def run_lmms_eval(checkpoint: str, frames: int, limit: int, extra_args: str = "",
                  world: int = 1) -> tuple[list[float], float, int]:
    """``([peak RSS MiB of each process], seconds, exit status)`` of one ``lmms-eval`` run: one
    process, or ``world`` ranks under ``torchrun`` (each rank's own peak, rank order)."""
    work = tempfile.mkdtemp(prefix=f"vniah-bench-{frames}-")
    env = dict(os.environ, LONGVA_VNIAH_CACHE=os.path.join(work, "cache"),
               LONGVA_VNIAH_GRID=f"frames={frames}:{frames}:1;depths=0.2,0.8",
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    model_args = f"pretrained={checkpoint}" + (f",{extra_args}" if extra_args else "")
    if world > 1:
        model_args += f",sequence_parallel={world},device=cpu"
    exe = os.path.join(os.path.dirname(sys.executable), "lmms-eval")
    cmd = [exe, "--model", "longva", "--model_args", model_args, "--tasks", "vniah", "--limit", str(limit),
           "--output_path", os.path.join(work, "out")]
    peaks_at = os.path.join(work, "peak")
    if world > 1:  # each rank is the child of a _rank_peak.py that reads its peak, as time -v would
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(world),
               str(Path(__file__).with_name("_rank_peak.py")), peaks_at, "--", *cmd]
    start = time.perf_counter()
    with open(os.path.join(work, "log.txt"), "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code == 0 and not list(Path(work, "out").rglob("*results.json")):
        code = -1  # lmms-eval logs an error raised during evaluation and still exits 0
    if code:
        print(f"lmms-eval failed (exit status {code}, -1: no results file); log: {work}/log.txt", file=sys.stderr)
    if world == 1:
        return [usage.ru_maxrss / 1024], seconds, code
    peaks = [float(Path(f"{peaks_at}.{rank}").read_text()) if Path(f"{peaks_at}.{rank}").is_file() else float("nan")
             for rank in range(world)]
    return peaks, seconds, code


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", default="24,48,96")
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--limit", type=int, default=4)
    parser.add_argument("--model-args", default="", help="extra model_args, e.g. attn_implementation=sdpa")
    parser.add_argument("--sequence-parallel", type=int, default=1, metavar="W",
                        help="also run each frame count under torchrun on W CPU ranks with sequence_parallel=W "
                             "and compare each rank's peak growth with the single process's")
    args = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    checkpoint = _checkpoint(args.layers, args.hidden)
    world = args.sequence_parallel
    table = Table(title=f"lmms-eval --model longva --tasks vniah --limit {args.limit}, tiny LongVA {args.layers} "
                        f"layers x hidden {args.hidden} (fp32){', ' + args.model_args if args.model_args else ''}: "
                        "peak RSS of the whole process, default allocator")
    columns = ["frames", "KV MiB (longest cell)", "peak RSS MiB", "s", "peak growth / KV growth"]
    if world > 1:
        columns += [f"per-rank peak MiB ({world} ranks)", "s (ranks)", "per-rank growth / single growth"]
    for col in columns:
        table.add_column(col, justify="right")
    previous = first = None
    for frames in [int(x) for x in args.frames.split(",")]:
        (peak,), seconds, code = run_lmms_eval(checkpoint, frames, args.limit, args.model_args)
        kv = kv_mib(checkpoint, frames)
        row = [str(frames), f"{kv:.0f}", f"{peak:.0f}" + ("" if code == 0 else f" (exit {code})"), f"{seconds:.0f}",
               "-" if previous is None or code else f"{(peak - previous[1]) / (kv - previous[0]):.2f}"]
        Console().print(f"{frames} frames: peak RSS {peak:.0f} MiB, KV {kv:.0f} MiB, {seconds:.0f} s")
        rank_peak = float("nan")
        if world > 1:
            ranks, rank_seconds, rank_code = run_lmms_eval(checkpoint, frames, args.limit, args.model_args, world)
            rank_peak = max(ranks)  # the rank that needs the most memory sizes the machine
            growth = "-" if previous is None or code or rank_code else \
                f"{(rank_peak - previous[2]) / (peak - previous[1]):.2f}"
            row += [" / ".join(f"{p:.0f}" for p in ranks) + ("" if rank_code == 0 else f" (exit {rank_code})"),
                    f"{rank_seconds:.0f}", growth]
            Console().print(f"{frames} frames, {world} ranks: per-rank peak RSS "
                            + ", ".join(f"{p:.0f}" for p in ranks) + f" MiB, {rank_seconds:.0f} s")
        table.add_row(*row)
        first = first or (frames, peak, rank_peak)
        previous = (kv, peak, rank_peak)
    Console().print(table)
    if world > 1 and previous and first and previous[1] != first[1]:  # the whole span: the least noisy ratio
        Console().print(f"{first[0]} -> {frames} frames: per-rank growth / single growth "
                        f"{(previous[2] - first[2]) / (previous[1] - first[1]):.2f}")


if __name__ == "__main__":
    main()
