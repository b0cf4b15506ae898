"""lmms-eval model adapter for LongVA."""
