"""longva-plugins: LongVA for lmms-eval, transformers and PEFT.

Importing this package is cheap: it loads neither torch nor lmms-eval. The heavy parts live in
sub-packages (``models``, ``lmms_eval_plugin``, ``vniah``, ``attention``, ``training``).
"""

from __future__ import annotations

__version__ = "0.1.0"


def install() -> list[str]:
    """Wire longva-plugins into an lmms-eval that is used from Python.

    Registers the ``longva`` model manifest, appends the package's task folders (and those
    contributed by third-party plugins) to lmms-eval's task index, and applies the narrow
    compatibility fixes for the installed lmms-eval version. Safe to call more than once.
    Returns the task folders that were added.
    """
    from longva_plugins.lmms_eval_plugin.entry_point import install as _install

    return _install()


__all__ = ["__version__", "install"]
