"""video sub-package of longva-plugins."""
