"""The paper-style V-NIAH heatmap (the results it draws: :mod:`longva_plugins.vniah.results`)."""

from __future__ import annotations

import os
from pathlib import Path

from longva_plugins.fileio import atomic_output

PAPER_COLOURS = ("#F0496E", "#EBB839", "#9ad5b3")


def frame_tick(frames: int) -> str:
    """The original's frame tick labels: ``"1.0K"`` for 1000 frames, ``"0.2K"`` for 200 (its grid
    steps by 200). Counts that are not multiples of 100 would all read "0.0K": they stay numbers."""
    return f"{frames / 1000:.1f}K" if frames % 100 == 0 else str(frames)


def draw_heatmap(ax, scores: list[dict], title: str, train_frames: float | None = None,
                 rows: str = "Frame Depth", row_label: str = "Depth Percent"):
    """Draw the V-NIAH heatmap of ``scores`` on a matplotlib axis (see :func:`plot_heatmap`);
    ``rows`` is the score field of the rows (``"Needles"`` for the several-needle task). Returns the
    mesh (for a colour bar)."""
    import numpy as np
    from matplotlib.colors import LinearSegmentedColormap

    frames = sorted({s["Num. Frame"] for s in scores})
    depths = sorted({s[rows] for s in scores})
    grid = np.full((len(depths), len(frames)), np.nan)
    for s in scores:
        grid[depths.index(s[rows]), frames.index(s["Num. Frame"])] = s["Score"]
    cmap = LinearSegmentedColormap.from_list("vniah", list(PAPER_COLOURS))
    mesh = ax.pcolormesh(grid, cmap=cmap, vmin=0, vmax=1, edgecolors="white", linewidth=1.5)
    if not ax.yaxis_inverted():  # depth 0 at the top (axes sharing y are inverted once)
        ax.invert_yaxis()
    ax.set_xticks(np.arange(len(frames)) + 0.5, [frame_tick(f) for f in frames])
    ax.set_yticks(np.arange(len(depths)) + 0.5, [f"{d:g}" for d in depths])
    ax.set_xlabel("Num. of Frames")
    ax.set_ylabel(row_label)
    average = float(np.nanmean(grid)) if grid.size else float("nan")
    ax.set_title(f"{title} (average {average:.3f})")
    if train_frames and len(frames) > 1 and frames[0] <= train_frames <= frames[-1]:
        x = np.interp(train_frames, frames, np.arange(len(frames)) + 0.5)
        ax.axvline(x, color="white", linestyle=":", linewidth=2)
    return mesh


def plot_heatmap(scores: list[dict], path: str | os.PathLike, title: str = "V-NIAH",
                 train_frames: float | None = None, rows: str = "Frame Depth", row_label: str = "Depth Percent") -> Path:
    """The original's V-NIAH heatmap: rows = depth (0 at the top), columns = frames, red -> amber
    -> green over 0..1, white 1.5 px cell borders, "1.0K"-style frame ticks, a 17.5 x 8 inch
    figure, font size 14 (``vision_niah/eval_vision_niah.py`` draws it with seaborn).

    ``train_frames`` adds the dotted line of the paper's figure at the language model's training
    length in frames (e.g. 224K tokens / 144 tokens per frame ~ 1555 for LongVA-7B); the
    original's plotting code has no such line.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - matplotlib is a dependency
        raise ImportError("the V-NIAH heatmap needs matplotlib: pip install matplotlib") from exc
    with plt.rc_context({"font.size": 14}):
        fig, ax = plt.subplots(figsize=(17.5, 8))
        mesh = draw_heatmap(ax, scores, title, train_frames, rows=rows, row_label=row_label)
        fig.colorbar(mesh, ax=ax, label="Score")
        fig.tight_layout()
        path = Path(path)
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=100)
        plt.close(fig)
    return path


__all__ = ["PAPER_COLOURS", "draw_heatmap", "frame_tick", "plot_heatmap"]
