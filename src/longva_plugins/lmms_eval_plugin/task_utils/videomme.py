"""Video-MME in the LongVA paper's lmms-eval protocol, robust to missing videos, breakdowns kept.

Prompts and answer extraction are those of lmms-eval's built-in ``videomme`` /
``videomme_w_subtitle`` tasks (scores stay comparable); what differs is where the data comes from,
that a missing video is a counted per-sample failure instead of ``sys.exit``, and that the
per-duration / domain / sub-category / task-type accuracies land in results.json.

Environment:
    LONGVA_VIDEOMME_ANNOTATIONS  local parquet/json(l) file or folder with the ``lmms-eval/Video-MME``
                                 annotations (default: the hub dataset, cached)
    LONGVA_VIDEOMME_ROOT         folder with ``<videoID>.mp4`` (default ``$HF_HOME/videomme/data``, the
                                 built-in task's layout)
    LONGVA_VIDEOMME_SUBTITLES    folder with ``<videoID>.srt`` (default ``<root>/../subtitle``)
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from longva_plugins.lmms_eval_plugin.task_utils.common import (
    accuracy_by,
    answer_extraction_mode,
    extract_choice,
    failure_report,
    find_video,
    hf_home,
    load_annotations,
    log_failures,
    side_output_dir,
    write_breakdown,
    media_root,
    missing_videos,
    never_raises,
    require_columns,
    video_problem,
)

HUB_DATASET = "lmms-eval/Video-MME"
COLUMNS = (
    "videoID",
    "duration",
    "domain",
    "sub_category",
    "task_type",
    "question_id",
    "question",
    "options",
    "answer",
)
DURATIONS = ("short", "medium", "long")

# lmms-eval's built-in Video-MME prompt. It mentions subtitles even without them; kept verbatim so
# scores are comparable with the built-in task and the paper's runs.
OPTION_PROMPT = (
    "Select the best answer to the following multiple-choice question based on the video and the subtitles. "
    "Respond with only the letter (A, B, C, or D) of the correct option."
)
SUBTITLES_HEADER = "This video's subtitles are listed below: \n"
# The lmms-eval release the paper's numbers came from (around commit 63532aaf, 2024-06-23) wrote
# the options as the Python list's repr and always ended with this line (docs/longva-numerics.md §8).
SUBTITLE_POST_PROMPT = "The best answer is:"
# Video-MME's .srt files wrap every line in this tag; the built-in task keeps only its content.
_FONT_TAG = re.compile(r'<font color="white" size=".72c">(.*?)</font>')


def video_root() -> Path:
    return media_root("LONGVA_VIDEOMME_ROOT", hf_home() / "videomme" / "data")


def subtitle_root() -> Path:
    return media_root("LONGVA_VIDEOMME_SUBTITLES", video_root().parent / "subtitle")


# --------------------------------------------------------------------------- documents
#: Column naming the task a doc belongs to, so that the shared aggregation knows where to write.
TASK_COLUMN = "longva_task"


def load_docs(task: str, duration: str | None = None):
    """The Video-MME questions of ``task`` (all, or one ``duration``: short / medium / long)."""
    answer_extraction_mode()  # a bad $LONGVA_ANSWER_EXTRACTION fails at build time, not per sample
    dataset = load_annotations(
        "LONGVA_VIDEOMME_ANNOTATIONS",
        HUB_DATASET,
        "test",
        "Video-MME",
        str(video_root()),
    )
    if len(dataset):
        require_columns(dataset[0], COLUMNS, "Video-MME")
    if duration:
        dataset = dataset.filter(lambda doc: doc["duration"] == duration)
    return dataset.add_column(TASK_COLUMN, [task] * len(dataset))


# ``process_docs`` hooks: the task YAML points at a placeholder file; the real rows come from here.
def videomme_process_docs(dataset):
    return load_docs("longva_videomme")


def videomme_process_docs_short(dataset):
    return load_docs("longva_videomme_short", "short")


def videomme_process_docs_medium(dataset):
    return load_docs("longva_videomme_medium", "medium")


def videomme_process_docs_long(dataset):
    return load_docs("longva_videomme_long", "long")


def videomme_process_docs_w_subtitle(dataset):
    return load_docs("longva_videomme_w_subtitle")


def videomme_process_docs_paper(dataset):
    return load_docs("longva_videomme_paper")


def videomme_doc_to_visual(doc) -> list[str]:
    """``[video path]``, also when the file is missing (the model reports it by path)."""
    return [find_video(video_root(), doc["videoID"])]


# --------------------------------------------------------------------------- prompts
def _question_with_options(doc) -> str:
    return doc["question"] + "\n" + "\n".join(str(option) for option in doc["options"])


def videomme_doc_to_text(doc, lmms_eval_specific_kwargs=None) -> str:
    """Option prompt, question, options one a line, post prompt (the built-in ``videomme`` text)."""
    # As the built-in: ``post_prompt`` (default "The best answer is:"); ``pre_prompt`` is not used.
    kwargs = lmms_eval_specific_kwargs or {}
    post_prompt = kwargs.get("post_prompt", SUBTITLE_POST_PROMPT)
    return f"{OPTION_PROMPT}\n{_question_with_options(doc)}\n{post_prompt}"


def parse_srt(path: Path) -> list[tuple[float, float, str]]:
    """``[(start_s, end_s, text)]`` of an .srt file; the text keeps its markup.

    Malformed blocks are skipped: a broken subtitle file must not stop a run (prompts are built
    for every question before the first one is answered).
    """
    entries = []
    text = path.read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n")
    for block in text.split("\n\n"):
        lines = block.strip("\n").split("\n")
        if len(lines) < 3 or "-->" not in lines[1]:
            continue
        try:
            start, end = (_srt_seconds(stamp) for stamp in lines[1].split("-->"))
        except ValueError:
            continue
        entries.append((start, end, " ".join(lines[2:])))
    return entries


def _srt_seconds(stamp: str) -> float:
    hours, minutes, seconds = stamp.strip().replace(",", ".").split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _subtitle_text(raw: str) -> str:
    match = _FONT_TAG.search(raw)
    # Plain .srt files (no Video-MME font tag) keep their text, which the built-in task would drop.
    return match.group(1) if match else re.sub(r"<[^>]+>", "", raw).strip()


def video_timing(path: str) -> tuple[float, int]:
    """``(fps, frame count)`` from the container header (PyAV), ``(0.0, 0)`` if unreadable."""
    import av

    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            frames = int(stream.frames or 0)
            if not frames and container.duration:
                frames = int(container.duration / 1_000_000 * fps)
            return fps, frames
    except (OSError, IndexError, av.FFmpegError):
        return 0.0, 0


def subtitles_at_frames(entries, fps: float, total_frames: int, frame_num: int) -> list[str]:
    """The subtitle lines shown at ``frame_num`` uniformly sampled frames, in time order.

    Frames are ``linspace(0, total-1, frame_num)`` rounded down and a line covers frames
    ``[int(start*fps), int(end*fps))`` -- the built-in task's rule, so the text matches its prompt.
    """
    if fps <= 0 or total_frames <= 0 or not entries:
        return []
    if frame_num == -1:
        frame_num = total_frames
    sampled = np.linspace(0, total_frames - 1, frame_num, dtype=int)
    shown = set()
    for index, (start, end, _) in enumerate(entries):
        first, stop = int(start * fps), int(end * fps)
        if np.any((sampled >= first) & (sampled < stop)):
            shown.add(index)
    return [text for text in (_subtitle_text(entries[i][2]) for i in sorted(shown)) if text]


def videomme_doc_to_text_paper(doc, lmms_eval_specific_kwargs=None) -> str:
    """The paper-era prompt: option prompt, question, ``str(doc["options"])``, "The best answer is:"."""
    return f"{OPTION_PROMPT}\n{doc['question']}\n{str(doc['options'])}\n{SUBTITLE_POST_PROMPT}"


def videomme_doc_to_text_subtitle(doc, lmms_eval_specific_kwargs=None) -> str:
    """Subtitles at the sampled frames' times, then the question (the built-in ``videomme_w_subtitle`` text).

    ``frame_num`` (lmms_eval_specific_kwargs) should equal the model's ``max_frames_num``.
    """
    kwargs = lmms_eval_specific_kwargs or {}
    srt = subtitle_root() / f"{doc['videoID']}.srt"
    if srt.is_file():
        fps, total = video_timing(videomme_doc_to_visual(doc)[0])
        subtitles = "\n".join(subtitles_at_frames(parse_srt(srt), fps, total, int(kwargs.get("frame_num", 32))))
    else:
        subtitles = "No subtitles available"
    return f"{SUBTITLES_HEADER}{subtitles}\n{OPTION_PROMPT}\n{_question_with_options(doc)}\n{SUBTITLE_POST_PROMPT}"


# --------------------------------------------------------------------------- scoring
def videomme_process_results(doc, results) -> dict:
    """One item per question with everything the breakdowns and plots need (the doc is not logged);
    the answer is extracted as lmms-eval's built-in task does (or as ``$LONGVA_ANSWER_EXTRACTION``)."""
    return _result_item(doc, results, answer_extraction_mode())


