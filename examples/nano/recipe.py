"""LongVA-nano, the whole recipe: long text -> short vision -> long video, zero-shot, with a control.

    python examples/nano/recipe.py --out outputs/nano            # ~30 min on 2 CPU cores
    python examples/nano/recipe.py --out outputs/nano --install  # ... and ship the result in the package

Stage 0 (the tower, ``stage0_tower.py``): the tiny CLIP-style tower is pretrained on its own
procedural scenes (as LongVA's CLIP was pretrained before LongVA), no language model involved.
Stage 1 (long text, ``stage1_text.py``): the nano language model learns text needle-in-a-haystack
with a length curriculum up to ``L_TEXT`` tokens; the last phases split the sequence over 2 gloo
ranks with zigzag ring attention. The *control* is the same run stopped after the short phase.
Stage 2 (short vision, ``longva-plugins train stage2_vision.yaml``): the projector learns, between
the frozen tower and the frozen language model, to answer the colour of the framed square in single
anyres images (at most 10 tiles: under ``L_TEXT / 8`` tokens), with a curriculum (large squares on
grey first). Stage 3 (``--mc``, experimental: multiple-choice alignment, ``longva-plugins train
stage3_mc.yaml``, stage ``full``, tower frozen): questions about 12-frame synthetic clips (which
colour of framed square appears, which first, how many times, in which order) in the exact prompts
of ``longva_videomme``, ``longva_videomme_paper``, ``longva_videomme_w_subtitle`` and
``longva_mlvu_dev``, answered with the option letter, mixed with text-only questions of the same
kinds (``longva_plugins.lmms_eval_plugin.minibench``). Evaluation, all through ``lmms-eval --model longva``:
V-NIAH with the ``nano`` needles on haystacks no stage saw -- the synthetic V-NIAH video (two seeds)
and a video of photographs -- up to ``L_TEXT`` tokens of frames, then to 2x that (``GRID_PAST``) and
``vniah_gen`` (the answer generated); with ``--mc``, the four multiple-choice tasks on the mini
benchmark (``longva-plugins make-mini-bench``: unseen seeds, 64 to 256 frames). Writes
``report.md`` / ``report.json`` and the heatmaps.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: Longest text sample of stage 1 (tokens); V-NIAH goes up to this many tokens of frames.
L_TEXT = 4096
#: Stage-1 phases: (name, min length, max length, steps, ranks). The control stops after "short".
STAGE1 = [
    ("short", 64, 256, 800, 1),
    ("1k", 256, 1024, 150, 1),
    ("2k", 1024, 2048, 80, 2),
    ("long", 2048, L_TEXT, 60, 2),
]
#: Stage-0 (tower pretraining) steps of 16 scenes.
STAGE0_STEPS = 1500
#: Stage-2 phases: (name, difficulty range of the images, images, steps) -- easy scenes first.
STAGE2 = [
    ("easy", "0:0.6", 800, 250),
    ("hard", "0.5:1", 1600, 600),
]
#: The V-NIAH grid: frames x depths (16 tokens a frame: 250 frames = 4000 tokens).
GRID = "frames=10:250:40;depths=0,0.2,0.4,0.6,0.8,1"
#: Stage 3: videos of 12-frame clips per layout (Video-MME: every question a clip supports; MLVU:
#: one), and steps of 8 questions.
MC_CLIPS = 900
#: ... and as many text-only questions (the clips' questions over filler text with colour words
#: planted, up to ~1,000 tokens): the reasoning learnt on text, where it is cheap and long.
MC_TEXT = 4000
STAGE3_STEPS = 500
TEXT_EVAL = [256, 512, 1024, 2048, 4096]
#: Past the training length, as the paper does: up to 2x the stage-1 text length (500 frames = 8000 tokens).
GRID_PAST = "frames=50:500:50;depths=0,0.25,0.5,0.75,1"


def log(message: str) -> None:
    print(f"[nano {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(cmd: list[str], env: dict | None = None, log_file: Path | None = None) -> None:
    log("$ " + " ".join(str(c) for c in cmd))
    with open(log_file, "a") if log_file else open(os.devnull, "w") as sink:
        proc = subprocess.run([str(c) for c in cmd], env={**os.environ, **(env or {})},
                              stdout=sink if log_file else None, stderr=subprocess.STDOUT if log_file else None)
    if proc.returncode:
        raise SystemExit(f"step failed (exit {proc.returncode}): {' '.join(map(str, cmd))}"
                         + (f"; see {log_file}" if log_file else ""))


def stage1(out: Path, init: Path, phases=STAGE1) -> dict[str, Path]:
    """Run the text curriculum (``phases``, by default all); return the checkpoint after each phase."""
    done, previous = {}, init
    for name, lo, hi, steps, ranks in phases:
        target = out / f"stage1-{name}"
        if not (target / "config.json").is_file():
            launcher = [sys.executable] if ranks == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                             f"--nproc_per_node={ranks}"]
            run(launcher + [HERE / "stage1_text.py", "--checkpoint", previous, "--out", target, "--min-length", lo,
                            "--max-length", hi, "--steps", steps, "--warmup", 50 if previous == init else 0],
                log_file=out / "logs" / f"stage1-{name}.log")
        done[name], previous = target, target
    return done


def text_eval(out: Path, checkpoint: Path, name: str) -> dict:
    report = out / f"text-niah-{name}.json"
    if not report.is_file():
        run([sys.executable, HERE / "stage1_text.py", "--checkpoint", checkpoint, "--steps", 0, "--eval-lengths",
             ",".join(map(str, TEXT_EVAL)), "--report", report], log_file=out / "logs" / f"text-eval-{name}.log")
    return json.loads(report.read_text())


def images(out: Path) -> dict[str, Path]:
    data = {}
    for i, (name, difficulty, count, _) in enumerate(STAGE2):
        folder = out / f"images-{name}"
        if not (folder / "data.json").is_file():
            run([sys.executable, HERE / "make_images.py", "--out", folder, "--count", count, "--seed", 100 + i,
                 "--difficulty", difficulty], log_file=out / "logs" / f"images-{name}.log")
        data[name] = folder / "data.json"
    return data


def stage2(out: Path, lm: Path, data: dict[str, Path], label: str) -> Path:
    """Both stage-2 phases on top of the language model ``lm``; returns the assembled checkpoint."""
    from longva_plugins.nano.build import merge_vision_weights

    final = out / f"nano-{label}"
    if (final / "config.json").is_file():
        return final
    previous = lm
    for name, _, _, steps in STAGE2:
        weights = out / f"stage2-{label}-{name}"
        run([sys.executable, "-m", "longva_plugins.cli", "train", HERE / "stage2_vision.yaml",
             "--set", f"model_name_or_path={previous}", "--set", f"data_path={data[name]}",
             "--set", f"output_dir={weights}", "--set", f"max_steps={steps}"],
            log_file=out / "logs" / f"stage2-{label}-{name}.log")
        previous = merge_vision_weights(previous, weights, out / f"stage2-{label}-{name}-merged")
    shutil.copytree(previous, final)
    return final


def tower(out: Path) -> Path:
    """The untrained nano and stage 0 (the tower pretrained on its own); returns stage 0's checkpoint."""
    from longva_plugins.nano.build import make_nano_init

    init = out / "init"
    if not (init / "config.json").is_file():
        make_nano_init(init)
    trained = out / "stage0-tower"
    if not (trained / "config.json").is_file():
        run([sys.executable, HERE / "stage0_tower.py", "--checkpoint", init, "--out", trained, "--steps", STAGE0_STEPS],
            log_file=out / "logs" / "stage0-tower.log")
    return trained


