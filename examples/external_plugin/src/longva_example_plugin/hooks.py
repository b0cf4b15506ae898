"""Hook implementations announced through the ``longva_plugins`` entry-point group."""

from __future__ import annotations

from pathlib import Path

from longva_plugins.hookspecs import hookimpl


@hookimpl
def longva_task_folders():
    # Task folders must be real directories on disk: lmms-eval walks them with os.walk.
    return [Path(__file__).parent / "tasks"]
