"""`lmms-eval --model longva --tasks vniah_d,vniah_multi,...` end to end on the tiny checkpoint:
the tasks beyond the paper, their outputs, VNBench's circular scoring of the per-sample results,
and the mp4s the generation variants hand other models."""

from __future__ import annotations

import json

import av
import pytest
from e2e_utils import offline_env, read_results, read_samples, run_lmms_eval

pytestmark = pytest.mark.slow


def _run(tiny_checkpoint, tmp_path, tasks, **env):
    out = tmp_path / "out"
    env = offline_env(LONGVA_VNIAH_GRID="frames=4:8:4;depths=0,0.5,1", LONGVA_VNIAH_CACHE=str(tmp_path / "cache"),
                      **env)
    run_lmms_eval(["--model", "longva", "--model_args", f"pretrained={tiny_checkpoint}", "--tasks", tasks,
                   "--output_path", str(out), "--log_samples"], cwd=tmp_path, env=env, timeout=900)
    return out


def test_vniah_d_and_gen(tiny_checkpoint, tmp_path):
    out = _run(tiny_checkpoint, tmp_path, "vniah_d,vniah_d_gen", LONGVA_VNIAH_DISTRACTOR_PERIOD="2")
    results = read_results(out)
    for task in ("vniah_d", "vniah_d_gen"):
        metric = f"{task}_accuracy"
        samples = read_samples(out, task)
        assert len(samples) == 2 * 3 * 5  # frames x depths x synthetic needles
        per_sample = [s[metric] for s in samples]
        assert results["results"][task][f"{metric},none"] == pytest.approx(
            sum(p["correct"] for p in per_sample) / len(per_sample))
        # VideoRoPE's rule with period 2: depth 0 -> after, depth 1 -> before, depth 0.5 -> either
        sides = {(p["frames"], p["depth"]): set() for p in per_sample}
        for p in per_sample:
            sides[(p["frames"], p["depth"])].add(p["side"])
        assert sides[(4, 0.0)] == {"after"} and sides[(8, 1.0)] == {"before"}
        breakdown = json.loads((out / "longva" / task / "breakdown.json").read_text())
        assert set(breakdown["by_side"]) <= {"after", "before", "none"} and breakdown["distractors"] == "synthetic"
        assert (out / "longva" / task / "heatmap.png").is_file()
    assert "distracted" in json.loads((out / "longva" / "vniah_d_gen" / "breakdown.json").read_text())
    videos = sorted((tmp_path / "cache" / "videos").glob("*.mp4"))
    assert len(videos) == 30
    with av.open(str(videos[0])) as container:  # needle and distractor inserted: n + 2 images
        assert sum(1 for _ in container.decode(video=0)) in (6, 10)


def test_vniah_multi_circular_scoring(tiny_checkpoint, tmp_path):
    out = _run(tiny_checkpoint, tmp_path, "vniah_multi", LONGVA_VNIAH_MULTI_NEEDLES="1,2")
    samples = read_samples(out, "vniah_multi")
    records = [s["vniah_multi_accuracy"] for s in samples]
    kinds = {r["kind"] for r in records}
    assert kinds == {"retrieval", "ordering", "counting"}
    # independent re-computation of VNBench's eval.py: a question counts when all its tries are right
    questions = {}
    for r in records:
        questions.setdefault((r["kind"], r["frames"], r["needles"], r["sample"]), []).append(r["correct"])
    assert all(len(v) == (2 if key[0] == "ordering" else 4) for key, v in questions.items())  # 2 needles: 2 orders
    per_kind = {}
    for (kind, *_), v in questions.items():
        per_kind.setdefault(kind, []).append(all(v))
    expected = sum(sum(v) / len(v) for v in per_kind.values()) / len(per_kind)
    assert read_results(out)["results"]["vniah_multi"]["vniah_multi_accuracy,none"] == pytest.approx(expected)
    side = out / "longva" / "vniah_multi"
    breakdown = json.loads((side / "breakdown.json").read_text())
    assert set(breakdown["kinds"]) == kinds and breakdown["chance"]["retrieval"] == pytest.approx(
        (1 / 4) ** 4)  # four options, right on all four rotations
    for kind in kinds:
        cells = json.loads((side / kind / "all_accuracies.json").read_text())
        counts = (2,) if kind == "ordering" else (1, 2)  # one needle has no order
        assert {(c["Num. Frame"], c["Needles"]) for c in cells} == {(n, k) for n in (4, 8) for k in counts}
        assert (side / kind / "heatmap.png").is_file()


@pytest.mark.parametrize("task, env, named", [
    ("vniah_d", {"LONGVA_VNIAH_DISTRACTORS": "nope"}, "LONGVA_VNIAH_DISTRACTORS"),
    ("vniah_multi", {"LONGVA_VNIAH_MULTI_NEEDLES": "6"}, "LONGVA_VNIAH_MULTI_NEEDLES"),  # 5 synthetic answers
])
def test_bad_settings_stop_the_run_before_the_first_sample(tiny_checkpoint, tmp_path, task, env, named):
    """Through the CLI: exit 2 naming the setting, no cell scored (every rule: tests/vniah/test_family_cells.py)."""
    _refused(tiny_checkpoint, tmp_path, task, env, named)


def _refused(tiny_checkpoint, tmp_path, task, env, named):
    import subprocess
    import sys

    env = offline_env(**{"LONGVA_VNIAH_GRID": "frames=4:8:4;depths=0,1", "LONGVA_VNIAH_CACHE": str(tmp_path / "c"),
                         **env})
    proc = subprocess.run([sys.executable, "-m", "lmms_eval", "eval", "--model", "longva", "--model_args",
                           f"pretrained={tiny_checkpoint}", "--tasks", task, "--output_path", str(tmp_path / "o")],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert named in proc.stderr and env[named] in proc.stderr, proc.stderr[-3000:]
    assert not (tmp_path / "c" / "cells").exists(), "no cell was scored"
