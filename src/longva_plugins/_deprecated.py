"""Import paths that moved, kept working for one release with a ``DeprecationWarning``.

The model folder took transformers' shape and the lmms-eval integration became one package
(``longva_plugins.lmms_eval_plugin``); each old module is a two-line file calling
:func:`alias_module`, so old and new paths are the same module object (a ``monkeypatch`` of either
reaches both).
"""

from __future__ import annotations

import importlib
import sys
import warnings

#: the release that drops the old paths
REMOVED_IN = "0.3.0"


def warn_moved(old: str, new: str, stacklevel: int = 3) -> None:
    warnings.warn(f"{old} moved to {new}; the old import path is deprecated and will be removed in "
                  f"longva-plugins {REMOVED_IN}", DeprecationWarning, stacklevel=stacklevel)


def alias_module(old: str, new: str) -> None:
    """Make module ``old`` the module ``new`` (call it from ``old``'s body: ``alias_module(__name__, ...)``)."""
    warn_moved(old, new, stacklevel=4)
    sys.modules[old] = importlib.import_module(new)


#: old module -> new module, every path this release moved (tests import each old path)
MOVED = {
    "longva_plugins.adapter.lmms_longva": "longva_plugins.lmms_eval_plugin.adapter",
    "longva_plugins.adapter.settings": "longva_plugins.lmms_eval_plugin.settings",
    "longva_plugins.adapter.visuals": "longva_plugins.lmms_eval_plugin.visuals",
    "longva_plugins.adapter.protocols": "longva_plugins.lmms_eval_plugin.protocols",
    "longva_plugins.task_utils.common": "longva_plugins.lmms_eval_plugin.task_utils.common",
    "longva_plugins.task_utils.videomme": "longva_plugins.lmms_eval_plugin.task_utils.videomme",
    "longva_plugins.task_utils.mlvu": "longva_plugins.lmms_eval_plugin.task_utils.mlvu",
    "longva_plugins.task_utils.frame_sweep": "longva_plugins.lmms_eval_plugin.task_utils.frame_sweep",
    "longva_plugins.vniah.lmms_task": "longva_plugins.lmms_eval_plugin.task_utils.vniah",
    "longva_plugins.builtin_tasks": "longva_plugins.lmms_eval_plugin.builtin_tasks",
    "longva_plugins.lmms_eval_compat": "longva_plugins.lmms_eval_plugin.compat",
    "longva_plugins.models.longva.tiny": "longva_plugins.testing",
    "longva_plugins.models.longva.nano": "longva_plugins.nano.checkpoint",
    "longva_plugins.nano.minibench": "longva_plugins.lmms_eval_plugin.minibench",
}