def mc_clips(out: Path, folder: str = "mc-clips", clips: int = MC_CLIPS, text: int = MC_TEXT, canonical: bool = False,
             kinds: tuple[str, ...] | None = None) -> Path:
    """The stage-3 clips (seed 0; the mini benchmark uses seed 1000), their conversations and the
    text-only questions, shuffled together: ``clips`` videos per layout and ``text`` questions, of
    ``kinds`` (default all), in the canonical-options mode when ``canonical``."""
    from longva_plugins.fileio import atomic_write_text
    import numpy as np

    from longva_plugins.lmms_eval_plugin.minibench import (
        CLIP_FRAMES, CLIP_SHOT, KINDS, alignment_records, text_records, write_bench,
    )

    kinds = kinds or KINDS
    folder = out / folder
    if not (folder / "data.json").is_file():
        log(f"stage-3 clips: {clips} videos of {CLIP_FRAMES} frames per layout")
        if not (folder / "plans.json").is_file():
            write_bench(folder, 0, {"short": clips}, {"short": CLIP_FRAMES}, CLIP_SHOT, pool=300, canonical=canonical)
        records = (alignment_records(folder, 0, kinds=kinds)
                   + text_records(0, text, canonical=canonical, kinds=kinds))
        order = np.random.default_rng(5).permutation(len(records))
        atomic_write_text(folder / "data.json", json.dumps([records[i] for i in order]))
    return folder / "data.json"


