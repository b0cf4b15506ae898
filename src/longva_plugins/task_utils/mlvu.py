"""MLVU (dev, multiple choice) in the paper's lmms-eval protocol, robust to missing videos.

Environment:
    LONGVA_MLVU_ANNOTATIONS  local parquet/json copy of ``sy1998/MLVU_dev`` (else the hub)
    LONGVA_MLVU_ROOT         folder the ``video_name`` paths are relative to (default ``$HF_HOME/mlvu``)

``longva_mlvu_test`` is not provided: the public test annotations carry no answers to score.
"""

from __future__ import annotations

import os
from pathlib import Path

from longva_plugins.task_utils.common import (
    accuracy_by,
    extract_choice,
    find_video,
    hf_home,
    load_annotations,
    media_root,
    missing_report,
)

DEFAULT_POST_PROMPT = "\nOnly give the best option.\nBest option: ("


def video_root() -> Path:
    return media_root("LONGVA_MLVU_ROOT", hf_home() / "mlvu")


def mlvu_process_docs(dataset):
    return load_annotations("LONGVA_MLVU_ANNOTATIONS", "sy1998/MLVU_dev", "test", "MLVU dev", video_root())


def mlvu_doc_to_visual(doc):
    return [find_video(video_root(), doc["video_name"])]


def mlvu_doc_to_text(doc, lmms_eval_specific_kwargs=None):
    kwargs = lmms_eval_specific_kwargs or {}
    return f"{kwargs.get('pre_prompt', '')}{doc['question']}{kwargs.get('post_prompt', DEFAULT_POST_PROMPT)}"


def mlvu_process_results(doc, results):
    prediction = results[0] if results else ""
    path = mlvu_doc_to_visual(doc)[0]
    predicted = extract_choice(prediction, "ABCDEF", list(doc.get("candidates") or []) or None)
    return {"longva_mlvu_accuracy": {
        "question": doc["question"], "question_type": doc["task_type"], "prediction": prediction,
        "pred_answer": predicted, "answer": doc["answer"],
        "score": float(predicted == str(doc["answer"]).strip().strip("()").upper()),
        "video_path": path, "missing_video": not os.path.exists(path),
    }}


def mlvu_aggregate(items, args=None):
    """Per-question-type accuracy (%), M-Avg over the types present, overall, missing videos."""
    if not items:
        return {"m_avg": 0.0, "overall": 0.0, "n": 0}
    per_type = accuracy_by(items, "question_type")
    return {
        "m_avg": sum(per_type.values()) / len(per_type),
        "overall": 100.0 * sum(float(i["score"]) for i in items) / len(items),
        "n": len(items), "per_question_type": per_type, **missing_report(items),
    }


__all__ = ["mlvu_aggregate", "mlvu_doc_to_text", "mlvu_doc_to_visual", "mlvu_process_docs", "mlvu_process_results"]
