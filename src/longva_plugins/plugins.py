"""Assembling the plugin manager: built-in plugins first, then the ``longva_plugins`` entry points.

Use :func:`get_plugin_manager` everywhere; it is built once per process. A third-party plugin
that fails to import is skipped with a warning naming its distribution and the error, so one
broken package never disables the built-in behaviour or the other plugins.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import threading

import pluggy

from longva_plugins import hookspecs

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME

# The default behaviour, as ordinary plugins, registered in this order (first = consulted last).
BUILTIN_PLUGINS: tuple[str, ...] = (
    "longva_plugins.lmms_eval_plugin.builtin_tasks",
    "longva_plugins.video.builtin",
    "longva_plugins.vniah.builtin",
    "longva_plugins.builtin_attention",
    "longva_plugins.training.builtin",
)

_lock = threading.Lock()
_manager: pluggy.PluginManager | None = None
#: ``(entry point name, distribution, error message)`` for every third-party plugin that failed.
FAILED_PLUGINS: list[tuple[str, str, str]] = []


def _load_entry_point_plugins(pm: pluggy.PluginManager) -> None:
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP or pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
                continue
            dist_name = dist.metadata.get("name", "?") if dist.metadata else "?"
            try:
                plugin = ep.load()
                pm.register(plugin, name=ep.name)
            except Exception as exc:  # a broken third-party plugin must not break ours
                message = f"{type(exc).__name__}: {exc}"
                FAILED_PLUGINS.append((ep.name, dist_name, message))
                logger.warning(
                    "longva-plugins: skipped plugin %r from distribution %r (%s). "
                    "Fix or uninstall that package; built-in behaviour is unaffected.",
                    ep.name,
                    dist_name,
                    message,
                )


def build_plugin_manager(load_entry_points: bool = True) -> pluggy.PluginManager:
    """Build a fresh plugin manager (tests use this; code uses :func:`get_plugin_manager`)."""
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for module_name in BUILTIN_PLUGINS:
        module = importlib.import_module(module_name)
        pm.register(module, name=module_name)
    if load_entry_points:
        _load_entry_point_plugins(pm)
    return pm


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager (built on first use)."""
    global _manager
    with _lock:
        if _manager is None:
            _manager = build_plugin_manager()
        return _manager


def reset_plugin_manager() -> None:
    """Forget the process-wide manager so the next call rebuilds it (for tests)."""
    global _manager
    with _lock:
        _manager = None
        FAILED_PLUGINS.clear()


__all__ = [
    "BUILTIN_PLUGINS",
    "ENTRY_POINT_GROUP",
    "FAILED_PLUGINS",
    "build_plugin_manager",
    "get_plugin_manager",
    "reset_plugin_manager",
]
