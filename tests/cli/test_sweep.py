"""`longva-plugins sweep`: table and plot of accuracy against frames from lmms-eval result files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from longva_plugins.cli import main
from longva_plugins.cli.sweep import collect, headline


def _fake_results(folder: Path, frames: int, overall: float):
    run = folder / f"frames_{frames}" / "model"
    run.mkdir(parents=True)
    value = {"overall": overall, "per_duration": {"short": overall + 5, "long": overall - 5}}
    (run / "20261122_results.json").write_text(json.dumps({"results": {"longva_videomme": {
        "alias": "longva_videomme", "longva_videomme_accuracy,none": value}}}))


def test_headline_prefers_overall_then_m_avg():
    assert headline(0.5) == 0.5
    assert headline({"overall": 40.0, "m_avg": 10}) == 40.0
    assert headline({"m_avg": 56.3}) == 56.3
    assert headline({"cells": {}}) is None


def test_sweep_from_results_writes_table_and_plot(tmp_path, capsys):
    _fake_results(tmp_path, 8, 47.9)
    _fake_results(tmp_path, 16, 49.7)
    assert main(["sweep", "--task", "longva_videomme", "--output-path", str(tmp_path), "--from-results"]) == 0
    rows = collect(tmp_path, "longva_videomme")
    assert [(f, r["score"]) for f, r in rows.items()] == [(8, 47.9), (16, 49.7)]
    md = (tmp_path / "sweep.md").read_text()
    assert "| 8 | 47.90 |" in md and "per_duration" in md
    assert (tmp_path / "sweep.csv").read_text().splitlines()[1:] == ["8,47.9000", "16,49.7000"]
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"


def test_sweep_without_results_is_a_clear_error(tmp_path, capsys):
    assert main(["sweep", "--task", "longva_videomme", "--output-path", str(tmp_path), "--from-results"]) == 2
    assert "no frames_N" in capsys.readouterr().err


@pytest.mark.slow
def test_sweep_runs_lmms_eval_at_two_frame_counts(tmp_path, monkeypatch):
    from longva_plugins.models.longva import ensure_tiny_checkpoint

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LONGVA_VNIAH_GRID", "frames=2:2:1;depths=0")
    monkeypatch.setenv("LONGVA_VNIAH_CACHE", str(tmp_path / "cache"))
    code = main(["sweep", "--task", "vniah", "--frames", "2,4", "--pretrained", str(ensure_tiny_checkpoint()),
                 "--output-path", str(tmp_path / "sweep")])
    assert code == 0
    assert sorted(collect(tmp_path / "sweep", "vniah")) == [2, 4]
    assert (tmp_path / "sweep" / "sweep.png").is_file()
