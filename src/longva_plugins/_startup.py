"""Start-up hook: run a callback right after a module of lmms-eval or transformers has executed.

Two uses, both needing no import of longva-plugins by the user:

- ``lmms-eval tasks list`` (and the web UI) build a ``TaskManager`` without importing
  ``lmms_eval.models``, so the model entry point -- which wires task discovery -- never runs there:
  when ``lmms_eval.tasks`` is imported, the task-manager wrapper of
  :mod:`longva_plugins.lmms_eval_plugin.compat.task_discovery` is applied.
- transformers' Auto classes resolve ``llava_qwen`` checkpoints to LongVA: when
  ``transformers.models.auto.configuration_auto`` / ``modeling_auto`` / ``processing_auto`` is
  imported, the LongVA config / model / processor is registered there (their public ``register``).

The wheel ships ``longva_plugins_startup.pth``, whose single line calls :func:`install_import_hook`
at interpreter start. That only appends a tiny finder to ``sys.meta_path`` (nothing heavy is
imported). Importing :mod:`longva_plugins.models.longva` calls :func:`watch_transformers_auto`
too (editable installs get no ``.pth`` file). A module already imported gets its callback at once.
A failing callback is swallowed: it never breaks lmms-eval or transformers.

Set ``LONGVA_PLUGINS_NO_STARTUP_HOOK=1`` to disable the ``.pth`` hook.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import os
import sys

#: module -> (module of the callback, its name); the callback gets the executed module
TASKS = {"lmms_eval.tasks": ("longva_plugins.lmms_eval_plugin.compat.task_discovery", "patch_task_manager")}
AUTO = {
    "transformers.models.auto.configuration_auto": ("longva_plugins.models.longva", "register_auto_config"),
    "transformers.models.auto.modeling_auto": ("longva_plugins.models.longva", "register_auto_models"),
    "transformers.models.auto.processing_auto": ("longva_plugins.models.longva", "register_auto_processor"),
}
#: The Auto registrations import transformers classes and LongVA's own modules, which a
#: half-executed module cannot give: transformers' auto modules are first imported from inside other
#: transformers modules (a config class's docstring decorator imports ``modeling_auto``, which
#: imports ``configuration_auto``) and from inside ours (``processing_longva`` imports
#: ``ProcessorMixin``, which brings ``processing_auto``). So a registration waits until the
#: outermost import of either package has finished.
WAIT_FOR = ("transformers", "longva_plugins")


def _call(target: tuple[str, str], module) -> None:
    try:
        getattr(importlib.import_module(target[0]), target[1])(module)
    except Exception:  # never break lmms-eval or transformers because of this convenience
        pass


class _CallAfterExec(importlib.abc.Loader):
    def __init__(self, loader, finder: "_AfterImportFinder", target, counted: bool):
        self._loader, self._finder, self._target, self._counted = loader, finder, target, counted

    def __getattr__(self, name):
        # everything else is the real loader's: resource readers (importlib.resources), get_source
        # (tracebacks, inspect), is_package, get_filename ...
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        finder = self._finder
        finder.depth += self._counted
        try:
            self._loader.exec_module(module)
        finally:
            finder.depth -= self._counted
        if self._target is not None:
            finder.deferred.append((self._target, module))
        finder.flush()


class _AfterImportFinder(importlib.abc.MetaPathFinder):
    """Wraps the loaders of watched modules (and, while an Auto registration waits, of every
    transformers and longva_plugins module, to know when the outermost one has finished)."""

    def __init__(self):
        self.pending: dict[str, tuple[str, str]] = {}
        self.deferred: list[tuple[tuple[str, str], object]] = []
        self.depth = 0  # transformers / longva_plugins modules executing right now (wrapped ones)
        self.flushing = False

    def _counting(self) -> bool:
        return any(n.split(".")[0] in WAIT_FOR for n in self.pending) or bool(self.deferred)

    def find_spec(self, fullname, path, target=None):
        counted = fullname.split(".")[0] in WAIT_FOR and self._counting()
        if fullname not in self.pending and not counted:
            return None
        spec = None
        for finder in sys.meta_path[sys.meta_path.index(self) + 1:] if self in sys.meta_path else []:
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find else None
            if spec is not None:
                break
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _CallAfterExec(spec.loader, self, self.pending.pop(fullname, None), counted)
        return spec

    def flush(self) -> None:
        """Run the deferred callbacks whose package has no import under way (callbacks import
        modules themselves: a nested call leaves the work to the outer one)."""
        if self.flushing:
            return
        self.flushing = True
        try:
            while True:
                ready = [item for item in self.deferred
                         if not (item[1].__name__.split(".")[0] in WAIT_FOR and self.depth > 0)]
                if not ready:
                    break
                self.deferred = [item for item in self.deferred if item not in ready]
                for target, module in ready:
                    _call(target, module)
        finally:
            self.flushing = False
        if not self.pending and not self.deferred and self in sys.meta_path:
            sys.meta_path.remove(self)


def _finder() -> _AfterImportFinder:
    for finder in sys.meta_path:
        if isinstance(finder, _AfterImportFinder):
            return finder
    finder = _AfterImportFinder()
    sys.meta_path.insert(0, finder)
    return finder


def _initializing(name: str) -> bool:
    return bool(getattr(getattr(sys.modules.get(name), "__spec__", None), "_initializing", False))


def watch(targets: dict[str, tuple[str, str]]) -> None:
    """Call each target's callback once its module has executed (at once if it already has)."""
    for name, target in targets.items():
        module = sys.modules.get(name)
        if module is None:
            _finder().pending[name] = target
        elif _initializing(name):  # executed by now only if we wrapped it: our flush runs it
            finder = _finder()
            finder.deferred.append((target, module))
            finder.flush()
        else:
            _call(target, module)


def watch_transformers_auto() -> None:
    """Register LongVA with transformers' Auto classes as their modules are imported."""
    watch(AUTO)


def install_import_hook() -> bool:
    """Arrange for lmms-eval's task manager to be wired and LongVA registered with transformers'
    Auto classes, on import. Never raises."""
    try:
        if os.environ.get("LONGVA_PLUGINS_NO_STARTUP_HOOK"):
            return False
        watch({**TASKS, **AUTO})
        return True
    except Exception:
        return False
