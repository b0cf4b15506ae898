"""``longva-plugins sweep``: evaluate a task at several frame counts; accuracy against frames.

Runs ``lmms-eval --model longva`` once per frame count (``max_frames_num=N``) into
``OUTPUT/frames_N`` (a subprocess each, its log beside it), then writes ``sweep.md``, ``sweep.csv``,
``sweep.json`` and ``sweep.png`` from the individual results files
(:mod:`longva_plugins.lmms_eval_plugin.task_utils.frame_sweep`). ``--from-results DIR...`` only redraws from existing
lmms-eval output folders; the frame count of each run is read from its recorded ``model_args``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from longva_plugins.errors import SettingError
from longva_plugins.lmms_eval_plugin.task_utils.frame_sweep import (
    cell,
    collect,
    fmt_value,
    pick_breakdown,
    table_columns,
    write_outputs,
)


# --------------------------------------------------------------------------- running lmms-eval
def parse_frames(text: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise SettingError(f"--frames must be comma-separated integers, e.g. 8,16,32; got {text!r}") from exc
    if not counts or any(n <= 0 for n in counts):
        raise SettingError(f"--frames needs positive frame counts; got {text!r}")
    return sorted(set(counts))


def lmms_eval_command(args, frames: int) -> list[str]:
    if re.search(r"(?:^|,)\s*max_frames_num\s*=", args.model_args or ""):
        raise SettingError("--model-args must not set max_frames_num: the sweep sets it from --frames")
    model_args = ",".join(
        x
        for x in (
            f"pretrained={args.pretrained}",
            f"max_frames_num={frames}",
            args.model_args,
        )
        if x
    )
    cmd = [
        sys.executable,
        "-m",
        "lmms_eval",
        "eval",
        "--model",
        "longva",
        "--model_args",
        model_args,
        "--tasks",
        args.task,
        "--output_path",
        str(Path(args.output_path) / f"frames_{frames}"),
    ]
    if args.limit is not None:
        cmd += ["--limit", str(args.limit)]
    return cmd + list(args.lmms_eval_args)


def run_sweep(args, console) -> list[int]:
    """Run lmms-eval per frame count (skipping finished ones with --resume); return the failed counts."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    if not args.pretrained:
        raise SettingError("--pretrained is required to run a sweep (or pass --from-results DIR... to redraw)")
    failed = []
    counts = parse_frames(args.frames)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        bar = progress.add_task(f"{args.task} sweep", total=len(counts))
        for frames in counts:
            folder = Path(args.output_path) / f"frames_{frames}"
            progress.update(bar, description=f"{args.task} @ {frames} frames")
            if args.resume and any(folder.rglob("*_results.json")):
                progress.advance(bar)
                continue
            folder.mkdir(parents=True, exist_ok=True)
            cmd = lmms_eval_command(args, frames)
            with open(folder / "lmms_eval.log", "w") as log:  # a multi-hour run keeps its own log
                code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
            if code != 0:
                failed.append(frames)
                tail = (folder / "lmms_eval.log").read_text(errors="replace")[-2000:]
                progress.console.print(
                    f"[red]lmms-eval failed at {frames} frames (exit {code}); log {folder / 'lmms_eval.log'}[/]\n{tail}"
                )
            progress.advance(bar)
    return failed


def _print_table(console, rows: dict[int, dict], task: str, breakdown: str | None) -> None:
    from rich.table import Table

    breakdown = pick_breakdown(rows, breakdown)
    columns = table_columns(rows, breakdown)
    table = Table(
        title=f"{task}: {rows[next(iter(rows))]['metric']} against frames",
        caption=f"columns after score: {breakdown}" if breakdown else None,
    )
    for name in ("frames", *columns):
        table.add_column(name.split("/", 1)[-1], justify="right")  # "long" rather than "per_duration/long"
    for frames, row in rows.items():
        table.add_row(str(frames), *(fmt_value(cell(row, c)) for c in columns))
    console.print(table)


def _main(args) -> int:
    from rich.console import Console

    console = Console()
    failed = [] if args.from_results else run_sweep(args, console)
    folders = [Path(p) for p in args.from_results] if args.from_results else [Path(args.output_path)]
    rows = collect(folders, args.task, args.metric)
    paths = write_outputs(rows, Path(args.output_path), args.task, args.breakdown)
    _print_table(console, rows, args.task, args.breakdown)
    console.print(f"table: {paths['markdown']}, {paths['csv']}; plot: [bold green]{paths['plot']}[/]")
    if failed:
        console.print(f"[red]failed frame counts: {', '.join(map(str, failed))} (see their lmms_eval.log)[/]")
        return 1
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="evaluate a task at several frame counts; table and plot of accuracy vs frames",
        description="Run lmms-eval --model longva at each --frames count (or redraw with --from-results) and write "
        "sweep.md/.csv/.json and sweep.png to --output-path. Extra lmms-eval arguments go after --.",
    )
    parser.add_argument(
        "--task",
        required=True,
        help="an lmms-eval task, e.g. longva_videomme or longva_mlvu_dev",
    )
    parser.add_argument(
        "--frames",
        default="8,16,32,64,128",
        help="comma-separated frame counts (default: the paper's)",
    )
    parser.add_argument("--pretrained", help="checkpoint (folder or hub id) for --model longva")
    parser.add_argument(
        "--model-args",
        default="",
        help="extra model_args, e.g. device_map=auto,torch_dtype=bfloat16",
    )
    parser.add_argument("--limit", type=int, help="lmms-eval --limit (questions per run)")
    parser.add_argument(
        "--output-path",
        default="outputs/sweep",
        help="where frames_N runs and the sweep files go",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="skip frame counts whose frames_N folder has results",
    )
    parser.add_argument(
        "--from-results",
        nargs="+",
        metavar="DIR",
        help="only redraw from these lmms-eval output folders",
    )
    parser.add_argument("--metric", help="the metric to plot (default: the task's first numeric one)")
    parser.add_argument(
        "--breakdown",
        default="auto",
        help="breakdown shown in the table and drawn as extra lines: a name (per_task_type, ...), "
        "'auto' (per_duration or per_question_type) or 'none'; sweep.csv has all of them",
    )
    parser.add_argument(
        "lmms_eval_args",
        nargs="*",
        help="extra lmms-eval arguments after --, e.g. -- --batch_size 1",
    )
    parser.set_defaults(func=_main)


__all__ = ["lmms_eval_command", "parse_frames", "register", "run_sweep"]
