"""Built-in vniah plugin: hook implementations registered first by longva_plugins.plugins."""

from __future__ import annotations
