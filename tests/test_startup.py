"""The start-up hook wires lmms-eval's task manager when lmms_eval.tasks is imported on its own."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("lmms_eval")

PROBE = """
import sys
import longva_plugins._startup as startup
assert startup.install_import_hook()
assert "lmms_eval.tasks" not in sys.modules
import lmms_eval.tasks as tasks
from longva_plugins.lmms_eval_compat import _MARK
print(getattr(tasks.TaskManager.initialize_tasks, _MARK, False), "lmms_eval.models" in sys.modules)
"""


def _probe(env_extra=None):
    import os

    env = {**os.environ, **(env_extra or {})}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=300)
    return out


def test_task_manager_patched_on_import_without_models():
    out = _probe()
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["True", "False"]


def test_startup_hook_can_be_disabled():
    out = _probe({"LONGVA_PLUGINS_NO_STARTUP_HOOK": "1"})
    assert out.returncode != 0 and "AssertionError" in out.stderr
