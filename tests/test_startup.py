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
from longva_plugins.lmms_eval_plugin.compat import task_discovery_active
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


AUTO_PROBE = """
import sys
import longva_plugins._startup as startup
startup.install_import_hook()
cheap = "torch" not in sys.modules and "transformers" not in sys.modules
folder = sys.argv[2]
if sys.argv[1] == "qwen2_first":      # a config class's import pulls transformers' auto modules in mid-import
    from transformers import Qwen2Config  # noqa: F401
if sys.argv[1] == "our_processing_first":  # our processor module brings transformers' processing_auto mid-import
    import longva_plugins.models.longva.processing_longva  # noqa: F401
if sys.argv[1] == "processor_first":
    from transformers import AutoProcessor
    AutoProcessor.from_pretrained(folder)
if sys.argv[1] == "pipeline":
    from transformers import pipeline
    pipe = pipeline("image-text-to-text", model=folder)
    print(cheap, type(pipe.model).__name__, type(pipe.processor).__name__)
    raise SystemExit
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor
print(cheap, type(AutoConfig.from_pretrained(folder)).__name__,
      type(AutoModelForImageTextToText.from_pretrained(folder)).__name__,
      type(AutoModelForCausalLM.from_pretrained(folder)).__name__, type(AutoProcessor.from_pretrained(folder)).__name__,
      "longva_plugins.lmms_eval_plugin" in sys.modules)
"""


@pytest.mark.parametrize("order", ["plain", "qwen2_first", "our_processing_first", "processor_first", "pipeline"])
def test_the_startup_hook_registers_longva_with_the_auto_classes(order):
    """What an installed wheel's .pth does at interpreter start: the Auto classes (and the
    image-text-to-text pipeline) resolve the shipped nano without the user importing
    longva-plugins, whatever module is imported first (transformers' or LongVA's own); the hook
    itself imports neither torch nor transformers."""
    import os

    from longva_plugins.nano.checkpoint import nano_checkpoint

    out = subprocess.run([sys.executable, "-c", AUTO_PROBE, order, str(nano_checkpoint())], capture_output=True,
                         text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    words = out.stdout.split()
    if order == "pipeline":
        assert words == ["True", "LongVAForConditionalGeneration", "LongVAProcessor"]
    else:
        assert words == ["True", "LongVAConfig", "LongVAForConditionalGeneration", "LongVAForConditionalGeneration",
                         "LongVAProcessor", "False"], "registered, and the lmms-eval integration not imported"


LOADER_PROBE = """
import inspect, sys
import longva_plugins._startup as startup
startup.install_import_hook()
from longva_plugins.nano.checkpoint import nano_checkpoint  # imported through the hook's wrapper
import transformers.models.auto.configuration_auto as configuration_auto
print(type(sys.modules["longva_plugins.nano"].__loader__).__name__, nano_checkpoint().is_dir(),
      configuration_auto.__loader__.get_source(configuration_auto.__name__) == inspect.getsource(configuration_auto))
"""


def test_the_hooks_wrapped_loaders_keep_the_real_loaders_services():
    """Modules imported through the hook's wrapper still give their source (tracebacks, inspect)
    and their package resources (the shipped nano checkpoint)."""
    out = subprocess.run([sys.executable, "-c", LOADER_PROBE], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["_CallAfterExec", "True", "True"]
