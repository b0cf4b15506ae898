"""The ``longva`` model in lmms-eval's model registry (the ``lmms_eval.models`` entry point's manifest)."""

from __future__ import annotations

import sys

MODEL_ID = "longva"
MODEL_ALIASES = ("longva_hf",)
MODEL_CLASS_PATH = "longva_plugins.lmms_eval_plugin.adapter.LongVA"


def manifests():
    """The ``longva`` model manifest (alias ``longva_hf``) the entry point returns."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return [ModelManifest(model_id=MODEL_ID, simple_class_path=MODEL_CLASS_PATH, aliases=MODEL_ALIASES)]


def register_manifest_if_registry_loaded() -> None:
    """For Python API users who imported ``lmms_eval.models`` before ``install()``."""
    models = sys.modules.get("lmms_eval.models")
    registry = getattr(models, "MODEL_REGISTRY_V2", None) if models else None
    if registry is not None:
        for manifest in manifests():
            registry.register_manifest(manifest, overwrite=True)


def registered_model_class_path(model_id: str = MODEL_ID) -> str | None:
    """The class lmms-eval's CLI would build for ``--model model_id`` (its model registry, filled
    by the entry points as ``lmms_eval.models`` is imported); ``None`` when it knows none."""
    import lmms_eval.models  # noqa: F401  (runs the entry points, as the CLI does)
    from lmms_eval.models import MODEL_REGISTRY_V2

    return MODEL_REGISTRY_V2.get_manifest(model_id).simple_class_path or None


__all__ = ["MODEL_ALIASES", "MODEL_CLASS_PATH", "MODEL_ID", "manifests", "register_manifest_if_registry_loaded",
           "registered_model_class_path"]
