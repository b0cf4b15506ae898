"""training sub-package of longva-plugins."""