def stage3(out: Path, vision: Path, data: Path, label: str, steps: int = STAGE3_STEPS, overrides=()) -> Path:
    """Multiple-choice alignment on top of the stage-2 model ``vision`` (``overrides``: more
    ``KEY=VALUE`` settings); returns the final checkpoint."""
    from longva_plugins.nano.build import merge_full_weights

    final = out / f"nano-mc-{label}"
    if (final / "config.json").is_file():
        return final
    weights = out / f"stage3-{label}"
    sets = [arg for pair in (f"model_name_or_path={vision}", f"data_path={data}", f"output_dir={weights}",
                             f"max_steps={steps}", *overrides) for arg in ("--set", pair)]
    run([sys.executable, "-m", "longva_plugins.cli", "train", HERE / "stage3_mc.yaml", *sets],
        log_file=out / "logs" / f"stage3-{label}.log")
    return merge_full_weights(vision, weights, final)


def mini_bench(out: Path, canonical: bool = False) -> Path:
    from longva_plugins.lmms_eval_plugin.minibench import make_mini_bench

    folder = out / ("mini-bench-canonical" if canonical else "mini-bench")
    if not (folder / "plans.json").is_file():
        make_mini_bench(folder, canonical=canonical)
    return folder


def multiple_choice(out: Path, checkpoint: Path, bench: Path, tag: str) -> dict:
    """The four multiple-choice tasks on the mini benchmark through lmms-eval: ``{task: scores}``."""
    from longva_plugins.lmms_eval_plugin.minibench import BENCH_MODEL_ARGS, TASKS, bench_env, bench_scores

    result_dir = out / "mc" / tag
    if not list(result_dir.rglob("*_results.json")):
        env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **bench_env(bench)}
        run([sys.executable, "-m", "lmms_eval", "eval", "--model", "longva", "--model_args",
             f"pretrained={checkpoint},{BENCH_MODEL_ARGS}", "--tasks", ",".join(TASKS), "--output_path", result_dir,
             "--log_samples"], env=env, log_file=out / "logs" / f"mc-{tag}.log")
    return bench_scores(result_dir)


def photo_haystack(out: Path) -> Path:
    path = out / "haystacks" / "photos-510.mp4"  # 2x the stage-1 text length, for GRID_PAST
    if not path.is_file():
        run([sys.executable, HERE / "make_photo_video.py", "--out", path, "--frames", 510])
    return path


