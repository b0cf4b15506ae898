"""Two training steps of the tiny LongVA on one engine, as ``longva-plugins train`` runs them, for
the GPU check: ``--engine ddp | fsdp | deepspeed | qlora`` (bf16 on CUDA; ``ddp`` also runs on CPU,
the dry run's case).

    python benchmarks/gpu_train_engines.py --engine fsdp --json OUT.json

FSDP runs under ``torchrun --nproc_per_node 1`` (it needs a process group); DeepSpeed ZeRO-2 with
``examples/deepspeed/zero2.json`` and QLoRA with bitsandbytes when those packages import, else the
engine is reported as skipped with the reason. Writes ``{"engine", "status", "loss", "seconds",
"reason"}``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "training"))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))


def main() -> int:
    import torch

    from longva_plugins.testing import ensure_tiny_checkpoint
    from training_data import media_records

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("ddp", "fsdp", "deepspeed", "qlora"), default="ddp")
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    row = {"engine": args.engine, "cuda": cuda}
    need = {"deepspeed": "deepspeed", "qlora": "bitsandbytes"}.get(args.engine)
    if (args.engine != "ddp" and not cuda) or (need and importlib.util.find_spec(need) is None):
        row.update(status="skipped", reason="needs CUDA" if not cuda else f"{need} is not installed here")
        Path(args.json).write_text(json.dumps(row))
        print(json.dumps(row))
        return 0
    work = Path(tempfile.mkdtemp(prefix=f"train-{args.engine}-"))
    data = work / "data"
    data.mkdir()
    (data / "data.json").write_text(json.dumps(media_records(data)))
    config = {"model_name_or_path": str(ensure_tiny_checkpoint()), "data_path": str(data / "data.json"),
              "output_dir": str(work / "out"), "stage": "lora", "lora_r": 8, "max_frames": 2, "max_steps": 2,
              "save_strategy": "no", "logging_steps": 1, "bf16": cuda, "group_by_modality_length": False}
    if args.engine == "fsdp":
        config.update(fsdp=True, fsdp_config={"transformer_layer_cls_to_wrap": ["Qwen2DecoderLayer"]})
    if args.engine == "deepspeed":
        config["deepspeed"] = str(ROOT / "examples" / "deepspeed" / "zero2.json")
    if args.engine == "qlora":
        config["load_in_4bit"] = True
    (work / "train.yaml").write_text(yaml.safe_dump(config))
    cli = [str(Path(sys.executable).parent / "longva-plugins"), "train", str(work / "train.yaml")]
    if args.engine in ("fsdp", "deepspeed"):
        cli = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "--no-python", *cli]
    start = time.perf_counter()
    proc = subprocess.run(cli, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    row["seconds"] = time.perf_counter() - start
    losses = [float(line.split(" loss ")[1].split()[0]) for line in proc.stderr.splitlines() if " loss " in line]
    ok = proc.returncode == 0 and (work / "out" / "adapter_model.safetensors").is_file() and losses
    row.update(status="passed" if ok else "failed", loss=losses[-1] if losses else None,
               reason=None if ok else proc.stderr[-2000:])
    Path(args.json).write_text(json.dumps(row))
    print(json.dumps({k: v for k, v in row.items() if k != "reason"}))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
