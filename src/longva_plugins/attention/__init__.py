"""attention sub-package of longva-plugins."""
