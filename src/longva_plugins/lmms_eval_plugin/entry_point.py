"""The ``lmms_eval.models`` entry point and :func:`install`: they register the ``longva`` model and
apply the compatibility workarounds of :mod:`.compat` (each guarded: a raising entry point would
make lmms-eval skip every plugin loaded after it)."""

from __future__ import annotations

import logging

from longva_plugins.lmms_eval_plugin import compat
from longva_plugins.lmms_eval_plugin.compat import registry
from longva_plugins.lmms_eval_plugin.compat._common import version_supported
from longva_plugins.lmms_eval_plugin.compat.registry import register_manifest_if_registry_loaded

logger = logging.getLogger(__name__)

#: the compat workarounds the entry point and :func:`install` apply, and what a failure of each means
#: for the run (``{cause}``: the exception; ``{hint}``: the task folder; ``{version}``: lmms-eval's)
WORKAROUNDS = (
    ("patch_task_manager", "zero-flag task discovery is unavailable ({cause}); pass --include_path {hint}."),
    ("patch_loglikelihood_results", "loglikelihood compatibility fix not applied ({cause}); "
                                    "loglikelihood/multiple_choice tasks may crash on lmms-eval {version}."),
    ("patch_results_writer", "a results file lmms-eval fails to write will not stop the run ({cause})."),
    ("patch_response_cache", "--use_cache will not notice a changed checkpoint at the same path ({cause})."),
)


def install() -> list[str]:
    """Wire longva-plugins into lmms-eval for Python API users (see :func:`longva_plugins.install`).

    Raises ``ImportError`` when lmms-eval is not installed. Returns the appended task folders.
    """
    version = compat.lmms_eval_version()
    if version is None:
        raise ImportError(f"lmms-eval is not installed: pip install 'lmms-eval{compat.SUPPORTED_LMMS_EVAL}'")
    if not version_supported(version):
        logger.warning(
            "longva-plugins was tested with lmms-eval %s; found %s. Task discovery may not work: "
            "pass --include_path %s if `vniah` is not found.",
            compat.SUPPORTED_LMMS_EVAL,
            version,
            compat.task_folder_hint(),
        )
    for name, _ in WORKAROUNDS:
        getattr(compat, name)()
    register_manifest_if_registry_loaded()
    return compat.plugin_task_folders()


def lmms_eval_manifests():
    """Entry point of group ``lmms_eval.models``. Never raises.

    Returns the ``longva`` manifest and, on the way, wires task discovery and the loglikelihood
    fix. Any failure is logged with its cause and the fix, and an empty list is returned.
    """
    try:
        manifests = registry.manifests()
    except Exception as exc:
        logger.warning("longva-plugins: cannot build the lmms-eval model manifest (%s: %s).", type(exc).__name__, exc)
        return []
    for name, consequence in WORKAROUNDS:
        try:
            getattr(compat, name)()
        except Exception as exc:
            logger.warning("longva-plugins: %s", consequence.format(
                cause=f"{type(exc).__name__}: {exc}", hint=compat.task_folder_hint(), version=compat.lmms_eval_version()))
    return manifests


__all__ = ["install", "lmms_eval_manifests"]
