"""Everything that plugs longva-plugins into lmms-eval, and the only module that touches its internals.

Public routes used:

- the ``lmms_eval.models`` entry point → :func:`lmms_eval_manifests` registers model id
  ``longva`` (alias ``longva_hf``), replacing lmms-eval's built-in adapter that needs the
  uninstallable original ``longva`` package.

Workarounds where lmms-eval 0.7.x leaves no public route (tested in
``tests/test_lmms_eval_compat.py``; the dependency range in ``pyproject.toml`` pins
``lmms-eval>=0.7.3,<0.8``):

1. **Task discovery.** lmms-eval has no task entry point. ``TaskManager.initialize_tasks`` is
   wrapped so that the task folders contributed through the ``longva_task_folders`` hook are
   appended to ``include_path`` — after the built-ins and the user's ``--include_path``, which
   keep precedence. The entry-point callable runs when ``lmms_eval.models`` is imported, which
   ``lmms_eval.evaluator`` does before the CLI builds its ``TaskManager``.
2. **loglikelihood results.** 0.7.3's ``unwrap_generation_output`` turns every ``(float, bool)``
   loglikelihood result into a string, so every loglikelihood / multiple_choice task crashes
   for every model. The fix is applied only when that behaviour is detected on the installed
   version, and passes ``(number, bool)`` pairs through unchanged; every other output takes the
   original code path.
3. **A setting error ends the run non-zero.** lmms-eval's CLI catches every exception of a run,
   prints it among other output and exits 0, so a wrong setting (``max_frame_num=128``,
   ``video_decode_backend=decrod``) looks like a finished run. :func:`stop_run` records the
   :class:`~longva_plugins.errors.SettingError`; at interpreter exit, only when the process is
   lmms-eval's CLI, the message is printed as the last line and the process exits with status 2
   (``os._exit``, after flushing output: lmms-eval's ``__main__`` calls ``sys.exit(0)`` itself, and
   an exit handler cannot change that status any other way). Tasks need nothing for it: the
   wrapped ``TaskManager.load_task_or_group`` (workaround 1's class) records any setting error
   raised while a task -- shipped or a plugin's -- is built, also through lmms-eval's retry
   wrapper; the ``longva`` model records its own (:func:`settings_checked` on its ``__init__``).
4. **filelock.** lmms-eval 0.7.3's evaluator imports ``filelock._api``, which filelock 4.3 removed;
   ``pyproject.toml`` bounds ``filelock<4.3`` and :func:`filelock_problem` lets ``doctor`` say so.
5. **``--use_cache`` keys on what the checkpoint holds.** lmms-eval's response cache keys every
   answer on the model name and the ``--model_args`` *string*: a checkpoint retrained or a PEFT
   adapter replaced at the same path would be answered from the stale cache. The ``longva``
   model records an identity of what it loaded (:func:`record_model_identity`: every checkpoint
   and adapter file's name, size and modification time, the package version) and the wrapped
   ``ResponseCache.create`` adds it to the model arguments it fingerprints -- only for the
   ``longva`` model ids; any other model's key is unchanged.
6. **A results file that cannot be written ends the run non-zero.** lmms-eval's
   ``EvaluationTracker.save_results_aggregated`` logs a failed write (disk full, read-only folder)
   as a warning, may leave a cut file behind and the CLI exits 0. Wrapped, for runs of the
   ``longva`` model: a results file that is missing or does not parse afterwards is removed and
   recorded as a :class:`~longva_plugins.errors.StorageError` (exit status 3, the path as the last
   line). Before the first sample the ``longva`` model also checks that ``--output_path`` can be
   written (:func:`check_output_path`, a setting error otherwise).

Every function here is safe to call repeatedly, and the entry-point callable never raises: a
raising entry point would make lmms-eval skip every plugin loaded after it.
"""

from __future__ import annotations

import atexit
import functools
import importlib
import importlib.metadata
import logging
import numbers
import os
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

MODEL_ID = "longva"
MODEL_ALIASES = ("longva_hf",)
MODEL_CLASS_PATH = "longva_plugins.adapter.lmms_longva.LongVA"
SUPPORTED_LMMS_EVAL = ">=0.7.3,<0.8"
_MARK = "__longva_plugins_wrapped__"
#: Exit status of an lmms-eval CLI run stopped by a setting error.
SETTING_ERROR_EXIT_STATUS = 2


