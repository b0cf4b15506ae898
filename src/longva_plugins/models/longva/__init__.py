"""LongVA (arXiv 2406.16852) on Hugging Face transformers, in transformers' model-folder shape.

- :mod:`.configuration_longva`  ``LongVAConfig`` (``model_type="llava_qwen"``, the reference's flat config)
- :mod:`.modeling_longva`       ``LongVAForConditionalGeneration``: CLIP tower -> projector -> pool -> Qwen2,
                                 the standard ``forward(**processor(...))`` / ``generate``
- :mod:`.inference_longva`      the long-video paths (chunked prefill, answer-span scoring, split KV)
- :mod:`.cache_longva`          the KV caches those paths use
- :mod:`.processing_longva`     ``LongVAProcessor`` (``processor(text=, images=, videos=)``, chat template)
- :mod:`.image_processing_longva` / :mod:`.video_processing_longva`  exact CLIP pixels, UniRes tiles
- :mod:`.loading`               reading the reference checkpoint layout

Importing this package is cheap (PEP 562: the classes load on first use). It arranges for
transformers' Auto classes to resolve ``llava_qwen`` checkpoints to LongVA: ``AutoConfig``,
``AutoModelForImageTextToText`` / ``AutoModelForCausalLM`` and ``AutoProcessor`` are registered as
soon as transformers' auto modules are imported (now, when they already are). An installed wheel does
the same at interpreter start (``longva_plugins._startup``), so ``AutoModel...from_pretrained`` works
without importing longva-plugins. A LongVA checkpoint typed ``qwen2`` (as the hub copy of
LongVA-7B is) stays transformers' Qwen2 for the Auto classes -- that type is transformers' own;
load it with ``LongVAForConditionalGeneration.from_pretrained``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

#: public name -> the module of this folder defining it
_EXPORTS = {
    "LongVAConfig": "configuration_longva",
    "unires_pinpoints": "configuration_longva",
    "IMAGE_TOKEN_INDEX": "modeling_longva",
    "LongVAForCausalLM": "modeling_longva",
    "LongVAForConditionalGeneration": "modeling_longva",
    "LongVAProjector": "modeling_longva",
    "LongVideoMixin": "inference_longva",
    "PrefillOutput": "inference_longva",
    "ScoreOutput": "inference_longva",
    "LongVAProcessor": "processing_longva",
    "LongVAImageProcessor": "image_processing_longva",
    "LongVAVideoProcessor": "video_processing_longva",
}
#: names this package exported before the checkpoint helpers left ``models/`` (one release, deprecated)
_MOVED = {
    "ensure_tiny_checkpoint": "longva_plugins.testing",
    "make_tiny_checkpoint": "longva_plugins.testing",
    "nano_checkpoint": "longva_plugins.nano.checkpoint",
}


def register_auto_config(configuration_auto) -> None:
    """``AutoConfig``: ``model_type`` ``llava_qwen`` -> :class:`LongVAConfig`."""
    from longva_plugins.models.longva.configuration_longva import LongVAConfig

    configuration_auto.AutoConfig.register(LongVAConfig.model_type, LongVAConfig, exist_ok=True)


def register_auto_models(modeling_auto) -> None:
    """``AutoModelForImageTextToText`` and ``AutoModelForCausalLM``: :class:`LongVAConfig` -> the model."""
    from longva_plugins.models.longva.configuration_longva import LongVAConfig
    from longva_plugins.models.longva.modeling_longva import LongVAForConditionalGeneration

    for auto in (modeling_auto.AutoModelForImageTextToText, modeling_auto.AutoModelForCausalLM):
        auto.register(LongVAConfig, LongVAForConditionalGeneration, exist_ok=True)


def register_auto_processor(processing_auto) -> None:
    """``AutoProcessor``: :class:`LongVAConfig` -> :class:`LongVAProcessor`."""
    from longva_plugins.models.longva.configuration_longva import LongVAConfig
    from longva_plugins.models.longva.processing_longva import LongVAProcessor

    processing_auto.AutoProcessor.register(LongVAConfig, LongVAProcessor, exist_ok=True)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    if name in _MOVED:
        from longva_plugins._deprecated import warn_moved

        warn_moved(f"{__name__}.{name}", f"{_MOVED[name]}.{name}")
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load on first use
    from longva_plugins.models.longva.configuration_longva import LongVAConfig, unires_pinpoints
    from longva_plugins.models.longva.image_processing_longva import LongVAImageProcessor
    from longva_plugins.models.longva.inference_longva import LongVideoMixin, PrefillOutput, ScoreOutput
    from longva_plugins.models.longva.modeling_longva import (
        IMAGE_TOKEN_INDEX,
        LongVAForCausalLM,
        LongVAForConditionalGeneration,
        LongVAProjector,
    )
    from longva_plugins.models.longva.processing_longva import LongVAProcessor
    from longva_plugins.models.longva.video_processing_longva import LongVAVideoProcessor


from longva_plugins._startup import watch_transformers_auto  # noqa: E402  (cheap: no transformers import)

watch_transformers_auto()

__all__ = [
    "IMAGE_TOKEN_INDEX",
    "LongVAConfig",
    "LongVAForCausalLM",
    "LongVAForConditionalGeneration",
    "LongVAImageProcessor",
    "LongVAProcessor",
    "LongVAProjector",
    "LongVAVideoProcessor",
    "LongVideoMixin",
    "PrefillOutput",
    "ScoreOutput",
    "register_auto_config",
    "register_auto_models",
    "register_auto_processor",
    "unires_pinpoints",
]
assert set(__all__) == set(_EXPORTS) | {"register_auto_config", "register_auto_models", "register_auto_processor"}