def _lmms_eval_vniah(out: Path, checkpoint: Path, haystack: str, tag: str, task: str, grid: str = "",
                     **env) -> Path:
    """One V-NIAH-family task through lmms-eval (once per ``tag``); returns its ``--output_path``."""
    result_dir = out / "vniah" / tag
    if not list(result_dir.rglob("*_results.json")):
        env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "LONGVA_VNIAH_GRID": grid or GRID, "LONGVA_VNIAH_HAYSTACK": haystack, "LONGVA_VNIAH_NEEDLES": "nano",
               "LONGVA_VNIAH_TRAIN_FRAMES": str(STAGE2_MAX_TOKENS // 16), **env}
        run([sys.executable, "-m", "lmms_eval", "eval", "--model", "longva", "--model_args", f"pretrained={checkpoint}",
             "--tasks", task, "--output_path", result_dir], env=env, log_file=out / "logs" / f"vniah-{tag}.log")
    return result_dir


def vniah(out: Path, checkpoint: Path, haystack: str, tag: str, task: str = "vniah", grid: str = "") -> dict:
    """V-NIAH (``task``: ``vniah``, ``vniah_gen``: the answer generated, ``vniah_d``: with
    distractors) through lmms-eval; returns ``{"average", "by_frames", "heatmap", "scores"}``
    (``vniah_d_gen`` adds ``"breakdown"``, with the share of answers that name the distractor)."""
    from longva_plugins.nano.report import vniah_summary

    result_dir = _lmms_eval_vniah(out, checkpoint, haystack, tag, task, grid)
    summary = vniah_summary(result_dir)
    breakdown = result_dir / "longva" / task / "breakdown.json"
    if breakdown.is_file():
        summary["breakdown"] = json.loads(breakdown.read_text())
    return summary


def vniah_multi(out: Path, checkpoint: Path, tag: str, fmt: str) -> dict:
    """Several needles (retrieval, ordering, counting; 1-3 needles) on the synthetic haystack,
    ``fmt`` ``mc`` (VNBench's circular multiple choice) or ``open``; returns its ``breakdown.json``."""
    result_dir = _lmms_eval_vniah(out, checkpoint, "synthetic", tag, "vniah_multi", LONGVA_VNIAH_MULTI_FORMAT=fmt,
                                  LONGVA_VNIAH_MULTI_NEEDLES="1,2,3")
    return json.loads((result_dir / "longva" / "vniah_multi" / "breakdown.json").read_text())


def beyond_the_paper(out: Path, models: dict[str, Path]) -> dict:
    """V-NIAH-D and the several-needle tasks for every model: ``{model: {...}}`` (docs/vniah.md)."""
    results = {}
    for model, checkpoint in models.items():
        results[model] = {
            "vniah_d": vniah(out, checkpoint, "synthetic", f"{checkpoint.name}-d", "vniah_d"),
            "vniah_d_gen": vniah(out, checkpoint, "synthetic", f"{checkpoint.name}-d-gen", "vniah_d_gen"),
            "multi_open": vniah_multi(out, checkpoint, f"{checkpoint.name}-multi-open", "open"),
            "multi_mc": vniah_multi(out, checkpoint, f"{checkpoint.name}-multi-mc", "mc"),
        }
        log(f"beyond the paper, {model}: V-NIAH-D {results[model]['vniah_d']['average']:.3f}, several needles "
            f"open {results[model]['multi_open']['overall']:.3f}, mc {results[model]['multi_mc']['overall']:.3f}")
    return results


#: Longest stage-2 sample: 10 tiles of 16 tokens plus the text (drawn as a line on the heatmaps).
STAGE2_MAX_TOKENS = 10 * 16


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/nano")
    parser.add_argument("--install", action="store_true", help="copy the long model into the package (nano_checkpoint())")
    parser.add_argument("--mc", action="store_true", help="experimental: add stage 3 (multiple-choice alignment) and score "
                        "the multiple-choice tasks on the mini benchmark (not yet part of the shipped model: see docs/nano.md)")
    args = parser.parse_args()
    from longva_plugins.nano.build import install_nano
    from longva_plugins.nano.report import write_report

    out = Path(args.out).resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    start = time.time()
    lms = stage1(out, tower(out))
    text = {"long": text_eval(out, lms["long"], "long"), "control": text_eval(out, lms["short"], "control")}
    log(f"text NIAH: {text}")
    data = images(out)
    vision = {"long": stage2(out, lms["long"], data, "long"), "control": stage2(out, lms["short"], data, "control")}
    models, mc = vision, {}
    if args.mc:
        clips = mc_clips(out)
        models = {label: stage3(out, checkpoint, clips, label) for label, checkpoint in vision.items()}
        bench = mini_bench(out)
        for model, checkpoint in models.items():
            mc[model] = multiple_choice(out, checkpoint, bench, checkpoint.name)
            log(f"multiple choice {model}: " + ", ".join(f"{t} {s['accuracy']:.3f}" for t, s in mc[model].items()))
    haystacks = {"synthetic": "synthetic", "synthetic-seed7": "synthetic:7", "photos": str(photo_haystack(out))}
    results = {}
    for model, checkpoint in models.items():
        for hay, spec in haystacks.items():
            results[f"{model}/{hay}"] = vniah(out, checkpoint, spec, f"{checkpoint.name}-{hay}")
            log(f"V-NIAH {model} on {hay}: average {results[f'{model}/{hay}']['average']:.3f}")
    for model, checkpoint in models.items():  # past the training length
        for hay in ("synthetic", "photos"):
            key = f"{model}/{hay}-to-500"
            results[key] = vniah(out, checkpoint, haystacks[hay], f"{checkpoint.name}-{hay}-to-500", grid=GRID_PAST)
            log(f"V-NIAH {model} on {hay} to 500 frames: average {results[key]['average']:.3f}")
    for model, checkpoint in models.items():  # the answer generated, as LongVA's own V-NIAH script does
        results[f"{model}/synthetic-gen"] = vniah(out, checkpoint, "synthetic", f"{checkpoint.name}-gen", "vniah_gen")
        log(f"V-NIAH (generation) {model}: average {results[f'{model}/synthetic-gen']['average']:.3f}")
    beyond = beyond_the_paper(out, models)
    elapsed = time.time() - start
    report = write_report(out, text, results, elapsed, L_TEXT, STAGE2_MAX_TOKENS, GRID, mc, beyond=beyond)
    log(f"report: {report} ({elapsed / 60:.1f} min)")
    if args.install:
        log(f"installed: {install_nano(models['long'])}")


if __name__ == "__main__":
    main()
