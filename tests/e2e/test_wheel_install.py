"""The built wheel, installed (not editable) into a fresh virtual environment, runs under lmms-eval.

The fresh environment receives exactly two wheels: longva-plugins and the example third-party
plugin (``examples/external_plugin``). Its third-party dependencies (torch, transformers,
lmms-eval, ...) are borrowed from the development environment through a ``.pth`` line instead of
being installed a second time (that would cost minutes and gigabytes); the test asserts that
``longva_plugins`` itself is imported from the fresh environment's own site-packages, from the
wheel. So this checks the wheel's contents (code, shipped task folder), its entry points and
zero-flag task discovery, and that ``--model longva`` resolves to our class.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _run(cmd, **kwargs):
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        raise AssertionError(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n"
                             f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture(scope="module")
def fresh_env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    dist = tmp / "dist"
    for project in (REPO, REPO / "examples" / "external_plugin"):
        _run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(project)])
    wheels = sorted(dist.glob("*.whl"))
    assert len(wheels) == 2, wheels

    venv = tmp / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    _run([base_python, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "_borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(site), *map(str, wheels)])
    return python, site, wheels


def test_wheel_ships_the_task_folder(fresh_env):
    python, site, _ = fresh_env
    out = _run([str(python), "-c",
                "import longva_plugins, longva_plugins.lmms_eval_plugin.builtin_tasks as b; print(longva_plugins.__file__); print(b.package_task_dir())"])
    module_file, task_dir = out.stdout.split()
    assert module_file.startswith(str(site)), f"imported {module_file}, not the wheel in {site}"
    assert task_dir.startswith(str(site)) and Path(task_dir).is_dir()
    assert list(Path(task_dir).rglob("*.yaml")), "no task YAML shipped in the wheel"
    assert (site / "longva_plugins_startup.pth").is_file(), "start-up hook missing from the wheel"
    listing = _run([str(python), "-m", "lmms_eval", "tasks", "list"], env={**os.environ, "PYTHONPATH": ""}).stdout
    assert "vniah" in listing, "lmms-eval tasks list does not show the package tasks"


def test_wheel_carries_longva_nano(fresh_env):
    python, site, _ = fresh_env
    out = _run([str(python), "-c", "from longva_plugins.nano.checkpoint import nano_checkpoint; print(nano_checkpoint())"])
    folder = Path(out.stdout.strip())
    assert str(folder).startswith(str(site)), f"{folder} is not inside the installed wheel"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    # the start-up hook (.pth) registers LongVA with transformers' Auto classes: no import of ours
    code = ("import sys; from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor; "
            "f = sys.argv[1]; print(type(AutoConfig.from_pretrained(f)).__name__, "
            "type(AutoModelForImageTextToText.from_pretrained(f)).__name__, type(AutoProcessor.from_pretrained(f)).__name__)")
    out = _run([str(python), "-c", code, str(folder)], env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""})
    assert out.stdout.split()[-3:] == ["LongVAConfig", "LongVAForConditionalGeneration", "LongVAProcessor"]


def test_lmms_eval_runs_package_and_plugin_tasks_from_the_wheel(fresh_env, tmp_path):
    from longva_plugins.testing import ensure_tiny_checkpoint

    python, site, _ = fresh_env
    checkpoint = ensure_tiny_checkpoint()
    out_dir = tmp_path / "results"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": ""}
    _run(
        [str(python), "-m", "lmms_eval", "eval", "--model", "longva",
         "--model_args", f"pretrained={checkpoint}",
         "--tasks", "vniah,longva_example_qa", "--limit", "1",
         "--output_path", str(out_dir), "--log_samples"],
        env=env, cwd=tmp_path, timeout=600,
    )
    results_files = glob.glob(str(out_dir / "**" / "*_results.json"), recursive=True)
    assert len(results_files) == 1, results_files
    results = json.loads(Path(results_files[0]).read_text())
    assert results["config"]["model_backend"].startswith("longva_plugins.lmms_eval_plugin.adapter.LongVA")
    assert {"vniah", "longva_example_qa"} <= set(results["results"])
    samples = glob.glob(str(out_dir / "**" / "*_samples_longva_example_qa.jsonl"), recursive=True)
    assert samples and Path(samples[0]).read_text().strip(), "no logged sample for the plugin task"


def test_wheel_bounds_the_filelock_release_that_breaks_lmms_eval(fresh_env):
    """pip installing the wheel into an environment with filelock 4.3.x must downgrade it: the
    wheel's metadata carries the bound (lmms-eval 0.7.3 imports filelock._api, gone in 4.3)."""
    import zipfile

    _, _, wheels = fresh_env
    ours = next(w for w in wheels if w.name.startswith("longva_plugins-"))
    with zipfile.ZipFile(ours) as archive:
        metadata = archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    requirement = next(line for line in metadata.splitlines() if line.startswith("Requires-Dist: filelock"))
    assert "<4.3" in requirement, requirement