def lmms_eval_version() -> str | None:
    try:
        return importlib.metadata.version("lmms_eval")
    except importlib.metadata.PackageNotFoundError:
        return None


def _version_supported(version: str | None) -> bool:
    if version is None:
        return False
    try:
        from packaging.version import Version

        return Version("0.7.3") <= Version(version) < Version("0.8")
    except Exception:
        return version.startswith("0.7.")


# --------------------------------------------------------------------------- task folders
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

    setattr(initialize_tasks, _MARK, True)
    return initialize_tasks


def setting_error_in(exc: BaseException | None):
    """The :class:`~longva_plugins.errors.SettingError` behind ``exc`` (itself, its cause or
    context, or the last attempt of a tenacity ``RetryError``, as lmms-eval wraps a task's
    ``process_docs``), or ``None``."""
    from longva_plugins.errors import SettingError

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, SettingError):
            return exc
        attempt = getattr(exc, "last_attempt", None)
        inner = None
        if attempt is not None and getattr(attempt, "failed", False):
            try:
                inner = attempt.exception()
            except Exception:
                inner = None
        exc = inner or exc.__cause__ or exc.__context__
    return None


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

    setattr(load_task_or_group, _MARK, True)
    return load_task_or_group


def patch_task_manager() -> bool:
    """Append plugin task folders to every ``TaskManager`` built from now on, and make a setting
    error raised while any task is built (its ``process_docs``: shipped or a plugin's) stop the
    run (workaround 3). Idempotent."""
    tasks_module = importlib.import_module("lmms_eval.tasks")
    manager_cls = tasks_module.TaskManager
    if getattr(manager_cls.initialize_tasks, _MARK, False):
        return False
    manager_cls.initialize_tasks = _wrap_initialize_tasks(manager_cls.initialize_tasks)
    manager_cls.load_task_or_group = _wrap_load_task_or_group(manager_cls.load_task_or_group)
    return True


# --------------------------------------------------------------------------- response cache key
#: The identity of what the ``longva`` model of this process loaded (workaround 5).
_MODEL_IDENTITY: dict[str, str] = {}
#: The model argument the identity is added as, in the response cache's fingerprint only.
IDENTITY_ARG = "longva_identity"


def record_model_identity(identity: str) -> None:
    """Called by the ``longva`` model once loaded: ``--use_cache`` keys then include ``identity``."""
    _MODEL_IDENTITY["identity"] = identity


def _with_identity(model, model_args):
    identity = _MODEL_IDENTITY.get("identity")
    if identity is None or model not in (MODEL_ID, *MODEL_ALIASES):
        return model_args
    if isinstance(model_args, dict):
        return {**model_args, IDENTITY_ARG: identity}
    text = str(model_args or "")
    return f"{text},{IDENTITY_ARG}={identity}" if text else f"{IDENTITY_ARG}={identity}"


def _wrap_response_cache_create(original):
    @functools.wraps(original)
    def create(cls, *args, **kwargs):
        if "model_args" in kwargs:
            kwargs["model_args"] = _with_identity(kwargs.get("model"), kwargs["model_args"])
        return original(cls, *args, **kwargs)

    setattr(create, _MARK, True)
    return create


def patch_response_cache() -> bool:
    """Make ``ResponseCache.create`` fingerprint the loaded checkpoint (workaround 5). Idempotent;
    ``False`` when already applied or when this lmms-eval has no response cache."""
    found = _unwrapped("lmms_eval.caching.response_cache", "ResponseCache", "create")
    if found is None:
        return False
    cache_cls, original = found
    cache_cls.create = classmethod(_wrap_response_cache_create(original.__func__))
    return True


def _unwrapped(module_name: str, class_name: str, attr: str):
    """``(class, method)`` of ``module_name.class_name.attr`` when it exists and is not wrapped yet."""
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    cls = getattr(module, class_name, None)
    original = getattr(cls, attr, None) if cls else None
    if original is None or getattr(original, _MARK, False):
        return None
    return cls, original


