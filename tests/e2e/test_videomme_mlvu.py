"""longva_videomme* / longva_mlvu_dev / the longva_paper group end to end through `lmms-eval --model longva`
on the tiny checkpoint, offline, with local annotations in the official schemas and one video missing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_media import write_video
from e2e_utils import offline_env, read_results, read_samples, run_lmms_eval

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "task_utils"))
from videobench_data import videomme_row  # noqa: E402  (the official Video-MME column schema, once)

pytestmark = pytest.mark.slow

SRT = '1\n00:00:00,000 --> 00:00:01,000\n<font color="white" size=".72c">a red bar</font>\n'


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    videos = root / "videomme" / "data"
    videos.mkdir(parents=True)
    (root / "videomme" / "subtitle").mkdir()
    (root / "videomme" / "subtitle" / "vid0.srt").write_text(SRT)
    rows = []
    for i, (duration, domain, task_type) in enumerate(
        [
            ("short", "Knowledge", "OCR Problems"),
            ("medium", "Sports Competition", "Counting Problem"),
            ("long", "Life Record", "Action Recognition"),
        ]
    ):
        if i != 2:  # vid2 is deliberately missing
            write_video(videos / f"vid{i}.mp4", num_frames=8, seed=i)
        rows.append({**videomme_row(i, duration, domain, task_type), "question": "What is shown?",
                     "options": ["A. A bar.", "B. A dog.", "C. A car.", "D. A tree."], "answer": "A"})
    (root / "videomme.json").write_text("\n".join(json.dumps(r) for r in rows))
    (root / "mlvu" / "needle").mkdir(parents=True)
    write_video(root / "mlvu" / "needle" / "m0.mp4", num_frames=8, seed=5)
    mlvu_rows = [
        {
            "video_name": "needle/m0.mp4",
            "duration": 2.0,
            "question": "What moves?\n(A) a bar\n(B) a cat\n(C) a car\n(D) a cup",
            "candidates": ["a bar", "a cat", "a car", "a cup"],
            "answer": "A",
            "task_type": "needle",
            "question_id": "0",
        },
        {
            "video_name": "count/gone.mp4",
            "duration": 2.0,
            "question": "How many?\n(A) 1\n(B) 2\n(C) 3\n(D) 4",
            "candidates": ["1", "2", "3", "4"],
            "answer": "B",
            "task_type": "count",
            "question_id": "1",
        },
    ]
    (root / "mlvu.json").write_text("\n".join(json.dumps(r) for r in mlvu_rows))
    return root


def _env(data, **extra):
    return offline_env(
        LONGVA_VIDEOMME_ANNOTATIONS=str(data / "videomme.json"),
        LONGVA_VIDEOMME_ROOT=str(data / "videomme" / "data"),
        LONGVA_MLVU_ANNOTATIONS=str(data / "mlvu.json"),
        LONGVA_MLVU_ROOT=str(data / "mlvu"),
        **extra,
    )


def test_paper_group_and_variants_complete_with_breakdowns(data, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    proc = run_lmms_eval(
        [
            "--model",
            "longva",
            "--model_args",
            f"pretrained={tiny_checkpoint},max_frames_num=4",
            "--tasks",
            "longva_paper,longva_videomme_long,longva_videomme_w_subtitle",
            "--output_path",
            str(out),
            "--log_samples",
        ],
        cwd=tmp_path,
        env=_env(data),
    )
    results = read_results(out)["results"]
    # lmms-eval's table and results.json hold numbers only; breakdowns are in longva/<task>/breakdown.json
    for task, metrics in results.items():
        for key, value in metrics.items():
            assert key in ("alias", " ") or isinstance(value, (int, float)) or value == "N/A", (task, key, value)
    side = out / "longva"
    vm = json.loads((side / "longva_videomme" / "breakdown.json").read_text())
    assert results["longva_videomme"]["longva_videomme_accuracy,none"] == pytest.approx(vm["overall"])
    assert results["longva_videomme"]["longva_videomme_missing_videos,none"] == 1
    assert vm["n"] == 3 and set(vm["per_duration"]) == {"short", "medium", "long"}
    assert set(vm["per_task_type"]) == {
        "OCR Problems",
        "Counting Problem",
        "Action Recognition",
    }
    assert set(vm["per_domain"]) == {"Knowledge", "Sports Competition", "Life Record"}
    assert vm["missing_videos"] == 1 and vm["missing_video_paths"] == [str(data / "videomme" / "data" / "vid2.mp4")]
    items = [s["longva_videomme_accuracy"] for s in read_samples(out, "longva_videomme")]
    assert vm["overall"] == pytest.approx(100.0 * sum(i["score"] for i in items) / len(items))
    assert vm["per_duration"]["long"] == 0.0  # the missing one is scored wrong
    assert json.loads((side / "longva_videomme_long" / "breakdown.json").read_text())["n"] == 1
    assert json.loads((side / "longva_videomme_w_subtitle" / "breakdown.json").read_text())["n"] == 3
    mlvu = json.loads((side / "longva_mlvu_dev" / "breakdown.json").read_text())
    assert results["longva_mlvu_dev"]["longva_mlvu_accuracy,none"] == pytest.approx(mlvu["m_avg"])
    assert set(mlvu["per_question_type"]) == {"needle", "count"} and mlvu["missing_videos"] == 1
    assert (
        mlvu["missing_video_paths"] == [str(data / "mlvu" / "count" / "gone.mp4")]
        and mlvu["per_question_type"]["count"] == 0.0
    )
    assert mlvu["m_avg"] == pytest.approx(sum(mlvu["per_question_type"].values()) / 2)
    log = proc.stdout + proc.stderr
    assert "vid2.mp4" in log and "gone.mp4" in log, "the missing videos are reported by path in the log"
    assert "longva_mlvu_dev: 1 video(s) missing or unreadable" in log and "point LONGVA_MLVU_ROOT" in log
    samples = read_samples(out, "longva_videomme_w_subtitle")
    assert len(samples) == 3
    prompt = json.dumps(samples)
    assert "a red bar" in prompt and "No subtitles available" in prompt


def test_missing_annotations_fail_at_build_time_with_the_fix(tiny_checkpoint, tmp_path):
    env = offline_env(LONGVA_VIDEOMME_ANNOTATIONS=str(tmp_path / "nowhere.parquet"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lmms_eval",
            "eval",
            "--model",
            "longva",
            "--model_args",
            f"pretrained={tiny_checkpoint}",
            "--tasks",
            "longva_videomme",
            "--output_path",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
        check=False,
    )
    assert (
        "LONGVA_VIDEOMME_ANNOTATIONS" in proc.stdout + proc.stderr
        and "hf download lmms-eval/Video-MME" in proc.stdout + proc.stderr
    )
    assert not list((tmp_path / "o").rglob("*_results.json"))
