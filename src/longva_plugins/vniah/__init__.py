"""vniah sub-package of longva-plugins."""
