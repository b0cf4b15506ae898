"""Answer extraction on real-world model outputs, and the Video-MME / MLVU breakdowns."""

from __future__ import annotations

import pytest

from longva_plugins.task_utils.common import extract_choice, find_video
from longva_plugins.task_utils.mlvu import mlvu_aggregate
from longva_plugins.task_utils.videomme import videomme_aggregate, videomme_doc_to_text

OPTIONS = ["A. blue", "B. red", "C. green", "D. yellow"]


@pytest.mark.parametrize("output,expected", [
    ("B", "B"), ("(B)", "B"), ("B.", "B"), ("B. red", "B"), ("B) red", "B"), ("b", "B"), ("(b) red", "B"),
    ("The answer is B.", "B"), ("The best answer is (C)", "C"), ("Answer: D", "D"), ("I think it is C.", "C"),
    ("", ""), ("   ", ""), ("A or C", "A"), ("Either B or D could be right", ""), ("AB", ""),
    ("red", "B"), ("The colour is green.", "C"), ("I cannot tell", ""), (None, ""),
])
def test_extract_choice(output, expected):
    assert extract_choice(output, "ABCD", OPTIONS) == expected


def _item(**kw):
    base = {"score": 1.0, "duration": "short", "domain": "Knowledge", "sub_category": "x", "task_type": "OCR",
            "video_path": "/v/a.mp4", "missing_video": False}
    return {**base, **kw}


def test_videomme_breakdowns_and_missing_videos():
    items = [_item(), _item(score=0.0, duration="long", video_path="/v/missing.mp4", missing_video=True),
             _item(score=0.0, duration="long", task_type="Counting")]
    summary = videomme_aggregate(items)
    assert summary["overall"] == pytest.approx(100 / 3)
    assert summary["per_duration"] == {"long": 0.0, "short": 100.0}
    assert summary["per_task_type"] == {"Counting": 0.0, "OCR": 50.0}
    assert summary["missing_videos"] == 1 and summary["missing_video_paths"] == ["/v/missing.mp4"]


def test_mlvu_m_avg_over_types_present():
    items = [{"score": 1.0, "question_type": "needle"}, {"score": 0.0, "question_type": "needle"},
             {"score": 1.0, "question_type": "count"}]
    summary = mlvu_aggregate(items)
    assert summary["per_question_type"] == {"count": 100.0, "needle": 50.0}
    assert summary["m_avg"] == pytest.approx(75.0) and summary["overall"] == pytest.approx(200 / 3)


def test_prompt_lists_options_and_asks_for_the_letter():
    doc = {"question": "What colour is the car?", "options": OPTIONS}
    text = videomme_doc_to_text(doc, {"post_prompt": "\nAnswer with the option's letter from the given choices directly."})
    assert "What colour is the car?\nA. blue\nB. red" in text and text.endswith("directly.")


def test_find_video_tries_extensions_and_returns_the_path_when_missing(tmp_path):
    (tmp_path / "abc.mkv").write_bytes(b"x")
    assert find_video(tmp_path, "abc") == str(tmp_path / "abc.mkv")
    assert find_video(tmp_path, "nope") == str(tmp_path / "nope.mp4")
