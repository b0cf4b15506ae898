"""Deprecated: moved to ``longva_plugins.lmms_eval_plugin.compat`` (one module per workaround) and
``longva_plugins.lmms_eval_plugin.entry_point`` (``install``, ``lmms_eval_manifests``)."""

from longva_plugins._deprecated import warn_moved

warn_moved(__name__, "longva_plugins.lmms_eval_plugin.compat")

from longva_plugins.lmms_eval_plugin.compat import *  # noqa: E402,F401,F403
from longva_plugins.lmms_eval_plugin.compat import __all__ as _compat_all  # noqa: E402
from longva_plugins.lmms_eval_plugin.entry_point import install, lmms_eval_manifests  # noqa: E402,F401

__all__ = [*_compat_all, "install", "lmms_eval_manifests"]
