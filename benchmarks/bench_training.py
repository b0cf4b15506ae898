"""Training cost measured side by side: precision, gradient checkpointing, sequence parallelism, packing.

Each measurement is a fresh process running ``longva-plugins train``'s code path
(``benchmarks/_train_probe.py``: config -> ``build_trainer`` -> ``train``) on a 16-layer tiny LongVA
(hidden 256, LoRA r 8, 144 visual tokens per frame), CPU:

- precision and checkpointing: fp32 / bf16, with and without gradient checkpointing, one 64-frame
  video per step;
- sequence parallelism: one process vs ``sequence_parallel: 2`` on 2 ranks (``torchrun``), one
  32/64/128-frame video per step (each rank encodes the frames; the sequence is sharded);
- packing: a length-skewed mix (short text, one long image sample in eight), 8 samples a step,
  padded vs first-fit packed, in non-padding tokens per second.

"step MiB" is what training adds to the process: its peak resident set minus the resident set
when training began (model loaded); "peak MiB" is the whole process (per rank: the largest rank).
"step s" is the median optimizer step after the first.

    python benchmarks/bench_training.py [--frames 32,64,128] [--steps 3] [--only precision,sp,packing]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "e2e"))


def _dataset(folder: Path, frames: int, samples: int = 2) -> Path:
    from e2e_media import write_video

    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(samples):
        video = folder / f"v{frames}-{i}.mp4"
        if not video.is_file():
            write_video(video, num_frames=frames, seed=i)
        records.append({"id": f"v{i}", "video": video.name, "conversations": [
            {"from": "human", "value": "<image>\nWhat moves in this video?"}, {"from": "gpt", "value": "a white bar"}]})
    path = folder / f"videos-{frames}.json"
    path.write_text(json.dumps(records))
    return path


def _skewed(folder: Path, samples: int = 32) -> Path:
    from e2e_media import write_image

    folder.mkdir(parents=True, exist_ok=True)
    write_image(folder / "wide.png", size=(900, 300))
    records = []
    for i in range(samples):
        if i % 8 == 0:  # one long sample (an image: 3 UniRes tiles, 432 visual tokens) in eight
            records.append({"id": f"img{i}", "image": "wide.png", "conversations": [
                {"from": "human", "value": "<image>\nDescribe the image."}, {"from": "gpt", "value": "noise " * 8}]})
        else:
            records.append({"id": f"txt{i}", "conversations": [
                {"from": "human", "value": "Say " + "yes " * (1 + i % 5)}, {"from": "gpt", "value": "yes " * (1 + i % 3)}]})
    path = folder / "skewed.json"
    path.write_text(json.dumps(records))
    return path


def run(checkpoint: str, data: Path, work: Path, name: str, steps: int, world: int = 1, **settings) -> dict:
    """One fresh training process (or ``world`` ranks); the probe's record of the largest rank."""
    run_dir = work / name
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {"model_name_or_path": checkpoint, "data_path": str(data), "output_dir": str(run_dir / "out"),
              "stage": "lora", "lora_r": 8, "lora_dropout": 0.0, "max_steps": steps, "save_strategy": "no",
              "lr_scheduler_type": "constant", "warmup_steps": 0, "learning_rate": 1e-3, "logging_steps": 1000,
              "group_by_modality_length": False, **settings}
    (run_dir / "train.yaml").write_text(yaml.safe_dump(config))
    probe = [str(HERE / "_train_probe.py"), str(run_dir / "train.yaml"), str(run_dir / "probe")]
    cmd = [sys.executable, *probe] if world == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(world), *probe]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    with open(run_dir / "log.txt", "w") as log:
        code = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    records = [json.loads(p.read_text()) for p in sorted(run_dir.glob("probe.*.json"))]
    if code or len(records) != world:
        raise SystemExit(f"{name}: training failed (exit status {code}); log: {run_dir / 'log.txt'}")
    for r in records:
        r["step_mib"] = r["peak_mib"] - r["rss_begin_mib"]
        later = r["steps"][1:] or r["steps"]
        r["step_s"] = statistics.median(later)
        r["tokens_per_s"] = sum(r["tokens"][1:]) / sum(r["steps"][1:]) if len(r["steps"]) > 1 else float("nan")
    return max(records, key=lambda r: r["step_mib"])


