"""Workaround 1: task discovery (lmms-eval has no task entry point).

``TaskManager.initialize_tasks`` is wrapped so that the task folders contributed through the
``longva_task_folders`` hook are appended to ``include_path`` -- after the built-ins and the user's
``--include_path``, which keep precedence. ``TaskManager.load_task_or_group`` is wrapped too, so a
setting error raised while any task is built (its ``process_docs``: shipped or a plugin's, also
through lmms-eval's retry wrapper) stops the run (workaround 3, :mod:`.exit_status`).
"""

from __future__ import annotations

import functools
import importlib
import logging
import os

from longva_plugins.lmms_eval_plugin.compat._common import MARK
from longva_plugins.lmms_eval_plugin.compat.exit_status import setting_error_in, stop_run

logger = logging.getLogger(__name__)


def plugin_task_folders() -> list[str]:
    """Every task folder contributed through the ``longva_task_folders`` hook, de-duplicated.

    A folder that does not exist is skipped with a warning naming it and its contributor.
    """
    from longva_plugins.plugins import get_plugin_manager

    pm = get_plugin_manager()
    folders: list[str] = []
    for impl in pm.hook.longva_task_folders.get_hookimpls():
        try:
            contributed = impl.function() or []
        except Exception as exc:
            logger.warning("longva-plugins: task-folder hook of %r failed (%s); skipped.", impl.plugin_name, exc)
            continue
        for folder in contributed:
            path = os.path.abspath(os.fspath(folder))
            if not os.path.isdir(path):
                logger.warning(
                    "longva-plugins: plugin %r contributed task folder %s, which does not exist; skipped.",
                    impl.plugin_name,
                    path,
                )
                continue
            if path not in folders:
                folders.append(path)
    # get_hookimpls() lists implementations in registration order: built-ins first.
    return folders


def _wrap_initialize_tasks(original):
    @functools.wraps(original)
    def initialize_tasks(self, include_path=None, include_defaults=True):
        if include_path is None:
            paths: list[str] = []
        elif isinstance(include_path, (str, os.PathLike)):
            paths = [os.fspath(include_path)]
        else:
            paths = [os.fspath(p) for p in include_path]
        try:
            extra = plugin_task_folders()
        except Exception as exc:  # never break lmms-eval's own task index
            logger.warning("longva-plugins: could not collect plugin task folders (%s); use --include_path.", exc)
            extra = []
        known = {os.path.abspath(p) for p in paths}
        paths += [p for p in extra if p not in known]
        return original(self, include_path=paths or None, include_defaults=include_defaults)

    setattr(initialize_tasks, MARK, True)
    return initialize_tasks


def _wrap_load_task_or_group(original):
    @functools.wraps(original)
    def load_task_or_group(self, *args, **kwargs):
        try:
            return original(self, *args, **kwargs)
        except Exception as exc:
            setting = setting_error_in(exc)
            if setting is not None:
                stop_run(setting)
            raise

    setattr(load_task_or_group, MARK, True)
    return load_task_or_group


def patch_task_manager(tasks_module=None) -> bool:
    """Append plugin task folders to every ``TaskManager`` built from now on, and make a setting
    error raised while any task is built (its ``process_docs``: shipped or a plugin's) stop the
    run (workaround 3). Idempotent. ``tasks_module``: ``lmms_eval.tasks`` (imported when omitted;
    the start-up hook passes it as it finishes executing)."""
    tasks_module = tasks_module or importlib.import_module("lmms_eval.tasks")
    manager_cls = tasks_module.TaskManager
    if getattr(manager_cls.initialize_tasks, MARK, False):
        return False
    manager_cls.initialize_tasks = _wrap_initialize_tasks(manager_cls.initialize_tasks)
    manager_cls.load_task_or_group = _wrap_load_task_or_group(manager_cls.load_task_or_group)
    return True


def task_discovery_active() -> bool:
    """Whether ``TaskManager.initialize_tasks`` carries the plugin task folders (workaround 1)."""
    tasks = importlib.import_module("lmms_eval.tasks")
    return bool(getattr(tasks.TaskManager.initialize_tasks, MARK, False))


def task_folder_hint() -> str:
    try:
        from longva_plugins.lmms_eval_plugin.builtin_tasks import package_task_dir

        return str(package_task_dir())
    except Exception:
        return "<site-packages>/longva_plugins/tasks"


__all__ = ["patch_task_manager", "plugin_task_folders", "task_discovery_active", "task_folder_hint"]
