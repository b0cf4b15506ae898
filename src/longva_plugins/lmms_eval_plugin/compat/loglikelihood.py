"""Workaround 2: loglikelihood results.

lmms-eval 0.7.3's ``unwrap_generation_output`` turns every ``(float, bool)`` loglikelihood result
into a string, so every loglikelihood / multiple_choice task crashes for every model. The fix is
applied only when that behaviour is detected on a supported version, and passes ``(number, bool)``
pairs through unchanged; every other output takes the original code path.
"""

from __future__ import annotations

import functools
import importlib
import numbers
import sys

from longva_plugins.lmms_eval_plugin.compat._common import MARK, lmms_eval_version, version_supported


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

    setattr(unwrap_generation_output, MARK, True)
    return unwrap_generation_output


def loglikelihood_bug_present() -> bool:
    """Whether the installed lmms-eval stringifies ``(float, bool)`` loglikelihood results."""
    instance = importlib.import_module("lmms_eval.api.instance")
    func = getattr(instance, "unwrap_generation_output", None)
    if func is None or getattr(func, MARK, False):
        return False
    text, _ = func((-1.5, True))
    return isinstance(text, str)


def patch_loglikelihood_results() -> bool:
    """Apply the loglikelihood fix when the bug is present on a supported version. Idempotent."""
    version = lmms_eval_version()
    if not version_supported(version) or not loglikelihood_bug_present():
        return False
    instance = importlib.import_module("lmms_eval.api.instance")
    patched = _wrap_unwrap_generation_output(instance.unwrap_generation_output)
    instance.unwrap_generation_output = patched
    # evaluator binds the name at import; when it is already imported, rebind it there too.
    evaluator = sys.modules.get("lmms_eval.evaluator")
    if evaluator is not None and hasattr(evaluator, "unwrap_generation_output"):
        evaluator.unwrap_generation_output = patched
    return True


__all__ = ["loglikelihood_bug_present", "patch_loglikelihood_results"]
