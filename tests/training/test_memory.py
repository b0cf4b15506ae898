"""The training memory model's parameter counts against real models (the terms it multiplies)."""

from __future__ import annotations

import pytest

from longva_plugins.training.memory import (
    LONGVA_7B,
    estimate,
    language_model_parameters,
    lora_parameters,
    projector_parameters,
)


@pytest.fixture(scope="module")
def tiny_model():
    from longva_plugins.models.longva import LongVAForConditionalGeneration
    from longva_plugins.testing import ensure_tiny_checkpoint

    return LongVAForConditionalGeneration.from_pretrained(ensure_tiny_checkpoint())


def _dims(config):
    return dict(layers=config.num_hidden_layers, hidden=config.hidden_size, intermediate=config.intermediate_size,
                heads=config.num_attention_heads, kv_heads=config.num_key_value_heads)


def test_parameter_counts_equal_the_model(tiny_model):
    config = tiny_model.config
    lm = sum(p.numel() for n, p in tiny_model.named_parameters() if "vision_tower" not in n and "mm_projector" not in n)
    assert language_model_parameters(**_dims(config), vocab=config.vocab_size, tied=config.tie_word_embeddings) == lm
    projector = sum(p.numel() for p in tiny_model.model.mm_projector.parameters())
    assert projector_parameters(config.mm_hidden_size, config.hidden_size) == projector


def test_lora_count_equals_what_peft_trains(tiny_model):
    from longva_plugins.training.config import LongVATrainingConfig
    from longva_plugins.training.peft_utils import apply_lora

    config = tiny_model.config
    peft = apply_lora(tiny_model, LongVATrainingConfig(lora_r=8))
    lora = sum(p.numel() for n, p in peft.named_parameters() if "lora_" in n)
    assert lora_parameters(**_dims(config), r=8) == lora


def test_longva_7b_figures():
    """Qwen2-7B's published size (7.6B parameters with the LM head) and the model's verdicts."""
    lm = language_model_parameters(**{k: LONGVA_7B[k] for k in ("layers", "hidden", "intermediate", "heads",
                                                                "kv_heads", "vocab")})
    assert 7.5e9 < lm < 7.7e9
    gib = lambda e: e.total / 2**30  # noqa: E731
    assert gib(estimate(64)) < 80, "LoRA on one 80 GB GPU at 64 frames"
    assert gib(estimate(1024)) < 80 < gib(estimate(1280))
    assert gib(estimate(256, labelled_tokens=None)) - gib(estimate(256)) > 40, "logits at every position"
    assert gib(estimate(1024, sequence_parallel=4, gpus=4)) < gib(estimate(1024)) * 0.7
    assert gib(estimate(256, stage="full", gpus=8, zero=3)) < 80
