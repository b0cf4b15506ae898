"""transformers' Auto classes resolve reference-layout LongVA checkpoints (``model_type``
``llava_qwen``): the shipped nano, the tiny checkpoint and the golden fixture, whose vision towers
are described only by ``vision_tower_config.json`` beside config.json (issue 33)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "longva_tiny_a"


def _checkpoints():
    from longva_plugins.testing import ensure_tiny_checkpoint
    from longva_plugins.nano.checkpoint import nano_checkpoint

    return {"nano": nano_checkpoint(), "tiny": ensure_tiny_checkpoint(), "golden": str(GOLDEN)}


@pytest.mark.parametrize("name", ["nano", "tiny", "golden"])
def test_auto_config_and_models_resolve_llava_qwen_checkpoints(name):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

    from longva_plugins.models.longva import LongVAConfig, LongVAForCausalLM

    path = _checkpoints()[name]
    config = AutoConfig.from_pretrained(path)  # config.json alone: the tower's file is read at load
    assert isinstance(config, LongVAConfig)
    direct = LongVAForCausalLM.from_pretrained(path)
    vision = json.loads((Path(path) / "vision_tower_config.json").read_text())
    for auto in (AutoModelForImageTextToText, AutoModelForCausalLM):
        model = auto.from_pretrained(path)
        assert isinstance(model, LongVAForCausalLM)
        assert model.config.vision_config.hidden_size == vision["hidden_size"] == model.config.mm_hidden_size
        assert model.config.tokens_per_frame == direct.config.tokens_per_frame
        assert model.valid_vocab_size == direct.valid_vocab_size
        for (key, a), (_, b) in zip(model.state_dict().items(), direct.state_dict().items()):
            assert torch.equal(a, b), key


def test_auto_processor_and_vocabulary_guard_from_the_checkpoint():
    """AutoProcessor gives LongVA's processor, and the model's vocabulary guard is the checkpoint
    tokenizer's length, set at load (never by hand)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from longva_plugins.models.longva import LongVAProcessor
    from longva_plugins.nano.checkpoint import nano_checkpoint

    processor = AutoProcessor.from_pretrained(nano_checkpoint())
    assert isinstance(processor, LongVAProcessor)
    model = AutoModelForImageTextToText.from_pretrained(nano_checkpoint())
    assert model.valid_vocab_size == len(processor.tokenizer) < model.config.vocab_size


def test_a_checkpoint_without_tokenizer_has_no_guard_and_an_unknown_tower_fails_at_load(tmp_path):
    from transformers import AutoConfig, AutoModelForImageTextToText

    from longva_plugins.errors import CheckpointError

    model = AutoModelForImageTextToText.from_pretrained(str(GOLDEN))  # the fixture ships no tokenizer
    assert model.valid_vocab_size is None
    folder = tmp_path / "no-tower-file"
    shutil.copytree(GOLDEN, folder)
    (folder / "vision_tower_config.json").unlink()
    config = AutoConfig.from_pretrained(folder)
    assert config.vision_config is None  # known tower name, but not of width mm_hidden_size
    with pytest.raises(CheckpointError, match="mm_hidden_size is 32 but the vision tower"):
        AutoModelForImageTextToText.from_pretrained(folder)


def test_a_qwen2_typed_checkpoint_loads_through_the_class_and_says_why_auto_cannot(tmp_path, caplog):
    """The hub copy of LongVA-7B says model_type 'qwen2': the class loads it; the message names
    the reason the Auto classes give transformers' Qwen2 instead, and the two ways out."""
    import logging

    from longva_plugins.models.longva import LongVAForConditionalGeneration
    from longva_plugins.testing import ensure_tiny_checkpoint

    folder = tmp_path / "qwen2-typed"
    shutil.copytree(ensure_tiny_checkpoint(), folder)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "qwen2"
    (folder / "config.json").write_text(json.dumps(config))
    with caplog.at_level(logging.WARNING):
        model = LongVAForConditionalGeneration.from_pretrained(folder)
    assert model.config.model_type == "llava_qwen" and model.vision_tower is not None
    assert "model_type 'qwen2'" in caplog.text and "LongVAForConditionalGeneration.from_pretrained" in caplog.text
