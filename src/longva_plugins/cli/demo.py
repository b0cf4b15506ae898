"""``longva-plugins demo``: the main job — V-NIAH through lmms-eval, offline, on LongVA-nano.

By default the shipped LongVA-nano (trained on long text and short images only, see
``examples/nano/``) retrieves the ``nano`` needles from the synthetic haystack video, up to 250
frames; ``--pretrained`` runs any other checkpoint (``--tiny``: the random tiny one of the tests).
``--task videomme|mlvu`` runs the mini Video-MME / MLVU through lmms-eval's multiple-choice chains,
by default with LongVA-nano-mc on the canonical-options mini benchmark (the colour questions list
red, green, blue, yellow as A-D: what it was taught).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def _run(args) -> int:
    if args.task != "vniah":
        return _run_bench(args)
    from rich.console import Console
    from rich.table import Table

    from longva_plugins.testing import ensure_tiny_checkpoint
    from longva_plugins.nano.checkpoint import nano_checkpoint
    from longva_plugins.nano.report import by_frames
    from longva_plugins.lmms_eval_plugin.task_utils.common import side_output_dir
    from longva_plugins.vniah.results import load_scores

    console = Console()
    if args.pretrained:
        checkpoint = Path(args.pretrained)
    else:
        checkpoint = ensure_tiny_checkpoint() if args.tiny else nano_checkpoint()
    nano = not args.pretrained and not args.tiny
    args.grid = args.grid or (NANO_GRID if nano else "small")
    args.needles = args.needles or ("nano" if nano else "synthetic")
    out = Path(args.output_path).resolve()
    args.output_path = str(out)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "LONGVA_VNIAH_GRID": args.grid, "LONGVA_VNIAH_HAYSTACK": args.haystack, "LONGVA_VNIAH_NEEDLES": args.needles}
    cmd = [sys.executable, "-m", "lmms_eval", "eval", "--model", "longva", "--model_args", f"pretrained={checkpoint}",
           "--tasks", "vniah", "--output_path", str(out), "--log_samples"]
    console.print(f"[bold]longva-plugins demo[/]: V-NIAH (grid {args.grid!r}, haystack {args.haystack!r}, "
                  f"needles {args.needles!r}) on {checkpoint}")
    console.print("$ " + " ".join(cmd), style="dim")
    start = time.time()
    proc = subprocess.run(cmd, env=env)
    elapsed = time.time() - start
    results = sorted(out.rglob("*_results.json"), key=lambda p: p.stat().st_mtime)
    if proc.returncode != 0 or not results:
        console.print(f"[red]lmms-eval failed (exit {proc.returncode}); see its output above.[/]")
        return 1
    average = json.loads(results[-1].read_text())["results"]["vniah"]["vniah_accuracy,none"]
    side = side_output_dir(args, "vniah")
    table = Table(title=f"V-NIAH on {checkpoint.name}: accuracy by frame count ({elapsed:.0f} s)")
    table.add_column("frames", justify="right")
    table.add_column("tokens", justify="right")
    table.add_column("accuracy", justify="right")
    per_frame = _tokens_per_frame(checkpoint)
    for frames, score in by_frames(load_scores(side)).items():
        table.add_row(str(frames), str(frames * per_frame) if per_frame else "?", f"{score:.2f}")
    console.print(table)
    console.print(f"average: [bold]{average:.3f}[/]")
    console.print(f"results: {results[-1]}")
    console.print(f"all_accuracies.json, avg_accuracy.txt: {side}")
    console.print(f"heatmap: [bold green]{side / 'heatmap.png'}[/]")
    return 0


#: ``--task`` -> the lmms-eval tasks run on the mini benchmark.
BENCH_TASKS = {"videomme": ("longva_videomme", "longva_videomme_paper", "longva_videomme_w_subtitle"),
               "mlvu": ("longva_mlvu_dev",)}


def _run_bench(args) -> int:
    """The mini Video-MME / MLVU (made once into ``<output-path>/mini-bench``) through lmms-eval."""
    from rich.console import Console
    from rich.table import Table

    from longva_plugins.testing import ensure_tiny_checkpoint
    from longva_plugins.nano.checkpoint import nano_mc_checkpoint
    from longva_plugins.lmms_eval_plugin.minibench import BENCH_MODEL_ARGS, bench_env, bench_scores, make_mini_bench

    console = Console()
    oracle = not args.pretrained and not args.tiny  # the default: LongVA-nano-mc, canonical options
    checkpoint = Path(args.pretrained) if args.pretrained else ensure_tiny_checkpoint() if args.tiny else nano_mc_checkpoint()
    canonical = oracle or args.canonical_options
    out = Path(args.output_path).resolve()
    bench = out / ("mini-bench-canonical" if canonical else "mini-bench")
    if not (bench / "plans.json").is_file():
        console.print(f"making the mini benchmark in {bench} (once{', canonical options' if canonical else ''})")
        make_mini_bench(bench, canonical=canonical)
    tasks = BENCH_TASKS[args.task]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **bench_env(bench)}
    cmd = [sys.executable, "-m", "lmms_eval", "eval", "--model", "longva", "--model_args",
           f"pretrained={checkpoint},{BENCH_MODEL_ARGS}", "--tasks", ",".join(tasks), "--output_path", str(out / "lmms-eval"),
           "--log_samples"]
    console.print(f"[bold]longva-plugins demo --task {args.task}[/]: the mini benchmark on {checkpoint}")
    console.print("$ " + " ".join(cmd), style="dim")
    start = time.time()
    proc = subprocess.run(cmd, env=env)
    if proc.returncode != 0:
        console.print(f"[red]lmms-eval failed (exit {proc.returncode}); see its output above.[/]")
        return 1
    scores = bench_scores(out / "lmms-eval", tasks)
    table = Table(title=f"mini {args.task} on {checkpoint.name} ({time.time() - start:.0f} s)")
    for column in ("task", "accuracy", "by question type", "by duration", "questions"):
        table.add_column(column)
    for task, score in scores.items():
        kinds = score.get("per_task_type") or score.get("per_question_type") or {}
        durations = score.get("per_duration") or {}
        table.add_row(task, f"{score['accuracy']:.3f}", ", ".join(f"{k} {v:.2f}" for k, v in kinds.items()),
                      ", ".join(f"{k} {v:.2f}" for k, v in durations.items()), str(score["n"]))
    console.print(table)
    return 0


#: The demo's grid for LongVA-nano: up to 250 frames (4000 visual tokens, its stage-1 text length).
NANO_GRID = "frames=10:250:60;depths=0,0.2,0.4,0.6,0.8,1"


def _tokens_per_frame(checkpoint: Path) -> int | None:
    try:
        from longva_plugins.models.longva import LongVAConfig

        return LongVAConfig.from_pretrained(str(checkpoint)).tokens_per_frame
    except (OSError, ValueError, KeyError):  # only a table column: never fail the demo over it
        return None


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="run V-NIAH (or the mini Video-MME / MLVU) through lmms-eval offline "
                                   "on the shipped LongVA-nano")
    parser.add_argument("--task", choices=("vniah", *BENCH_TASKS), default="vniah",
                        help="vniah (default), or the mini benchmark of make-mini-bench: videomme (its three "
                        "prompt variants) or mlvu, by default with LongVA-nano-mc on canonical options")
    parser.add_argument("--canonical-options", action="store_true",
                        help="videomme / mlvu with --pretrained or --tiny: the canonical-options mini benchmark "
                        "(always so for the default LongVA-nano-mc)")
    parser.add_argument("--output-path", default="outputs/demo", help="lmms-eval --output_path (default: outputs/demo)")
    parser.add_argument("--grid", default=None, help="V-NIAH grid: small, medium, paper or 'frames=MIN:MAX:STEP;depths=...' "
                        f"(default: {NANO_GRID!r} for LongVA-nano, small otherwise)")
    parser.add_argument("--haystack", default="synthetic", help="synthetic[:SEED] or a video file")
    parser.add_argument("--needles", default=None, help="nano, synthetic, a needle folder or lmms-lab/v_niah_needles "
                        "(default: nano for LongVA-nano, synthetic otherwise)")
    parser.add_argument("--pretrained", default=None, help="checkpoint (default: the shipped LongVA-nano)")
    parser.add_argument("--tiny", action="store_true", help="use the random tiny checkpoint of the tests instead")
    parser.set_defaults(func=_run)
