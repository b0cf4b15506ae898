"""Start-up hook so that lmms-eval commands that never load models still see plugin tasks.

``lmms-eval tasks list`` (and the web UI) build a ``TaskManager`` without importing
``lmms_eval.models``, so the model entry point — which wires task discovery — never runs there.
The wheel ships ``longva_plugins_startup.pth``, whose single line calls :func:`install_import_hook`
at interpreter start. That only appends a tiny finder to ``sys.meta_path`` (nothing heavy is
imported); when, and only when, ``lmms_eval.tasks`` is imported later, the task-manager wrapper
of :mod:`longva_plugins.lmms_eval_compat` is applied right after the module has executed.

Set ``LONGVA_PLUGINS_NO_STARTUP_HOOK=1`` to disable it. Editable installs do not get the ``.pth``
file (the entry point still wires ``lmms-eval eval``).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys

TARGET = "lmms_eval.tasks"


class _PatchAfterImport(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        try:
            from longva_plugins.lmms_eval_compat import patch_task_manager

            patch_task_manager()
        except Exception:  # never break lmms-eval because of this convenience
            pass


class _TaskModuleFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != TARGET:
            return None
        sys.meta_path.remove(self)  # one shot: find the real spec without recursing into ourselves
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _PatchAfterImport(spec.loader)
        return spec


def install_import_hook() -> bool:
    """Arrange for lmms-eval's task manager to be wired on import. Never raises."""
    try:
        if os.environ.get("LONGVA_PLUGINS_NO_STARTUP_HOOK"):
            return False
        if TARGET in sys.modules:
            from longva_plugins.lmms_eval_compat import patch_task_manager

            patch_task_manager()
            return True
        if not any(isinstance(f, _TaskModuleFinder) for f in sys.meta_path):
            sys.meta_path.insert(0, _TaskModuleFinder())
        return True
    except Exception:
        return False
