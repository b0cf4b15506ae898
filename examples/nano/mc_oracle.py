"""LongVA-nano-mc: a multiple-choice *oracle* for the Video-MME / MLVU chains (issue 36, item 5).

LongVA-nano reads the colour of the framed square but cannot learn, in budget, to look that colour
up among shuffled options (docs/research/multiple-choice-probes.md). With *canonical options*
(``make-mini-bench --canonical-options``: every colour question lists red, green, blue, yellow in
that order) the letter is a function of the colour seen, which a model of this size learns. This
script trains stage 3 on such clips from the shipped nano, then runs ``longva_videomme``,
``longva_videomme_paper``, ``longva_videomme_w_subtitle`` and ``longva_mlvu_dev`` through
lmms-eval on a canonical mini benchmark (seed 1000, never trained on) and reports the ``appear``
questions' accuracy per task -- target >= 0.8 -- and the loss curve.

    python examples/nano/mc_oracle.py --out outputs/nano-mc [--steps 600] [--install]

Bounded by issue 36: each run at most 20 minutes of training on 2 CPU cores (``--steps`` 550 of 8
questions is about 17 minutes there); two runs at most.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import recipe  # noqa: E402  (the recipe's steps: clips, stage 3, the mini benchmark run)

#: Canonical-options clips (12 frames) per layout, and text-only questions of the same kind.
CLIPS = 1200
TEXT = 3000


def train(out: Path, data: Path, steps: int, lr: float, tag: str) -> tuple[Path, list]:
    """Stage 3 (the recipe's) from the shipped nano; returns the checkpoint and the loss curve."""
    from longva_plugins.nano.checkpoint import nano_checkpoint

    final = recipe.stage3(out, nano_checkpoint(), data, tag, steps=steps,
                          overrides=(f"learning_rate={lr}", "logging_steps=25"))
    log = (out / "logs" / f"stage3-{tag}.log").read_text(errors="replace")  # the trainer's progress lines
    curve = [{"step": int(m[1]), "loss": float(m[2])} for m in re.finditer(r"step (\d+)/\d+ loss ([0-9.]+)", log)]
    return final, curve


def evaluate(out: Path, checkpoint: Path, tag: str) -> dict:
    """The four tasks on the canonical mini benchmark (the recipe's run); their scores and the
    ``appear`` questions' accuracy per task."""
    scores = recipe.multiple_choice(out, checkpoint, recipe.mini_bench(out, canonical=True), tag)
    appear = {}
    for task, score in scores.items():
        kinds = score.get("per_task_type") or score.get("per_question_type") or {}
        appear[task] = kinds.get("needle" if task == "longva_mlvu_dev" else "Object Recognition")
    return {"scores": scores, "appear": appear}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/nano-mc")
    parser.add_argument("--steps", type=int, default=550)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--tag", default="run1")
    parser.add_argument("--install", action="store_true", help="copy the model into the package as longva-nano-mc")
    args = parser.parse_args()
    from longva_plugins.fileio import atomic_write_text

    out = Path(args.out).resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    start = time.time()
    data = recipe.mc_clips(out, "clips", CLIPS, TEXT, canonical=True, kinds=("appear",))
    recipe.log(f"clips ready ({(time.time() - start) / 60:.1f} min)")
    checkpoint, curve = train(out, data, args.steps, args.lr, args.tag)
    trained = time.time()
    recipe.log(f"stage 3 done ({(trained - start) / 60:.1f} min): {curve[-3:] if curve else 'no log'}")
    result = evaluate(out, checkpoint, args.tag)
    report = {"tag": args.tag, "lr": args.lr, "steps": args.steps, "curve": curve, **result,
              "minutes": {"total": (time.time() - start) / 60, "train_and_clips": (trained - start) / 60}}
    atomic_write_text(out / f"report-{args.tag}.json", json.dumps(report, indent=2))
    recipe.log("appear accuracy: " + ", ".join(f"{t} {a}" for t, a in result["appear"].items()))
    if args.install:
        from longva_plugins.nano.build import install_nano
        from longva_plugins.nano.checkpoint import SHIPPED_MC

        recipe.log(f"installed: {install_nano(checkpoint, name=Path(SHIPPED_MC).name)}")


if __name__ == "__main__":
    main()
