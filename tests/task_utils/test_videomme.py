"""Video-MME prompts (parity with lmms-eval's built-in task), subtitles, scoring and breakdowns."""

from __future__ import annotations

import json

import pytest
from videobench_data import videomme_row, write_video

from longva_plugins.errors import DataError
from longva_plugins.lmms_eval_plugin.task_utils import videomme

BUILTIN_KWARGS = {
    "pre_prompt": "",
    "post_prompt": "\nAnswer with the option's letter from the given choices directly.",
}
SRT = """1
00:00:00,000 --> 00:00:01,000
<font color="white" size=".72c">first line</font>

2
00:00:01,500 --> 00:00:02,500
<font color="white" size=".72c">second line</font>

3
00:00:03,000 --> 00:00:03,900
<font color="white" size=".72c">third line</font>
"""


@pytest.fixture
def media(tmp_path, monkeypatch):
    root = tmp_path / "videomme"
    write_video(root / "data" / "vid0.mp4", num_frames=40, fps=10)
    (root / "subtitle").mkdir()
    (root / "subtitle" / "vid0.srt").write_text(SRT)
    monkeypatch.setenv("LONGVA_VIDEOMME_ROOT", str(root / "data"))
    monkeypatch.delenv("LONGVA_VIDEOMME_SUBTITLES", raising=False)
    return root


def test_prompt_equals_the_builtin_task_prompt():
    from lmms_eval.tasks.videomme import utils as builtin

    doc = videomme_row(0)
    ours = videomme.videomme_doc_to_text(doc, dict(BUILTIN_KWARGS))
    assert ours == builtin.videomme_doc_to_text(doc, dict(BUILTIN_KWARGS))
    assert "What colour is the car?\nA. Blue.\nB. Red." in ours and ours.endswith("choices directly.")


@pytest.mark.parametrize("frame_num", [2, 8, 32])
def test_subtitle_prompt_equals_the_builtin_task_prompt(media, monkeypatch, frame_num):
    from lmms_eval.tasks.videomme import utils as builtin

    # The built-in reads $HF_HOME/videomme/{data,subtitle}; point it at the same files.
    monkeypatch.setattr(builtin, "base_cache_dir", str(media.parent))
    doc, kwargs = (
        videomme_row(0),
        {"frame_num": frame_num, "pre_prompt": "", "post_prompt": ""},
    )
    ours = videomme.videomme_doc_to_text_subtitle(doc, kwargs)
    assert ours == builtin.videomme_doc_to_text_subtitle(doc, kwargs)
    assert ours.startswith("This video's subtitles are listed below: \n") and ours.endswith("The best answer is:")


def test_subtitles_follow_the_sampled_frames(media):
    entries = videomme.parse_srt(media / "subtitle" / "vid0.srt")
    assert entries[0] == (0.0, 1.0, '<font color="white" size=".72c">first line</font>')
    assert [(start, end) for start, end, _ in entries] == [
        (0.0, 1.0),
        (1.5, 2.5),
        (3.0, 3.9),
    ]
    fps, frames = videomme.video_timing(str(media / "data" / "vid0.mp4"))
    assert fps == pytest.approx(10.0) and frames == 40
    # 2 samples: frames 0 and 39 (t=0 s and 3.9 s): the first line covers frame 0; the third ends at frame 39.
    assert videomme.subtitles_at_frames(entries, fps, frames, 2) == ["first line"]
    assert videomme.subtitles_at_frames(entries, fps, frames, 40) == [
        "first line",
        "second line",
        "third line",
    ]
    assert videomme.subtitles_at_frames(entries, 0.0, 0, 8) == []


def test_malformed_and_crlf_subtitle_files(tmp_path):
    srt = tmp_path / "x.srt"
    srt.write_bytes(b"1\r\n00:00:01,000 --> 00:00:02,000\r\nhello\r\n\r\n2\r\nbroken --> stamp\r\nbye\r\n")
    assert videomme.parse_srt(srt) == [(1.0, 2.0, "hello")]


def test_subtitle_prompt_without_srt_says_so(media):
    text = videomme.videomme_doc_to_text_subtitle({**videomme_row(5), "videoID": "nosubs"}, {"frame_num": 8})
    assert text.startswith("This video's subtitles are listed below: \nNo subtitles available\nSelect the best")


def test_doc_to_visual_returns_the_path_even_when_missing(media):
    assert videomme.videomme_doc_to_visual(videomme_row(0)) == [str(media / "data" / "vid0.mp4")]
    assert videomme.videomme_doc_to_visual(videomme_row(7)) == [str(media / "data" / "vid7.mp4")]


