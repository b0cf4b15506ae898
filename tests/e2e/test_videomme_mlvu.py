"""longva_videomme / longva_mlvu_dev end to end on local data in the official schemas, one video missing."""

from __future__ import annotations

import json

import pytest
from e2e_media import write_video
from e2e_utils import offline_env, read_results, read_samples, run_lmms_eval

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    videos = root / "videomme" / "data"
    videos.mkdir(parents=True)
    rows = []
    for i, (duration, domain, task_type) in enumerate([("short", "Knowledge", "OCR"), ("medium", "Sports Competition", "Counting"),
                                                        ("long", "Life Record", "Action Recognition")]):
        video_id = f"vid{i}"
        if i != 2:  # vid2 is deliberately missing
            write_video(videos / f"{video_id}.mp4", num_frames=8, seed=i)
        rows.append({"video_id": f"{i:03d}", "duration": duration, "domain": domain, "sub_category": "sub",
                     "url": "https://example.invalid", "videoID": video_id, "question_id": f"{i:03d}-1",
                     "task_type": task_type, "question": "What is shown?",
                     "options": ["A. a bar", "B. a dog", "C. a car", "D. a tree"], "answer": "A"})
    (root / "videomme.json").write_text("\n".join(json.dumps(r) for r in rows))
    mlvu_videos = root / "mlvu"
    (mlvu_videos / "needle").mkdir(parents=True)
    write_video(mlvu_videos / "needle" / "m0.mp4", num_frames=8, seed=5)
    mlvu_rows = [
        {"video_name": "needle/m0.mp4", "duration": 10.0, "question": "What moves?\n(A) a bar\n(B) a cat",
         "candidates": ["a bar", "a cat"], "answer": "A", "task_type": "needle", "question_id": "0"},
        {"video_name": "count/gone.mp4", "duration": 10.0, "question": "How many?\n(A) 1\n(B) 2",
         "candidates": ["1", "2"], "answer": "B", "task_type": "count", "question_id": "1"},
    ]
    (root / "mlvu.json").write_text("\n".join(json.dumps(r) for r in mlvu_rows))
    return root


def test_videomme_and_mlvu_complete_with_breakdowns(data, tiny_checkpoint, tmp_path):
    env = offline_env(LONGVA_VIDEOMME_ANNOTATIONS=str(data / "videomme.json"), LONGVA_VIDEOMME_ROOT=str(data / "videomme" / "data"),
                      LONGVA_MLVU_ANNOTATIONS=str(data / "mlvu.json"), LONGVA_MLVU_ROOT=str(data / "mlvu"))
    out = tmp_path / "out"
    proc = run_lmms_eval(["--model", "longva", "--model_args", f"pretrained={tiny_checkpoint},max_frames_num=4",
                          "--tasks", "longva_videomme,longva_videomme_long,longva_mlvu_dev", "--output_path", str(out),
                          "--log_samples"], cwd=tmp_path, env=env)
    results = read_results(out)["results"]
    vm = results["longva_videomme"]["longva_videomme_accuracy,none"]
    assert vm["n"] == 3 and set(vm["per_duration"]) == {"short", "medium", "long"}
    assert set(vm["per_task_type"]) == {"OCR", "Counting", "Action Recognition"}
    assert vm["missing_videos"] == 1 and vm["missing_video_paths"][0].endswith("vid2.mp4")
    assert results["longva_videomme_long"]["longva_videomme_accuracy,none"]["n"] == 1
    mlvu = results["longva_mlvu_dev"]["longva_mlvu_accuracy,none"]
    assert set(mlvu["per_question_type"]) == {"needle", "count"} and mlvu["missing_videos"] == 1
    assert 0.0 <= mlvu["m_avg"] <= 100.0
    assert "vid2.mp4" in proc.stdout + proc.stderr, "the missing video is reported by path"
    assert len(read_samples(out, "longva_videomme")) == 3


def test_missing_annotations_fail_at_build_time_with_the_fix(tiny_checkpoint, tmp_path):
    env = offline_env(LONGVA_VIDEOMME_ANNOTATIONS=str(tmp_path / "nowhere.parquet"))
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "lmms_eval", "eval", "--model", "longva", "--model_args",
                           f"pretrained={tiny_checkpoint}", "--tasks", "longva_videomme", "--output_path", str(tmp_path / "o")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert "LONGVA_VIDEOMME_ANNOTATIONS" in proc.stdout + proc.stderr
    assert not list((tmp_path / "o").rglob("*_results.json"))
