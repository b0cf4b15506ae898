"""Accuracy against the number of frames from lmms-eval results files: collect, tabulate, plot.

The logic behind ``longva-plugins sweep`` (:mod:`longva_plugins.cli.sweep`), usable on its own::

    rows = collect([Path("runs/f8"), Path("runs/f16")], "longva_videomme")
    write_outputs(rows, Path("outputs/sweep"), "longva_videomme")

A row is ``{"score", "metric", "breakdowns", "missing_videos", "path"}`` for one frame count. The
score is the headline of the task's metric: a number, or a dict's ``m_avg`` / ``overall`` (the
longva_videomme / longva_mlvu_dev summaries). The LongVA paper (Sec. 5) plots Video-MME 47.9 / 49.7
/ 51.8 / 52.4 / 52.6 at 8 / 16 / 32 / 64 / 128 frames; :func:`plot_sweep` draws that figure.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from longva_plugins.errors import DataError, SettingError
from longva_plugins.fileio import atomic_write_bytes, atomic_write_text

#: Keys of a dict metric taken as its headline number, in order of preference.
SCALAR_KEYS = ("m_avg", "overall", "average", "accuracy", "score")
_FRAMES_ARG = re.compile(r"(?:^|,)\s*max_frames_num\s*=\s*(\d+)")


# --------------------------------------------------------------------------- reading results
def headline(value) -> float | None:
    """The headline number of a metric value: a number, or a dict's m_avg / overall / average."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, dict):
        for key in SCALAR_KEYS:
            if isinstance(value.get(key), (int, float)) and not isinstance(value.get(key), bool):
                return float(value[key])
    return None


def frames_of(results: dict, path: Path) -> int | None:
    """``max_frames_num`` from a results file's recorded model_args, else a ``frames_N`` folder name."""
    model_args = (results.get("config") or {}).get("model_args")
    if isinstance(model_args, dict) and str(model_args.get("max_frames_num", "")).isdigit():
        return int(model_args["max_frames_num"])
    if isinstance(model_args, str) and (match := _FRAMES_ARG.search(model_args)):
        return int(match.group(1))
    for parent in path.parents:
        if match := re.fullmatch(r"frames_(\d+)", parent.name):
            return int(match.group(1))
    return None


