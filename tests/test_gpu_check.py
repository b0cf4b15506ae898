"""The GPU day's path, proven on CPU: the carried wheel list covers what the checks import beyond the
GPU image, and ``gpu_check.sh --out DIR --dry-run`` installs the wheels with ``pip --target``, runs
every CPU-able step from them and writes the report."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _names(path: Path) -> set[str]:
    lines = path.read_text().splitlines()
    return {re.sub(r"[-_.]+", "-", line.split("==")[0].strip()).lower() for line in lines
            if line.strip() and not line.startswith("#")}


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_wheel_list_is_pinned_by_the_lock_and_absent_from_the_image():
    wheels = _names(ROOT / "requirements" / "gpu-wheels.txt")
    image = _names(ROOT / "requirements" / "gpu-image.txt")
    lock = _names(ROOT / "requirements" / "lock.txt")
    assert {"torch", "transformers", "accelerate", "peft", "pyarrow", "pytest", "rich", "pluggy"} <= image
    assert "lmms-eval" in wheels and not wheels & image
    assert wheels <= lock, f"not pinned by the lock: {sorted(wheels - lock)}"


CLOSURE = r"""
import atexit, importlib.metadata as md, runpy, sys
listing = sys.argv[1]
def dump():
    names = md.packages_distributions()
    found = {d for m in list(sys.modules) for d in names.get(m.split(".")[0], [])}
    open(listing, "w").write("\n".join(sorted(found)))
atexit.register(dump)
sys.argv = ["lmms-eval"] + sys.argv[2:]
runpy.run_module("lmms_eval", run_name="__main__")
"""


@pytest.mark.slow
def test_wheel_list_covers_the_import_closure_of_a_vniah_run(tmp_path):
    from longva_plugins.nano.checkpoint import nano_checkpoint

    listing = tmp_path / "closure.txt"
    env = {**os.environ, **OFFLINE, "LONGVA_VNIAH_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", CLOSURE, listing, "eval", "--model", "longva", "--model_args",
                           f"pretrained={nano_checkpoint()}", "--tasks", "vniah", "--limit", "1",
                           "--output_path", tmp_path / "out"], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    closure = _names(listing)
    assert {"lmms-eval", "torch", "transformers", "longva-plugins"} <= closure
    missing = closure - _names(ROOT / "requirements" / "gpu-image.txt") - _names(ROOT / "requirements" / "gpu-wheels.txt")
    assert missing == {"longva-plugins"}, f"imported, neither on the GPU image nor carried: {sorted(missing)}"


@pytest.mark.slow
def test_dry_run_installs_the_wheels_to_a_target_and_writes_the_report(tmp_path):
    wheels, out, target = tmp_path / "whl", tmp_path / "out", tmp_path / "site"
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    proc = subprocess.run(["bash", ROOT / "scripts" / "gpu_wheels.sh", "--dest", wheels, "--python-version", version],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    total = re.search(r"(\d+) wheels, ([\d.]+) MiB", proc.stdout)
    assert total and float(total.group(2)) <= 60
    assert any(w.name.startswith("longva_plugins-") for w in wheels.glob("*.whl"))

    env = {**os.environ, **OFFLINE, "LONGVA_PYTHON": sys.executable, "LONGVA_WHEELS": str(wheels),
           "LONGVA_WHEEL_TARGET": str(target), "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(["bash", ROOT / "benchmarks" / "gpu_check.sh", "--out", out, "--dry-run"], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = sorted(p.name for p in out.iterdir())
    assert files == ["gpu_check.log", "report.json", "report.md"]  # well inside the 8 files that come back
    report = json.loads((out / "report.json").read_text())
    steps = report["steps"]
    assert report["dry_run"] and list(steps) == ["environment", "gpu_tests", "ring", "nano_vniah", "vniah_cell",
                                                 "training_step", "training_engines", "sequence_parallel"]
    carried = steps["environment"]["carried"]
    assert len(carried) == len(list(wheels.glob("*.whl"))) and set(carried.values()) == {"target"}
    assert steps["environment"]["wheel_target"] == str(target) and "longva" in steps["environment"]["lmms_eval_models"]
    assert steps["gpu_tests"]["tests"] >= 4 and steps["gpu_tests"]["skipped"] == steps["gpu_tests"]["tests"]
    assert [r["length"] for r in steps["ring"]["rows"]] == [512, 1024]
    cpu = steps["nano_vniah"]["runs"]["cpu_fp32"]
    assert cpu["agree_with_cpu"] == cpu["compared"] == cpu["cells"] == 12
    assert steps["vniah_cell"]["rows"][0]["frames"] == 8 and steps["vniah_cell"]["status"] == "passed"
    assert steps["training_step"]["status"] == "passed" and steps["training_step"]["rows"][0]["frames"] == 4
    assert [(r["engine"], r["status"]) for r in steps["training_engines"]["rows"]] == [("ddp", "passed")]
    assert steps["sequence_parallel"]["status"] == "skipped"
    md = (out / "report.md").read_text()
    assert "dry run" in md and "| nano_vniah | passed |" in md and "| 1024 |" in md


def test_report_renders_the_cuda_tables():
    gpu_check = _gpu_check()
    report = {"date": "2026-12-02 00:00:00", "dry_run": False, "seconds": 400.0, "steps": {
        "environment": {"status": "passed", "python": "3.12.3", "torch": "2.11.0+cu130", "transformers": "5.17.0",
                        "devices": ["NVIDIA H200"], "flash_attn": None, "summary": "torch 2.11.0+cu130"},
        "ring": {"status": "passed", "device": "cuda", "dtype": "bfloat16", "summary": "",
                 "rows": [{"length": 4096, "sdpa_s": 0.002, "ours_s": 0.004, "sdpa_mib": 40, "ours_mib": 30}]},
        "vniah_cell": {"status": "failed", "summary": "", "rows": [
            {"scale": "paper", "frames": 1000, "tokens": 144191, "attention": "sdpa", "seconds": 50.0, "weights_gib": 14.7,
             "kv_model_gib": 7.7, "peak_total_gib": 25.1, "memory_model_gib": 24.4},
            {"scale": "paper", "frames": 3000, "status": "failed", "reason": "ran past its 200 s limit"}]}}}
    md = gpu_check.report_md(report)
    assert "NVIDIA H200" in md and "flash-attn absent" in md
    assert "| 4096 | 0.002 | 0.004 | 2.00x | 40 | 30 | nan |" in md
    assert "| paper | 1000 | 144191 | sdpa | 50 | 14.70 | 7.70 | 25.1 | 24.4 |" in md
    assert "| vniah_cell | failed |" in md and "3000" not in md.split("V-NIAH cell")[1]


def test_cell_comparison_keys_round_depths():
    gpu_check = _gpu_check()
    cells = gpu_check._cells([{"Num. Frame": 10, "Frame Depth": 60.000000001, "Score": 1.0},
                              {"Num. Frame": 70, "Frame Depth": 20.0, "Score": 0.5}])  # depth in percent
    assert cells == {(10, 60.0): 1.0, (70, 20.0): 0.5}
    reference = gpu_check._cells(json.loads(gpu_check.CPU_REFERENCE.read_text())["cells"])
    assert len(reference) == 30 and set(cells) <= set(reference)  # the dry-run grid lies inside the reference grid
