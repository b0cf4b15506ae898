"""LongVA-nano beyond the paper: V-NIAH-D and the several-needle tasks, the shipped model beside
its control, without rerunning the whole recipe.

The control (stage 1 stopped after the 256-token phase, then the same stage 2) is built with the
recipe's own steps and seeds (``recipe.py``) in ``--out`` -- about 15 minutes on 2 CPU cores the first
time -- and the long model is the shipped ``longva-nano``. Writes ``beyond.md`` and ``beyond.json``
with the side-by-side heatmaps under ``--out``; ``recipe.py`` runs the same evaluations at its end.

    python examples/nano/beyond_paper.py --out outputs/nano
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import recipe  # noqa: E402  (the recipe's steps, seeds and grids)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/nano")
    args = parser.parse_args()
    from longva_plugins.fileio import atomic_write_text
    from longva_plugins.nano.checkpoint import nano_checkpoint
    from longva_plugins.nano.report import beyond_section

    out = Path(args.out).resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    start = time.time()
    short = recipe.stage1(out, recipe.tower(out), phases=recipe.STAGE1[:1])["short"]
    control = recipe.stage2(out, short, recipe.images(out), "control")
    models = {"long": Path(nano_checkpoint()), "control": control}
    baseline = {model: recipe.vniah(out, checkpoint, "synthetic", f"{model}-synthetic") for model, checkpoint in models.items()}
    beyond = recipe.beyond_the_paper(out, models)
    lines, figures = beyond_section(out, beyond, baseline, train_frames=recipe.STAGE2_MAX_TOKENS / 16)
    elapsed = time.time() - start
    md = [f"# LongVA-nano beyond the paper ({elapsed / 60:.1f} min)", "",
          f"V-NIAH grid `{recipe.GRID}` (16 tokens a frame); the nano needles and distractors; chance of a V-NIAH "
          "cell 1/6.", ""] + lines
    atomic_write_text(out / "beyond.md", "\n".join(md) + "\n")
    atomic_write_text(out / "beyond.json", json.dumps(
        {"elapsed_s": elapsed, "figures": figures,
         "baseline": {m: {k: v for k, v in r.items() if k != "scores"} for m, r in baseline.items()},
         "beyond": {m: {t: {k: v for k, v in r.items() if k != "scores"} for t, r in v.items()} for m, v in beyond.items()}},
        indent=2))
    recipe.log(f"report: {out / 'beyond.md'} ({elapsed / 60:.1f} min)")


if __name__ == "__main__":
    main()
