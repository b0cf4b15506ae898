"""The start-up hook wires lmms-eval's task manager when lmms_eval.tasks is imported on its own."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("lmms_eval")

PROBE = """
import sys
import longva_plugins._startup as startup
installed = startup.install_import_hook()
imported_before = "lmms_eval.tasks" in sys.modules
import lmms_eval.tasks  # noqa: F401
from longva_plugins.lmms_eval_compat import task_discovery_active
print(installed, imported_before, task_discovery_active(), "lmms_eval.models" in sys.modules)
"""


def _probe(env_extra=None):
    import os

    env = {**os.environ, **(env_extra or {})}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=300)
    return out


def test_task_manager_patched_on_import_without_models():
    out = _probe()
    assert out.returncode == 0, out.stderr[-3000:]
    # hook installed, lmms_eval.tasks not imported before, task manager wired, no models imported
    assert out.stdout.split() == ["True", "False", "True", "False"]


def test_startup_hook_can_be_disabled():
    out = _probe({"LONGVA_PLUGINS_NO_STARTUP_HOOK": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["False", "False", "False", "False"], "disabled: nothing wired on import"
