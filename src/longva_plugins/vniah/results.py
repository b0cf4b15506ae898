"""V-NIAH results in the reference schema: per-cell scores, the average, ``all_accuracies.json`` /
``avg_accuracy.txt`` written as the original writes them, and reading them back."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

from longva_plugins.fileio import atomic_write_text


def cell_scores(records) -> list[dict]:
    """Mean correctness per (frames, depth) over needles, in the reference ``all_accuracies`` schema
    (``"Frame Depth"`` is ``round(depth * 100, -1)``, as the original writes it)."""
    groups: dict[tuple[int, float], list[int]] = defaultdict(list)
    for r in records:
        groups[(int(r["frames"]), float(r["depth"]))].append(int(r["correct"]))
    return [{"Num. Frame": n, "Frame Depth": round(d * 100, -1), "Score": sum(v) / len(v)}
            for (n, d), v in sorted(groups.items())]


def average_accuracy(scores: list[dict]) -> float:
    """The mean of the cell scores (the original's ``df["Score"].mean()``)."""
    return sum(s["Score"] for s in scores) / len(scores) if scores else 0.0


def write_all_accuracies(scores: list[dict], out_dir: str | os.PathLike) -> Path:
    """``all_accuracies.json`` (indent 4) and ``avg_accuracy.txt`` beside it, as the original writes them."""
    path = Path(out_dir) / "all_accuracies.json"
    atomic_write_text(path, json.dumps(scores, indent=4))
    atomic_write_text(path.with_name("avg_accuracy.txt"), f"Average Accuracy: {average_accuracy(scores)}\n")
    return path


def find_results_file(results: str | os.PathLike) -> Path:
    """The newest ``all_accuracies.json`` at or under ``results``."""
    path = Path(results)
    if path.is_dir():
        found = sorted(path.rglob("all_accuracies.json"), key=lambda p: p.stat().st_mtime)
        if not found:
            from longva_plugins.errors import DataError

            raise DataError(f"no all_accuracies.json under {path}; run `lmms-eval --tasks vniah --output_path {path}` first")
        path = found[-1]
    return path


def load_scores(results: str | os.PathLike) -> list[dict]:
    """Scores from an ``all_accuracies.json`` file or a folder containing one (searched recursively)."""
    return json.loads(find_results_file(results).read_text())


__all__ = ["average_accuracy", "cell_scores", "find_results_file", "load_scores", "write_all_accuracies"]
