"""lmms-eval wiring: the entry point never raises, task discovery, and the loglikelihood fix."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import textwrap

import pytest

from longva_plugins.lmms_eval_plugin import compat, entry_point
from longva_plugins.lmms_eval_plugin.compat import cache_key, exit_status, loglikelihood, registry, task_discovery
from longva_plugins.lmms_eval_plugin.compat._common import MARK

lmms_eval = pytest.importorskip("lmms_eval")


def _write_task(folder, name, marker):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(
        textwrap.dedent(
            f"""
            task: {name}
            dataset_path: json
            dataset_kwargs:
              data_files:
                test: data.jsonl
            test_split: test
            output_type: generate_until
            doc_to_text: question
            doc_to_target: answer
            metric_list:
              - metric: exact_match
            metadata:
              marker: {marker}
            """
        )
    )


@pytest.fixture
def plugin_folder(tmp_path, monkeypatch):
    folder = tmp_path / "plugin_tasks"
    monkeypatch.setattr(task_discovery, "plugin_task_folders", lambda: [str(folder)])
    return folder


def test_entry_point_is_declared_for_lmms_eval():
    eps = importlib.metadata.entry_points(group="lmms_eval.models")
    ours = [ep for ep in eps if ep.value == "longva_plugins.lmms_eval_plugin.entry_point:lmms_eval_manifests"]
    assert ours, "the lmms_eval.models entry point is missing: reinstall the package"


def test_entry_point_returns_longva_manifest():
    manifests = entry_point.lmms_eval_manifests()
    assert [(m.model_id, m.simple_class_path, m.aliases) for m in manifests] == [
        ("longva", compat.MODEL_CLASS_PATH, ("longva_hf",))
    ]


def test_lmms_eval_registry_resolves_longva_to_our_class():
    from lmms_eval.models import MODEL_REGISTRY_V2

    for name in ("longva", "longva_hf"):
        assert MODEL_REGISTRY_V2.get_manifest(name).simple_class_path == compat.MODEL_CLASS_PATH


def test_entry_point_never_raises(monkeypatch, caplog):
    def boom():
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(compat, "patch_task_manager", boom)
    monkeypatch.setattr(compat, "patch_loglikelihood_results", boom)
    with caplog.at_level("WARNING"):
        manifests = entry_point.lmms_eval_manifests()
    assert manifests and manifests[0].model_id == "longva"
    assert "--include_path" in caplog.text, "the fix must be named"
    assert "simulated failure" in caplog.text

    monkeypatch.setattr(registry, "manifests", boom)
    with caplog.at_level("WARNING"):
        assert entry_point.lmms_eval_manifests() == []


def test_task_manager_finds_plugin_tasks_without_flags(plugin_folder):
    from lmms_eval.tasks import TaskManager

    compat.patch_task_manager()
    _write_task(plugin_folder, "longva_compat_probe", "plugin")
    tm = TaskManager(include_defaults=False)
    assert "longva_compat_probe" in tm.all_tasks


def test_user_include_path_wins_over_plugin_folder(tmp_path, plugin_folder):
    from lmms_eval.tasks import TaskManager

    compat.patch_task_manager()
    _write_task(plugin_folder, "longva_clash_probe", "plugin")
    user = tmp_path / "user_tasks"
    _write_task(user, "longva_clash_probe", "user")
    tm = TaskManager(include_path=str(user), include_defaults=False)
    assert tm.task_index["longva_clash_probe"]["yaml_path"].startswith(str(user))


@pytest.mark.slow
def test_builtin_task_wins_over_plugin_folder(plugin_folder):
    from lmms_eval.tasks import TaskManager

    compat.patch_task_manager()
    _write_task(plugin_folder, "mme", "plugin")  # clashes with lmms-eval's built-in "mme"
    tm = TaskManager()
    assert not tm.task_index["mme"]["yaml_path"].startswith(str(plugin_folder))


def test_patch_task_manager_is_idempotent():
    from lmms_eval.tasks import TaskManager

    compat.patch_task_manager()
    first = TaskManager.initialize_tasks
    assert compat.patch_task_manager() is False
    assert TaskManager.initialize_tasks is first


# --------------------------------------------------------------------------- loglikelihood
def _original_unwrap():
    instance = importlib.import_module("lmms_eval.api.instance")
    func = instance.unwrap_generation_output
    return getattr(func, "__wrapped__", func)


def test_0_7_3_stringifies_loglikelihood_pairs_without_the_fix():
    text, _ = _original_unwrap()((-2.5, True))
    assert isinstance(text, str), "lmms-eval fixed the bug: narrow the version range of the workaround"


def test_fixed_unwrap_passes_pairs_and_leaves_text_alone():
    compat.patch_loglikelihood_results()
    from lmms_eval.api.instance import unwrap_generation_output

    assert unwrap_generation_output((-2.5, True)) == ((-2.5, True), None)
    assert unwrap_generation_output([3, False]) == ((3.0, False), None)
    assert unwrap_generation_output("an answer") == ("an answer", None)
    text, counts = unwrap_generation_output(("text", {"output_tokens": 3}))
    assert text == "text" and counts.output_tokens == 3
    assert not compat.loglikelihood_bug_present()


def test_evaluator_uses_the_fixed_function():
    import lmms_eval.evaluator as evaluator

    assert evaluator.unwrap_generation_output((1.25, False)) == ((1.25, False), None)


def test_fix_not_applied_to_other_versions(monkeypatch):
    instance = importlib.import_module("lmms_eval.api.instance")
    monkeypatch.setattr(instance, "unwrap_generation_output", _original_unwrap())
    monkeypatch.setattr(loglikelihood, "lmms_eval_version", lambda: "0.8.0")
    assert compat.patch_loglikelihood_results() is False
    assert instance.unwrap_generation_output is _original_unwrap()
    monkeypatch.setattr(loglikelihood, "lmms_eval_version", lambda: "0.7.3")
    assert compat.patch_loglikelihood_results() is True
    assert instance.unwrap_generation_output((0.5, True)) == ((0.5, True), None)


def test_install_returns_task_folders():
    folders = entry_point.install()
    assert folders and all(os.path.isdir(f) for f in folders)


def test_filelock_problem_names_the_fix(monkeypatch):
    import importlib.util

    assert compat.filelock_problem() is None, "the locked environment has a working filelock"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "filelock._api" else real(name, *a))
    problem = compat.filelock_problem()
    assert "filelock._api" in problem and "filelock>=3.16,<4.3" in problem


def test_doctor_reports_a_broken_filelock(monkeypatch):
    from longva_plugins.cli import doctor

    monkeypatch.setattr(compat, "filelock_problem", lambda: "filelock 4.3.1 has no filelock._api")
    check = next(c for c in doctor.run_checks() if c.name == "filelock")
    assert not check.ok and check.required and "<4.3" in check.fix


def test_setting_errors_end_only_an_lmms_eval_cli_with_a_status(monkeypatch):
    """Outside lmms-eval's CLI (here: pytest) a recorded setting error never ends the process."""
    from longva_plugins.errors import SettingError

    assert not exit_status.is_lmms_eval_cli()

    @compat.settings_checked
    def build():
        raise SettingError("max_frames_num=0 is not allowed")

    monkeypatch.setattr(exit_status, "_SETTING_ERRORS", [])
    with pytest.raises(SettingError):
        build()
    assert compat.recorded_setting_errors() == ["max_frames_num=0 is not allowed"]
    exit_status._exit_after_setting_error()  # returns: this process is not the lmms-eval CLI


