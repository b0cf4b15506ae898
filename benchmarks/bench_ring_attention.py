"""One causal attention layer, forward + backward: torch SDPA vs our tiled kernel vs zigzag ring.

    python benchmarks/bench_ring_attention.py [--lengths 4096,8192,16384,32768] [--world 2]
    python benchmarks/bench_ring_attention.py --device cuda --dtype bfloat16 --no-ranks   (GPU)

8 query heads, 2 KV heads, head dim 64, batch 1. Columns: torch's
``scaled_dot_product_attention`` in one process (the anchor), our kernel in one process through
the registered ``longva_ring_zigzag`` function (no group: the tiled kernel), and zigzag ring
attention on W gloo processes. Every measurement runs in a fresh process; time is the wall time
(of the slowest rank), memory the peak growth during the call (CPU: ``VmHWM`` reset through
``/proc/self/clear_refs``; CUDA: ``max_memory_allocated``), per rank for the ring. On 2 CPU cores
the W ranks share the machine, so the ring's time shows its overhead; its memory is what
sequence parallelism buys (target ~1/W).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

HEADS, KV_HEADS, DIM = 8, 2, 64


def _status_kib(field):
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _inputs(length, device, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    shapes = ((1, HEADS, length, DIM), (1, KV_HEADS, length, DIM), (1, KV_HEADS, length, DIM))
    return [torch.randn(*s, generator=gen).to(device, dtype) for s in shapes]


def _measure(fn, device):
    import gc

    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        return time.perf_counter() - start, (torch.cuda.max_memory_allocated() - base) / 2**20
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start, max(_status_kib("VmHWM") - before, 0) / 1024


def _one_process(kind, length, device, dtype, queue):
    torch.set_num_threads(1)
    import longva_plugins.attention  # noqa: F401  (registers the attention names)
    from transformers import AttentionInterface

    q, k, v = (t.requires_grad_() for t in _inputs(length, device, getattr(torch, dtype)))
    if kind == "sdpa":
        def run():
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            out.backward(torch.ones_like(out))
    else:
        attention = AttentionInterface()["longva_ring_zigzag"]

        def run():
            out, _ = attention(None, q, k, v, None, scaling=DIM ** -0.5)
            out.backward(torch.ones_like(out))
    run() if device == "cuda" else None  # CUDA: warm up kernels outside the measurement
    queue.put(_measure(run, device))


def _ring(rank, world, length, store, queue):
    from longva_plugins.attention import zigzag_ring_attention_func
    from longva_plugins.attention.sequence_parallel import zigzag_split

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    q, k, v = (zigzag_split(t, world, rank, dim=2).clone().requires_grad_() for t in _inputs(length, "cpu", torch.float32))
    dist.barrier()

    def run():
        out, _ = zigzag_ring_attention_func(q, k, v)
        out.backward(torch.ones_like(out))
        dist.barrier()

    queue.put(_measure(run, "cpu"))
    dist.destroy_process_group()


def _spawn(ctx, target, args_list):
    queue = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, queue)) for args in args_list]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return max(t for t, _ in results), max(m for _, m in results)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="4096,8192,16384,32768")
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--no-ranks", action="store_true", help="skip the gloo ring column")
    args = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    ctx = mp.get_context("spawn")
    console = Console()
    table = Table(title=f"Causal attention fwd+bwd ({HEADS} heads, {KV_HEADS} KV heads, dim {DIM}, {args.dtype}, "
                        f"{args.device}): time s / peak MiB")
    cols = ["length", "SDPA s", "ours s", "ours/SDPA time", "SDPA MiB", "ours MiB", "ours/SDPA mem"]
    if not args.no_ranks:
        cols += [f"ring x{args.world} s", f"ring MiB/rank", "ring/ours mem"]
    for col in cols:
        table.add_column(col, justify="right")
    for length in [int(x) for x in args.lengths.split(",")]:
        st, sm = _spawn(ctx, _one_process, [("sdpa", length, args.device, args.dtype)])
        ot, om = _spawn(ctx, _one_process, [("ours", length, args.device, args.dtype)])
        row = [str(length), f"{st:.2f}", f"{ot:.2f}", f"{ot / st:.2f}x", f"{sm:.0f}", f"{om:.0f}", f"{om / max(sm, 1):.2f}x"]
        if not args.no_ranks:
            store = os.path.join(tempfile.mkdtemp(), "store")
            rt, rm = _spawn(ctx, _ring, [(r, args.world, length, store) for r in range(args.world)])
            row += [f"{rt:.2f}", f"{rm:.0f}", f"{rm / max(om, 1):.2f}x"]
        console.print(" | ".join(row))
        table.add_row(*row)
    console.print(table)


if __name__ == "__main__":
    main()
