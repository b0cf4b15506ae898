"""A few steps of each LongVA-nano stage, with the recipe's own scripts and config (the full recipe
is ``examples/nano/recipe.py``; its measured tables are in docs/nano.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
NANO = ROOT / "examples" / "nano"
pytestmark = pytest.mark.slow


def _run(cmd, cwd, **env):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **env}, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _weights(path, part):
    from longva_plugins.models.longva import LongVAForCausalLM

    model = LongVAForCausalLM.from_pretrained(path)
    return {k: v for k, v in model.state_dict().items() if part(k)}


def _is_lm(name):
    return "vision_tower" not in name and "mm_projector" not in name


def test_each_stage_runs_a_few_steps(tmp_path):
    from longva_plugins.nano.build import make_nano_init, merge_vision_weights

    init = make_nano_init(tmp_path / "init0")
    # stage 0: the tower alone
    _run([sys.executable, NANO / "stage0_tower.py", "--checkpoint", init, "--out", tmp_path / "init", "--steps", 2,
          "--batch", 2], tmp_path)
    tower0, tower1 = (_weights(p, lambda k: "vision_tower" in k) for p in (init, tmp_path / "init"))
    assert any(not torch.equal(tower0[k], tower1[k]) for k in tower0), "stage 0 trains the tower"
    lm0, lm1 = (_weights(p, _is_lm) for p in (init, tmp_path / "init"))
    assert all(torch.equal(lm0[k], lm1[k]) for k in lm0), "and only the tower"
    init = tmp_path / "init"
    # stage 1, one process, then two gloo ranks with the sequence split by ring attention
    _run([sys.executable, NANO / "stage1_text.py", "--checkpoint", init, "--out", tmp_path / "s1a",
          "--max-length", 96, "--steps", 3, "--batch", 2, "--eval-lengths", "96", "--eval-samples", 4,
          "--report", tmp_path / "text.json"], tmp_path)
    assert set(json.loads((tmp_path / "text.json").read_text())) == {"96"}
    out = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", 2,
                NANO / "stage1_text.py", "--checkpoint", tmp_path / "s1a", "--out", tmp_path / "s1b",
                "--min-length", 120, "--max-length", 130, "--steps", 2, "--batch", 2], tmp_path)
    assert "step 2/2" in out
    before, after = _weights(init, _is_lm), _weights(tmp_path / "s1b", _is_lm)
    assert any(not torch.equal(before[k], after[k]) for k in before), "stage 1 trains the language model"
    vision_before = _weights(init, lambda k: not _is_lm(k))
    vision_after = _weights(tmp_path / "s1b", lambda k: not _is_lm(k))
    assert all(torch.equal(vision_before[k], vision_after[k]) for k in vision_before), "and nothing else"
    # stage 2: images, then `longva-plugins train` with the recipe's config
    _run([sys.executable, NANO / "make_images.py", "--out", tmp_path / "img", "--count", 6, "--difficulty", "0:1"], tmp_path)
    records = json.loads((tmp_path / "img" / "data.json").read_text())
    assert len(records) == 6 and all((tmp_path / "img" / r["image"]).is_file() for r in records)
    _run([sys.executable, "-m", "longva_plugins.cli", "train", NANO / "stage2_vision.yaml",
          "--set", f"model_name_or_path={tmp_path / 's1b'}", "--set", f"data_path={tmp_path / 'img' / 'data.json'}",
          "--set", f"output_dir={tmp_path / 's2'}", "--set", "max_steps=2", "--set", "per_device_train_batch_size=2"],
         tmp_path)
    assert (tmp_path / "s2" / "mm_projector.safetensors").is_file()
    assert not (tmp_path / "s2" / "vision_tower.safetensors").exists(), "the recipe keeps the tower frozen"
    merged = merge_vision_weights(tmp_path / "s1b", tmp_path / "s2", tmp_path / "nano")
    new = _weights(merged, lambda k: True)
    old = {**after, **vision_after}
    changed = {k for k in new if not torch.equal(new[k], old[k])}
    assert changed and all("mm_projector" in k for k in changed), "stage 2 trains the projector only"
    # stage 3: multiple-choice clips in the four tasks' prompt formats, `longva-plugins train` with the recipe's config
    from longva_plugins.nano.build import merge_full_weights
    from longva_plugins.lmms_eval_plugin.minibench import CLIP_FRAMES, CLIP_SHOT, alignment_records, write_bench

    write_bench(tmp_path / "clips", 0, {"short": 3}, {"short": CLIP_FRAMES}, CLIP_SHOT, pool=4)
    records = alignment_records(tmp_path / "clips", 0)
    assert records and all((tmp_path / "clips" / r["video"]).is_file() for r in records)
    (tmp_path / "clips" / "data.json").write_text(json.dumps(records))
    _run([sys.executable, "-m", "longva_plugins.cli", "train", NANO / "stage3_mc.yaml",
          "--set", f"model_name_or_path={merged}", "--set", f"data_path={tmp_path / 'clips' / 'data.json'}",
          "--set", f"output_dir={tmp_path / 's3'}", "--set", "max_steps=2", "--set", "per_device_train_batch_size=2"],
         tmp_path)
    final = merge_full_weights(merged, tmp_path / "s3", tmp_path / "nano-mc")
    assert (final / "tokenizer.json").read_bytes() == (merged / "tokenizer.json").read_bytes()
    assert json.loads((final / "config.json").read_text())["eval_defaults"] == {"vniah_needles": "nano"}
    before, after = _weights(merged, lambda k: True), _weights(final, lambda k: True)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(_is_lm(k) for k in changed) and any("mm_projector" in k for k in changed)
    assert not any("vision_tower" in k for k in changed), "stage 3 keeps the tower frozen"
