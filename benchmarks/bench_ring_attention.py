"""One causal attention layer, forward + backward: torch SDPA vs our tiled kernel vs zigzag ring.

    python benchmarks/bench_ring_attention.py [--lengths 4096,8192,16384,32768] [--world 2]
    python benchmarks/bench_ring_attention.py --layer decoder     (a whole Qwen2 decoder layer)
    python benchmarks/bench_ring_attention.py --device cuda --dtype bfloat16 --no-ranks   (GPU)

8 query heads, 2 KV heads, head dim 64, batch 1. Every column calls the attention the way a
transformers model does, through ``AttentionInterface`` (output transposed to ``(B, L, H, D)``):
transformers' ``sdpa`` in one process (the anchor), our kernel in one process through the
registered ``longva_ring_zigzag`` function (no group: the tiled kernel), and the same name on W
gloo processes (the default group: zigzag ring attention over each rank's zigzag shard). Every measurement runs in a fresh process; time is the wall time
(of the slowest rank), memory the peak growth during the call (CPU: ``VmHWM`` reset through
``/proc/self/clear_refs``; CUDA: ``max_memory_allocated``), per rank for the ring. On 2 CPU cores
the W ranks share the machine, so the ring's time shows its overhead; its memory is what
sequence parallelism buys (target ~1/W).

``--layer decoder`` measures a whole Qwen2 decoder layer instead (hidden 512, MLP 1376, RMSNorm,
rotary positions; the zigzag shard carries its global positions): what a model pays per layer.
The attention op alone keeps, per rank, the ring's K/V and dK/dV travel buffers (about four
local K/V pairs) beside its ``1/W`` share, so its ratio stays above 1/W; in a layer the
activations that shard perfectly dominate.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from queue import Empty

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

HEADS, KV_HEADS, DIM = 8, 2, 64
HIDDEN, MLP = HEADS * DIM, 1376


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


def _decoder_call(name, length, device, dtype, world=1, rank=0, after=None):
    """Forward + backward of one Qwen2 decoder layer over this rank's (zigzag) shard."""
    from transformers import Qwen2Config
    from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer, Qwen2RotaryEmbedding

    from longva_plugins.attention.sequence_parallel import zigzag_split

    config = Qwen2Config(hidden_size=HIDDEN, intermediate_size=MLP, num_attention_heads=HEADS,
                         num_key_value_heads=KV_HEADS, num_hidden_layers=1, max_position_embeddings=2 * length)
    config._attn_implementation = name
    torch.manual_seed(0)
    layer = Qwen2DecoderLayer(config, layer_idx=0).to(device, dtype)
    rotary = Qwen2RotaryEmbedding(config).to(device)
    positions = torch.arange(length, device=device).unsqueeze(0)
    hidden = torch.randn(1, length, HIDDEN, generator=torch.Generator().manual_seed(1)).to(device, dtype)
    if world > 1:
        positions, hidden = zigzag_split(positions, world, rank), zigzag_split(hidden, world, rank)
    hidden = hidden.contiguous().requires_grad_()
    position_embeddings = rotary(hidden, positions)

    def run():
        out = layer(hidden, attention_mask=None, position_ids=positions, position_embeddings=position_embeddings)
        out = out[0] if isinstance(out, tuple) else out
        out.backward(torch.ones_like(out))
        after() if after else None

    return run


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


def _one_process(kind, layer, length, device, dtype, queue):
    torch.set_num_threads(1)
    import longva_plugins.attention  # noqa: F401  (registers the attention names)

    name = {"sdpa": "sdpa", "flash": "flash_attention_2"}.get(kind, "longva_ring_zigzag")
    if layer == "decoder":
        run = _decoder_call(name, length, device, getattr(torch, dtype))
    else:
        q, k, v = (t.requires_grad_() for t in _inputs(length, device, getattr(torch, dtype)))
        run = _layer_call(name, q, k, v)
    run() if device == "cuda" else None  # CUDA: warm up kernels outside the measurement
    queue.put(_measure(run, device))


