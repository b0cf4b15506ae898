"""The nano report's section beyond the paper: tables from the tasks' outputs, side-by-side figures."""

from __future__ import annotations

from longva_plugins.nano.report import beyond_section


def _scores(value, rows="Frame Depth"):
    return [{"Num. Frame": n, rows: r, "Score": value} for n in (10, 50) for r in (0.0, 100.0)]


def _result(value):
    cells = {kind: _scores(value, "Needles") for kind in ("retrieval", "ordering", "counting")}
    multi = {"overall": value, "kinds": {k: value for k in cells}, "cells": cells}
    return {"vniah_d": {"average": value, "by_frames": {10: value, 50: value}, "scores": _scores(value),
                        "breakdown": {"by_side": {"after": value, "none": 1.0}}},
            "vniah_d_gen": {"average": value, "breakdown": {"distracted": 0.25}},
            "multi_open": multi, "multi_mc": {**multi, "chance": {k: 0.0039 for k in cells}}}


def test_beyond_section_tables_and_figures(tmp_path):
    beyond = {"long": _result(0.75), "control": _result(0.5)}
    baseline = {"long": {"average": 0.8}, "control": {"average": 0.4}}
    lines, figures = beyond_section(tmp_path, beyond, baseline, train_frames=10)
    text = "\n".join(lines)
    assert "| long | 0.800 | 0.750 | after 0.75, none 1.00 | 0.750 / 0.250 |" in text
    assert "| control | mc | 0.500 | 0.500 | 0.500 | 0.500 | 0.0039 / 0.0039 / 0.0039 |" in text
    assert set(figures) == {"vniah_d", "multi_retrieval", "multi_ordering", "multi_counting"}
    assert all((tmp_path / f"heatmaps-{name.replace('_', '-')}.png").is_file() for name in figures)
