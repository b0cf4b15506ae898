"""Long runs that survive kills, concurrency, --use_cache and full or read-only disks (issue 22),
through real `lmms-eval --model longva` processes on the tiny checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from e2e_utils import offline_env, read_results, read_samples, run_lmms_eval
from test_adapter_lmms_eval import TASKS, task_dir  # noqa: F401  (the fixture: small local tasks of every output type)

pytestmark = pytest.mark.slow
GRID = "frames=2:8:2;depths=0,0.5,1"  # 12 cells x 5 needles


def _vniah_cmd(checkpoint, out: Path) -> list[str]:
    return [sys.executable, "-m", "lmms_eval", "eval", "--model", "longva", "--model_args", f"pretrained={checkpoint}",
            "--tasks", "vniah", "--output_path", str(out), "--log_samples"]


def _env(cache: Path, **extra) -> dict:
    return offline_env(LONGVA_VNIAH_GRID=GRID, LONGVA_VNIAH_CACHE=str(cache), **extra)


def _outcome(out: Path) -> tuple[dict, list]:
    """``({doc_id: (nll, correct)}, all_accuracies rows)`` of a finished V-NIAH run."""
    samples = read_samples(out, "vniah")
    per_doc = {}
    for s in samples:
        metric = next(v for k, v in s.items() if k.startswith("vniah_accuracy"))
        per_doc[s["doc_id"]] = (float(metric["nll_mean"]), bool(metric["correct"]))
    rows = json.loads((out / "longva" / "vniah" / "all_accuracies.json").read_text())
    return per_doc, rows


def _same(outcome, reference) -> bool:
    """Identical scores (every sample's outcome, all_accuracies); answer NLLs equal to float
    rounding (a resumed run extends its KV cache from other cells, so sums run in another order)."""
    (mine, rows), (theirs, ref_rows) = outcome, reference
    return (rows == ref_rows and mine.keys() == theirs.keys()
            and all(mine[k][1] == theirs[k][1] and abs(mine[k][0] - theirs[k][0]) < 1e-4 for k in mine))


def _entries(cache: Path) -> dict[str, int]:
    """Every cache entry (embedding, cell) by relative path -> its mtime; each must read whole."""
    import torch

    found = {}
    for path in cache.rglob("*"):
        if not path.is_file() or path.name.startswith("."):
            continue  # temporary files: a writer's, never read by anyone
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".pt":
            torch.load(path, weights_only=True)
        found[str(path.relative_to(cache))] = path.stat().st_mtime_ns
    return found


def _run_until(cmd, env, cwd, condition, timeout=300) -> int:
    """Start ``cmd``; SIGKILL it as soon as ``condition()`` holds. Returns the exit status."""
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        if condition():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    return proc.wait(timeout=60)


@pytest.fixture(scope="module")
def reference(tiny_checkpoint, tmp_path_factory):
    """An uninterrupted run: its per-sample outcomes and all_accuracies."""
    root = tmp_path_factory.mktemp("reference")
    subprocess.run(_vniah_cmd(tiny_checkpoint, root / "out"), env=_env(root / "cache"), cwd=root, check=True,
                   capture_output=True, timeout=600)
    return _outcome(root / "out")


def test_sigkill_at_any_point_then_rerun_gives_the_same_results_recomputing_only_what_was_missing(
        tiny_checkpoint, reference, tmp_path):
    cache = tmp_path / "cache"
    n_cells = 12 * 5

    def cells() -> int:
        return len(list((cache / "cells").rglob("*.json"))) if (cache / "cells").is_dir() else 0

    kills = [
        ("while embedding the haystack", lambda: (cache / "embeddings").is_dir() and any((cache / "embeddings").rglob("*.pt"))),
        ("after a third of the cells", lambda: cells() >= n_cells // 3),
        ("after two thirds of the cells", lambda: cells() >= 2 * n_cells // 3),
    ]
    for i, (moment, condition) in enumerate(kills):
        before = _entries(cache) if cache.is_dir() else {}
        status = _run_until(_vniah_cmd(tiny_checkpoint, tmp_path / f"killed{i}"), _env(cache), tmp_path, condition)
        assert status == -signal.SIGKILL, f"the run finished before the kill {moment}; make the grid larger"
        after = _entries(cache)  # every entry a killed run left reads whole
        assert all(after[k] == v for k, v in before.items()), f"killed {moment}: finished entries were rewritten"
        assert not list((tmp_path / f"killed{i}").rglob("*_results.json")), "no results file from a killed run"
    kept = _entries(cache)
    proc = subprocess.run(_vniah_cmd(tiny_checkpoint, tmp_path / "resumed"), env=_env(cache), cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    final = _entries(cache)
    assert all(final[k] == v for k, v in kept.items()), "the rerun recomputed entries that were already there"
    assert len([k for k in final if k.startswith("cells")]) == n_cells
    assert _same(_outcome(tmp_path / "resumed"), reference), "resumed results differ from an uninterrupted run"


def test_two_processes_sharing_one_cache_dir_agree_with_a_lone_run(tiny_checkpoint, reference, tmp_path):
    """Two V-NIAH runs at once on one V-NIAH cache and one package cache (the tiny checkpoint is
    installed by both at the same moment): no crash, no corrupt entry, the lone run's results."""
    cache, package_cache = tmp_path / "cache", tmp_path / "package-cache"
    script = ("import sys; from longva_plugins.testing import ensure_tiny_checkpoint; "
              "print(ensure_tiny_checkpoint(sys.argv[1]))")
    installs = [subprocess.Popen([sys.executable, "-c", script, str(package_cache)], stdout=subprocess.PIPE, text=True,
                                 env=offline_env()) for _ in range(2)]
    paths = {p.communicate(timeout=300)[0].strip() for p in installs}
    assert all(p.returncode == 0 for p in installs) and len(paths) == 1
    installed = Path(paths.pop())
    assert sorted(p.name for p in installed.iterdir()) == sorted(p.name for p in Path(tiny_checkpoint).iterdir())
    assert not [p for p in package_cache.iterdir() if p.name.startswith(".")], "no staging folder left behind"
    procs = [subprocess.Popen(_vniah_cmd(installed, tmp_path / f"out{i}"), env=_env(cache), cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(2)]
    errors = [p.communicate(timeout=900)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors[0][-2000:] + errors[1][-2000:]
    _entries(cache)
    assert _same(_outcome(tmp_path / "out0"), reference) and _same(_outcome(tmp_path / "out1"), reference)


def _cache_stats(proc: subprocess.CompletedProcess) -> tuple[int, int]:
    """``(hits, misses)`` from lmms-eval's ResponseCache summary line."""
    import re

    found = re.findall(r"ResponseCache stats: (\d+) hits.*?, (\d+) misses", proc.stdout + proc.stderr)
    assert found, "lmms-eval printed no ResponseCache stats"
    return tuple(int(v) for v in found[-1])


def test_use_cache_answers_every_output_type_from_the_cache_and_never_serves_a_changed_checkpoint(
        task_dir, tiny_checkpoint, tmp_path):  # noqa: F811
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, checkpoint)
    cache = tmp_path / "response-cache"

    def run(name: str, extra: str = ""):
        out = tmp_path / name
        proc = run_lmms_eval(["--model", "longva", "--model_args", f"pretrained={checkpoint},max_frames_num=4{extra}",
                              "--tasks", TASKS, "--include_path", str(task_dir), "--output_path", str(out),
                              "--log_samples", "--use_cache", str(cache), "--verbosity", "INFO"], cwd=tmp_path)
        return proc, read_results(out)["results"]

    first, scores = run("first")
    hits, misses = _cache_stats(first)
    assert hits == 0 and misses > 0
    second, again = run("second")
    # lmms-eval caches no empty answer: the corrupt and the missing video are tried again (fixed since?)
    assert _cache_stats(second) == (misses - 2, 2), "the second run is answered from the cache, all output types"
    assert again == scores
    # Same path, new weights (a retrained checkpoint): the cache must not answer for it.
    weights = sorted(checkpoint.glob("model*.safetensors"))[0]
    os.utime(weights, ns=(time.time_ns(), time.time_ns() + 10**9))
    third, _ = run("third")
    assert _cache_stats(third)[1] == misses, "a changed checkpoint was answered from the stale cache"
    fourth, _ = run("fourth", ",max_fps=2")
    assert _cache_stats(fourth)[1] == misses, "a changed model argument was answered from the stale cache"


# --------------------------------------------------------------------------- full / read-only disks
@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs (a real ENOSPC / EROFS); skipped where mounting is not permitted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if shutil.which("mount") is None or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                                                       capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _remount_read_only(mount: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True, capture_output=True)


def test_read_only_output_path_and_vniah_cache_stop_before_the_first_sample(tiny_checkpoint, small_disk, tmp_path):
    _remount_read_only(small_disk)
    proc = subprocess.run(_vniah_cmd(tiny_checkpoint, small_disk / "out"), env=_env(tmp_path / "cache"), cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "--output_path" in last and str(small_disk / "out") in last, last
    assert "read-only" in last
    proc = subprocess.run(_vniah_cmd(tiny_checkpoint, tmp_path / "out"), env=_env(small_disk / "cache"), cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "LONGVA_VNIAH_CACHE" in last and "read-only" in last, last
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*_results.json"))


def test_disk_full_mid_run_says_so_keeps_what_was_written_and_a_rerun_finishes(tiny_checkpoint, reference, small_disk,
                                                                              tmp_path):
    cache = small_disk / "cache"
    (small_disk / "ballast").write_bytes(b"\0" * (2 * 2**20 - 300 * 2**10))  # ~300 KiB left: fills mid-run
    proc = subprocess.run(_vniah_cmd(tiny_checkpoint, tmp_path / "out"), env=_env(cache), cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "cannot write" in last and str(cache) in last and "disk is full" in last, last
    kept = _entries(cache)  # what was written reads whole
    assert kept and not [p for p in cache.rglob(".*") if p.is_file()], "no temporary file left behind"
    assert not list((tmp_path / "out").rglob("*_results.json"))
    (small_disk / "ballast").unlink()
    proc = subprocess.run(_vniah_cmd(tiny_checkpoint, tmp_path / "out2"), env=_env(cache), cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    final = _entries(cache)
    assert all(final[k] == v for k, v in kept.items())
    assert _same(_outcome(tmp_path / "out2"), reference)


def test_a_truncated_checkpoint_shard_stops_before_the_first_sample_naming_the_shard(tiny_checkpoint, tmp_path):
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, checkpoint)
    shard = sorted(checkpoint.glob("model-*.safetensors"))[0]
    with open(shard, "r+b") as handle:
        handle.truncate(shard.stat().st_size // 2)
    proc = subprocess.run(_vniah_cmd(checkpoint, tmp_path / "out"), env=_env(tmp_path / "cache"), cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and str(shard) in last and "truncated" in last, last
