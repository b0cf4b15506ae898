"""The mini Video-MME / MLVU: real layouts the tasks load, answers that follow from the videos."""

from __future__ import annotations

import string

import numpy as np
import pytest

from longva_plugins.nano import minibench as mb


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    mb.write_bench(root, 77, {"short": 2, "long": 1}, {"short": 24, "long": 48}, (2, 6))
    return root


def _truth(plans, video, kind, question_text, options):
    """The right option of a question, derived from the video's events alone."""
    events = plans[video]
    if kind == "appear":
        return next(o for o in options if o in events)
    if kind == "first":
        return events[0]
    if kind == "count":
        return str(len(events))
    a, b = (w for w in question_text.split() if w in ("red", "green", "blue", "yellow", "orange", "purple"))
    first, second = sorted((a, b), key=events.index)
    return f"{first}, then {second}"


def test_tasks_load_the_layouts_and_every_answer_follows_from_the_video(bench, monkeypatch):
    import json

    from longva_plugins.lmms_eval_plugin.task_utils.mlvu import answer_letter, mlvu_process_docs
    from longva_plugins.lmms_eval_plugin.task_utils.videomme import load_docs, video_timing, videomme_doc_to_visual

    for key, value in mb.bench_env(bench).items():
        monkeypatch.setenv(key, value)
    plans = json.loads((bench / "plans.json").read_text())
    kinds = {v: k for k, v in mb.VIDEOMME_TASK_TYPES.items()}
    docs = load_docs("longva_videomme")
    assert {d["duration"] for d in docs} == {"short", "long"}
    for doc in docs:
        path = videomme_doc_to_visual(doc)[0]
        assert video_timing(path) == (mb.FPS, {"short": 24, "long": 48}[doc["duration"]])
        options = [o.split(". ", 1)[1] for o in doc["options"]]
        assert [o.split(". ", 1)[0] for o in doc["options"]] == list("ABCD")
        truth = _truth(plans, f"videomme/data/{doc['videoID']}.mp4", kinds[doc["task_type"]], doc["question"], options)
        assert doc["answer"] == string.ascii_uppercase[options.index(truth)]
    kinds = {"needle": ("appear",), "count": ("count",), "order": ("first", "order")}
    for doc in mlvu_process_docs(None):
        kind = "order" if doc["question"].startswith("In which order") else kinds[doc["task_type"]][0]
        truth = _truth(plans, f"mlvu/video/{doc['video_name']}", kind, doc["question"], doc["candidates"])
        assert answer_letter(doc) == string.ascii_uppercase[doc["candidates"].index(truth)]
        assert (bench / "mlvu" / "video" / doc["video_name"]).is_file()
    assert (bench / "videomme" / "subtitle").is_dir() and len(list((bench / "videomme" / "subtitle").glob("*.srt"))) == 3


def test_alignment_prompts_are_the_tasks_own_doc_to_text(bench):
    from longva_plugins.lmms_eval_plugin.task_utils.videomme import OPTION_PROMPT, SUBTITLES_HEADER

    prompts = mb.task_prompts(bench)
    by_task = {}
    for task, _, _, prompt in prompts:
        by_task.setdefault(task, []).append(prompt)
    assert set(by_task) == set(mb.TASKS)
    assert all(p.endswith("\nAnswer with the option's letter from the given choices directly.") for p in by_task["longva_videomme"])
    assert all(p.startswith(OPTION_PROMPT) and "['A. " in p for p in by_task["longva_videomme_paper"])
    assert all(p.startswith(SUBTITLES_HEADER) for p in by_task["longva_videomme_w_subtitle"])
    assert all(p.endswith("Best option: (") for p in by_task["longva_mlvu_dev"])
    records = mb.alignment_records(bench, 0)
    assert all(r["conversations"][0]["value"].startswith("<image>\n") for r in records)
    answers = {r["conversations"][1]["value"] for r in records}
    assert answers <= set("ABCD") | set(mb.COLOURS)


def test_plans_are_seeded_and_questions_balanced():
    rng = np.random.default_rng(0)
    plan = mb.plan_video(rng, 64, mb.BENCH_SHOT)
    assert plan.frames == 64 and 1 <= len(plan.events) <= 4 and len(set(plan.events)) == len(plan.events)
    again = mb.plan_video(np.random.default_rng(0), 64, mb.BENCH_SHOT)
    assert again.shots == plan.shots
    answers = [q.answer for seed in range(200) for q in mb.questions_for(np.random.default_rng(seed),
                                                                         mb.plan_video(np.random.default_rng(seed), 16, (1, 1)))]
    counts = np.bincount(answers, minlength=4) / len(answers)
    assert counts.min() > 0.15, f"answer letters are balanced: {counts}"


def test_make_mini_bench_command(tmp_path):
    from longva_plugins.cli import main

    assert main(["make-mini-bench", str(tmp_path / "b"), "--videos", "1"]) == 0
    assert (tmp_path / "b" / "videomme" / "test-00000-of-00001.parquet").is_file()
    assert (tmp_path / "b" / "mlvu" / "dev.json").is_file()
    assert main(["make-mini-bench", str(tmp_path / "c"), "--videos", "0"]) == 2


def test_canonical_options_list_the_same_colours_in_one_order(tmp_path, monkeypatch):
    """``--canonical-options``: every colour question shows red, green, blue, yellow as A-D, so the
    letter is a function of the colour seen -- and still follows from the video."""
    import json

    from longva_plugins.lmms_eval_plugin.task_utils.mlvu import answer_letter, mlvu_process_docs
    from longva_plugins.lmms_eval_plugin.task_utils.videomme import load_docs

    root = tmp_path / "canonical"
    mb.write_bench(root, 5, {"short": 8}, {"short": 24}, (2, 6), canonical=True)
    for key, value in mb.bench_env(root).items():
        monkeypatch.setenv(key, value)
    plans = json.loads((root / "plans.json").read_text())
    kinds = {v: k for k, v in mb.VIDEOMME_TASK_TYPES.items()}
    seen = set()
    for doc in load_docs("longva_videomme"):
        kind = kinds[doc["task_type"]]
        seen.add(kind)
        options = [o.split(". ", 1)[1] for o in doc["options"]]
        if kind in ("appear", "first"):
            assert options == list(mb.CANONICAL)
        truth = _truth(plans, f"videomme/data/{doc['videoID']}.mp4", kind, doc["question"], options)
        assert doc["answer"] == string.ascii_uppercase[options.index(truth)]
    assert "appear" in seen and "order" not in seen
    for doc in mlvu_process_docs(None):
        if doc["task_type"] == "needle":
            assert doc["candidates"] == list(mb.CANONICAL)
            truth = _truth(plans, f"mlvu/video/{doc['video_name']}", "appear", doc["question"], doc["candidates"])
            assert answer_letter(doc) == string.ascii_uppercase[doc["candidates"].index(truth)]
    records = mb.alignment_records(root, 0, colour_share=0.0, kinds=("appear",))
    assert records and all("Which colour of framed square appears" in r["conversations"][0]["value"] for r in records)
    text = mb.text_records(0, 40, canonical=True, kinds=("appear",))
    assert len(text) == 40 and all(
        "A. red" in r["conversations"][0]["value"] or "(A) red" in r["conversations"][0]["value"] for r in text)