def load_results(path: Path) -> dict:
    """An lmms-eval ``*_results.json``; :class:`DataError` naming the file when it is not one."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not a readable lmms-eval results file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise DataError(f"{path} is not an lmms-eval results file (no 'results' mapping)")
    return data


def read_row(path: Path, task: str, metric: str | None = None) -> dict:
    """``{"score", "metric", "breakdowns", "missing_videos", "path"}`` of ``task`` in one lmms-eval
    results file; breakdowns come from the task's ``longva/<task>/breakdown.json`` beside it (or,
    for results of older versions, from a dict metric)."""
    results = load_results(path)["results"]
    if task not in results:
        raise DataError(f"{path} has no results for task {task!r} (it has: {', '.join(results) or 'none'})")
    for key, value in results[task].items():
        name = key.split(",")[0]
        if key == "alias" or "_stderr" in name or name.endswith("_missing_videos") or (metric and name != metric):
            continue
        score = headline(value)
        if score is None:
            continue
        side = read_breakdown(path, task)
        if side is None and isinstance(value, dict):
            side = value
        side = side or {}
        missing = results[task].get(f"{name.rsplit('_', 1)[0]}_missing_videos,none", side.get("missing_videos"))
        return {
            "score": score,
            "metric": name,
            "breakdowns": {k: v for k, v in side.items() if _is_breakdown(v)},
            "missing_videos": missing,
            "path": str(path),
        }
    raise DataError(
        f"{path}: task {task!r} has no numeric metric{f' named {metric!r}' if metric else ''} "
        f"(metrics: {', '.join(results[task])})"
    )


def read_breakdown(results_path: Path, task: str) -> dict | None:
    """The ``breakdown.json`` a task wrote under the ``--output_path`` of ``results_path``
    (``<output_path>/<model>/<date>_results.json`` → ``<output_path>/longva/<task>/``)."""
    from longva_plugins.lmms_eval_plugin.task_utils.common import SIDE_FOLDER

    for root in results_path.parents[:2]:
        candidate = root / SIDE_FOLDER / task / "breakdown.json"
        if candidate.is_file():
            try:
                return json.loads(candidate.read_text())
            except (OSError, ValueError):
                return None
    return None


def _is_breakdown(value) -> bool:
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values())
    )


def collect(folders: list[Path], task: str, metric: str | None = None) -> dict[int, dict]:
    """``{frames: row}`` from every ``*_results.json`` under ``folders``; the newest file wins per count."""
    files = sorted(
        (p for folder in folders for p in Path(folder).rglob("*_results.json")),
        key=lambda p: p.stat().st_mtime,
    )
    rows: dict[int, dict] = {}
    for path in files:
        results = load_results(path)
        if task not in results["results"]:
            continue  # another task's run in the same folder
        frames = frames_of(results, path)
        if frames is None:
            raise DataError(
                f"{path}: cannot tell the frame count (no max_frames_num in its model_args and no "
                "frames_N folder); rerun with --model_args ...,max_frames_num=N"
            )
        rows[frames] = read_row(path, task, metric)
    if not rows:
        raise DataError(
            f"no lmms-eval results for task {task!r} under {', '.join(map(str, folders))}; "
            "run the sweep first or point --from-results at lmms-eval --output_path folders"
        )
    return dict(sorted(rows.items()))


# --------------------------------------------------------------------------- writing tables and plot
#: Breakdowns drawn and shown by default, first present wins (Video-MME durations, MLVU types).
AUTO_BREAKDOWNS = ("per_duration", "per_question_type")


def pick_breakdown(rows: dict[int, dict], breakdown: str | None) -> str | None:
    """The breakdown to show: ``breakdown`` itself, the first of :data:`AUTO_BREAKDOWNS` present for
    ``"auto"``, or ``None`` for ``"none"``/absent."""
    present = {name for row in rows.values() for name in row["breakdowns"]}
    if breakdown in (None, "none"):
        return None
    if breakdown == "auto":
        return next((name for name in AUTO_BREAKDOWNS if name in present), None)
    if breakdown not in present:
        raise SettingError(
            f"--breakdown {breakdown!r} is not in the results (they have: {', '.join(sorted(present)) or 'none'})"
        )
    return breakdown


def table_columns(rows: dict[int, dict], only: str | None = None, every: bool = False) -> list[str]:
    """``["score", "per_duration/long", ..., "missing_videos"]``: the headline, then the entries of
    breakdown ``only`` (or of every breakdown with ``every``), then the missing-video count if known."""
    extra = sorted(
        {
            f"{name}/{key}"
            for row in rows.values()
            for name, values in row["breakdowns"].items()
            if every or name == only
            for key in values
        }
    )
    missing = ["missing_videos"] if any(row.get("missing_videos") is not None for row in rows.values()) else []
    return ["score", *extra, *missing]


def cell(row: dict, column: str) -> float | None:
    if column in ("score", "missing_videos"):
        return row.get(column)
    name, key = column.split("/", 1)
    return row["breakdowns"].get(name, {}).get(key)


def fmt_value(value) -> str:
    if value is None:
        return ""
    return str(value) if isinstance(value, int) else f"{value:.2f}"


def write_outputs(rows: dict[int, dict], folder: Path, task: str, breakdown: str | None = "auto") -> dict[str, Path]:
    """Write ``sweep.md`` (headline + one breakdown), ``.csv`` (every breakdown), ``.json`` and
    ``.png`` (each atomically) and return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    breakdown = pick_breakdown(rows, breakdown)
    columns = table_columns(rows, breakdown)
    md = ["| frames | " + " | ".join(columns) + " |", "|---:|" + "---:|" * len(columns)]
    md += [
        f"| {frames} | " + " | ".join(fmt_value(cell(row, c)) for c in columns) + " |" for frames, row in rows.items()
    ]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    every = table_columns(rows, every=True)
    writer.writerow(["frames", *every])
    writer.writerows([frames, *(fmt_value(cell(row, c)) for c in every)] for frames, row in rows.items())
    paths = {
        kind: folder / f"sweep.{ext}"
        for kind, ext in (
            ("markdown", "md"),
            ("csv", "csv"),
            ("json", "json"),
            ("plot", "png"),
        )
    }
    atomic_write_text(
        paths["markdown"],
        f"{task}: {rows[next(iter(rows))]['metric']} against frames\n\n" + "\n".join(md) + "\n",
    )
    atomic_write_text(paths["csv"], buffer.getvalue())
    atomic_write_text(
        paths["json"],
        json.dumps({"task": task, "rows": {str(f): r for f, r in rows.items()}}, indent=2),
    )
    plot_sweep(rows, paths["plot"], task, breakdown)
    return paths


def plot_sweep(rows: dict[int, dict], path: Path, task: str, breakdown: str | None = None) -> None:
    """Accuracy against frames (log2 axis), plus one dashed line per entry of ``breakdown`` if present."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # a core dependency, but environments get trimmed
        raise ImportError("the sweep plot needs matplotlib: pip install 'longva-plugins' (matplotlib>=3.7)") from exc

    frames = list(rows)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(
        frames,
        [rows[f]["score"] for f in frames],
        marker="o",
        color="#F0496E",
        linewidth=2,
        label="overall",
    )
    keys = sorted({k for r in rows.values() for k in r["breakdowns"].get(breakdown or "", {})})
    for key, colour in zip(keys, ("#EBB839", "#9ad5b3", "#6c8ebf", "#999999", "#b07aa1", "#76b7b2")):
        points = [
            (f, rows[f]["breakdowns"][breakdown][key])
            for f in frames
            if key in rows[f]["breakdowns"].get(breakdown, {})
        ]
        ax.plot(*zip(*points), marker=".", linestyle="--", color=colour, label=key)
    ax.set_xscale("log", base=2)
    ax.set_xticks(frames, [str(f) for f in frames])
    ax.set_xlabel("Num. of Frames")
    ax.set_ylabel("Accuracy (%)")
    ax.set_title(f"{task} ({rows[frames[0]]['metric']}) vs frames")
    ax.grid(alpha=0.3)
    if keys:
        ax.legend(fontsize="small")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


__all__ = [
    "AUTO_BREAKDOWNS",
    "SCALAR_KEYS",
    "cell",
    "collect",
    "fmt_value",
    "frames_of",
    "headline",
    "load_results",
    "pick_breakdown",
    "plot_sweep",
    "read_row",
    "table_columns",
    "write_outputs",
]
