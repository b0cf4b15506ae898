"""Deprecated: moved to ``longva_plugins.lmms_eval_plugin.builtin_tasks``."""

from longva_plugins._deprecated import alias_module

alias_module(__name__, "longva_plugins.lmms_eval_plugin.builtin_tasks")
