"""Workaround 3: a setting error (exit 2) or a file that could not be written (exit 3) ends an
lmms-eval CLI run non-zero, with its message as the last line.

lmms-eval's CLI catches every exception of a run, prints it among other output and exits 0, so a
wrong setting looks like a finished run. :func:`stop_run` records the error; at interpreter exit,
only when the process is lmms-eval's CLI, the message is printed last and the process exits with
status 2 or 3 (``os._exit`` after flushing: lmms-eval's ``__main__`` calls ``sys.exit(0)`` itself,
and an exit handler cannot change that status any other way).
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import sys

logger = logging.getLogger(__name__)

#: Exit status of an lmms-eval CLI run stopped by a setting error.
SETTING_ERROR_EXIT_STATUS = 2
#: Exit status of an lmms-eval CLI run stopped because a cache or result file could not be written.
STORAGE_ERROR_EXIT_STATUS = 3
_STORAGE_ERRORS: list[str] = []
_SETTING_ERRORS: list[str] = []


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


def is_lmms_eval_cli() -> bool:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name in ("lmms_eval.__main__", "lmms_eval"):
        return True
    return os.path.basename(sys.argv[0] if sys.argv else "") in ("lmms-eval", "lmms_eval")


def _exit_after_setting_error() -> None:
    if not (_SETTING_ERRORS or _STORAGE_ERRORS) or not is_lmms_eval_cli():
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


__all__ = ["SETTING_ERROR_EXIT_STATUS", "STORAGE_ERROR_EXIT_STATUS", "is_lmms_eval_cli", "recorded_setting_errors", "setting_error_in",
           "settings_checked", "stop_run"]
