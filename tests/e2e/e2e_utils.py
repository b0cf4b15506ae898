"""Helpers for the end-to-end tests: run lmms-eval in a subprocess and read its outputs."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from pathlib import Path


def offline_env(**extra) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    env.update(extra)
    return env


def run_lmms_eval(args: list[str], cwd: Path, launcher: list[str] | None = None, timeout: int = 600,
                  env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = (launcher or [sys.executable, "-m"]) + ["lmms_eval", "eval", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env or offline_env(), timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"lmms-eval failed ({proc.returncode}): {' '.join(cmd)}\n--- stdout ---\n"
                             f"{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-8000:]}")
    return proc


def read_results(output_path: Path) -> dict:
    files = glob.glob(str(output_path / "**" / "*_results.json"), recursive=True)
    assert len(files) == 1, f"expected one results.json under {output_path}, found {files}"
    return json.loads(Path(files[0]).read_text())


def read_samples(output_path: Path, task: str) -> list[dict]:
    files = glob.glob(str(output_path / "**" / f"*_samples_{task}.jsonl"), recursive=True)
    assert len(files) == 1, f"expected one samples file for {task}, found {files}"
    return [json.loads(line) for line in Path(files[0]).read_text().splitlines() if line.strip()]
