"""Workaround 4: filelock. lmms-eval 0.7.3's evaluator imports ``filelock._api``, which filelock 4.3
removed; ``pyproject.toml`` bounds ``filelock<4.3`` and :func:`filelock_problem` lets ``doctor`` say so."""

from __future__ import annotations

import importlib.metadata
import importlib.util


def filelock_problem() -> str | None:
    """Why the installed filelock breaks lmms-eval's evaluator, or ``None`` when it does not.

    lmms-eval 0.7.3's ``evaluator._enable_reentrant_filelocks`` (run by every ``simple_evaluate``)
    does ``import filelock._api`` and patches ``FileLockMeta``; filelock 4.3 moved that class.
    """
    try:
        version = importlib.metadata.version("filelock")
    except importlib.metadata.PackageNotFoundError:
        return "filelock is not installed (pip install 'filelock<4.3')"
    try:
        found = importlib.util.find_spec("filelock._api") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        return (
            f"filelock {version} has no filelock._api, which lmms-eval's evaluator imports: every "
            "`lmms-eval eval` fails with \"No module named 'filelock._api'\"; pip install 'filelock>=3.16,<4.3'"
        )
    return None


__all__ = ["filelock_problem"]