def videomme_process_results_paper(doc, results) -> dict:
    """As :func:`videomme_process_results`, with the paper-era answer extraction."""
    return _result_item(doc, results, "paper")


def _scored_item(doc, results, mode: str) -> dict:
    prediction = results[0] if results else ""
    path = videomme_doc_to_visual(doc)[0]
    predicted = extract_choice(prediction, "ABCD", mode=mode)
    return {
            "question_id": doc["question_id"],
            "videoID": doc["videoID"],
            "duration": doc["duration"],
            "domain": doc["domain"],
            "sub_category": doc["sub_category"],
            "task_type": doc["task_type"],
            "prediction": prediction if isinstance(prediction, str) else str(prediction),
            "pred_answer": predicted,
            "answer": doc["answer"],
            "score": float(bool(predicted) and predicted == str(doc["answer"]).strip().upper()),
            "video_path": path,
            "video_problem": video_problem(path),
            "answer_extraction": mode,
            "task": doc.get(TASK_COLUMN, "longva_videomme"),
    }


def _result_item(doc, results, mode: str) -> dict:
    item = _scored_item(doc, results, mode)
    return {"longva_videomme_accuracy": item, "longva_videomme_missing_videos": item}


def videomme_summary(items) -> dict:
    """Accuracy (%) overall and per duration / domain / sub-category / task type, plus failures."""
    return {
        "overall": 100.0 * sum(float(i["score"]) for i in items) / len(items) if items else 0.0,
        "n": len(items),
        "per_duration": accuracy_by(items, "duration"),
        "per_domain": accuracy_by(items, "domain"),
        "per_sub_category": accuracy_by(items, "sub_category"),
        "per_task_type": accuracy_by(items, "task_type"),
        **failure_report(items),
        "answer_extraction": ",".join(sorted({i.get("answer_extraction", "lmms_eval") for i in items})),
    }


@never_raises("longva_videomme")
def videomme_aggregate(items, args=None) -> float:
    """Overall accuracy (%), the number lmms-eval prints; the breakdowns go to
    ``<--output_path>/longva/<task>/breakdown.json``."""
    summary = videomme_summary(items)
    task = items[0].get("task", "longva_videomme") if items else "longva_videomme"
    write_breakdown(side_output_dir(args, task), task, summary)
    log_failures(task, summary, "LONGVA_VIDEOMME_ROOT")
    return summary["overall"]


videomme_missing_videos = missing_videos


__all__ = [
    "COLUMNS",
    "load_docs",
    "parse_srt",
    "subtitles_at_frames",
    "video_timing",
    "videomme_aggregate",
    "videomme_missing_videos",
    "videomme_summary",
    "videomme_doc_to_text",
    "videomme_doc_to_text_paper",
    "videomme_doc_to_text_subtitle",
    "videomme_doc_to_visual",
    "videomme_process_docs",
    "videomme_process_docs_long",
    "videomme_process_docs_medium",
    "videomme_process_docs_short",
    "videomme_process_docs_paper",
    "videomme_process_docs_w_subtitle",
    "videomme_process_results",
    "videomme_process_results_paper",
]
