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
    compat.patch_task_manager()
    compat.patch_loglikelihood_results()
    compat.patch_response_cache()
    compat.patch_results_writer()
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
    try:
        compat.patch_task_manager()
    except Exception as exc:
        logger.warning(
            "longva-plugins: zero-flag task discovery is unavailable (%s: %s); pass --include_path %s.",
            type(exc).__name__,
            exc,
            compat.task_folder_hint(),
        )
    try:
        compat.patch_loglikelihood_results()
    except Exception as exc:
        logger.warning(
            "longva-plugins: loglikelihood compatibility fix not applied (%s: %s); "
            "loglikelihood/multiple_choice tasks may crash on lmms-eval %s.",
            type(exc).__name__,
            exc,
            compat.lmms_eval_version(),
        )
    try:
        compat.patch_results_writer()
    except Exception as exc:
        logger.warning("longva-plugins: a results file lmms-eval fails to write will not stop the run (%s: %s).",
                       type(exc).__name__, exc)
    try:
        compat.patch_response_cache()
    except Exception as exc:
        logger.warning("longva-plugins: --use_cache will not notice a changed checkpoint at the same path (%s: %s).",
                       type(exc).__name__, exc)
    return manifests


__all__ = ["install", "lmms_eval_manifests"]
