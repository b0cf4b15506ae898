"""What every workaround shares: the supported lmms-eval versions and the mark on wrapped functions."""

from __future__ import annotations

import importlib
import importlib.metadata

SUPPORTED_LMMS_EVAL = ">=0.7.3,<0.8"
#: Attribute set on every function this package wrapped, so that wrapping is idempotent.
MARK = "__longva_plugins_wrapped__"


def lmms_eval_version() -> str | None:
    try:
        return importlib.metadata.version("lmms_eval")
    except importlib.metadata.PackageNotFoundError:
        return None


def version_supported(version: str | None) -> bool:
    if version is None:
        return False
    try:
        from packaging.version import Version

        return Version("0.7.3") <= Version(version) < Version("0.8")
    except Exception:
        return version.startswith("0.7.")


def unwrapped(module_name: str, class_name: str, attr: str):
    """``(class, method)`` of ``module_name.class_name.attr`` when it exists and is not wrapped yet."""
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    cls = getattr(module, class_name, None)
    original = getattr(cls, attr, None) if cls else None
    if original is None or getattr(original, MARK, False):
        return None
    return cls, original


__all__ = ["MARK", "SUPPORTED_LMMS_EVAL", "lmms_eval_version", "unwrapped", "version_supported"]
