"""Every import path this release moved keeps working for one release, with a DeprecationWarning."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from longva_plugins._deprecated import MOVED, REMOVED_IN


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_path_warns_and_gives_the_new_module(old):
    new = MOVED[old]
    code = ("import importlib, sys, warnings\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always')\n"
            f"    old = importlib.import_module({old!r})\n"
            f"new = importlib.import_module({new!r})\n"
            "messages = [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]\n"
            f"assert any({old!r} in m and {new!r} in m and {REMOVED_IN!r} in m for m in messages), messages\n"
            "public = [n for n in getattr(new, '__all__', []) if not hasattr(old, n)]\n"
            "assert not public, public\n"
            "print(old is new)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    # the compat shim re-exports the split package and the entry point; every other is the module itself
    assert out.stdout.strip() == ("False" if old.endswith("lmms_eval_compat") else "True")


def test_the_old_compat_module_still_offers_the_entry_point_and_install():
    with pytest.warns(DeprecationWarning):
        sys.modules.pop("longva_plugins.lmms_eval_compat", None)
        compat = importlib.import_module("longva_plugins.lmms_eval_compat")
    from longva_plugins.lmms_eval_plugin.entry_point import install, lmms_eval_manifests

    assert compat.install is install and compat.lmms_eval_manifests is lmms_eval_manifests


@pytest.mark.parametrize("name,home", [("ensure_tiny_checkpoint", "longva_plugins.testing"),
                                       ("make_tiny_checkpoint", "longva_plugins.testing"),
                                       ("nano_checkpoint", "longva_plugins.nano.checkpoint")])
def test_names_that_left_the_model_package_still_resolve_there(name, home):
    import longva_plugins.models.longva as package

    with pytest.warns(DeprecationWarning, match=home):
        value = getattr(package, name)
    assert value is getattr(importlib.import_module(home), name)