# --------------------------------------------------------------------------- loglikelihood fix
def _is_loglikelihood_pair(output) -> bool:
    return (
        isinstance(output, (tuple, list))
        and len(output) == 2
        and isinstance(output[0], numbers.Real)
        and not isinstance(output[0], bool)
        and isinstance(output[1], (bool, numbers.Integral))
    )


def _wrap_unwrap_generation_output(original):
    @functools.wraps(original)
    def unwrap_generation_output(output):
        if _is_loglikelihood_pair(output):
            return (float(output[0]), bool(output[1])), None
        return original(output)

    setattr(unwrap_generation_output, _MARK, True)
    return unwrap_generation_output


def loglikelihood_bug_present() -> bool:
    """Whether the installed lmms-eval stringifies ``(float, bool)`` loglikelihood results."""
    instance = importlib.import_module("lmms_eval.api.instance")
    func = getattr(instance, "unwrap_generation_output", None)
    if func is None or getattr(func, _MARK, False):
        return False
    text, _ = func((-1.5, True))
    return isinstance(text, str)


def patch_loglikelihood_results() -> bool:
    """Apply the loglikelihood fix when the bug is present on a supported version. Idempotent."""
    version = lmms_eval_version()
    if not _version_supported(version) or not loglikelihood_bug_present():
        return False
    instance = importlib.import_module("lmms_eval.api.instance")
    patched = _wrap_unwrap_generation_output(instance.unwrap_generation_output)
    instance.unwrap_generation_output = patched
    # evaluator binds the name at import; when it is already imported, rebind it there too.
    evaluator = sys.modules.get("lmms_eval.evaluator")
    if evaluator is not None and hasattr(evaluator, "unwrap_generation_output"):
        evaluator.unwrap_generation_output = patched
    return True


def task_discovery_active() -> bool:
    """Whether ``TaskManager.initialize_tasks`` carries the plugin task folders (workaround 1)."""
    tasks = importlib.import_module("lmms_eval.tasks")
    return bool(getattr(tasks.TaskManager.initialize_tasks, _MARK, False))


# --------------------------------------------------------------------------- filelock
def filelock_problem() -> str | None:
    """Why the installed filelock breaks lmms-eval's evaluator, or ``None`` when it does not.

    lmms-eval 0.7.3's ``evaluator._enable_reentrant_filelocks`` (run by every ``simple_evaluate``)
    does ``import filelock._api`` and patches ``FileLockMeta``; filelock 4.3 moved that class.
    """
    import importlib.util

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


# --------------------------------------------------------------------------- setting errors
_SETTING_ERRORS: list[str] = []


def _is_lmms_eval_cli() -> bool:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name in ("lmms_eval.__main__", "lmms_eval"):
        return True
    return os.path.basename(sys.argv[0] if sys.argv else "") in ("lmms-eval", "lmms_eval")


#: Exit status of an lmms-eval CLI run stopped because a cache or result file could not be written.
STORAGE_ERROR_EXIT_STATUS = 3
_STORAGE_ERRORS: list[str] = []


def _exit_after_setting_error() -> None:
    if not (_SETTING_ERRORS or _STORAGE_ERRORS) or not _is_lmms_eval_cli():
        return
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    if _STORAGE_ERRORS:
        message = _STORAGE_ERRORS[-1].replace("\n", "\n    ")
        sys.stderr.write(f"longva-plugins: the run stopped: {message}. Every file already written is complete and "
                         "kept; rerun with the same settings to go on from there.\n")
        status = STORAGE_ERROR_EXIT_STATUS
    else:
        message = _SETTING_ERRORS[-1].replace("\n", "\n    ")
        sys.stderr.write(f"longva-plugins: the run stopped before its first sample: {message}\n")
        status = SETTING_ERROR_EXIT_STATUS
    sys.stderr.flush()
    os._exit(status)


def stop_run(exc: BaseException) -> None:
    """Record a setting error (or a :class:`~longva_plugins.errors.StorageError`) so that an
    lmms-eval CLI run ends with it as its last line and a non-zero exit status (2, or 3 for a file
    that could not be written; see workaround 3 above). Call it just before re-raising ``exc``."""
    from longva_plugins.errors import StorageError

    if not _SETTING_ERRORS and not _STORAGE_ERRORS:
        atexit.register(_exit_after_setting_error)
    (_STORAGE_ERRORS if isinstance(exc, StorageError) else _SETTING_ERRORS).append(str(exc))
    logger.error("longva-plugins: %s", exc)


