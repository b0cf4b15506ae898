"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_checkpoint():
    from longva_plugins.testing import ensure_tiny_checkpoint

    return ensure_tiny_checkpoint()
