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

import recipe  # noqa: E402  (run, log)

#: Canonical-options clips (12 frames) per layout, and text-only questions of the same kind.
CLIPS = 1200
TEXT = 3000


def clips(out: Path) -> Path:
    import numpy as np

    from longva_plugins.fileio import atomic_write_text
    from longva_plugins.lmms_eval_plugin.minibench import CLIP_FRAMES, CLIP_SHOT, alignment_records, text_records, write_bench

    folder = out / "clips"
    if not (folder / "data.json").is_file():
        if not (folder / "plans.json").is_file():
            write_bench(folder, 0, {"short": CLIPS}, {"short": CLIP_FRAMES}, CLIP_SHOT, pool=300, canonical=True,
                        progress="canonical clips")
        records = (alignment_records(folder, 0, kinds=("appear",))
                   + text_records(0, TEXT, canonical=True, kinds=("appear",)))
        order = np.random.default_rng(5).permutation(len(records))
        atomic_write_text(folder / "data.json", json.dumps([records[i] for i in order]))
    return folder / "data.json"


def train(out: Path, data: Path, steps: int, lr: float, tag: str) -> tuple[Path, list]:
    from longva_plugins.nano.build import merge_full_weights
    from longva_plugins.nano.checkpoint import nano_checkpoint

    final = out / f"nano-mc-{tag}"
    weights = out / f"stage3-{tag}"
    if not (final / "config.json").is_file():
        recipe.run([sys.executable, "-m", "longva_plugins.cli", "train", recipe.HERE / "stage3_mc.yaml",
                    "--set", f"model_name_or_path={nano_checkpoint()}", "--set", f"data_path={data}",
                    "--set", f"output_dir={weights}", "--set", f"max_steps={steps}", "--set", f"learning_rate={lr}",
                    "--set", "logging_steps=25"],
                   log_file=out / "logs" / f"stage3-{tag}.log")
        merge_full_weights(nano_checkpoint(), weights, final)
    log = (out / "logs" / f"stage3-{tag}.log").read_text(errors="replace")  # the trainer's progress lines
    curve = [{"step": int(m[1]), "loss": float(m[2])} for m in re.finditer(r"step (\d+)/\d+ loss ([0-9.]+)", log)]
    return final, curve


def evaluate(out: Path, checkpoint: Path, tag: str) -> dict:
    from longva_plugins.lmms_eval_plugin.minibench import BENCH_MODEL_ARGS, TASKS, bench_env, bench_scores, make_mini_bench

    bench = out / "mini-bench-canonical"
    if not (bench / "plans.json").is_file():
        make_mini_bench(bench, canonical=True)
    result = out / "mc" / tag
    if not list(result.rglob("*_results.json")):
        env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **bench_env(bench)}
        recipe.run([sys.executable, "-m", "lmms_eval", "eval", "--model", "longva", "--model_args",
                    f"pretrained={checkpoint},{BENCH_MODEL_ARGS}", "--tasks", ",".join(TASKS), "--output_path", result,
                    "--log_samples"], env=env, log_file=out / "logs" / f"mc-{tag}.log")
    scores = bench_scores(result)
    appear = {}
    for task, score in scores.items():
        kinds = score.get("per_task_type") or score.get("per_question_type") or {}
        key = "needle" if task == "longva_mlvu_dev" else "Object Recognition"
        appear[task] = kinds.get(key)
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
    data = clips(out)
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
