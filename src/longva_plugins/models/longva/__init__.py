"""LongVA (arXiv 2406.16852) on Hugging Face transformers."""

from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor

from longva_plugins.models.longva.configuration_longva import LongVAConfig, unires_pinpoints
from longva_plugins.models.longva.modeling_longva import (
    IMAGE_TOKEN_INDEX,
    LongVAForCausalLM,
    LongVAForConditionalGeneration,
    LongVAProjector,
    PrefillOutput,
    ScoreOutput,
)
from longva_plugins.models.longva.processing_longva import LongVAImageProcessor, LongVAProcessor
from longva_plugins.models.longva.nano import nano_checkpoint
from longva_plugins.models.longva.tiny import ensure_tiny_checkpoint, make_tiny_checkpoint

# Public registries: AutoConfig, AutoModelForImageTextToText / AutoModelForCausalLM and
# AutoProcessor resolve "llava_qwen" checkpoints to LongVA. (A LongVA checkpoint typed "qwen2", as
# the hub copy of LongVA-7B is, stays transformers' Qwen2 for the Auto classes -- that type is
# transformers' own; load it with LongVAForCausalLM.from_pretrained.)
for _auto, _target in ((AutoConfig, LongVAConfig), (AutoModelForImageTextToText, LongVAForConditionalGeneration),
                       (AutoModelForCausalLM, LongVAForConditionalGeneration), (AutoProcessor, LongVAProcessor)):
    _key = LongVAConfig.model_type if _auto is AutoConfig else LongVAConfig
    _auto.register(_key, _target, exist_ok=True)

__all__ = [
    "IMAGE_TOKEN_INDEX",
    "LongVAConfig",
    "LongVAForCausalLM",
    "LongVAForConditionalGeneration",
    "LongVAImageProcessor",
    "LongVAProcessor",
    "LongVAProjector",
    "ensure_tiny_checkpoint",
    "make_tiny_checkpoint",
    "nano_checkpoint",
    "PrefillOutput",
    "ScoreOutput",
    "unires_pinpoints",
]
