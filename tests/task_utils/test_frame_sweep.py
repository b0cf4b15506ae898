"""Collecting lmms-eval results per frame count, the sweep tables and the plot."""

from __future__ import annotations

import json
import os

import pytest
from videobench_data import write_results_file

from longva_plugins.errors import DataError, SettingError
from longva_plugins.lmms_eval_plugin.task_utils import frame_sweep

TASK = "longva_videomme"


def test_headline_prefers_m_avg_then_overall():
    assert frame_sweep.headline(0.5) == 0.5
    assert frame_sweep.headline({"overall": 40.0, "m_avg": 10.0}) == 10.0
    assert frame_sweep.headline({"overall": 52.6, "n": 3}) == 52.6
    assert (
        frame_sweep.headline({"cells": {}}) is None
        and frame_sweep.headline(True) is None
        and frame_sweep.headline("N/A") is None
    )


def test_frames_from_model_args_or_folder(tmp_path):
    path = tmp_path / "frames_64" / "longva" / "r_results.json"
    assert (
        frame_sweep.frames_of(
            {"config": {"model_args": "pretrained=x,max_frames_num=32,device=cpu"}},
            path,
        )
        == 32
    )
    assert frame_sweep.frames_of({"config": {"model_args": {"pretrained": "x", "max_frames_num": 16}}}, path) == 16
    assert frame_sweep.frames_of({"config": {"model_args": "pretrained=x"}}, path) == 64
    assert frame_sweep.frames_of({"config": {}}, tmp_path / "run" / "r_results.json") is None


def test_the_newest_result_wins_for_a_repeated_frame_count(tmp_path):
    old = write_results_file(tmp_path / "a", 8, 10.0, stamp="old")
    write_results_file(tmp_path / "b", 8, 20.0, stamp="new")
    os.utime(old, (1, 1))
    assert frame_sweep.collect([tmp_path], TASK)[8]["score"] == 20.0


def test_results_of_other_tasks_are_skipped_and_a_missing_task_is_a_clear_error(
    tmp_path,
):
    write_results_file(tmp_path, 8, 40.0)
    with pytest.raises(DataError, match="no lmms-eval results for task 'longva_mlvu_dev'"):
        frame_sweep.collect([tmp_path], "longva_mlvu_dev")
    with pytest.raises(DataError, match="has no numeric metric named 'nope'"):
        frame_sweep.collect([tmp_path], TASK, metric="nope")


def test_unknown_frame_count_and_corrupt_files_name_the_file(tmp_path):
    path = write_results_file(tmp_path / "run", 8, 40.0, model_args="pretrained=/ckpt")
    with pytest.raises(DataError, match="cannot tell the frame count.*max_frames_num=N"):
        frame_sweep.collect([tmp_path], TASK)
    path.write_text("{truncated")
    with pytest.raises(DataError, match=f"{path.name} is not a readable lmms-eval results file"):
        frame_sweep.collect([tmp_path], TASK)


def test_mlvu_results_plot_m_avg_and_question_types(tmp_path):
    run = tmp_path / "longva"
    run.mkdir()
    value = {
        "m_avg": 56.3,
        "overall": 58.0,
        "n": 4,
        "per_question_type": {"count": 40.0, "needle": 72.6},
        "missing_videos": 1,
    }
    (run / "x_results.json").write_text(
        json.dumps(
            {
                "results": {
                    "longva_mlvu_dev": {
                        "alias": "longva_mlvu_dev",
                        "longva_mlvu_accuracy,none": value,
                    }
                },
                "config": {"model_args": "pretrained=/c,max_frames_num=256"},
            }
        )
    )
    rows = frame_sweep.collect([tmp_path], "longva_mlvu_dev")
    assert rows[256]["score"] == 56.3 and rows[256]["missing_videos"] == 1
    assert (
        frame_sweep.pick_breakdown(rows, "auto") == "per_question_type"
        and frame_sweep.pick_breakdown(rows, "none") is None
    )
    with pytest.raises(SettingError, match="'per_domain' is not in the results.*per_question_type"):
        frame_sweep.pick_breakdown(rows, "per_domain")
    frame_sweep.write_outputs(rows, tmp_path / "out", "longva_mlvu_dev")
    assert (tmp_path / "out" / "sweep.md").read_text().splitlines()[-1] == "| 256 | 56.30 | 40.00 | 72.60 | 1 |"


def test_stderr_entries_are_never_the_headline(tmp_path):
    run = tmp_path / "longva"
    run.mkdir()
    (run / "r_results.json").write_text(
        json.dumps(
            {
                "results": {
                    TASK: {"alias": TASK, "acc_stderr_clt,none": 0.01, "acc_stderr,none": 0.02, "acc,none": 0.5}
                },
                "config": {"model_args": "pretrained=/c,max_frames_num=8"},
            }
        )
    )
    assert frame_sweep.collect([tmp_path], TASK)[8] | {"path": None} == {
        "score": 0.5,
        "metric": "acc",
        "breakdowns": {},
        "missing_videos": None,
        "path": None,
    }
