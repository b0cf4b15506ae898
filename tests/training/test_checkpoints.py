"""Checkpoints that survive a kill, resume that picks only complete checkpoints, and data-parallel
training under torchrun on 2 CPU ranks -- each run in its own process, as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from longva_plugins.errors import SettingError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from training_data import media_records, write_video  # noqa: E402

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
CLI = [sys.executable, "-m", "longva_plugins.cli", "train"]


@pytest.fixture(scope="module")
def run_config(tmp_path_factory):
    from longva_plugins.testing import ensure_tiny_checkpoint

    root = tmp_path_factory.mktemp("ckpt-data")
    records = media_records(root) + [
        {"id": "txt2", "conversations": [{"from": "human", "value": "Say no."}, {"from": "gpt", "value": "no"}]},
    ]
    (root / "data.json").write_text(json.dumps(records))
    # LLaVA's defaults otherwise (cosine schedule with warmup, LoRA dropout 0.05: RNG, scheduler and
    # data order all have to come back on resume)
    config = {"model_name_or_path": str(ensure_tiny_checkpoint()), "data_path": str(root / "data.json"),
              "stage": "lora", "lora_r": 8, "max_frames": 2, "learning_rate": 5e-3, "max_steps": 6,
              "save_steps": 2, "save_total_limit": 2, "seed": 3}
    return config


def _write(config: dict, folder: Path, **changes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "train.yaml"
    path.write_text(yaml.safe_dump({**config, "output_dir": str(folder / "out"), **changes}))
    return path


def _adapter(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / "out" / "adapter_model.safetensors")


KILLER = """
import os, signal, sys, yaml
from transformers import TrainerCallback
from longva_plugins.training.config import parse_training_config
from longva_plugins.training.run import build_trainer

class KillAt(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)  # no clean-up of any kind, as an OOM killer or a pre-emption

