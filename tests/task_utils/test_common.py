"""Answer extraction on real-world model outputs, media lookup, annotation loading, aggregation guards."""

from __future__ import annotations

import json

import pytest

from longva_plugins.errors import DataError, SettingError
from longva_plugins.lmms_eval_plugin.task_utils.common import (
    accuracy_by,
    extract_choice,
    failure_report,
    find_video,
    load_annotations,
    never_raises,
    video_problem,
)

# Real-world generations of video LMMs for a 4-option question; expected letter under lmms-eval's
# extractor (the built-in tasks') and under the paper-era first-capital-letter rule.
OUTPUTS = [
    # output,                          lmms_eval, paper
    ("B", "B", "B"),
    ("(B)", "B", "B"),
    ("B.", "B", "B"),
    ("B. red", "B", "B"),
    ("B) red", "B", "B"),
    (" C\n", "C", "C"),
    ("The answer is B.", "B", "B"),
    ("The best answer is (C)", "C", "C"),
    ("Best option: (B) a cat", "B", "B"),
    ("I think it is C.", "C", "C"),
    ("Answer: D", "D", "A"),  # the paper-era rule takes the capital A of "Answer"
    ("b", "", ""),  # lowercase names no option in either (as in the built-in tasks)
    ("(b) red", "", ""),
    ("", "", ""),
    ("   ", "", ""),
    ("red", "", ""),
    (
        "AB",
        "B",
        "A",
    ),  # two letters: last wins in lmms-eval's extractor, first in the paper's
    ("A or C", "A", "A"),
    ("Either B or D could be right", "D", "B"),
]


@pytest.mark.parametrize("output,lmms_eval,paper", OUTPUTS)
def test_extract_choice_on_real_world_outputs(output, lmms_eval, paper):
    assert extract_choice(output, "ABCD", mode="lmms_eval") == lmms_eval
    assert extract_choice(output, "ABCD", mode="paper") == paper


@pytest.mark.parametrize("output", [row[0] for row in OUTPUTS])
def test_default_extraction_is_the_builtin_videomme_one(output, monkeypatch):
    from lmms_eval.tasks.videomme.utils import extract_characters_regex

    monkeypatch.delenv("LONGVA_ANSWER_EXTRACTION", raising=False)
    assert extract_choice(output, "ABCD") == extract_characters_regex(output)


def test_extraction_mode_from_environment(monkeypatch):
    monkeypatch.setenv("LONGVA_ANSWER_EXTRACTION", "paper")
    assert extract_choice("Answer: D") == "A"
    monkeypatch.setenv("LONGVA_ANSWER_EXTRACTION", "fuzzy")
    with pytest.raises(SettingError, match="LONGVA_ANSWER_EXTRACTION='fuzzy'"):
        extract_choice("B")


def test_non_string_outputs_name_no_option():
    assert extract_choice(None) == "" and extract_choice(["B"]) == ""


def test_extra_letters_for_questions_with_more_options():
    assert extract_choice("(E)", "ABCDEF", mode="lmms_eval") == "E"
    assert extract_choice("(E)", "ABCD", mode="lmms_eval") == ""


def test_find_video_tries_extensions_and_returns_the_path_when_missing(tmp_path):
    (tmp_path / "abc.mkv").write_bytes(b"x")
    assert find_video(tmp_path, "abc") == str(tmp_path / "abc.mkv")
    assert find_video(tmp_path, "nope") == str(tmp_path / "nope.mp4")
    assert find_video(tmp_path, "sub/clip.mp4") == str(tmp_path / "sub" / "clip.mp4")


def test_video_problem(tmp_path):
    (tmp_path / "ok.mp4").write_bytes(b"data")
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert video_problem(str(tmp_path / "ok.mp4")) is None
    assert video_problem(str(tmp_path / "empty.mp4")) == "empty"
    assert video_problem(str(tmp_path / "gone.mp4")) == "missing"
    assert video_problem(str(tmp_path)) == "unreadable"


def test_load_annotations_from_a_local_jsonl_folder(tmp_path, monkeypatch):
    folder = tmp_path / "ann" / "videomme"
    folder.mkdir(parents=True)
    (folder / "test.jsonl").write_text("\n".join(json.dumps({"q": i}) for i in range(3)))
    monkeypatch.setenv("X_ANN", str(tmp_path / "ann"))
    assert load_annotations("X_ANN", "org/none", "test", "X", "/videos")["q"] == [
        0,
        1,
        2,
    ]


def test_missing_annotations_name_the_variable_and_the_download(tmp_path, monkeypatch):
    monkeypatch.setenv("X_ANN", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=r"X_ANN=.*nowhere.*hf download org/none --repo-type dataset"):
        load_annotations("X_ANN", "org/none", "test", "X", "/videos")
    monkeypatch.delenv("X_ANN")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(
        DataError,
        match=r"org/none-not-cached.*set X_ANN=<dir>.*Videos are read from /videos",
    ):
        load_annotations("X_ANN", "org/none-not-cached", "test", "X", "/videos")


def test_accuracy_and_failure_report():
    items = [
        {
            "score": 1.0,
            "k": "a",
            "pred_answer": "A",
            "video_path": "/v/1.mp4",
            "video_problem": None,
        },
        {
            "score": 0.0,
            "k": "a",
            "pred_answer": "",
            "video_path": "/v/2.mp4",
            "video_problem": "missing",
        },
        {
            "score": 0.0,
            "k": "b",
            "pred_answer": "",
            "video_path": "/v/2.mp4",
            "video_problem": "missing",
        },
    ]
    assert accuracy_by(items, "k") == {"a": 50.0, "b": 0.0}
    assert failure_report(items) == {
        "missing_videos": 1,
        "missing_video_paths": ["/v/2.mp4"],
        "no_option_answers": 2,
    }


def test_aggregation_guard_never_raises_and_keeps_the_args_parameter():
    import inspect

    @never_raises("t")
    def aggregate(items, args=None):
        return {"n": len(items), "first": items[0]["score"]}

    assert "args" in inspect.signature(aggregate).parameters  # lmms-eval passes args only if declared
    assert aggregate([{"score": 1}]) == {"n": 1, "first": 1}
    broken = aggregate([{}])
    assert broken != broken, "a failed aggregation gives NaN (and logs why)"