def recorded_setting_errors() -> list[str]:
    """The setting (and storage) errors :func:`stop_run` recorded in this process (for tests and tools)."""
    return list(_SETTING_ERRORS) + list(_STORAGE_ERRORS)


def settings_checked(func):
    """Decorate a model ``__init__``, a request method or a task's ``process_docs``: a
    :class:`SettingError` or :class:`StorageError` raised inside is recorded with :func:`stop_run`
    and re-raised unchanged."""
    from longva_plugins.errors import SettingError, StorageError

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (SettingError, StorageError) as exc:
            stop_run(exc)
            raise

    return wrapper


def cli_output_path() -> str | None:
    """The ``--output_path`` of the lmms-eval CLI run this process is, if any."""
    if not _is_lmms_eval_cli():
        return None
    argv = list(sys.argv[1:])
    for i, arg in enumerate(argv):
        if arg == "--output_path" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--output_path="):
            return arg.split("=", 1)[1]
    return None


def check_output_path() -> None:
    """Before the first sample: the CLI's ``--output_path`` can be written (else a setting error
    naming it), instead of lmms-eval discovering it after the last sample."""
    from longva_plugins.errors import SettingError, StorageError
    from longva_plugins.fileio import check_writable

    path = cli_output_path()
    if not path:
        return
    target = Path(os.path.expanduser(path))
    folder = target if target.suffix != ".json" else target.parent
    try:
        check_writable(folder)
    except StorageError as exc:
        raise SettingError(f"--output_path={path}: {exc}") from exc


# --------------------------------------------------------------------------- results file (workaround 6)
def _wrap_save_results_aggregated(original):
    @functools.wraps(original)
    def save_results_aggregated(self, results, samples, datetime_str, *args, **kwargs):
        out = original(self, results, samples, datetime_str, *args, **kwargs)
        if self.output_path and _MODEL_IDENTITY:
            _check_results_file(self, datetime_str)
        return out

    setattr(save_results_aggregated, _MARK, True)
    return save_results_aggregated


def _check_results_file(tracker, datetime_str: str) -> None:
    """lmms-eval logs a failed results write as a warning, exits 0 and may leave a cut file: a
    results file that is missing or does not parse is removed and stops the run (exit 3)."""
    import errno
    import json

    from longva_plugins.errors import StorageError
    from longva_plugins.fileio import check_writable

    folder = Path(tracker.output_path) / tracker.general_config_tracker.model_name_sanitized
    path = folder / f"{datetime_str.replace(':', '-')}_results.json"
    try:
        json.loads(path.read_text(encoding="utf-8"))
        return
    except (OSError, ValueError):
        pass
    try:
        path.unlink()  # never leave a half-written results file
    except OSError:
        pass
    try:
        check_writable(folder)
        cause = OSError(errno.EIO, "the results file was not written completely")
    except StorageError as exc:
        cause = exc.cause
    stop_run(StorageError(path, cause))


def patch_results_writer() -> bool:
    """Wrap ``EvaluationTracker.save_results_aggregated`` (workaround 6). Idempotent."""
    found = _unwrapped("lmms_eval.loggers.evaluation_tracker", "EvaluationTracker", "save_results_aggregated")
    if found is None:
        return False
    tracker, original = found
    tracker.save_results_aggregated = _wrap_save_results_aggregated(original)
    return True


# --------------------------------------------------------------------------- public API
def install() -> list[str]:
    """Wire longva-plugins into lmms-eval for Python API users (see :func:`longva_plugins.install`).

    Raises ``ImportError`` when lmms-eval is not installed. Returns the appended task folders.
    """
    version = lmms_eval_version()
    if version is None:
        raise ImportError(f"lmms-eval is not installed: pip install 'lmms-eval{SUPPORTED_LMMS_EVAL}'")
    if not _version_supported(version):
        logger.warning(
            "longva-plugins was tested with lmms-eval %s; found %s. Task discovery may not work: "
            "pass --include_path %s if `vniah` is not found.",
            SUPPORTED_LMMS_EVAL,
            version,
            task_folder_hint(),
        )
    patch_task_manager()
    patch_loglikelihood_results()
    patch_response_cache()
    patch_results_writer()
    _register_manifest_if_registry_loaded()
    return plugin_task_folders()


