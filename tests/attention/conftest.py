"""Attention tests run with small tiles, so every kernel call crosses several query and key tiles
(and the processes they spawn inherit the setting)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def small_tiles(monkeypatch):
    monkeypatch.setenv("LONGVA_ATTENTION_TILE", "8")
