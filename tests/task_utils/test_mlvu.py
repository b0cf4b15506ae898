"""MLVU dev: prompt parity with lmms-eval's built-in task, answers, M-Avg over the types present."""

from __future__ import annotations

import json

import pytest
from videobench_data import mlvu_row, write_video

from longva_plugins.errors import DataError
from longva_plugins.lmms_eval_plugin.task_utils import mlvu

BUILTIN_KWARGS = {
    "pre_prompt": "",
    "post_prompt": "\nOnly give the best option.\nBest option: (",
}


@pytest.fixture
def root(tmp_path, monkeypatch):
    write_video(tmp_path / "mlvu" / "needle" / "m0.mp4", num_frames=8)
    monkeypatch.setenv("LONGVA_MLVU_ROOT", str(tmp_path / "mlvu"))
    return tmp_path / "mlvu"


def test_prompt_equals_the_builtin_task_prompt():
    from lmms_eval.tasks.mlvu import utils as builtin

    doc = mlvu_row(0)
    assert mlvu.mlvu_doc_to_text(doc, dict(BUILTIN_KWARGS)) == builtin.mlvu_doc_to_text(doc, dict(BUILTIN_KWARGS))
    assert mlvu.mlvu_doc_to_text(doc, dict(BUILTIN_KWARGS)).endswith(
        "(D) a tree\nOnly give the best option.\nBest option: ("
    )


@pytest.mark.parametrize(
    "answer,candidates,expected",
    [
        ("A", ["x", "y"], "A"),
        ("(C)", ["x", "y", "z"], "C"),
        ("y", ["x", "y"], "B"),
        ("b", ["x", "y"], "B"),
    ],
)
def test_answer_letter_accepts_letters_and_candidate_texts(answer, candidates, expected):
    assert mlvu.answer_letter({"answer": answer, "candidates": candidates}) == expected


def test_process_results_scores_and_records_the_missing_video(root):
    ok = mlvu.mlvu_process_results(mlvu_row(0), ["A) a bar"])["longva_mlvu_accuracy"]
    assert ok["score"] == 1.0 and ok["video_problem"] is None and ok["question_type"] == "needle"
    gone = mlvu.mlvu_process_results(mlvu_row(1, task_type="count", answer="B"), ["B"])["longva_mlvu_accuracy"]
    assert gone["video_problem"] == "missing" and gone["video_path"] == str(root / "count" / "m1.mp4")
    six = {**mlvu_row(2), "candidates": list("uvwxyz"), "answer": "F"}
    # lmms-eval extracts A-D only, also for six candidates: "(F)" names no option there, nor here
    assert mlvu.mlvu_process_results(six, ["(F)"])["longva_mlvu_accuracy"]["pred_answer"] == ""


def test_m_avg_over_the_types_present(caplog):
    items = [
        {
            "score": 1.0,
            "question_type": "needle",
            "pred_answer": "A",
            "video_path": "a",
            "video_problem": None,
        },
        {
            "score": 0.0,
            "question_type": "needle",
            "pred_answer": "B",
            "video_path": "b",
            "video_problem": None,
        },
        {
            "score": 0.0,
            "question_type": "count",
            "pred_answer": "",
            "video_path": "/m/c.mp4",
            "video_problem": "missing",
        },
    ]
    summary = mlvu.mlvu_summary(items)
    assert summary["per_question_type"] == {"count": 0.0, "needle": 50.0}
    assert summary["m_avg"] == pytest.approx(25.0) and summary["overall"] == pytest.approx(100 / 3)
    assert "ego" in summary["question_types_absent"] and "needle" not in summary["question_types_absent"]
    assert summary["missing_videos"] == 1
    assert mlvu.mlvu_aggregate(items) == pytest.approx(25.0)  # the number lmms-eval prints
    assert mlvu.mlvu_missing_videos(items) == 1
    assert "/m/c.mp4" in caplog.text and "LONGVA_MLVU_ROOT" in caplog.text


def test_m_avg_matches_the_builtin_when_all_seven_types_are_present():
    from lmms_eval.tasks.mlvu import utils as builtin

    docs = [mlvu_row(i, task_type=t, answer="AB"[i % 2]) for i, t in enumerate(mlvu.DEV_TASK_TYPES * 2)]
    outputs = [
        "A",
        "A",
        "(B)",
        "C",
        "B) a cat",
        "",
        "A",
        "B",
        "A",
        "B",
        "The answer is A",
        "D",
        "B",
        "B",
    ]
    ours = [mlvu.mlvu_process_results(d, [o])["longva_mlvu_accuracy"] for d, o in zip(docs, outputs)]
    theirs = [builtin.mlvu_process_results(d, [o])["mlvu_percetion_score"] for d, o in zip(docs, outputs)]
    assert mlvu.mlvu_aggregate(ours) == pytest.approx(builtin.mlvu_aggregate_results_dev(theirs))


def test_docs_from_a_local_parquet_copy(tmp_path, monkeypatch):
    import datasets

    datasets.Dataset.from_list([mlvu_row(0), mlvu_row(1, "count")]).to_parquet(str(tmp_path / "test-00000.parquet"))
    monkeypatch.setenv("LONGVA_MLVU_ANNOTATIONS", str(tmp_path))
    docs = mlvu.mlvu_process_docs(None)
    assert docs["task_type"] == ["needle", "count"] and docs[0]["candidates"][1] == "a cat"


def test_docs_in_a_foreign_schema_are_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "bad.json").write_text(json.dumps({"video": "x.mp4", "question": "?"}))
    monkeypatch.setenv("LONGVA_MLVU_ANNOTATIONS", str(tmp_path / "bad.json"))
    with pytest.raises(DataError, match="MLVU dev annotations lack the column.*video_name"):
        mlvu.mlvu_process_docs(None)


def test_a_bad_extraction_mode_fails_when_the_task_is_built(tmp_path, monkeypatch):
    from longva_plugins.errors import SettingError

    monkeypatch.setenv("LONGVA_ANSWER_EXTRACTION", "regex")
    with pytest.raises(
        SettingError,
        match="LONGVA_ANSWER_EXTRACTION='regex'; use one of lmms_eval, paper",
    ):
        mlvu.mlvu_process_docs(None)
