"""Workaround 6: a results file that cannot be written ends the run non-zero.

lmms-eval's ``EvaluationTracker.save_results_aggregated`` logs a failed write (disk full,
read-only folder) as a warning, may leave a cut file behind and the CLI exits 0. Wrapped, for runs
of the ``longva`` model: a results file that is missing or does not parse afterwards is removed and
recorded as a :class:`~longva_plugins.errors.StorageError` (exit status 3, the path as the last
line). Before the first sample the ``longva`` model also checks that ``--output_path`` can be
written (:func:`check_output_path`, a setting error otherwise).
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

from longva_plugins.lmms_eval_plugin.compat._common import MARK, unwrapped
from longva_plugins.lmms_eval_plugin.compat.cache_key import model_identity
from longva_plugins.lmms_eval_plugin.compat.exit_status import is_lmms_eval_cli, stop_run


def cli_output_path() -> str | None:
    """The ``--output_path`` of the lmms-eval CLI run this process is, if any."""
    if not is_lmms_eval_cli():
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


def _wrap_save_results_aggregated(original):
    @functools.wraps(original)
    def save_results_aggregated(self, results, samples, datetime_str, *args, **kwargs):
        out = original(self, results, samples, datetime_str, *args, **kwargs)
        if self.output_path and model_identity() is not None:
            _check_results_file(self, datetime_str)
        return out

    setattr(save_results_aggregated, MARK, True)
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
    found = unwrapped("lmms_eval.loggers.evaluation_tracker", "EvaluationTracker", "save_results_aggregated")
    if found is None:
        return False
    tracker, original = found
    tracker.save_results_aggregated = _wrap_save_results_aggregated(original)
    return True


__all__ = ["check_output_path", "cli_output_path", "patch_results_writer"]