def test_response_cache_keys_carry_the_loaded_checkpoint_identity_for_longva_only(monkeypatch):
    from lmms_eval.caching.response_cache import ResponseCache

    from longva_plugins.lmms_eval_plugin import compat

    compat.patch_response_cache()
    assert getattr(ResponseCache.create, MARK, False) and compat.patch_response_cache() is False
    monkeypatch.setattr(cache_key, "_MODEL_IDENTITY", {})
    assert cache_key._with_identity("longva", "pretrained=/x") == "pretrained=/x", "nothing loaded: unchanged"
    compat.record_model_identity("abc123")
    assert cache_key._with_identity("longva", "pretrained=/x") == "pretrained=/x,longva_identity=abc123"
    assert cache_key._with_identity("longva_hf", {"pretrained": "/x"}) == {"pretrained": "/x", "longva_identity": "abc123"}
    assert cache_key._with_identity("qwen2_vl", "pretrained=/x") == "pretrained=/x", "other models keep their key"


def test_checkpoint_identity_changes_with_any_file_of_the_checkpoint(tmp_path):
    import os

    from longva_plugins.lmms_eval_plugin.adapter import checkpoint_identity

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"1234")
    first = checkpoint_identity(str(tmp_path))
    assert checkpoint_identity(str(tmp_path)) == first
    stat = (tmp_path / "model.safetensors").stat()
    os.utime(tmp_path / "model.safetensors", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert checkpoint_identity(str(tmp_path)) != first
    assert checkpoint_identity("lmms-lab/LongVA-7B") != checkpoint_identity("lmms-lab/LongVA-7B-DPO")
