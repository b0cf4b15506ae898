"""LongVA-nano's report: V-NIAH accuracy by frame count, text NIAH by length, side-by-side heatmaps."""

from __future__ import annotations

import json
from pathlib import Path

from longva_plugins.fileio import atomic_output, atomic_write_text
from longva_plugins.vniah.results import average_accuracy, find_results_file, load_scores


def by_frames(scores: list[dict]) -> dict[int, float]:
    """Mean score per frame count (over depths) of ``all_accuracies`` rows."""
    groups: dict[int, list[float]] = {}
    for s in scores:
        groups.setdefault(int(s["Num. Frame"]), []).append(float(s["Score"]))
    return {n: sum(v) / len(v) for n, v in sorted(groups.items())}


def vniah_summary(result_dir: str | Path) -> dict:
    """``{"average", "by_frames", "heatmap", "scores"}`` of one V-NIAH run (its ``--output_path``)."""
    path = find_results_file(result_dir)
    scores = load_scores(path)
    return {"average": average_accuracy(scores), "by_frames": by_frames(scores),
            "heatmap": str(path.with_name("heatmap.png")), "scores": scores}


def side_by_side(left: list[dict], right: list[dict], titles: tuple[str, str], path: str | Path,
                 train_frames: float | None = None, rows: str = "Frame Depth", row_label: str = "Depth Percent") -> Path:
    """Two V-NIAH heatmaps in one figure (drawn as :func:`~longva_plugins.vniah.plot.plot_heatmap` draws one);
    ``rows`` / ``row_label`` as there (``"Needles"`` for the several-needle task)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from longva_plugins.vniah.plot import draw_heatmap

    with plt.rc_context({"font.size": 12}):
        fig, axes = plt.subplots(1, 2, figsize=(17, 4.8), sharey=True)
        for ax, scores, title in zip(axes, (left, right), titles):
            mesh = draw_heatmap(ax, scores, title, train_frames, rows=rows, row_label=row_label)
        axes[1].set_ylabel("")
        fig.colorbar(mesh, ax=list(axes), label="Score")
        path = Path(path)
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=90, bbox_inches="tight")
        plt.close(fig)
    return path


def _table(rows: dict[str, dict], key_name: str) -> list[str]:
    keys = sorted({k for r in rows.values() for k in r}, key=int)
    lines = [f"| {key_name} | " + " | ".join(str(k) for k in keys) + " |",
             "|---|" + "---:|" * len(keys)]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[k]:.2f}" if k in row else "" for k in keys) + " |")
    return lines


def _mc_table(mc: dict) -> list[str]:
    """Accuracy per task and model, and by duration (Video-MME) / question type (MLVU)."""
    lines = ["| model | task | accuracy | n | by duration | by question type |", "|---|---|---:|---:|---|---|"]
    for model, tasks in mc.items():
        for task, score in tasks.items():
            parts = score.get("per_duration", {})
            kinds = score.get("per_task_type") or score.get("per_question_type") or {}
            lines.append(f"| {model} | {task} | {score['accuracy']:.3f} | {score['n']} | "
                         + ", ".join(f"{k} {v:.2f}" for k, v in parts.items()) + " | "
                         + ", ".join(f"{k} {v:.2f}" for k, v in kinds.items()) + " |")
    return lines


TITLES = ("LongVA-nano (long text)", "control (short text)")


def beyond_section(out: Path, beyond: dict, baseline: dict, train_frames: float | None = None) -> tuple[list[str], dict]:
    """Markdown and side-by-side figures of V-NIAH-D and the several-needle tasks (``beyond``:
    ``{model: recipe.beyond_the_paper()[model]}``; ``baseline``: ``{model: V-NIAH summary}`` on the
    same haystack and grid, for comparison)."""
    md = ["## V-NIAH-D: a distractor beside the needle (synthetic haystack)", "",
          "| model | V-NIAH | V-NIAH-D | by side of the distractor | generated: right / named the distractor |",
          "|---|---:|---:|---|---|"]
    figures = {}
    for model, result in beyond.items():
        d, gen = result["vniah_d"], result["vniah_d_gen"]
        sides = ", ".join(f"{k} {v:.2f}" for k, v in d.get("breakdown", {}).get("by_side", {}).items())
        named = gen.get("breakdown", {}).get("distracted")
        md.append(f"| {model} | {baseline[model]['average']:.3f} | {d['average']:.3f} | {sides} | "
                  f"{gen['average']:.3f} / {named:.3f} |" if named is not None else f"| {model} | "
                  f"{baseline[model]['average']:.3f} | {d['average']:.3f} | {sides} | {gen['average']:.3f} |")
    md += ["", "Accuracy by frame count (V-NIAH-D):", ""]
    md += _table({model: r["vniah_d"]["by_frames"] for model, r in beyond.items()}, "model")
    models = list(beyond)
    if len(models) == 2:
        figure = side_by_side(beyond[models[0]]["vniah_d"]["scores"], beyond[models[1]]["vniah_d"]["scores"], TITLES,
                              out / "heatmaps-vniah-d.png", train_frames=train_frames)
        figures["vniah_d"] = str(figure)
        md += ["", f"![V-NIAH-D]({figure.name})"]
    md += ["", "## Several needles (VNBench's kinds; synthetic haystack)", "",
           "| model | format | overall | retrieval | ordering | counting | chance (retrieval / ordering / counting) |",
           "|---|---|---:|---:|---:|---:|---|"]
    for model, result in beyond.items():
        for fmt in ("open", "mc"):
            b = result[f"multi_{fmt}"]
            kinds = b["kinds"]
            chance = " / ".join(f"{b['chance'][k]:.4f}" for k in ("retrieval", "ordering", "counting")) if "chance" in b else "-"
            md.append(f"| {model} | {fmt} | {b['overall']:.3f} | " + " | ".join(f"{kinds.get(k, float('nan')):.3f}"
                      for k in ("retrieval", "ordering", "counting")) + f" | {chance} |")
    if len(models) == 2:
        for kind in ("retrieval", "ordering", "counting"):
            left, right = (beyond[m]["multi_open"]["cells"].get(kind) for m in models)
            if left and right:
                figure = side_by_side(left, right, TITLES, out / f"heatmaps-multi-{kind}.png", rows="Needles",
                                      row_label="Needles")
                figures[f"multi_{kind}"] = str(figure)
                md += ["", f"Open-format {kind}, accuracy by frames x needles:", "", f"![{kind}]({figure.name})"]
    return md, figures


def write_report(out: Path, text: dict, vniah: dict, elapsed_s: float, l_text: int, align_tokens: int,
                 grid: str, mc: dict | None = None, beyond: dict | None = None) -> Path:
    """``report.json``, ``report.md`` and one side-by-side heatmap per haystack under ``out``."""
    tokens_per_frame = 16
    hays = sorted({k.split("/", 1)[1] for k in vniah})
    md = [f"# LongVA-nano recipe report ({elapsed_s / 60:.1f} min)", "",
          f"L_text = {l_text} tokens; longest stage-2 image = {align_tokens} visual tokens; "
          f"V-NIAH grid `{grid}`, {tokens_per_frame} tokens a frame.", "",
          "## Text needle-in-a-haystack (stage 1), accuracy by length in tokens", ""]
    md += _table({name: {int(k): v for k, v in row.items()} for name, row in text.items()}, "model")
    md += ["", "## V-NIAH (zero-shot), accuracy by frame count", ""]
    md += _table({f"{k} (avg {v['average']:.3f})": v["by_frames"] for k, v in vniah.items()}, "model / haystack")
    if mc:
        md += ["", "## Multiple choice on the mini benchmark (lmms-eval, chance 0.25)", ""]
        md += _mc_table(mc)
    figures = {}
    for hay in hays:
        long, control = vniah.get(f"long/{hay}"), vniah.get(f"control/{hay}")
        if long and control:
            figure = side_by_side(long["scores"], control["scores"], ("LongVA-nano (long text)", "control (short text)"),
                                  out / f"heatmaps-{hay}.png", train_frames=align_tokens / tokens_per_frame)
            figures[hay] = str(figure)
            md += ["", f"![{hay}]({figure.name})"]
    if beyond:
        baseline = {model: vniah[f"{model}/synthetic"] for model in beyond if f"{model}/synthetic" in vniah}
        lines, more = beyond_section(out, beyond, baseline, train_frames=align_tokens / tokens_per_frame)
        md += [""] + lines
        figures.update(more)
    payload = {"elapsed_s": elapsed_s, "l_text": l_text, "align_tokens": align_tokens, "grid": grid, "text_niah": text,
               "vniah": {k: {kk: vv for kk, vv in v.items() if kk != "scores"} for k, v in vniah.items()},
               "figures": figures, "multiple_choice": mc or {},
               "beyond_the_paper": {m: {t: {kk: vv for kk, vv in r.items() if kk != "scores"} for t, r in v.items()}
                                    for m, v in (beyond or {}).items()}}
    atomic_write_text(out / "report.json", json.dumps(payload, indent=2))
    path = out / "report.md"
    atomic_write_text(path, "\n".join(md) + "\n")
    return path


__all__ = ["beyond_section", "by_frames", "side_by_side", "vniah_summary", "write_report"]
