"""`lmms-eval --model longva --tasks vniah,vniah_gen` end to end on the tiny checkpoint."""

from __future__ import annotations

import json
import sys

import pytest
from e2e_utils import offline_env, read_results, read_samples, run_lmms_eval

pytestmark = pytest.mark.slow


def test_vniah_and_vniah_gen(tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    env = offline_env(LONGVA_VNIAH_GRID="frames=2:4:2;depths=0,1", LONGVA_VNIAH_CACHE=str(tmp_path / "cache"))
    run_lmms_eval(["--model", "longva", "--model_args", f"pretrained={tiny_checkpoint}", "--tasks", "vniah,vniah_gen",
                   "--output_path", str(out), "--log_samples"], cwd=tmp_path, env=env)
    results = read_results(out)
    for task, metric in (("vniah", "vniah_accuracy,none"), ("vniah_gen", "vniah_gen_accuracy,none")):
        average = results["results"][task][metric]
        assert isinstance(average, float), "lmms-eval's table shows a number"
        side = out / "longva" / task
        value = json.loads((side / "breakdown.json").read_text())
        assert set(value["cells"]) == {"frames=2,depth=0.0", "frames=2,depth=100.0",
                                       "frames=4,depth=0.0", "frames=4,depth=100.0"}
        scores = json.loads((side / "all_accuracies.json").read_text())
        assert {tuple(sorted(s)) for s in scores} == {("Frame Depth", "Num. Frame", "Score")}
        assert (side / "avg_accuracy.txt").read_text() == f"Average Accuracy: {average}\n"
        assert (side / "heatmap.png").is_file()
        samples = read_samples(out, task)
        assert len(samples) == 4 * 5  # 4 cells x 5 synthetic needles
        # the aggregate is the mean of the per-sample outcomes, cell by cell and overall
        per_sample = [next(v for k, v in s.items() if k.startswith(metric.split(",")[0])) for s in samples]
        assert average == pytest.approx(sum(p["correct"] for p in per_sample) / len(per_sample))
        for cell, score in value["cells"].items():
            frames, depth = (float(part.split("=")[1]) for part in cell.split(","))
            mine = [p["correct"] for p in per_sample if p["frames"] == frames and round(p["depth"] * 100, -1) == depth]
            assert len(mine) == 5 and score == pytest.approx(sum(mine) / 5), cell
    gen_videos = list((tmp_path / "cache" / "videos").glob("*.mp4"))
    assert len(gen_videos) == 20, "vniah_gen hands other models a real mp4 per cell"
    cells_before = sorted(p.name for p in (tmp_path / "cache" / "cells").rglob("*.json"))
    # A rerun finds every cell finished: nothing new is written.
    run_lmms_eval(["--model", "longva", "--model_args", f"pretrained={tiny_checkpoint}", "--tasks", "vniah",
                   "--output_path", str(tmp_path / "out2")], cwd=tmp_path, env=env)
    assert sorted(p.name for p in (tmp_path / "cache" / "cells").rglob("*.json")) == cells_before


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]


def _cells(tiny_checkpoint, tmp_path, name, tasks="vniah", nproc=None, model_args=""):
    """Run ``tasks`` (own cell cache) and return ``{(task, doc_id): per-sample metric}``."""
    out = tmp_path / name
    env = offline_env(LONGVA_VNIAH_GRID="frames=2:4:2;depths=0,1", LONGVA_VNIAH_CACHE=str(tmp_path / f"cache-{name}"))
    launcher = TORCHRUN + [str(nproc), "-m"] if nproc else None
    run_lmms_eval(["--model", "longva", "--model_args", f"pretrained={tiny_checkpoint}{model_args}", "--tasks", tasks,
                   "--output_path", str(out), "--log_samples"], cwd=tmp_path, env=env, launcher=launcher, timeout=900)
    cells = {}
    for task in tasks.split(","):
        for sample in read_samples(out, task):
            metric = next(v for k, v in sample.items() if k.startswith(f"{task}_accuracy"))
            cells[(task, sample["doc_id"])] = metric
    return cells


def test_sequence_parallel_grid_equals_one_process(tiny_checkpoint, tmp_path):
    """`sequence_parallel=2` on 2 ranks (one KV cache split over both) and on 4 ranks (2 groups x 2)
    score every V-NIAH cell as one process does, and generate the same vniah_gen answers."""
    single = _cells(tiny_checkpoint, tmp_path, "single", tasks="vniah,vniah_gen")
    for name, nproc in (("sp2", 2), ("sp2x2", 4)):
        split = _cells(tiny_checkpoint, tmp_path, name, tasks="vniah,vniah_gen" if nproc == 2 else "vniah",
                       nproc=nproc, model_args=",sequence_parallel=2")
        assert set(split) <= set(single) and len(split) == (40 if nproc == 2 else 20), name
        for key, got in split.items():
            want = single[key]
            assert got["correct"] == want["correct"], (name, key)
            if key[0] == "vniah":
                assert got["nll_mean"] == pytest.approx(want["nll_mean"], rel=1e-3), (name, key)
            else:
                assert got["prediction"] == want["prediction"], (name, key)
