"""The training examples run end to end, and a trained adapter evaluates through lmms-eval."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from e2e_utils import offline_env, read_results, run_lmms_eval

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_lora_example_then_lmms_eval_with_peft(tiny_checkpoint, tmp_path):
    out = tmp_path / "lora"
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "train_lora.py"), "--steps", "4", "--output", str(out)],
                          capture_output=True, text=True, env=offline_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    adapter = out / "adapter"
    assert (adapter / "adapter_config.json").is_file()
    env = offline_env(LONGVA_VNIAH_GRID="frames=2:2:1;depths=0", LONGVA_VNIAH_CACHE=str(tmp_path / "cache"))
    run_lmms_eval(["--model", "longva", "--model_args", f"pretrained={tiny_checkpoint},peft={adapter}",
                   "--tasks", "vniah", "--output_path", str(tmp_path / "eval")], cwd=tmp_path, env=env)
    assert "vniah" in read_results(tmp_path / "eval")["results"]


def test_long_context_example_under_torchrun(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(REPO / "examples" / "train_long_context.py"), "--steps", "2", "--seq-len", "256"],
                          capture_output=True, text=True, env=offline_env(), timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "step 2/2 loss" in proc.stdout
