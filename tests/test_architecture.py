"""The import rules docs/ARCHITECTURE.md states, checked on the source (AST), so a new arrow fails."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "longva_plugins"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_models_import_no_distribution_attention_task_or_lmms_eval_code():
    forbidden = ("longva_plugins.attention", "longva_plugins.distributed", "longva_plugins.vniah",
                 "longva_plugins.adapter", "longva_plugins.lmms_eval_plugin.task_utils", "longva_plugins.nano", "lmms_eval",
                 "accelerate", "torch.distributed")
    bad = {str(p.relative_to(SRC)): sorted(n for n in _imports(p) if n.startswith(forbidden))
           for p in (SRC / "models").rglob("*.py")}
    assert not {k: v for k, v in bad.items() if v}, bad


def test_attention_modules_do_not_import_the_transformers_glue():
    """Group helpers come from longva_plugins.distributed: no circle through transformers_integration."""
    glue = "longva_plugins.attention.transformers_integration"
    users = [p.name for p in (SRC / "attention").glob("*.py")
             if p.name not in ("__init__.py", "transformers_integration.py") and glue in _imports(p)]
    assert not users, users


def test_torch_distributed_is_used_only_by_its_homes():
    homes = {"distributed.py", "attention/comm.py"}
    users = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                   if str(p.relative_to(SRC)) not in homes and any(n.startswith("torch.distributed") for n in _imports(p)))
    assert not users, users


def test_only_the_compat_package_imports_lmms_eval_internals():
    """lmms-eval's public API is ``lmms_eval.api``; every other lmms-eval module (registries,
    private task utilities, the CLI) is reached through ``lmms_eval_plugin/compat/`` only, which
    bounds the versions and tests each workaround."""
    users = {str(p.relative_to(SRC)): sorted(n for n in _imports(p) if n.startswith("lmms_eval")
                                             and n != "lmms_eval" and not n.startswith("lmms_eval.api"))
             for p in SRC.rglob("*.py") if not str(p.relative_to(SRC)).startswith("lmms_eval_plugin/compat/")}
    assert not {k: v for k, v in users.items() if v}, users


def test_lmms_eval_is_imported_only_by_the_integration_package():
    """Everything that plugs into lmms-eval lives in ``lmms_eval_plugin/`` (the adapter, its checks,
    visuals, entry point, compat workarounds and task functions)."""
    users = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                   if not str(p.relative_to(SRC)).startswith("lmms_eval_plugin/")
                   and any(n == "lmms_eval" or n.startswith("lmms_eval.") for n in _imports(p)))
    assert not users, users


def test_the_model_folder_has_transformers_shape():
    folder = SRC / "models" / "longva"
    expected = {"__init__.py", "configuration_longva.py", "modeling_longva.py", "inference_longva.py",
                "cache_longva.py", "processing_longva.py", "image_processing_longva.py",
                "video_processing_longva.py", "loading.py"}
    shims = {"tiny.py", "nano.py"}  # deprecated aliases, removed with the old paths
    assert {p.name for p in folder.glob("*.py")} == expected | shims
    assert not (folder / "checkpoints").exists(), "the shipped nano checkpoint lives in longva_plugins/nano/"


def test_deprecated_paths_are_only_aliases():
    """Every moved module is a two-line alias of its new home (no code left behind to drift)."""
    from longva_plugins._deprecated import MOVED

    for old in MOVED:
        path = SRC / (old.removeprefix("longva_plugins.").replace(".", "/") + ".py")
        code = [line for line in path.read_text().splitlines() if line and not line.startswith(('"""', "#", "from __future"))]
        assert len(code) <= 8, (path, code)
        assert any("alias_module" in line or "warn_moved" in line for line in code), path
