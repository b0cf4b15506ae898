"""An example third-party plugin for longva-plugins."""
