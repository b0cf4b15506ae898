"""The plugin manager: built-ins first, entry points after, broken third-party plugins skipped."""

from __future__ import annotations

import importlib.metadata
import sys
import textwrap

import pytest

from longva_plugins import plugins
from longva_plugins.lmms_eval_plugin.compat import plugin_task_folders


class FakeDistribution:
    """Just enough of ``importlib.metadata.Distribution`` for entry-point discovery."""

    def __init__(self, name: str, entry_points: list[importlib.metadata.EntryPoint]):
        self.metadata = {"name": name}
        self.entry_points = entry_points


def _ep(name: str, value: str, group: str = plugins.ENTRY_POINT_GROUP) -> importlib.metadata.EntryPoint:
    return importlib.metadata.EntryPoint(name=name, value=value, group=group)


@pytest.fixture
def fake_plugin_module(tmp_path, monkeypatch):
    """A third-party plugin module contributing one task folder."""
    folder = tmp_path / "third_party_tasks"
    folder.mkdir()
    (tmp_path / "third_party_plugin_mod.py").write_text(
        textwrap.dedent(
            f"""
            from longva_plugins.hookspecs import hookimpl

            @hookimpl
            def longva_task_folders():
                return [{str(folder)!r}]
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield folder
    sys.modules.pop("third_party_plugin_mod", None)


@pytest.fixture
def fake_distributions(monkeypatch):
    def install(*dists):
        monkeypatch.setattr(importlib.metadata, "distributions", lambda: list(dists))
        plugins.reset_plugin_manager()

    yield install
    plugins.reset_plugin_manager()


def test_builtin_plugins_registered_in_order():
    pm = plugins.build_plugin_manager(load_entry_points=False)
    names = [name for name, _ in pm.list_name_plugin()]
    assert names == list(plugins.BUILTIN_PLUGINS)


def test_builtin_task_folder_is_the_repository_tasks_dir():
    pm = plugins.build_plugin_manager(load_entry_points=False)
    folders = [str(f) for contribution in pm.hook.longva_task_folders() for f in contribution]
    assert any(f.endswith("tasks") for f in folders), folders


def test_entry_point_plugin_contributes_task_folder(fake_plugin_module, fake_distributions):
    fake_distributions(FakeDistribution("third-party", [_ep("third_party", "third_party_plugin_mod")]))
    folders = plugin_task_folders()
    assert str(fake_plugin_module) in folders
    # built-in folder first, third-party after
    assert folders.index(str(fake_plugin_module)) == len(folders) - 1


def test_broken_plugin_is_skipped_and_reported(fake_plugin_module, fake_distributions, caplog):
    fake_distributions(
        FakeDistribution("broken-dist", [_ep("broken", "module_that_does_not_exist_xyz")]),
        FakeDistribution("third-party", [_ep("third_party", "third_party_plugin_mod")]),
        FakeDistribution("unrelated", [_ep("other", "json", group="console_scripts")]),
    )
    with caplog.at_level("WARNING"):
        pm = plugins.get_plugin_manager()
    assert pm.get_plugin("third_party") is not None, "a broken plugin must not stop later plugins"
    assert pm.get_plugin("other") is None, "entry points of other groups are ignored"
    assert [(n, d) for n, d, _ in plugins.FAILED_PLUGINS] == [("broken", "broken-dist")]
    assert "module_that_does_not_exist_xyz" in plugins.FAILED_PLUGINS[0][2]
    assert "broken-dist" in caplog.text
    assert str(fake_plugin_module) in plugin_task_folders()


def test_missing_task_folder_from_plugin_is_skipped(tmp_path, monkeypatch, fake_distributions, caplog):
    (tmp_path / "ghost_plugin_mod.py").write_text(
        "from longva_plugins.hookspecs import hookimpl\n"
        "@hookimpl\n"
        f"def longva_task_folders():\n    return [{str(tmp_path / 'nope')!r}]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    fake_distributions(FakeDistribution("ghost", [_ep("ghost", "ghost_plugin_mod")]))
    with caplog.at_level("WARNING"):
        folders = plugin_task_folders()
    assert str(tmp_path / "nope") not in folders
    assert "does not exist" in caplog.text
    sys.modules.pop("ghost_plugin_mod", None)


def test_every_hookspec_is_typed_and_its_types_resolve():
    """Hookspecs carry type annotations (as pytest's do) naming real classes of the package and
    its dependencies."""
    import inspect
    import typing

    import torch
    from transformers import PreTrainedModel, TrainerCallback, TrainingArguments

    import longva_plugins.hookspecs as hookspecs
    from longva_plugins.attention.block import AttentionKernel
    from longva_plugins.video import VideoFrames
    from longva_plugins.vniah.haystack import Haystack
    from longva_plugins.vniah.needles import Needle

    names = {**vars(hookspecs), "torch": torch, "PreTrainedModel": PreTrainedModel, "TrainerCallback": TrainerCallback,
             "TrainingArguments": TrainingArguments, "AttentionKernel": AttentionKernel, "VideoFrames": VideoFrames,
             "Haystack": Haystack, "Needle": Needle}
    specs = [f for n, f in vars(hookspecs).items() if n.startswith("longva_") and inspect.isfunction(f)]
    assert len(specs) >= 9
    for spec in specs:
        hints = typing.get_type_hints(spec, globalns=names)
        params = set(inspect.signature(spec).parameters)
        assert "return" in hints and params <= set(hints), f"{spec.__name__} is not fully typed"