def _layer_call(name, q, k, v, after=None):
    """Forward + backward of the registered attention ``name`` as a causal Qwen2 layer calls it."""
    from types import SimpleNamespace

    from transformers import AttentionInterface

    attention = AttentionInterface()[name]
    module = SimpleNamespace(is_causal=True, num_key_value_groups=HEADS // KV_HEADS, training=True)

    def run():
        out, _ = attention(module, q, k, v, None, scaling=DIM ** -0.5)
        out.backward(torch.ones_like(out))
        after() if after else None

    return run


def _ring(rank, world, layer, length, store, queue):
    import longva_plugins.attention  # noqa: F401  (registers the attention names)
    from longva_plugins.attention.sequence_parallel import zigzag_split

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    if layer == "decoder":
        run = _decoder_call("longva_ring_zigzag", length, "cpu", torch.float32, world, rank, after=dist.barrier)
    else:
        q, k, v = (zigzag_split(t, world, rank, dim=2).clone().requires_grad_()
                   for t in _inputs(length, "cpu", torch.float32))
        run = _layer_call("longva_ring_zigzag", q, k, v, after=dist.barrier)
    dist.barrier()
    queue.put(_measure(run, "cpu"))
    dist.destroy_process_group()


def _spawn(ctx, target, args_list):
    queue = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, queue)) for args in args_list]
    for p in procs:
        p.start()
    results = []
    while len(results) < len(procs):  # a crashed child must stop the benchmark, not hang it
        try:
            results.append(queue.get(timeout=5))
        except Empty:
            failed = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if failed:
                for p in procs:
                    p.terminate()
                raise RuntimeError(f"a measurement process failed (exit codes {failed}); see its traceback above")
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
    parser.add_argument("--layer", choices=("attention", "decoder"), default="attention",
                        help="the attention op alone, or a whole Qwen2 decoder layer around it")
    parser.add_argument("--json", help="also write the rows to this JSON file (benchmarks/gpu_check.py reads it)")
    args = parser.parse_args()
    flash = args.device == "cuda" and args.dtype in ("bfloat16", "float16") and _importable("flash_attn")
    from rich.console import Console
    from rich.table import Table

    ctx = mp.get_context("spawn")
    console = Console()
    what = "Causal attention" if args.layer == "attention" else f"Qwen2 decoder layer (hidden {HIDDEN}, MLP {MLP})"
    table = Table(title=f"{what} fwd+bwd ({HEADS} heads, {KV_HEADS} KV heads, dim {DIM}, {args.dtype}, "
                        f"{args.device}): time s / peak MiB")
    cols = ["length", "SDPA s", "ours s", "ours/SDPA time", "SDPA MiB", "ours MiB", "ours/SDPA mem"]
    cols += ["flash_attention_2 s", "ours/flash time"] if flash else []
    if not args.no_ranks:
        cols += [f"ring x{args.world} s", "ring MiB/rank", "ring/ours mem"]
    for col in cols:
        table.add_column(col, justify="right")
    records = []
    for length in [int(x) for x in args.lengths.split(",")]:
        st, sm = _spawn(ctx, _one_process, [("sdpa", args.layer, length, args.device, args.dtype)])
        ot, om = _spawn(ctx, _one_process, [("ours", args.layer, length, args.device, args.dtype)])
        row = [str(length), f"{st:.2f}", f"{ot:.2f}", f"{ot / st:.2f}x", f"{sm:.0f}", f"{om:.0f}", f"{om / max(sm, 1):.2f}x"]
        record = {"length": length, "sdpa_s": st, "ours_s": ot, "sdpa_mib": sm, "ours_mib": om}
        if flash:
            ft, fm = _spawn(ctx, _one_process, [("flash", args.layer, length, args.device, args.dtype)])
            row += [f"{ft:.2f}", f"{ot / ft:.2f}x"]
            record.update(flash_s=ft, flash_mib=fm)
        if not args.no_ranks:
            store = os.path.join(tempfile.mkdtemp(), "store")
            rt, rm = _spawn(ctx, _ring, [(r, args.world, args.layer, length, store) for r in range(args.world)])
            row += [f"{rt:.2f}", f"{rm:.0f}", f"{rm / max(om, 1):.2f}x"]
            record.update(ring_s=rt, ring_mib_per_rank=rm, world=args.world)
        console.print(" | ".join(row))
        table.add_row(*row)
        records.append(record)
    console.print(table)
    if args.json:
        from longva_plugins.fileio import atomic_write_text

        meta = {"layer": args.layer, "device": args.device, "dtype": args.dtype, "heads": HEADS, "kv_heads": KV_HEADS,
                "dim": DIM, "flash": flash}
        atomic_write_text(args.json, json.dumps({**meta, "rows": records}, indent=2))


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    main()
