"""Training on the tiny checkpoint: template masks, LoRA, saving/merging, hooks on a foreign Trainer."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from longva_plugins.errors import DataError, SettingError
from longva_plugins.training.config import LongVATrainingConfig
from longva_plugins.training.data import IGNORE_INDEX, LLaVAConversationDataset, build_inputs, tokenize_conversation

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from e2e_media import write_image, write_video  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    from longva_plugins.models.longva import LongVAProcessor
    from longva_plugins.testing import ensure_tiny_checkpoint

    path = ensure_tiny_checkpoint()
    return path, LongVAProcessor.from_pretrained(path)


def test_masks_follow_the_template_multi_turn(tiny):
    _, processor = tiny
    conv = [{"from": "human", "value": "<image>\nQ1"}, {"from": "gpt", "value": "A1"},
            {"from": "human", "value": "Q2"}, {"from": "gpt", "value": "A2"}]
    ids, labels = tokenize_conversation(processor, conv)
    tok = lambda s: processor.tokenize(s).tolist()  # noqa: E731
    expected_ids, expected_labels = [], []
    for text, train in [("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n", False),
                        ("<|im_start|>user\n<image>\nQ1<|im_end|>\n<|im_start|>assistant\n", False),
                        ("A1", True), ("<|im_end|>", True), ("\n", False),
                        ("<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n", False),
                        ("A2", True), ("<|im_end|>", True), ("\n", False)]:
        expected_ids += tok(text)
        expected_labels += tok(text) if train else [IGNORE_INDEX] * len(tok(text))
    assert ids.tolist() == expected_ids and labels.tolist() == expected_labels
    assert ids.tolist().count(-200) == 1
    trained = [t for t, l in zip(ids.tolist(), labels.tolist()) if l != IGNORE_INDEX]
    assert processor.decode(trained, skip_special_tokens=False) == "A1<|im_end|>A2<|im_end|>"


@pytest.fixture(scope="module")
def dataset_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_image(root / "img.png", size=(200, 120))
    write_video(root / "clip.mp4", num_frames=6)
    records = [
        {"id": "img", "image": "img.png", "conversations": [{"from": "human", "value": "<image>\nWhat colour?"},
                                                             {"from": "gpt", "value": "red"}]},
        {"id": "vid", "video": "clip.mp4", "conversations": [{"from": "human", "value": "<image>\nWhat moves?"},
                                                              {"from": "gpt", "value": "a bar"}]},
        {"id": "txt", "conversations": [{"from": "human", "value": "Say yes."}, {"from": "gpt", "value": "yes"}]},
        {"id": "no-media", "image": "missing.png", "conversations": [{"from": "human", "value": "<image>\nx"}, {"from": "gpt", "value": "y"}]},
        {"id": "no-placeholder", "image": "img.png", "conversations": [{"from": "human", "value": "x"}, {"from": "gpt", "value": "y"}]},
        {"id": "empty", "conversations": []},
    ]
    path = root / "data.json"
    path.write_text(json.dumps(records))
    return path


def test_bad_samples_are_reported_by_id(tiny, dataset_file):
    _, processor = tiny
    ds = LLaVAConversationDataset(dataset_file, processor)
    assert len(ds) == 3
    assert {i for i, _ in ds.skipped} == {"no-media", "no-placeholder", "empty"}
    with pytest.raises(DataError, match="no-media"):
        LLaVAConversationDataset(dataset_file, processor, on_bad_sample="error")


def test_config_checks_fields_together():
    with pytest.raises(SettingError, match="stage"):
        LongVATrainingConfig("m", "d", stage="nope")
    # LLaVA's mm_tunable_parts="mm_vision_tower,mm_mlp_adapter": the projector stage may train the tower too
    assert LongVATrainingConfig("m", "d", stage="projector", tune_vision_tower=True).tune_vision_tower
    assert LongVATrainingConfig("m", "d", stage="projector").learning_rate == 1e-3


def _config(tiny, dataset_file, tmp_path, **kw):
    path, _ = tiny
    base = dict(model_name_or_path=str(path), data_path=str(dataset_file), output_dir=str(tmp_path / "out"),
                stage="lora", lora_r=8, lora_alpha=16, lora_dropout=0.0, max_steps=12, learning_rate=5e-3,
                max_frames=2, group_by_modality_length=True)
    base.update(kw)
    return LongVATrainingConfig(**base)


def test_lora_run_lowers_loss_and_trains_only_lora_and_projector(tiny, dataset_file, tmp_path):
    from longva_plugins.models.longva import LongVAForCausalLM
    from longva_plugins.training.data import collate
    from longva_plugins.training.run import build_trainer

    config = _config(tiny, dataset_file, tmp_path)
    trainer = build_trainer(config)
    model = trainer.model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    batch = collate([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
    with torch.no_grad():
        loss_before = trainer.compute_loss(model, batch).item()
    trainer.train()
    with torch.no_grad():
        loss_after = trainer.compute_loss(model.eval(), batch).item()
    assert loss_after < loss_before, (loss_before, loss_after)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed and all("lora_" in n or "mm_projector" in n for n in changed), sorted(changed)[:5]
    assert any("mm_projector" in n for n in changed) and any("lora_" in n for n in changed)
    frozen = [n for n in before if "vision_tower" in n or ("lora_" not in n and "mm_projector" not in n)]
    assert all(torch.equal(dict(model.named_parameters())[n].detach(), before[n]) for n in frozen)

    # save -> reload gives the same logits; merged weights give the same logits as adapter + base
    model.save_pretrained(config.output_dir)
    assert (Path(config.output_dir) / "adapter_config.json").is_file()
    from longva_plugins.training.peft_utils import load_adapter_into

    embeds, _, mask = build_inputs(model, batch["samples"][:1])
    with torch.no_grad():
        want = model(inputs_embeds=embeds, attention_mask=mask).logits
        base = LongVAForCausalLM.from_pretrained(config.model_name_or_path)
        reloaded = load_adapter_into(base, config.output_dir, merge=False).eval()
        torch.testing.assert_close(reloaded(inputs_embeds=embeds, attention_mask=mask).logits, want, atol=1e-5, rtol=0)
        merged = load_adapter_into(LongVAForCausalLM.from_pretrained(config.model_name_or_path), config.output_dir, merge=True)
        torch.testing.assert_close(merged(inputs_embeds=embeds, attention_mask=mask).logits, want, atol=1e-4, rtol=0)


def test_hooks_apply_to_a_trainer_that_is_not_ours(tiny):
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from longva_plugins.hookspecs import hookimpl
    from longva_plugins.plugins import get_plugin_manager
    from longva_plugins.training.hooks import apply_longva_hooks

    class Marker(TrainerCallback):
        pass

    class ThirdParty:
        @hookimpl
        def longva_trainer_callbacks(self, trainer_args, stage):
            return [Marker()]

        @hookimpl
        def longva_wrap_model(self, model, stage):
            model.wrapped_by_plugin = stage
            return model

    class SomeonesTrainer(Trainer):  # e.g. LLaVA's LLaVATrainer
        pass

    model = torch.nn.Linear(2, 2)
    trainer = SomeonesTrainer(model=model, args=TrainingArguments(output_dir="/tmp/unused", report_to=[], use_cpu=True))
    pm = get_plugin_manager()
    plugin = ThirdParty()
    pm.register(plugin, name="test-third-party-training")
    try:
        apply_longva_hooks(trainer, "lora")
    finally:
        pm.unregister(plugin)
    assert any(isinstance(cb, Marker) for cb in trainer.callback_handler.callbacks)
    assert getattr(trainer.model, "wrapped_by_plugin", None) == "lora"


def test_projector_stage_with_tower_trains_and_saves_both(tiny, dataset_file, tmp_path):
    from safetensors.torch import load_file

    from longva_plugins.training.run import train

    config = _config(tiny, dataset_file, tmp_path, stage="projector", tune_vision_tower=True, mm_vision_tower_lr=1e-2,
                     max_steps=2)
    trainer = train(config)
    before = {n: p.detach().clone() for n, p in build_trainer_reference(config).named_parameters()}
    after = dict(trainer.model.named_parameters())
    changed = {n for n, p in after.items() if not torch.equal(p.detach(), before[n])}
    assert any("vision_tower" in n for n in changed) and any("mm_projector" in n for n in changed)
    assert all("vision_tower" in n or "mm_projector" in n for n in changed), sorted(changed)[:5]
    out = Path(config.output_dir)
    tower = load_file(out / "vision_tower.safetensors")
    projector = load_file(out / "mm_projector.safetensors")
    assert tower and all("vision_tower" in k for k in tower) and all("mm_projector" in k for k in projector)
    for name, value in {**tower, **projector}.items():
        assert torch.equal(value, after[name].detach()), name


def build_trainer_reference(config):
    from longva_plugins.models.longva import LongVAForCausalLM

    return LongVAForCausalLM.from_pretrained(config.model_name_or_path)