def _register_manifest_if_registry_loaded() -> None:
    models = sys.modules.get("lmms_eval.models")
    registry = getattr(models, "MODEL_REGISTRY_V2", None) if models else None
    if registry is not None:
        for manifest in _manifests():
            registry.register_manifest(manifest, overwrite=True)


def _manifests():
    from lmms_eval.models.registry_v2 import ModelManifest

    return [ModelManifest(model_id=MODEL_ID, simple_class_path=MODEL_CLASS_PATH, aliases=MODEL_ALIASES)]


def registered_model_class_path(model_id: str = MODEL_ID) -> str | None:
    """The class lmms-eval's CLI would build for ``--model model_id`` (its model registry, filled
    by the entry points as ``lmms_eval.models`` is imported); ``None`` when it knows none."""
    import lmms_eval.models  # noqa: F401  (runs the entry points, as the CLI does)
    from lmms_eval.models import MODEL_REGISTRY_V2

    return MODEL_REGISTRY_V2.get_manifest(model_id).simple_class_path or None


def extract_mcq_answer(text: str, choices) -> str:
    """lmms-eval's own multiple-choice letter extraction (``lmms_eval.tasks._task_utils``, a private
    module: the only import of it is here)."""
    from lmms_eval.tasks._task_utils.mcq_extract import extract_mcq_answer as extract

    return extract(text, choices=list(choices))


def task_folder_hint() -> str:
    try:
        from longva_plugins.builtin_tasks import package_task_dir

        return str(package_task_dir())
    except Exception:
        return "<site-packages>/longva_plugins/tasks"


def lmms_eval_manifests():
    """Entry point of group ``lmms_eval.models``. Never raises.

    Returns the ``longva`` manifest and, on the way, wires task discovery and the loglikelihood
    fix. Any failure is logged with its cause and the fix, and an empty list is returned.
    """
    try:
        manifests = _manifests()
    except Exception as exc:
        logger.warning("longva-plugins: cannot build the lmms-eval model manifest (%s: %s).", type(exc).__name__, exc)
        return []
    try:
        patch_task_manager()
    except Exception as exc:
        logger.warning(
            "longva-plugins: zero-flag task discovery is unavailable (%s: %s); pass --include_path %s.",
            type(exc).__name__,
            exc,
            task_folder_hint(),
        )
    try:
        patch_loglikelihood_results()
    except Exception as exc:
        logger.warning(
            "longva-plugins: loglikelihood compatibility fix not applied (%s: %s); "
            "loglikelihood/multiple_choice tasks may crash on lmms-eval %s.",
            type(exc).__name__,
            exc,
            lmms_eval_version(),
        )
    try:
        patch_results_writer()
    except Exception as exc:
        logger.warning("longva-plugins: a results file lmms-eval fails to write will not stop the run (%s: %s).",
                       type(exc).__name__, exc)
    try:
        patch_response_cache()
    except Exception as exc:
        logger.warning("longva-plugins: --use_cache will not notice a changed checkpoint at the same path (%s: %s).",
                       type(exc).__name__, exc)
    return manifests


__all__ = [
    "IDENTITY_ARG",
    "STORAGE_ERROR_EXIT_STATUS",
    "check_output_path",
    "extract_mcq_answer",
    "registered_model_class_path",
    "patch_results_writer",
    "patch_response_cache",
    "record_model_identity",
    "SETTING_ERROR_EXIT_STATUS",
    "filelock_problem",
    "recorded_setting_errors",
    "settings_checked",
    "stop_run",
    "task_discovery_active",
    "MODEL_ALIASES",
    "MODEL_CLASS_PATH",
    "MODEL_ID",
    "install",
    "lmms_eval_manifests",
    "loglikelihood_bug_present",
    "patch_loglikelihood_results",
    "patch_task_manager",
    "plugin_task_folders",
]
