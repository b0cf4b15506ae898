"""Importable logic behind the shipped lmms-eval task folders (``tasks/``): Video-MME and MLVU."""