def test_process_results_scores_and_records_missing_videos(media):
    present = videomme.videomme_process_results(videomme_row(0), ["(B) Red."])["longva_videomme_accuracy"]
    assert present["score"] == 1.0 and present["pred_answer"] == "B" and present["video_problem"] is None
    missing = videomme.videomme_process_results(videomme_row(3), [""])["longva_videomme_accuracy"]
    assert missing["score"] == 0.0 and missing["video_problem"] == "missing"
    assert missing["video_path"].endswith("vid3.mp4")


def _item(**kw):
    base = {
        "score": 1.0,
        "duration": "short",
        "domain": "Knowledge",
        "sub_category": "x",
        "task_type": "OCR",
        "pred_answer": "A",
        "video_path": "/v/a.mp4",
        "video_problem": None,
    }
    return {**base, **kw}


def test_breakdowns_and_missing_videos_in_the_summary(caplog, tmp_path):
    items = [
        _item(),
        _item(
            score=0.0,
            duration="long",
            video_path="/v/missing.mp4",
            video_problem="missing",
            pred_answer="",
        ),
        _item(score=0.0, duration="long", task_type="Counting", domain="Multilingual"),
    ]
    summary = videomme.videomme_summary(items)
    assert summary["overall"] == pytest.approx(100 / 3) and summary["n"] == 3
    assert summary["per_duration"] == {"long": 0.0, "short": 100.0}
    assert summary["per_task_type"] == {"Counting": 0.0, "OCR": 50.0}
    assert summary["per_domain"] == {"Knowledge": 50.0, "Multilingual": 0.0}
    assert summary["missing_videos"] == 1 and summary["missing_video_paths"] == ["/v/missing.mp4"]
    assert summary["no_option_answers"] == 1 and summary["answer_extraction"] == "lmms_eval"
    # lmms-eval gets the number; the breakdown goes beside the results, the missing video to the log
    args = type("Args", (), {"output_path": str(tmp_path)})()
    assert videomme.videomme_aggregate(items, args=args) == pytest.approx(100 / 3)
    assert videomme.videomme_missing_videos(items, args=args) == 1
    written = json.loads((tmp_path / "longva" / "longva_videomme" / "breakdown.json").read_text())
    assert written == json.loads(json.dumps(summary))
    assert "/v/missing.mp4" in caplog.text


def test_overall_matches_the_builtin_aggregation():
    from lmms_eval.tasks.videomme import utils as builtin

    docs = [
        videomme_row(i, duration=d, domain="Knowledge", task_type="OCR Problems")
        for i, d in enumerate(["short", "short", "medium", "long"])
    ]
    outputs = ["B", "The answer is C.", "(B)", ""]
    ours = [videomme.videomme_process_results(d, [o])["longva_videomme_accuracy"] for d, o in zip(docs, outputs)]
    theirs = [builtin.videomme_process_results(d, [o])["videomme_perception_score"] for d, o in zip(docs, outputs)]
    assert videomme.videomme_aggregate(ours) == pytest.approx(builtin.videomme_aggregate_results(theirs))


def test_docs_from_a_local_copy_filtered_by_duration(tmp_path, monkeypatch):
    rows = [
        videomme_row(0, "short"),
        videomme_row(1, "medium"),
        videomme_row(2, "long"),
        videomme_row(3, "long"),
    ]
    (tmp_path / "videomme.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    monkeypatch.setenv("LONGVA_VIDEOMME_ANNOTATIONS", str(tmp_path / "videomme.jsonl"))
    assert len(videomme.videomme_process_docs(None)) == 4
    assert videomme.videomme_process_docs_long(None)["videoID"] == ["vid2", "vid3"]
    assert videomme.videomme_process_docs_short(None)["videoID"] == ["vid0"]


def test_docs_in_a_foreign_schema_are_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "bad.jsonl").write_text(json.dumps({"video": "x.mp4", "question": "?"}))
    monkeypatch.setenv("LONGVA_VIDEOMME_ANNOTATIONS", str(tmp_path / "bad.jsonl"))
    with pytest.raises(DataError, match="lack the column.*videoID"):
        videomme.videomme_process_docs(None)


def test_paper_variant_prompt_and_extraction():
    """The 2024-06 protocol: options as the list's repr, "The best answer is:", first capital letter."""
    doc = videomme_row(0)
    prompt = videomme.videomme_doc_to_text_paper(doc)
    assert prompt == (videomme.OPTION_PROMPT + "\n" + doc["question"] + "\n" + str(doc["options"])
                      + "\nThe best answer is:")
    assert "['A. " in prompt
    answer = doc["answer"]
    paper = videomme.videomme_process_results_paper(doc, [f"Answer: {answer}"])["longva_videomme_accuracy"]
    today = videomme.videomme_process_results(doc, [f"Answer: {answer}"])["longva_videomme_accuracy"]
    assert paper["pred_answer"] == "A" and paper["answer_extraction"] == "paper"  # the "A" of "Answer"
    assert today["pred_answer"] == answer and today["answer_extraction"] == "lmms_eval"