def main() -> int:
    from rich.console import Console
    from rich.table import Table

    from bench_vniah_lmms_eval import _checkpoint

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", default="32,64,128")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--only", default="precision,sp,packing")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    checkpoint = _checkpoint(args.layers, args.hidden)
    work = Path(tempfile.mkdtemp(prefix="bench-training-"))
    console = Console()
    title = f"tiny LongVA {args.layers} layers x {args.hidden}, LoRA r 8, CPU ({os.cpu_count()} cores)"

    if "precision" in parts:
        data = _dataset(work / "data", 64)
        table = Table(title=f"64-frame video per step: precision and checkpointing ({title})")
        for column in ("run", "step s", "step MiB", "peak MiB", "step MiB / fp32"):
            table.add_column(column, justify="right")
        base = None
        for label, settings in (("fp32", {}), ("bf16", {"bf16": True}),
                                ("fp32 + checkpointing", {"activation_checkpointing": True}),
                                ("bf16 + checkpointing", {"bf16": True, "activation_checkpointing": True})):
            r = run(checkpoint, data, work, label.replace(" + ", "-"), args.steps, max_frames=64, **settings)
            base = base or r["step_mib"]
            table.add_row(label, f"{r['step_s']:.2f}", f"{r['step_mib']:.0f}", f"{r['peak_mib']:.0f}",
                          f"{r['step_mib'] / base:.2f}")
            console.print(f"{label}: step {r['step_s']:.2f} s, step {r['step_mib']:.0f} MiB, peak {r['peak_mib']:.0f} MiB")
        console.print(table)

    if "sp" in parts:
        table = Table(title=f"one video per step: 1 process vs sequence_parallel 2 ({title}, fp32)")
        for column in ("frames", "tokens", "step s (1)", "step MiB (1)", "step s (2 ranks)", "per-rank step MiB",
                       "per-rank / one process"):
            table.add_column(column, justify="right")
        for frames in [int(f) for f in args.frames.split(",")]:
            data = _dataset(work / "data", frames)
            one = run(checkpoint, data, work, f"sp1-{frames}", args.steps, max_frames=frames)
            two = run(checkpoint, data, work, f"sp2-{frames}", args.steps, world=2, max_frames=frames,
                      sequence_parallel=2)
            ratio = two["step_mib"] / one["step_mib"]
            table.add_row(str(frames), str(one["tokens"][0]), f"{one['step_s']:.2f}", f"{one['step_mib']:.0f}",
                          f"{two['step_s']:.2f}", f"{two['step_mib']:.0f}", f"{ratio:.2f}")
            console.print(f"{frames} frames: one process {one['step_mib']:.0f} MiB {one['step_s']:.2f} s; 2 ranks "
                          f"{two['step_mib']:.0f} MiB per rank {two['step_s']:.2f} s; ratio {ratio:.2f}")
        console.print(table)

    if "packing" in parts:
        data = _skewed(work / "data")
        table = Table(title=f"length-skewed mix, 8 samples per step: padded vs packed ({title}, fp32)")
        for column in ("batches", "tokens/s (no padding)", "step s", "step MiB", "speed-up"):
            table.add_column(column, justify="right")
        padded = run(checkpoint, data, work, "padded", args.steps + 1, per_device_train_batch_size=8)
        packed = run(checkpoint, data, work, "packed", args.steps + 1, per_device_train_batch_size=8, packing=True)
        for label, r in (("padded", padded), ("packed (first-fit)", packed)):
            table.add_row(label, f"{r['tokens_per_s']:.0f}", f"{r['step_s']:.2f}", f"{r['step_mib']:.0f}",
                          f"{r['tokens_per_s'] / padded['tokens_per_s']:.2f}")
        console.print(table)
    console.print(f"runs and logs: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
