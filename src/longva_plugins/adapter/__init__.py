"""Deprecated: the lmms-eval model adapter moved to ``longva_plugins.lmms_eval_plugin``."""
