"""The GPU checks in one call, with a report: what benchmarks/gpu_check.sh runs after it has put the
carried wheels on PYTHONPATH.

    python benchmarks/gpu_check.py --out DIR              # on a CUDA machine (about 8 minutes)
    python benchmarks/gpu_check.py --out DIR --dry-run    # the same path on CPU, small sizes
    python benchmarks/gpu_check.py --write-cpu-reference  # refresh benchmarks/data/nano_vniah_cpu.json

Steps, each in its own process with its own time limit (a step that fails or runs out of time is
reported as such and the others still run):

1. ``environment``: python, torch, transformers, CUDA device(s), flash-attn, and where each carried
   distribution was imported from (the ``--target`` folder, or the machine's own site-packages).
2. ``gpu_tests``: ``pytest -m gpu`` (on CPU they are collected and skipped).
3. ``ring``: ``bench_ring_attention.py``: SDPA vs our kernel (and flash_attention_2 where
   flash-attn imports), bf16 at 4K/16K/64K tokens on CUDA; float32 at 512/1K on CPU.
4. ``nano_vniah``: LongVA-nano through ``lmms-eval --model longva --tasks vniah`` on the demo's grid,
   CUDA bf16 and float32, each cell compared with the CPU float32 scores in
   ``benchmarks/data/nano_vniah_cpu.json`` (dry run: CPU float32 on two of the grid's frame counts,
   which must agree cell for cell).
5. ``vniah_cell``: one V-NIAH cell of a random model with LongVA-7B's shapes (bf16) at 1,000 and
   3,000 frames, peak memory against the memory model of docs/vniah.md (15.7 GiB + 8.9 MiB per frame);
   the tiny shapes at 8 frames on CPU.
6. ``training_step``: one LoRA step (bf16 base, activation checkpointing) of a random model with
   LongVA-7B's shapes on a 64- and a 128-frame sample, peak memory against the training memory
   model (``longva_plugins.training.memory``, docs/training.md); the tiny shapes at 4 frames on CPU.
7. ``training_engines``: two training steps of the tiny LongVA through ``longva-plugins train`` on
   each engine -- DDP, FSDP (``torchrun``, one process), DeepSpeed ZeRO-2 and QLoRA where deepspeed /
   bitsandbytes import (else skipped, with the reason); the dry run runs the DDP case on CPU.
8. ``sequence_parallel``: needs two or more GPUs; skipped (and said so) on fewer.

Writes ``report.json``, ``report.md`` and ``gpu_check.log`` (every step's output) into ``--out``.
Exit status: 0 when every step that ran passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
from longva_plugins.cli.demo import NANO_GRID  # noqa: E402  (the demo's grid)
from longva_plugins.fileio import atomic_write_text  # noqa: E402

CPU_REFERENCE = ROOT / "benchmarks" / "data" / "nano_vniah_cpu.json"
DRY_GRID = "frames=10:70:60;depths=0,0.2,0.4,0.6,0.8,1"  # two of its frame counts
#: docs/vniah.md "Paper scale, on paper": weights + chunk activations, and KV + embeddings per frame.
MEMORY_MODEL_GIB, MEMORY_PER_FRAME_MIB = 15.7, 8.9
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


class Check:
    def __init__(self, out: Path, dry_run: bool):
        self.out, self.dry_run = out, dry_run
        self.work = Path(tempfile.mkdtemp(prefix="longva-gpu-check-"))
        self.log = out / "gpu_check.log"
        self.log.write_text(f"gpu_check {'dry run ' if dry_run else ''}{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        self.steps: dict[str, dict] = {}

    def run(self, name: str, cmd: list[str], timeout: float, env: dict | None = None) -> tuple[bool, str]:
        """Run ``cmd`` (output appended to the log); ``(passed, reason)``."""
        with self.log.open("a") as log:
            log.write(f"\n=== {name}: {' '.join(map(str, cmd))}\n")
            log.flush()
            start = time.perf_counter()
            try:
                proc = subprocess.run([str(c) for c in cmd], cwd=ROOT, env={**os.environ, **OFFLINE, **(env or {})},
                                      stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
            except subprocess.TimeoutExpired:
                return False, f"ran past its {timeout:.0f} s limit"
            finally:
                log.write(f"=== {name}: {time.perf_counter() - start:.1f} s\n")
        return proc.returncode == 0, f"exit {proc.returncode}"

    def record(self, name: str, **fields) -> None:
        self.steps[name] = fields
        print(f"[gpu_check] {name}: {fields.get('status')} {fields.get('summary', '')}", flush=True)


def environment(check: Check) -> dict:
    import torch
    import transformers

    cuda = torch.cuda.is_available()
    target = os.environ.get("LONGVA_WHEEL_TARGET")
    carried = {}
    if target:
        for info in sorted(Path(target).glob("*.dist-info")):
            name = info.name.split("-")[0]
            try:
                where = Path(metadata.distribution(name).locate_file(""))
                carried[name] = "target" if Path(target).resolve() in [where.resolve(), *where.resolve().parents] else str(where)
            except metadata.PackageNotFoundError:
                carried[name] = "not importable"
    try:
        import flash_attn

        flash = flash_attn.__version__
    except ImportError:
        flash = None
    env = {"python": platform.python_version(), "executable": sys.executable, "torch": torch.__version__,
           "transformers": transformers.__version__, "cuda": cuda, "cuda_version": torch.version.cuda,
           "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
           "bf16": bool(cuda and torch.cuda.is_bf16_supported()), "flash_attn": flash,
           "wheel_target": target, "carried": carried}
    wrong = [name for name, where in carried.items() if where != "target"]
    models = {ep.name for ep in metadata.entry_points(group="lmms_eval.models")}
    ok = not wrong and "longva" in models
    check.record("environment", status="passed" if ok else "failed", **env, lmms_eval_models=sorted(models),
                 summary=f"torch {env['torch']}, transformers {env['transformers']}, "
                         f"{env['devices'] or 'no CUDA'}, flash-attn {flash or 'absent'}"
                         + (f"; not from the target: {wrong}" if wrong else "")
                         + ("" if "longva" in models else "; the longva entry point is missing"))
    return env


def gpu_tests(check: Check) -> None:
    junit = check.work / "junit.xml"
    # only the files that hold GPU tests: collecting the whole suite would import what the image
    # lacks and the checks do not carry (PyAV for the video tests, say)
    files = sorted(str(f.relative_to(ROOT)) for f in (ROOT / "tests").rglob("test_*.py") if "mark.gpu" in f.read_text())
    ok, why = check.run("gpu_tests", [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
                                      f"--junitxml={junit}", *files], timeout=150)
    counts = {}
    if junit.is_file():
        import xml.etree.ElementTree as ET

        suite = ET.parse(junit).getroot()
        suite = suite if suite.tag == "testsuite" else suite[0]
        counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    passed = counts.get("tests", 0) - counts.get("failures", 0) - counts.get("errors", 0) - counts.get("skipped", 0)
    check.record("gpu_tests", status="passed" if ok else "failed", reason=why, passed=passed, files=files, **counts,
                 summary=f"{passed} passed, {counts.get('skipped', '?')} skipped, "
                         f"{counts.get('failures', '?')} failed of {counts.get('tests', '?')}")


def ring(check: Check, cuda: bool) -> None:
    out = check.work / "ring.json"
    args = (["--device", "cuda", "--dtype", "bfloat16", "--lengths", "4096,16384,65536"] if cuda
            else ["--device", "cpu", "--dtype", "float32", "--lengths", "512,1024"])
    ok, why = check.run("ring", [sys.executable, ROOT / "benchmarks" / "bench_ring_attention.py", *args,
                                 "--no-ranks", "--json", out], timeout=180)
    data = json.loads(out.read_text()) if ok and out.is_file() else {}
    rows = data.get("rows", [])
    check.record("ring", status="passed" if ok and rows else "failed", reason=why, **data,
                 summary=", ".join(f"{r['length']}: ours/SDPA {r['ours_s'] / r['sdpa_s']:.2f}x time" for r in rows))


def _vniah_run(check: Check, name: str, model_args: str, grid: str, timeout: float) -> list[dict] | None:
    from longva_plugins.nano.checkpoint import nano_checkpoint

    out = check.work / name
    env = {"LONGVA_VNIAH_GRID": grid, "LONGVA_VNIAH_HAYSTACK": "synthetic", "LONGVA_VNIAH_NEEDLES": "nano",
           "LONGVA_VNIAH_CACHE": str(check.work / f"cache-{name}")}
    ok, why = check.run(name, [sys.executable, "-m", "lmms_eval", "eval", "--model", "longva", "--model_args",
                               f"pretrained={nano_checkpoint()},{model_args}", "--tasks", "vniah",
                               "--output_path", out], timeout=timeout, env=env)
    found = list(out.rglob("all_accuracies.json"))
    if not ok or not found:
        return None if not ok else []
    return json.loads(found[0].read_text())


def _cells(scores: list[dict]) -> dict[tuple[int, float], float]:
    return {(int(s["Num. Frame"]), round(float(s["Frame Depth"]), 4)): float(s["Score"]) for s in scores}


def nano_vniah(check: Check, cuda: bool) -> None:
    reference = _cells(json.loads(CPU_REFERENCE.read_text())["cells"])
    runs = ({"cuda_bf16": "device=cuda,torch_dtype=bfloat16", "cuda_fp32": "device=cuda,torch_dtype=float32"} if cuda
            else {"cpu_fp32": "device=cpu,torch_dtype=float32"})
    grid = NANO_GRID if cuda else DRY_GRID
    results, all_ok = {}, True
    for label, model_args in runs.items():
        start = time.perf_counter()
        scores = _vniah_run(check, f"nano_vniah_{label}", model_args, grid, timeout=150)
        if scores is None or not scores:
            results[label] = {"status": "failed", "reason": "lmms-eval failed or wrote no scores (see the log)"}
            all_ok = False
            continue
        cells = _cells(scores)
        shared = [key for key in cells if key in reference]
        agree = sum(cells[key] == reference[key] for key in shared)
        results[label] = {"seconds": round(time.perf_counter() - start, 1), "cells": len(cells),
                          "average": sum(cells.values()) / len(cells),
                          "cpu_average_same_cells": sum(reference[k] for k in shared) / max(len(shared), 1),
                          "agree_with_cpu": agree, "compared": len(shared)}
        # on CPU (the dry run) the cells must equal the reference; on CUDA, float32 (cuDNN's TF32
        # convolutions in the tower) may flip a borderline cell, bfloat16 a few more
        need = {"cpu_fp32": 1.0, "cuda_fp32": 0.9, "cuda_bf16": 0.8}[label]
        results[label]["required_agreement"] = need
        all_ok &= len(shared) == len(cells) and agree >= need * len(shared)
    check.record("nano_vniah", status="passed" if all_ok else "failed", grid=grid, runs=results,
                 summary="; ".join(f"{k} {v['average']:.3f} ({v['agree_with_cpu']}/{v['compared']} cells as on CPU)"
                                   if "average" in v else f"{k} failed" for k, v in results.items()))


def _sized_runs(check: Check, step: str, script: str, sizes, timeout: float, peak_key: str, value_key: str,
                model_gib=None) -> None:
    """Run ``script --scale S --frames F --json OUT`` for each size; record the rows with the peak
    against the memory model (``model_gib(frames)`` where the script does not give it)."""
    rows, all_ok = [], True
    for scale, frames in sizes:
        out = check.work / f"{step}-{frames}.json"
        ok, why = check.run(f"{step}_{frames}", [sys.executable, ROOT / "benchmarks" / script, "--scale", scale,
                                                 "--frames", frames, "--json", out], timeout=timeout)
        if not ok or not out.is_file():
            rows.append({"scale": scale, "frames": frames, "status": "failed", "reason": why})
            all_ok = False
            continue
        row = json.loads(out.read_text())
        if scale == "paper" and model_gib is not None:
            row["memory_model_gib"] = model_gib(frames)
        rows.append(row)
    check.record(step, status="passed" if all_ok else "failed", rows=rows,
                 summary=", ".join(f"{r['frames']} frames: " + (f"peak {r[peak_key]:.1f} GiB vs model {r['memory_model_gib']:.1f}"
                                                                 if r.get(peak_key) is not None and "memory_model_gib" in r
                                                                 else r.get("status", f"{value_key} {r.get(value_key, float('nan')):.3f}"))
                                   for r in rows))


def vniah_cell(check: Check, cuda: bool) -> None:
    _sized_runs(check, "vniah_cell", "gpu_vniah_cell.py", [("paper", 1000), ("paper", 3000)] if cuda else [("tiny", 8)],
                200, "peak_total_gib", "nll", lambda frames: MEMORY_MODEL_GIB + MEMORY_PER_FRAME_MIB * frames / 1024)


def training_step(check: Check, cuda: bool) -> None:
    _sized_runs(check, "training_step", "gpu_train_step.py", [("paper", 64), ("paper", 128)] if cuda else [("tiny", 4)],
                300, "peak_gib", "loss")


def training_engines(check: Check, cuda: bool) -> None:
    rows, all_ok = [], True
    for engine in ("ddp", "fsdp", "deepspeed", "qlora") if cuda else ("ddp",):
        out = check.work / f"engine-{engine}.json"
        ok, why = check.run(f"training_{engine}", [sys.executable, ROOT / "benchmarks" / "gpu_train_engines.py",
                                                   "--engine", engine, "--json", out], timeout=300)
        row = json.loads(out.read_text()) if out.is_file() else {"engine": engine, "status": "failed", "reason": why}
        all_ok &= row["status"] != "failed"
        rows.append(row)
    check.record("training_engines", status="passed" if all_ok else "failed", rows=rows,
                 summary=", ".join(f"{r['engine']} {r['status']}" for r in rows))


def sequence_parallel(check: Check, devices: int) -> None:
    check.record("sequence_parallel", status="skipped",
                 summary=f"needs 2 or more GPUs; this machine has {devices}"
                         + ("" if devices < 2 else " (run tests/distributed with torchrun by hand)"))


def report_md(report: dict) -> str:
    env = report["steps"]["environment"]
    lines = [f"# GPU check{' (dry run on CPU)' if report['dry_run'] else ''}", "",
             f"{report['date']} · {report['seconds']:.0f} s · python {env['python']} · torch {env['torch']} · "
             f"transformers {env['transformers']} · {', '.join(env['devices']) or 'no CUDA device'} · "
             f"flash-attn {env['flash_attn'] or 'absent'}", "",
             "| step | status | result |", "|---|---|---|"]
    lines += [f"| {name} | {step['status']} | {step.get('summary', '')} |" for name, step in report["steps"].items()]
    ring_rows = report["steps"].get("ring", {}).get("rows", [])
    if ring_rows:
        lines += ["", f"Attention fwd+bwd ({report['steps']['ring'].get('dtype')}, {report['steps']['ring'].get('device')}):", "",
                  "| tokens | SDPA s | ours s | ours/SDPA | SDPA MiB | ours MiB | flash s |", "|---:|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['length']} | {r['sdpa_s']:.3f} | {r['ours_s']:.3f} | {r['ours_s'] / r['sdpa_s']:.2f}x | "
                  f"{r['sdpa_mib']:.0f} | {r['ours_mib']:.0f} | {r.get('flash_s', float('nan')):.3f} |" for r in ring_rows]
    cells = [r for r in report["steps"].get("vniah_cell", {}).get("rows", []) if "tokens" in r]
    if cells:
        lines += ["", "V-NIAH cell (random weights):", "",
                  "| shapes | frames | tokens | attention | s | weights GiB | KV GiB | peak GiB | memory model GiB |",
                  "|---|---:|---:|---|---:|---:|---:|---:|---:|"]
        fmt = lambda v: "n/a" if v is None else f"{v:.1f}"  # noqa: E731
        lines += [f"| {r['scale']} | {r['frames']} | {r['tokens']} | {r['attention']} | {r['seconds']:.0f} | "
                  f"{r['weights_gib']:.2f} | {r['kv_model_gib']:.2f} | {fmt(r['peak_total_gib'])} | "
                  f"{fmt(r.get('memory_model_gib'))} |" for r in cells]
    return "\n".join(lines) + "\n"


def write_cpu_reference() -> int:
    check = Check(Path(tempfile.mkdtemp(prefix="longva-gpu-ref-")), dry_run=True)
    scores = _vniah_run(check, "reference", "device=cpu,torch_dtype=float32", NANO_GRID, timeout=1200)
    if not scores:
        print(f"[gpu_check] the CPU run failed; see {check.log}")
        return 1
    import torch

    atomic_write_text(CPU_REFERENCE, json.dumps({
        "what": "LongVA-nano V-NIAH on CPU float32 through lmms-eval (synthetic haystack, nano needles)",
        "grid": NANO_GRID, "torch": torch.__version__, "cells": scores}, indent=1) + "\n")
    print(f"[gpu_check] wrote {CPU_REFERENCE} ({len(scores)} cells)")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="folder for report.json, report.md and gpu_check.log")
    parser.add_argument("--dry-run", action="store_true", help="the CPU-able parts at small sizes (no CUDA needed)")
    parser.add_argument("--write-cpu-reference", action="store_true", help=f"rewrite {CPU_REFERENCE.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    if args.write_cpu_reference:
        return write_cpu_reference()
    if not args.out:
        parser.error("--out DIR is required")
    import torch

    cuda = torch.cuda.is_available() and not args.dry_run
    if not cuda and not args.dry_run:
        print("gpu_check: no CUDA device here; run with --dry-run for the CPU-able parts (the CPU suite is scripts/test.sh)")
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    check = Check(out, args.dry_run)
    start = time.perf_counter()
    env = environment(check)
    gpu_tests(check)
    ring(check, cuda)
    nano_vniah(check, cuda)
    vniah_cell(check, cuda)
    training_step(check, cuda)
    training_engines(check, cuda)
    sequence_parallel(check, len(env["devices"]))
    report = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "dry_run": args.dry_run,
              "seconds": time.perf_counter() - start, "steps": check.steps}
    atomic_write_text(out / "report.json", json.dumps(report, indent=2, default=str) + "\n")
    atomic_write_text(out / "report.md", report_md(report))
    failed = [name for name, step in check.steps.items() if step["status"] == "failed"]
    print(f"[gpu_check] {report['seconds']:.0f} s; report: {out / 'report.md'}"
          + (f"; FAILED: {', '.join(failed)}" if failed else "; every step that ran passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
