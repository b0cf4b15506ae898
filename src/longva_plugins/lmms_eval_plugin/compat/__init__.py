"""The only code that touches lmms-eval's internals: one module per workaround, each bounded to the
tested versions and tested (``tests/test_lmms_eval_plugin/compat/``).

Public routes used:

- the ``lmms_eval.models`` entry point → :func:`lmms_eval_manifests` registers model id
  ``longva`` (alias ``longva_hf``), replacing lmms-eval's built-in adapter that needs the
  uninstallable original ``longva`` package.

Workarounds where lmms-eval 0.7.x leaves no public route (tested in
``tests/test_lmms_eval_plugin/compat/``; the dependency range in ``pyproject.toml`` pins
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

from longva_plugins.lmms_eval_plugin.compat._common import SUPPORTED_LMMS_EVAL, lmms_eval_version
from longva_plugins.lmms_eval_plugin.compat.cache_key import IDENTITY_ARG, patch_response_cache, record_model_identity
from longva_plugins.lmms_eval_plugin.compat.environment import filelock_problem
from longva_plugins.lmms_eval_plugin.compat.exit_status import (
    SETTING_ERROR_EXIT_STATUS,
    STORAGE_ERROR_EXIT_STATUS,
    recorded_setting_errors,
    setting_error_in,
    settings_checked,
    stop_run,
)
from longva_plugins.lmms_eval_plugin.compat.loglikelihood import loglikelihood_bug_present, patch_loglikelihood_results
from longva_plugins.lmms_eval_plugin.compat.registry import (
    MODEL_ALIASES,
    MODEL_CLASS_PATH,
    MODEL_ID,
    registered_model_class_path,
)
from longva_plugins.lmms_eval_plugin.compat.results_file import check_output_path, cli_output_path, patch_results_writer
from longva_plugins.lmms_eval_plugin.compat.reused import extract_mcq_answer
from longva_plugins.lmms_eval_plugin.compat.task_discovery import (
    patch_task_manager,
    plugin_task_folders,
    task_discovery_active,
    task_folder_hint,
)

__all__ = [
    "IDENTITY_ARG",
    "MODEL_ALIASES",
    "MODEL_CLASS_PATH",
    "MODEL_ID",
    "SETTING_ERROR_EXIT_STATUS",
    "STORAGE_ERROR_EXIT_STATUS",
    "SUPPORTED_LMMS_EVAL",
    "check_output_path",
    "cli_output_path",
    "extract_mcq_answer",
    "filelock_problem",
    "lmms_eval_version",
    "loglikelihood_bug_present",
    "patch_loglikelihood_results",
    "patch_response_cache",
    "patch_results_writer",
    "patch_task_manager",
    "plugin_task_folders",
    "record_model_identity",
    "recorded_setting_errors",
    "registered_model_class_path",
    "setting_error_in",
    "settings_checked",
    "stop_run",
    "task_discovery_active",
    "task_folder_hint",
]
