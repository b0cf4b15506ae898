"""``longva-plugins demo``: the main job — V-NIAH through lmms-eval, offline, on the tiny checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def _run(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from longva_plugins.models.longva import ensure_tiny_checkpoint
    from longva_plugins.task_utils.common import side_output_dir

    console = Console()
    checkpoint = Path(args.pretrained) if args.pretrained else ensure_tiny_checkpoint()
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
    breakdown = json.loads((side / "breakdown.json").read_text())
    table = Table(title=f"V-NIAH on {checkpoint.name} ({elapsed:.0f} s)")
    table.add_column("cell")
    table.add_column("score", justify="right")
    for cell, score in breakdown["cells"].items():
        table.add_row(cell, f"{score:.2f}")
    console.print(table)
    console.print(f"average: [bold]{average:.3f}[/]")
    console.print(f"results: {results[-1]}")
    console.print(f"all_accuracies.json, avg_accuracy.txt: {side}")
    console.print(f"heatmap: [bold green]{side / 'heatmap.png'}[/]")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="run V-NIAH through lmms-eval offline on the embedded tiny checkpoint")
    parser.add_argument("--output-path", default="outputs/demo", help="lmms-eval --output_path (default: outputs/demo)")
    parser.add_argument("--grid", default="small", help="V-NIAH grid: small, medium, paper or 'frames=MIN:MAX:STEP;depths=...'")
    parser.add_argument("--haystack", default="synthetic", help="synthetic[:SEED] or a video file")
    parser.add_argument("--needles", default="synthetic", help="synthetic, a needle folder or lmms-lab/v_niah_needles")
    parser.add_argument("--pretrained", default=None, help="checkpoint (default: the embedded tiny random LongVA)")
    parser.set_defaults(func=_run)
