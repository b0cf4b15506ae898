"""A wrong setting stops an `lmms-eval` run before its first sample: non-zero exit, the message as
the last line of output, no results file. (A bad *sample* does not stop a run: see
test_adapter_lmms_eval.py, where a corrupt and a missing video are answered empty.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from e2e_media import write_video
from e2e_utils import offline_env

from longva_plugins.lmms_eval_plugin.compat import SETTING_ERROR_EXIT_STATUS

pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "lmms_eval", "eval", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def _assert_stopped(proc: subprocess.CompletedProcess, out: Path, *expected: str) -> str:
    output = proc.stdout + proc.stderr
    assert proc.returncode == SETTING_ERROR_EXIT_STATUS, (
        f"a wrong setting must fail the run (exit {proc.returncode}):\n{output[-4000:]}")
    marker = "\nlongva-plugins: the run stopped before its first sample: "
    assert marker in proc.stderr, f"no final message:\n{proc.stderr[-3000:]}"
    tail = proc.stderr[proc.stderr.rindex(marker) + 1:]
    # the message is the end of the output: its first line, then only its indented problem lines
    assert all(line.startswith("    ") for line in tail.splitlines()[1:]), tail
    for text in expected:
        assert text in tail, f"{text!r} not named in the final message:\n{tail}"
    assert not list(out.rglob("*_results.json")), "no results file may be written for a broken setting"
    assert "answered empty" not in output, "no sample may be run"
    return tail


def test_bad_model_args_stop_the_run_and_are_all_named(tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    args = (f"pretrained={tiny_checkpoint},max_frame_num=128,video_decode_backend=decrod,"
            "mm_spatial_pool_mode=avg,max_frames_num=0")
    proc = _run(["--model", "longva", "--model_args", args, "--tasks", "vniah", "--output_path", str(out)],
                tmp_path, offline_env(LONGVA_VNIAH_CACHE=str(tmp_path / "cache")))
    tail = _assert_stopped(proc, out, "max_frame_num=128", "did you mean max_frames_num",
                           "video_decode_backend='decrod'", "pyav", "mm_spatial_pool_mode='avg'", "average",
                           "max_frames_num=0", "an integer >= 1")
    assert "4 problems" in tail


def test_vniah_grid_larger_than_haystack_stops_the_run(tiny_checkpoint, tmp_path):
    video = write_video(tmp_path / "short.mp4", num_frames=12, fps=4)  # 3 s: 3 frames at 1 FPS
    out = tmp_path / "out"
    env = offline_env(LONGVA_VNIAH_HAYSTACK=str(video), LONGVA_VNIAH_GRID="frames=2:6:2;depths=0,1",
                      LONGVA_VNIAH_TRAIN_FRAMES="many", LONGVA_VNIAH_CACHE=str(tmp_path / "cache"))
    proc = _run(["--model", "longva", "--model_args", f"pretrained={tiny_checkpoint}", "--tasks", "vniah",
                 "--output_path", str(out)], tmp_path, env)
    _assert_stopped(proc, out, "LONGVA_VNIAH_GRID asks for 6 frames", "3 frames at 1 FPS",
                    "LONGVA_VNIAH_TRAIN_FRAMES='many'")


# Every task family: a setting/data error raised while lmms-eval builds the task (its process_docs,
# inside lmms-eval's retry wrapper) ends the CLI with exit 2 and the named message last -- with no
# decorator in the task code.
def test_videomme_annotations_missing_columns_stop_the_run(tiny_checkpoint, tmp_path):
    import pandas as pd

    annotations = tmp_path / "videomme.parquet"
    pd.DataFrame({"videoID": ["a"], "question": ["What is shown?"]}).to_parquet(annotations)
    out = tmp_path / "out"
    proc = _run(["--model", "longva", "--model_args", f"pretrained={tiny_checkpoint}", "--tasks", "longva_videomme",
                 "--output_path", str(out)], tmp_path, offline_env(LONGVA_VIDEOMME_ANNOTATIONS=str(annotations)))
    _assert_stopped(proc, out, "Video-MME annotations lack the column(s)", "duration", "answer")


def test_mlvu_annotations_missing_file_stop_the_run(tiny_checkpoint, tmp_path):
    missing = tmp_path / "nowhere" / "mlvu_dev.json"
    out = tmp_path / "out"
    proc = _run(["--model", "longva", "--model_args", f"pretrained={tiny_checkpoint}", "--tasks", "longva_mlvu_dev",
                 "--output_path", str(out)], tmp_path, offline_env(LONGVA_MLVU_ANNOTATIONS=str(missing)))
    _assert_stopped(proc, out, "LONGVA_MLVU_ANNOTATIONS", str(missing))


def test_vniah_unknown_needle_set_stops_the_run(tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    env = offline_env(LONGVA_VNIAH_NEEDLES="no-such-needles", LONGVA_VNIAH_CACHE=str(tmp_path / "cache"))
    proc = _run(["--model", "longva", "--model_args", f"pretrained={tiny_checkpoint}", "--tasks", "vniah",
                 "--output_path", str(out)], tmp_path, env)
    _assert_stopped(proc, out, "no-such-needles")
