"""lmms-eval's own functions that the task functions call (reached through private modules)."""

from __future__ import annotations

def extract_mcq_answer(text: str, choices) -> str:
    """lmms-eval's own multiple-choice letter extraction (``lmms_eval.tasks._task_utils``, a private
    module: the only import of it is here)."""
    from lmms_eval.tasks._task_utils.mcq_extract import extract_mcq_answer as extract

    return extract(text, choices=list(choices))


__all__ = ["extract_mcq_answer"]
