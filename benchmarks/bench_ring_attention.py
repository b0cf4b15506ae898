"""Zigzag ring attention on W gloo processes vs single-process block attention (CPU).

    python benchmarks/bench_ring_attention.py [--lengths 1024,2048,4096] [--world 2]

Forward + backward of causal attention (8 query heads, 2 KV heads, head dim 64, float32). Time is
the wall time of the slowest rank; memory is each process's peak RSS growth during the call
(``VmHWM`` reset through ``/proc/self/clear_refs``), so the ring column is per rank. On 2 CPU
cores two ranks share the machine with each other, so the time ratio mostly shows the overhead of
the ring; the memory ratio is what sequence parallelism buys (target ~1/W).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _status_kib(field):
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _inputs(length, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(1, 8, length, 64, generator=gen)
    k = torch.randn(1, 2, length, 64, generator=gen)
    v = torch.randn(1, 2, length, 64, generator=gen)
    return q, k, v


def _measure(fn):
    import gc

    gc.collect()
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start, max(_status_kib("VmHWM") - before, 0) / 1024


def _single(length, queue):
    from longva_plugins.attention.block import block_attention_backward, block_attention

    torch.set_num_threads(1)
    q, k, v = _inputs(length)

    def run():
        out, lse = block_attention(q, k, v, causal=True)
        block_attention_backward(torch.ones_like(out), q, k, v, out, lse, causal=True)

    queue.put(_measure(run))


def _ring(rank, world, length, store, queue):
    from longva_plugins.attention import zigzag_ring_attention_func
    from longva_plugins.attention.sequence_parallel import zigzag_split

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    q, k, v = (zigzag_split(t, world, rank, dim=2).clone().requires_grad_() for t in _inputs(length))
    dist.barrier()

    def run():
        out, _ = zigzag_ring_attention_func(q, k, v)
        out.backward(torch.ones_like(out))
        dist.barrier()

    queue.put(_measure(run))
    dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="1024,2048,4096")
    parser.add_argument("--world", type=int, default=2)
    args = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    ctx = mp.get_context("spawn")
    table = Table(title=f"Causal attention fwd+bwd, float32: single process vs zigzag ring on {args.world} gloo ranks")
    for col in ("length", "single s", "ring s", "time ratio", "single MiB", "ring MiB/rank", "memory ratio"):
        table.add_column(col, justify="right")
    for length in [int(x) for x in args.lengths.split(",")]:
        queue = ctx.Queue()
        proc = ctx.Process(target=_single, args=(length, queue))
        proc.start()
        single_t, single_m = queue.get()
        proc.join()
        store = os.path.join(tempfile.mkdtemp(), "store")
        queue = ctx.Queue()
        procs = [ctx.Process(target=_ring, args=(r, args.world, length, store, queue)) for r in range(args.world)]
        for p in procs:
            p.start()
        results = [queue.get() for _ in procs]
        for p in procs:
            p.join()
        ring_t = max(t for t, _ in results)
        ring_m = max(m for _, m in results)
        table.add_row(str(length), f"{single_t:.2f}", f"{ring_t:.2f}", f"{single_t / ring_t:.2f}x", f"{single_m:.0f}",
                      f"{ring_m:.0f}", f"{ring_m / max(single_m, 1):.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
