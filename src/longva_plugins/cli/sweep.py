"""``longva-plugins sweep``: accuracy against the number of frames (the paper's Video-MME figure).

Runs ``lmms-eval --model longva`` once per frame count (``max_frames_num=N``), each into
``OUTPUT/frames_N``, then writes ``sweep.md``, ``sweep.csv`` and ``sweep.png`` from the individual
result files. ``--from-results`` only redraws from existing ``frames_N`` folders.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from longva_plugins.errors import ConfigError, DataError

SCALAR_KEYS = ("overall", "m_avg", "average")


def headline(value) -> float | None:
    """The headline number of a metric value: a float, or a dict's overall / m_avg / average."""
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        for key in SCALAR_KEYS:
            if isinstance(value.get(key), (int, float)):
                return float(value[key])
    return None


def collect(folder: Path, task: str) -> dict[int, dict]:
    """``{frames: {"score": float, "breakdown": dict}}`` from ``folder/frames_N/**/*_results.json``."""
    rows: dict[int, dict] = {}
    for sub in sorted(folder.glob("frames_*")):
        match = re.fullmatch(r"frames_(\d+)", sub.name)
        files = sorted(sub.rglob("*_results.json"), key=lambda p: p.stat().st_mtime)
        if not match or not files:
            continue
        results = json.loads(files[-1].read_text())["results"]
        if task not in results:
            raise DataError(f"{files[-1]} has no results for task {task!r} (it has {', '.join(results)})")
        for key, value in results[task].items():
            score = headline(value)
            if score is not None and not key.endswith("_stderr,none") and key != "alias":
                rows[int(match.group(1))] = {"score": score, "metric": key,
                                             "breakdown": value if isinstance(value, dict) else {}}
                break
    if not rows:
        raise DataError(f"no frames_N/*_results.json for task {task!r} under {folder}")
    return dict(sorted(rows.items()))


def write_outputs(rows: dict[int, dict], folder: Path, task: str) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    breakdown_keys = sorted({
        k for r in rows.values() for k, v in r["breakdown"].items()
        if isinstance(v, dict) and v and all(isinstance(x, (int, float)) for x in v.values())
    })
    md = [f"| frames | {task} |" + "".join(f" {k} |" for k in breakdown_keys), "|---:|---:|" + "---|" * len(breakdown_keys)]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["frames", "score"])
    for frames, row in rows.items():
        extra = "".join(
            " " + ", ".join(f"{k}={v:.1f}" for k, v in row["breakdown"].get(key, {}).items()) + " |" for key in breakdown_keys
        )
        md.append(f"| {frames} | {row['score']:.2f} |{extra}")
        writer.writerow([frames, f"{row['score']:.4f}"])
    paths = {"markdown": folder / "sweep.md", "csv": folder / "sweep.csv", "plot": folder / "sweep.png"}
    for key, text in (("markdown", "\n".join(md) + "\n"), ("csv", buffer.getvalue())):
        tmp = paths[key].with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, paths[key])
    _plot(rows, paths["plot"], task)
    return paths


def _plot(rows, path: Path, task: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = list(rows)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(frames, [rows[f]["score"] for f in frames], marker="o", color="#F0496E")
    ax.set_xscale("log", base=2)
    ax.set_xticks(frames, [str(f) for f in frames])
    ax.set_xlabel("Frames sampled")
    ax.set_ylabel("Accuracy")
    ax.set_title(f"{task}: accuracy vs frames")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def _run(args) -> int:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    out = Path(args.output_path)
    if not args.from_results:
        if not args.pretrained:
            raise ConfigError("--pretrained is required unless --from-results is given")
        try:
            counts = [int(x) for x in args.frames.split(",") if x.strip()]
        except ValueError as exc:
            raise ConfigError(f"--frames must be comma-separated integers; got {args.frames!r}") from exc
        for n in counts:
            model_args = f"pretrained={args.pretrained},max_frames_num={n}" + (f",{args.model_args}" if args.model_args else "")
            cmd = [sys.executable, "-m", "lmms_eval", "eval", "--model", "longva", "--model_args", model_args,
                   "--tasks", args.task, "--output_path", str(out / f"frames_{n}"), *args.lmms_eval_args]
            console.print(f"[bold]frames={n}[/]: " + " ".join(cmd), style="dim")
            if subprocess.run(cmd).returncode != 0:
                console.print(f"[red]lmms-eval failed at frames={n}[/]")
                return 1
    rows = collect(out, args.task)
    paths = write_outputs(rows, out, args.task)
    table = Table(title=f"{args.task}: accuracy vs frames")
    table.add_column("frames", justify="right")
    table.add_column("score", justify="right")
    for frames, row in rows.items():
        table.add_row(str(frames), f"{row['score']:.2f}")
    console.print(table)
    console.print(f"table: {paths['markdown']} / {paths['csv']}; plot: [bold green]{paths['plot']}[/]")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("sweep", help="evaluate a task at several frame counts and plot accuracy vs frames")
    parser.add_argument("--task", required=True, help="an lmms-eval task, e.g. longva_videomme")
    parser.add_argument("--frames", default="8,16,32,64,128", help="comma-separated frame counts")
    parser.add_argument("--pretrained", help="checkpoint for --model longva")
    parser.add_argument("--model-args", default="", help="extra model_args appended after max_frames_num")
    parser.add_argument("--output-path", default="outputs/sweep")
    parser.add_argument("--from-results", action="store_true", help="only redraw from OUTPUT/frames_N folders")
    parser.add_argument("lmms_eval_args", nargs="*", help="extra lmms-eval arguments after --, e.g. -- --limit 10")
    parser.set_defaults(func=_run)
