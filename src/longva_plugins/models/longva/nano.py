"""Deprecated: moved to ``longva_plugins.nano.checkpoint``."""

from longva_plugins._deprecated import alias_module

alias_module(__name__, "longva_plugins.nano.checkpoint")
