"""LongVA (arXiv 2406.16852) on Hugging Face transformers."""

from transformers import AutoConfig, AutoModelForCausalLM

from longva_plugins.models.longva.configuration_longva import LongVAConfig, unires_pinpoints
from longva_plugins.models.longva.modeling_longva import (
    IMAGE_TOKEN_INDEX,
    LongVAForCausalLM,
    LongVAProjector,
    PrefillOutput,
    ScoreOutput,
)
from longva_plugins.models.longva.processing_longva import LongVAImageProcessor, LongVAProcessor
from longva_plugins.models.longva.nano import nano_checkpoint
from longva_plugins.models.longva.tiny import ensure_tiny_checkpoint, make_tiny_checkpoint

# Public registries: AutoConfig / AutoModelForCausalLM resolve "llava_qwen" checkpoints to LongVA.
try:
    AutoConfig.register(LongVAConfig.model_type, LongVAConfig)
    AutoModelForCausalLM.register(LongVAConfig, LongVAForCausalLM)
except ValueError:  # already registered (module reloaded)
    pass

__all__ = [
    "IMAGE_TOKEN_INDEX",
    "LongVAConfig",
    "LongVAForCausalLM",
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
