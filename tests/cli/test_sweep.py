"""`longva-plugins sweep`: table and plot of accuracy against frames from lmms-eval result files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from longva_plugins.cli import main, sweep
from longva_plugins.errors import SettingError
from longva_plugins.lmms_eval_plugin.task_utils.frame_sweep import collect

# The task-utils tests' data helpers (official-schema rows, tiny videos, results files).
sys.path.insert(0, str(Path(__file__).parents[1] / "task_utils"))
from videobench_data import videomme_row, write_results_file, write_video

TASK = "longva_videomme"


def test_from_results_of_two_frame_counts_writes_table_and_plot(tmp_path, capsys):
    write_results_file(tmp_path / "run_a", 8, 47.9)
    write_results_file(tmp_path / "run_b", 16, 49.7)
    out = tmp_path / "out"
    assert (
        main(
            [
                "sweep",
                "--task",
                TASK,
                "--from-results",
                str(tmp_path / "run_a"),
                str(tmp_path / "run_b"),
                "--output-path",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert (
        "47.90" in printed
        and "49.70" in printed
        and "53.90" in printed
        and "columns after score: per_duration" in printed
    )
    md = (out / "sweep.md").read_text().splitlines()
    assert md[2] == "| frames | score | per_duration/long | per_duration/medium | per_duration/short | missing_videos |"
    assert md[4] == "| 8 | 47.90 | 41.90 | 47.90 | 53.90 | 0 |" and md[5].startswith("| 16 | 49.70 |")
    assert (out / "sweep.csv").read_text().splitlines()[1] == "8,47.90,41.90,47.90,53.90,0"
    assert json.loads((out / "sweep.json").read_text())["rows"]["16"]["score"] == pytest.approx(49.7)
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*.tmp")), "no temporary files left behind"


def test_without_results_the_command_fails_cleanly(tmp_path, capsys):
    assert main(["sweep", "--task", TASK, "--from-results", str(tmp_path)]) == 2
    assert "no lmms-eval results" in capsys.readouterr().err


def _args(tmp_path, **kw):
    base = {
        "task": TASK,
        "frames": "16,8",
        "pretrained": "/ckpt",
        "model_args": "",
        "limit": None,
        "output_path": str(tmp_path),
        "resume": False,
        "lmms_eval_args": [],
    }
    return SimpleNamespace(**{**base, **kw})


def test_lmms_eval_command_and_frame_parsing(tmp_path):
    cmd = sweep.lmms_eval_command(
        _args(tmp_path, model_args="device=cpu", limit=3, lmms_eval_args=["--log_samples"]),
        8,
    )
    assert cmd[cmd.index("--model_args") + 1] == "pretrained=/ckpt,max_frames_num=8,device=cpu"
    assert cmd[cmd.index("--output_path") + 1] == str(tmp_path / "frames_8")
    assert cmd[-3:] == ["--limit", "3", "--log_samples"]
    assert sweep.parse_frames("16, 8,8") == [8, 16]
    with pytest.raises(SettingError, match="comma-separated integers"):
        sweep.parse_frames("8;16")
    with pytest.raises(SettingError, match="must not set max_frames_num"):
        sweep.lmms_eval_command(_args(tmp_path, model_args="max_frames_num=4"), 8)


def test_a_failed_frame_count_is_reported_and_the_others_still_drawn(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_run(cmd, stdout=None, stderr=None, check=False):
        frames = int(cmd[cmd.index("--model_args") + 1].split("max_frames_num=")[1].split(",")[0])
        calls.append(frames)
        if frames == 16:
            stdout.write("Traceback: out of memory\n")
            return subprocess.CompletedProcess(cmd, 1)
        write_results_file(Path(cmd[cmd.index("--output_path") + 1]), frames, 45.0)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(sweep.subprocess, "run", fake_run)
    argv = ["sweep", "--task", TASK, "--frames", "8,16", "--pretrained", "/ckpt", "--output-path", str(tmp_path)]
    assert main(argv) == 1
    assert calls == [8, 16]
    out = capsys.readouterr().out
    assert "lmms-eval failed at 16 frames" in out and "out of memory" in out and "failed frame counts: 16" in out
    assert (tmp_path / "sweep.md").read_text().count("| 8 | 45.00 |") == 1
    # --resume skips the finished count and retries only the failed one
    calls.clear()
    main(argv + ["--resume"])
    assert calls == [16]


def test_running_needs_a_checkpoint(tmp_path, capsys):
    assert main(["sweep", "--task", TASK, "--output-path", str(tmp_path)]) == 2
    assert "--pretrained is required" in capsys.readouterr().err


@pytest.mark.slow
def test_sweep_runs_lmms_eval_at_two_frame_counts(tmp_path, monkeypatch):
    """A real sweep: lmms-eval --model longva on the tiny checkpoint, longva_videomme on local data."""
    from longva_plugins.testing import ensure_tiny_checkpoint

    rows = [videomme_row(0, "short"), videomme_row(1, "long"), videomme_row(2, "long")]
    for row in rows[:2]:  # vid2 is missing
        write_video(tmp_path / "videos" / f"{row['videoID']}.mp4", num_frames=8)
    (tmp_path / "vm.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    for key, value in {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "LONGVA_VIDEOMME_ANNOTATIONS": str(tmp_path / "vm.jsonl"),
        "LONGVA_VIDEOMME_ROOT": str(tmp_path / "videos"),
    }.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "sweep"
    assert (
        main(
            [
                "sweep",
                "--task",
                TASK,
                "--frames",
                "2,4",
                "--pretrained",
                str(ensure_tiny_checkpoint()),
                "--output-path",
                str(out),
            ]
        )
        == 0
    )
    rows = collect([out], TASK)
    assert sorted(rows) == [2, 4] and all(
        r["breakdowns"]["per_duration"].keys() == {"short", "long"} for r in rows.values()
    )
    assert (out / "sweep.png").is_file() and (out / "frames_2" / "lmms_eval.log").is_file()
