"""Video-MME (no subtitles / with subtitles) in the paper's lmms-eval protocol, robust to missing videos.

Environment:
    LONGVA_VIDEOMME_ANNOTATIONS  local parquet/json copy of ``lmms-eval/Video-MME`` (else the hub)
    LONGVA_VIDEOMME_ROOT         folder with ``<videoID>.mp4`` (default ``$HF_HOME/videomme/data``)
    LONGVA_VIDEOMME_SUBTITLES    folder with ``<videoID>.srt`` (default ``<root>/../subtitle``)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from longva_plugins.task_utils.common import (
    accuracy_by,
    extract_choice,
    find_video,
    hf_home,
    load_annotations,
    media_root,
    missing_report,
)

OPTION_PROMPT = ("Select the best answer to the following multiple-choice question based on the video. "
                 "Respond with only the letter (A, B, C, or D) of the correct option.")
SUBTITLE_OPTION_PROMPT = ("Select the best answer to the following multiple-choice question based on the video and "
                          "the subtitles. Respond with only the letter (A, B, C, or D) of the correct option.")
DEFAULT_POST_PROMPT = "\nAnswer with the option's letter from the given choices directly."


def video_root() -> Path:
    return media_root("LONGVA_VIDEOMME_ROOT", hf_home() / "videomme" / "data")


def _docs(duration: str | None):
    dataset = load_annotations("LONGVA_VIDEOMME_ANNOTATIONS", "lmms-eval/Video-MME", "test", "Video-MME",
                               video_root())
    if duration:
        dataset = dataset.filter(lambda doc: doc["duration"] == duration)
    return dataset


def videomme_process_docs(dataset):
    return _docs(None)


def videomme_process_docs_short(dataset):
    return _docs("short")


def videomme_process_docs_medium(dataset):
    return _docs("medium")


def videomme_process_docs_long(dataset):
    return _docs("long")


def videomme_doc_to_visual(doc):
    return [find_video(video_root(), doc["videoID"])]


def _question(doc) -> str:
    return doc["question"] + "\n" + "\n".join(str(option) for option in doc["options"])


def videomme_doc_to_text(doc, lmms_eval_specific_kwargs=None):
    kwargs = lmms_eval_specific_kwargs or {}
    return f"{kwargs.get('pre_prompt', '')}{OPTION_PROMPT}\n{_question(doc)}{kwargs.get('post_prompt', DEFAULT_POST_PROMPT)}"


def _srt_entries(path: Path) -> list[tuple[float, float, str]]:
    entries = []
    blocks = re.split(r"\n\s*\n", path.read_text(errors="replace").strip())
    for block in blocks:
        lines = block.strip().splitlines()
        times = next((line for line in lines if "-->" in line), None)
        if not times:
            continue
        start, end = (_seconds(t) for t in times.split("-->"))
        text = " ".join(line for line in lines[lines.index(times) + 1:]).strip()
        text = re.sub(r"<[^>]+>", "", text)
        if text:
            entries.append((start, end, text))
    return entries


def _seconds(stamp: str) -> float:
    h, m, s = stamp.strip().replace(",", ".").split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def videomme_doc_to_text_subtitle(doc, lmms_eval_specific_kwargs=None):
    """Subtitles at the sampled frames' times (``frame_num`` uniform samples), then the question."""
    kwargs = lmms_eval_specific_kwargs or {}
    folder = Path(os.environ.get("LONGVA_VIDEOMME_SUBTITLES") or video_root().parent / "subtitle")
    srt = folder / f"{doc['videoID']}.srt"
    lines: list[str] = []
    if srt.is_file():
        entries = _srt_entries(srt)
        if entries:
            duration = max(end for _, end, _ in entries)
            for t in np.linspace(0, duration, int(kwargs.get("frame_num", 32))):
                for start, end, text in entries:
                    if start <= t <= end and text not in lines:
                        lines.append(text)
    subtitles = "\n".join(lines) if lines else "No subtitles available."
    return (f"This video's subtitles are listed below:\n{subtitles}\n{SUBTITLE_OPTION_PROMPT}\n{_question(doc)}"
            f"{kwargs.get('post_prompt', DEFAULT_POST_PROMPT)}")


def videomme_process_results(doc, results):
    prediction = results[0] if results else ""
    path = videomme_doc_to_visual(doc)[0]
    predicted = extract_choice(prediction, "ABCD", list(doc["options"]))
    return {"longva_videomme_accuracy": {
        "question_id": doc["question_id"], "videoID": doc["videoID"], "duration": doc["duration"],
        "domain": doc["domain"], "sub_category": doc["sub_category"], "task_type": doc["task_type"],
        "prediction": prediction, "pred_answer": predicted, "answer": doc["answer"],
        "score": float(predicted == str(doc["answer"]).strip().upper()),
        "video_path": path, "missing_video": not os.path.exists(path),
    }}


def videomme_aggregate(items, args=None):
    """Overall and per-duration / domain / sub-category / task-type accuracy (%), plus missing videos."""
    import logging

    if not items:
        return {"overall": 0.0, "n": 0}
    overall = 100.0 * sum(float(i["score"]) for i in items) / len(items)
    summary = {
        "overall": overall, "n": len(items),
        "per_duration": accuracy_by(items, "duration"), "per_domain": accuracy_by(items, "domain"),
        "per_sub_category": accuracy_by(items, "sub_category"), "per_task_type": accuracy_by(items, "task_type"),
        **missing_report(items),
    }
    if summary["missing_videos"]:
        logging.getLogger(__name__).warning(
            "Video-MME: %d videos were missing and scored as wrong, e.g. %s", summary["missing_videos"],
            ", ".join(summary["missing_video_paths"][:5]))
    return summary


__all__ = [
    "videomme_aggregate", "videomme_doc_to_text", "videomme_doc_to_text_subtitle", "videomme_doc_to_visual",
    "videomme_process_docs", "videomme_process_docs_long", "videomme_process_docs_medium",
    "videomme_process_docs_short", "videomme_process_results",
]
