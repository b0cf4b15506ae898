"""MLVU dev (multiple choice) in the LongVA paper's lmms-eval protocol, robust to missing videos.

Prompt and answer extraction are those of lmms-eval's built-in ``mlvu_dev``. M-Avg (the paper's
MLVU number, 56.3 at 256 frames) is the mean of the per-question-type accuracies; we average over
the types actually present (the built-in divides by all seven dev types, so a subset run would be
pulled towards zero) and keep every per-type accuracy in results.json.

Environment:
    LONGVA_MLVU_ANNOTATIONS  local parquet/json(l) file or folder with the ``sy1998/MLVU_dev``
                             annotations (default: the hub dataset, cached)
    LONGVA_MLVU_ROOT         folder the ``video_name`` paths are relative to (default ``$HF_HOME/mlvu``,
                             the built-in task's layout)

``longva_mlvu_test`` is not provided: the public MLVU test annotations carry no answers to score.
"""

from __future__ import annotations

import string
from pathlib import Path

from longva_plugins.lmms_eval_plugin.task_utils.common import (
    accuracy_by,
    answer_extraction_mode,
    extract_choice,
    failure_report,
    find_video,
    hf_home,
    load_annotations,
    log_failures,
    media_root,
    missing_videos,
    never_raises,
    require_columns,
    video_problem,
    side_output_dir,
    write_breakdown,
)

HUB_DATASET = "sy1998/MLVU_dev"
COLUMNS = ("video_name", "question", "candidates", "answer", "task_type")
#: The multiple-choice question types of MLVU dev (for documentation; others are accepted too).
DEV_TASK_TYPES = (
    "anomaly_reco",
    "count",
    "ego",
    "needle",
    "order",
    "plotQA",
    "topic_reasoning",
)


def video_root() -> Path:
    return media_root("LONGVA_MLVU_ROOT", hf_home() / "mlvu")


def mlvu_process_docs(dataset):
    """The MLVU dev questions (the task YAML points at a placeholder file; rows come from here)."""
    answer_extraction_mode()  # a bad $LONGVA_ANSWER_EXTRACTION fails at build time, not per sample
    docs = load_annotations("LONGVA_MLVU_ANNOTATIONS", HUB_DATASET, "test", "MLVU dev", str(video_root()))
    if len(docs):
        require_columns(docs[0], COLUMNS, "MLVU dev")
    return docs


def mlvu_doc_to_visual(doc) -> list[str]:
    """``[video path]``, also when the file is missing (the model reports it by path)."""
    return [find_video(video_root(), doc["video_name"])]


def mlvu_doc_to_text(doc, lmms_eval_specific_kwargs=None) -> str:
    """pre prompt + question (options included by the dataset) + post prompt, as the built-in."""
    kwargs = lmms_eval_specific_kwargs or {}
    return f"{kwargs.get('pre_prompt', '')}{doc['question']}{kwargs.get('post_prompt', '')}"


def answer_letter(doc) -> str:
    """The correct letter: the ``answer`` column is a letter, or (older copies) a candidate's text."""
    answer = str(doc["answer"]).strip()
    candidates = [str(c).strip() for c in (doc.get("candidates") or [])]
    if answer in candidates:  # a candidate's text wins over a one-letter reading ("a" as an answer)
        return string.ascii_uppercase[candidates.index(answer)]
    letter = answer.strip("()").upper()
    return letter if len(letter) == 1 and letter in string.ascii_uppercase else answer


def mlvu_process_results(doc, results) -> dict:
    prediction = results[0] if results else ""
    path = mlvu_doc_to_visual(doc)[0]
    # The built-in extracts over A-D only, also for questions with more candidates: so do we.
    predicted = extract_choice(prediction, "ABCD")
    expected = answer_letter(doc)
    item = {
            "question_id": str(doc.get("question_id", doc["question"])),
            "question_type": doc["task_type"],
            "duration": doc.get("duration"),
            "prediction": prediction if isinstance(prediction, str) else str(prediction),
            "pred_answer": predicted,
            "answer": expected,
            "score": float(bool(predicted) and predicted == expected),
            "video_path": path,
            "video_problem": video_problem(path),
    }
    return {"longva_mlvu_accuracy": item, "longva_mlvu_missing_videos": item}


def mlvu_summary(items) -> dict:
    """M-Avg over the question types present, per-type and overall accuracy (%), failures."""
    per_type = accuracy_by(items, "question_type")
    return {
        "m_avg": sum(per_type.values()) / len(per_type) if per_type else 0.0,
        "overall": 100.0 * sum(float(i["score"]) for i in items) / len(items) if items else 0.0,
        "n": len(items),
        "per_question_type": per_type,
        "question_types_absent": [t for t in DEV_TASK_TYPES if t not in per_type],
        **failure_report(items),
        "answer_extraction": answer_extraction_mode(),
    }


@never_raises("longva_mlvu_dev")
def mlvu_aggregate(items, args=None) -> float:
    """M-Avg (%), the number lmms-eval prints; the per-type accuracies and failures go to
    ``<--output_path>/longva/longva_mlvu_dev/breakdown.json``."""
    summary = mlvu_summary(items)
    write_breakdown(side_output_dir(args, "longva_mlvu_dev"), "longva_mlvu_dev", summary)
    log_failures("longva_mlvu_dev", summary, "LONGVA_MLVU_ROOT")
    return summary["m_avg"]



mlvu_missing_videos = missing_videos


__all__ = [
    "COLUMNS",
    "DEV_TASK_TYPES",
    "answer_letter",
    "mlvu_aggregate",
    "mlvu_missing_videos",
    "mlvu_summary",
    "mlvu_doc_to_text",
    "mlvu_doc_to_visual",
    "mlvu_process_docs",
    "mlvu_process_results",
]
