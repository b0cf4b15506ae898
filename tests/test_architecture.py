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
                 "longva_plugins.adapter", "longva_plugins.task_utils", "longva_plugins.nano", "lmms_eval",
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


def test_only_the_compat_module_imports_lmms_eval_internals():
    """lmms-eval's public API is ``lmms_eval.api``; every other lmms-eval module (registries,
    private task utilities, the CLI) is reached through ``lmms_eval_compat.py`` only, which bounds
    the versions and tests each workaround."""
    compat = {"lmms_eval_compat.py"}
    users = {str(p.relative_to(SRC)): sorted(n for n in _imports(p) if n.startswith("lmms_eval")
                                             and n != "lmms_eval" and not n.startswith("lmms_eval.api"))
             for p in SRC.rglob("*.py") if str(p.relative_to(SRC)) not in compat}
    assert not {k: v for k, v in users.items() if v}, users
