"""Built-in plugin: the package's own lmms-eval task folder."""

from __future__ import annotations

from pathlib import Path

from longva_plugins.hookspecs import hookimpl


def package_task_dir() -> Path:
    """The ``tasks/`` folder shipped with the package.

    In a wheel it is ``longva_plugins/tasks`` (copied there at build time); in a source checkout or
    an editable install it is the repository's top-level ``tasks/``.
    """
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "tasks", here.parents[2] / "tasks"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"longva-plugins task folder not found next to {here}; reinstall the package "
        "(pip install --force-reinstall longva-plugins)."
    )


@hookimpl
def longva_task_folders():
    return [package_task_dir()]
