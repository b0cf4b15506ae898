"""Deprecated: the task functions moved to ``longva_plugins.lmms_eval_plugin.task_utils``."""