config, args = parse_training_config(yaml.safe_load(open(sys.argv[1])))
trainer = build_trainer(config, args)
trainer.add_callback(KillAt())
trainer.train()
"""


@pytest.mark.slow
def test_a_run_killed_after_a_checkpoint_resumes_to_the_same_adapter(run_config, tmp_path):
    whole = _write(run_config, tmp_path / "whole")
    done = subprocess.run(CLI + [str(whole)], env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    killed = _write(run_config, tmp_path / "killed")
    proc = subprocess.run([sys.executable, "-c", KILLER, str(killed), "5"], env=ENV, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    out = tmp_path / "killed" / "out"
    assert (out / "checkpoint-4" / "trainer_state.json").is_file() and not (out / "adapter_model.safetensors").exists()
    # a kill during the next save: the folder is there, its trainer state (written last) is not
    cut = out / "checkpoint-6"
    cut.mkdir()
    (cut / "adapter_model.safetensors").write_bytes(b"\0" * 100)

    resumed = subprocess.run(CLI + [str(killed), "--resume_from_checkpoint", "true"], env=ENV, capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "checkpoint-6, which cannot be resumed from" in resumed.stderr
    state = json.loads((out / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6, "the resumed run wrote the step-6 checkpoint afresh"
    want, got = _adapter(tmp_path / "whole"), _adapter(tmp_path / "killed")
    assert want.keys() == got.keys() and want
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=1e-6, rtol=0, msg=name)


def test_resume_picks_only_complete_checkpoints(tmp_path, caplog):
    from longva_plugins.training.run import resolve_resume

    assert resolve_resume(None, tmp_path) is None and resolve_resume("false", tmp_path) is None
    assert resolve_resume("true", tmp_path) is None, "nothing saved yet: start from the beginning"
    for step, state in ((2, '{"global_step": 2}'), (4, '{"global_step": 4}'), (6, '{"global_st'), (8, None)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if state is not None:
            (folder / "trainer_state.json").write_text(state)
    assert resolve_resume("true", tmp_path) == str(tmp_path / "checkpoint-4")
    assert not (tmp_path / "checkpoint-6").exists() and not (tmp_path / "checkpoint-8").exists()
    assert "cut short" in caplog.text and "no trainer_state.json" in caplog.text
    assert resolve_resume(str(tmp_path / "checkpoint-2"), tmp_path) == str(tmp_path / "checkpoint-2")
    with pytest.raises(SettingError, match=r"resume_from_checkpoint=.*checkpoint-9: no such folder"):
        resolve_resume(str(tmp_path / "checkpoint-9"), tmp_path)


@pytest.mark.slow
@pytest.mark.distributed
def test_torchrun_trains_data_parallel_on_two_cpu_ranks(run_config, tmp_path):
    """``torchrun --nproc_per_node 2 --no-python longva-plugins train CONFIG`` (gloo): each rank takes
    its share of every batch, rank 0 alone writes the checkpoint and the adapter."""
    config = _write(run_config, tmp_path, max_steps=2, save_steps=2, group_by_modality_length=False)
    script = Path(sys.executable).parent / "longva-plugins"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           str(29500 + os.getpid() % 1000), "--no-python", str(script), "train", str(config)],
                          env=ENV, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "world=2" in proc.stderr
    out = tmp_path / "out"
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    # 4 samples, 1 per rank and step: 2 steps over 2 ranks are one epoch (one rank alone: half of one)
    assert state["global_step"] == 2 and state["epoch"] == pytest.approx(1.0)
    assert (out / "adapter_model.safetensors").is_file()


@pytest.mark.slow
@pytest.mark.distributed
def test_sequence_parallel_two_ranks_train_the_adapter_one_process_trains(tmp_path):
    """``sequence_parallel: 2`` on 2 gloo ranks: each 64-frame video sample (9,2xx tokens: visual
    and text) is zigzag-sharded over the pair with the ring attention kernels; after 2 steps the
    LoRA adapter (and projector) equals the one a single process trains, within 1e-4, and so do the
    logged losses. Plain SGD: Adam divides each gradient by its running magnitude, which turns the
    last-bit differences of a different summation order into visible ones wherever a gradient is
    near zero; SGD carries the gradients (the thing compared) into the weights as they are."""
    from longva_plugins.testing import ensure_tiny_checkpoint

    root = tmp_path / "data"
    root.mkdir()
    records = []
    for i in range(2):
        write_video(root / f"v{i}.mp4", num_frames=64, seed=i)
        records.append({"id": f"v{i}", "video": f"v{i}.mp4",
                        "conversations": [{"from": "human", "value": "<image>\nWhat moves?"},
                                          {"from": "gpt", "value": ["a bar", "a red bar"][i]}]})
    (root / "data.json").write_text(json.dumps(records))
    config = {"model_name_or_path": str(ensure_tiny_checkpoint()), "data_path": str(root / "data.json"),
              "stage": "lora", "lora_r": 8, "lora_dropout": 0.0, "max_frames": 64,
              "lr_scheduler_type": "constant", "warmup_steps": 0, "max_steps": 2, "save_strategy": "no", "seed": 1,
              "optim": "sgd", "learning_rate": 1.0}
    single = _write(config, tmp_path / "single")
    proc = subprocess.run(CLI + [str(single)], env=ENV, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single_losses = _losses(proc.stderr)
    split = _write(config, tmp_path / "split", sequence_parallel=2)
    script = Path(sys.executable).parent / "longva-plugins"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           str(30500 + os.getpid() % 1000), "--no-python", str(script), "train", str(split)],
                          env=ENV, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert len(single_losses) == 2 and _losses(proc.stderr) == pytest.approx(single_losses, abs=1e-4)
    want, got = _adapter(tmp_path / "single"), _adapter(tmp_path / "split")
    assert want.keys() == got.keys() and any("mm_projector" in k for k in want)
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=1e-4, rtol=0, msg=name)
    moved = max(float(got[n].abs().max()) for n in got if "lora_B" in n)
    assert moved > 1e-3, "the adapter trained (LoRA B starts at zero)"


def _losses(log: str) -> list[float]:
    import re

    return [float(m) for m in re.findall(r"step \d+/\d+ loss ([0-9.]+)", log)]


def test_sequence_parallel_settings_that_cannot_run_are_refused():
    from longva_plugins.training.config import parse_training_config
    from longva_plugins.training.run import join_sequence_parallel_group

    with pytest.raises(SettingError, match="sequence_parallel=0 is not allowed"):
        parse_training_config({"sequence_parallel": 0})
    with pytest.raises(SettingError, match="packing with sequence_parallel > 1 is not supported"):
        parse_training_config({"sequence_parallel": 2, "packing": True})
    config, args = parse_training_config({"sequence_parallel": 2})
    with pytest.raises(SettingError, match=r"sequence_parallel=2 does not divide the 1 ranks"):
        join_sequence_parallel_group(config, args)


@pytest.mark.slow
@pytest.mark.distributed
def test_fsdp_where_accelerate_cannot_run_it_is_refused_not_ignored(run_config, tmp_path):
    """accelerate runs FSDP on GPUs only: on CPU ``fsdp: true`` would train as plain data parallel
    without a word -- it stops before the first step instead, naming the setting."""
    import torch

    from longva_plugins.training.config import parse_training_config
    from longva_plugins.training.run import build_trainer

    if torch.cuda.is_available():
        pytest.skip("FSDP runs on CUDA: exercised by benchmarks/gpu_check.sh")
    config, args = parse_training_config({**run_config, "output_dir": str(tmp_path / "out"), "fsdp": True,
                                          "fsdp_config": {"transformer_layer_cls_to_wrap": ["Qwen2DecoderLayer"]}})
    with pytest.raises(SettingError, match=r"fsdp only works in distributed training"):
        build_trainer(config, args)  # one process: the Trainer's own refusal, as a setting error
    path = _write({**run_config, "fsdp": True}, tmp_path / "fsdp")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           str(31500 + os.getpid() % 1000), "--no-python", str(Path(sys.executable).parent / "longva-plugins"),
                           "train", str(path)], env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "fsdp=True: accelerate runs FSDP on GPUs only" in proc.stderr, proc.stderr[-3000:]
