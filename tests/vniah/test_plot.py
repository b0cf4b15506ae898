"""V-NIAH results schema, heatmap and `longva-plugins vniah plot`."""

from __future__ import annotations

import json

from longva_plugins.cli import main
from longva_plugins.vniah.plot import plot_heatmap
from longva_plugins.vniah.results import cell_scores, write_all_accuracies


def _records():
    return [
        {"frames": 4, "depth": 0.0, "correct": 1}, {"frames": 4, "depth": 0.0, "correct": 0},
        {"frames": 4, "depth": 1.0, "correct": 1}, {"frames": 8, "depth": 0.0, "correct": 0},
        {"frames": 8, "depth": 1.0, "correct": 1},
    ]


def test_cell_scores_use_the_reference_schema():
    scores = cell_scores(_records())
    assert scores[0] == {"Num. Frame": 4, "Frame Depth": 0.0, "Score": 0.5}
    assert {s["Frame Depth"] for s in scores} == {0.0, 100.0}
    assert len(scores) == 4


def test_heatmap_png_is_written(tmp_path):
    path = plot_heatmap(cell_scores(_records()), tmp_path / "h.png", train_frames=6)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*tmp*")), "temporary file left behind"


def test_cli_plot_redraws_from_a_results_folder(tmp_path, capsys):
    folder = tmp_path / "run" / "vniah_1_5cells"
    folder.mkdir(parents=True)
    write_all_accuracies(cell_scores(_records()), folder)
    assert main(["vniah", "plot", str(tmp_path / "run")]) == 0
    assert (folder / "heatmap.png").is_file()
    assert "average" in capsys.readouterr().out
    assert json.loads((folder / "all_accuracies.json").read_text())[0]["Num. Frame"] == 4


def test_cli_plot_without_results_is_a_clear_error(tmp_path, capsys):
    assert main(["vniah", "plot", str(tmp_path)]) == 2
    assert "no all_accuracies.json" in capsys.readouterr().err


def test_files_are_written_as_the_original_writes_them(tmp_path):
    """indent 4, depth rounded to tens (round(depth*100, -1)), avg_accuracy.txt = mean of the cells."""
    records = _records() + [{"frames": 8, "depth": 0.24, "correct": 1}]
    scores = cell_scores(records)
    assert {s["Frame Depth"] for s in scores} == {0.0, 20.0, 100.0}
    path = write_all_accuracies(scores, tmp_path)
    text = path.read_text()
    assert text == json.dumps(scores, indent=4) and '\n    {\n        "Num. Frame"' in text
    expected = sum(s["Score"] for s in scores) / len(scores)
    assert (tmp_path / "avg_accuracy.txt").read_text() == f"Average Accuracy: {expected}\n"


def test_frame_ticks_follow_the_original_where_they_can():
    from longva_plugins.vniah.plot import frame_tick

    assert [frame_tick(f) for f in (200, 1000, 3000)] == ["0.2K", "1.0K", "3.0K"]
    assert [frame_tick(f) for f in (4, 16, 250)] == ["4", "16", "250"]
