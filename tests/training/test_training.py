"""Training on the tiny checkpoint: template masks, the config surface (LongVA + TrainingArguments),
the standard forward's batches, LoRA, precision, gradient checkpointing, saving/merging, hooks on a
foreign Trainer."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from longva_plugins.errors import DataError, SettingError
from longva_plugins.training.config import LongVATrainingConfig, parse_training_config
from longva_plugins.training.data import IGNORE_INDEX, DataCollatorForLongVA, LLaVAConversationDataset, tokenize_conversation

sys.path.insert(0, str(Path(__file__).resolve().parent))
from training_data import media_records  # noqa: E402


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
    records = media_records(root) + [
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
    with pytest.raises(SettingError, match="model_name_or_path is not set"):
        LongVATrainingConfig().check_complete()


def test_config_takes_every_training_argument_over_llava_defaults():
    config, args = parse_training_config({"model_name_or_path": "m", "data_path": "d", "stage": "projector",
                                          "max_steps": 3, "save_total_limit": 2},
                                         ["--learning_rate", "1e-4", "--per_device_train_batch_size", "2", "--bf16", "false"])
    assert (config.stage, args.max_steps, args.save_total_limit, args.per_device_train_batch_size) == ("projector", 3, 2, 2)
    assert args.learning_rate == 1e-4 and not args.bf16, "the command line wins over the file"
    assert args.lr_scheduler_type.value == "cosine" and args.warmup_steps == 0.03 and args.weight_decay == 0.0
    assert args.save_strategy == "steps" and args.report_to == [] and args.remove_unused_columns is False
    _, args = parse_training_config({"model_name_or_path": "m", "data_path": "d", "stage": "projector"})
    assert args.learning_rate == 1e-3, "the stage's LLaVA learning rate where none is set"
    _, args = parse_training_config({"lr_scheduler_type": "constant", "warmup_steps": 0})
    assert args.lr_scheduler_type.value == "constant" and args.warmup_steps == 0


@pytest.mark.parametrize("data,argv,message", [
    ({"learnign_rate": 1e-4}, [], r"unknown key 'learnign_rate'; did you mean 'learning_rate'\?"),
    ({}, ["--lora_rr", "8"], r"unknown key 'lora_rr'; did you mean 'lora_r'\?"),
    ({"warmup_ratio": 0.03}, [], r"'warmup_ratio'; did you mean 'warmup_steps'"),
    ({}, ["--max_steps", "many"], r"--max_steps.*invalid int value: 'many'"),
    ({"lr_scheduler_type": "cosinus"}, [], r"cosinus is not a valid SchedulerType"),
    ({"on_bad_sample": "ignore"}, [], r"on_bad_sample='ignore' is not allowed"),
])
def test_a_wrong_setting_is_refused_naming_it(data, argv, message):
    with pytest.raises(SettingError, match=message):
        parse_training_config(data, argv)


def _config(tiny, dataset_file, tmp_path, **kw):
    path, _ = tiny
    base = dict(model_name_or_path=str(path), data_path=str(dataset_file), output_dir=str(tmp_path / "out"),
                stage="lora", lora_r=8, lora_alpha=16, lora_dropout=0.0, max_steps=12, learning_rate=5e-3,
                max_frames=2, group_by_modality_length=True, lr_scheduler_type="constant", warmup_steps=0,
                save_strategy="no")
    base.update(kw)
    return parse_training_config(base)


def _batch(trainer):
    dataset = trainer.train_dataset
    return trainer.data_collator([dataset[i] for i in range(len(dataset))])


def test_batches_are_the_standard_forward_inputs_equal_to_the_long_video_path(tiny, dataset_file):
    """The collated batch drives ``model(**batch)``; its loss equals the one of each sample built by
    hand on the long-video path (embed_multimodal over encoded visuals), token for token."""
    from longva_plugins.models.longva import LongVAForConditionalGeneration

    path, processor = tiny
    dataset = LLaVAConversationDataset(dataset_file, processor, max_frames=2)
    examples = [dataset[i] for i in range(len(dataset))]
    batch = DataCollatorForLongVA(processor.pad_token_id)(examples)
    assert [e["modality"] for e in examples] == ["image", "video", "text"]
    assert set(batch) == {"input_ids", "labels", "attention_mask", "pixel_values", "image_grids",
                          "pixel_values_videos", "video_grids"}
    model = LongVAForConditionalGeneration.from_pretrained(path).eval()
    with torch.no_grad():
        loss = model(**batch).loss
        total, count = 0.0, 0
        for example in examples:
            ids, labels = tokenize_conversation(processor, dataset.records[examples.index(example)]["conversations"])
            visual = []
            if "pixel_values" in example:
                visual = [model.encode_anyres(example["pixel_values"], tuple(example["image_grids"][0].tolist()))]
            elif "pixel_values_videos" in example:
                visual = [model.encode_video(example["pixel_values_videos"])]
            embeds = model.embed_multimodal(ids, visual)
            expanded = torch.cat([torch.full((v.shape[0],), IGNORE_INDEX) for v in visual] or [torch.empty(0, dtype=torch.long)])
            where = (ids == -200).nonzero().flatten().tolist()
            full = torch.cat([labels[:where[0]], expanded, labels[where[0] + 1:]]) if where else labels
            assert torch.equal(full, example["labels"])
            logits = model(inputs_embeds=embeds).logits[0, :-1]
            target = full[1:]
            keep = target != IGNORE_INDEX
            total += torch.nn.functional.cross_entropy(logits[keep].float(), target[keep], reduction="sum").item()
            count += int(keep.sum())
    assert abs(loss.item() - total / count) < 1e-4, (loss.item(), total / count)


def test_a_sample_longer_than_model_max_length_is_skipped_by_id_or_stops(tiny, dataset_file, caplog):
    """Never truncated: skipped by id (the next sample is served, the skip logged and counted)
    or, with on_bad_sample=error, the run stops naming the sample."""
    _, processor = tiny
    dataset = LLaVAConversationDataset(dataset_file, processor, max_frames=2, model_max_length=60)
    lengths = {}
    for i in range(len(dataset)):
        example = dataset[i]
        lengths[i] = example["input_ids"].shape[0]
    assert all(n <= 60 for n in lengths.values())
    assert {i for i, _ in dataset.skipped} >= {"img", "vid"}, dataset.skipped
    assert "exceed model_max_length=60" in caplog.text
    good = dataset_file.parent / "good.json"
    good.write_text(json.dumps(dataset.records))
    strict = LLaVAConversationDataset(good, processor, max_frames=2, model_max_length=60, on_bad_sample="error")
    with pytest.raises(DataError, match=r"sample img: \d+ tokens .* exceed model_max_length=60"):
        strict[0]


def test_lora_run_lowers_loss_and_trains_only_lora_and_projector(tiny, dataset_file, tmp_path):
    from longva_plugins.models.longva import LongVAForCausalLM
    from longva_plugins.training.run import build_trainer

    config, args = _config(tiny, dataset_file, tmp_path)
    trainer = build_trainer(config, args)
    model = trainer.model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    batch = _batch(trainer)
    with torch.no_grad():
        loss_before = model(**batch).loss.item()
    trainer.train()
    with torch.no_grad():
        loss_after = model.eval()(**batch).loss.item()
    assert loss_after < loss_before, (loss_before, loss_after)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed and all("lora_" in n or "mm_projector" in n for n in changed), sorted(changed)[:5]
    assert any("mm_projector" in n for n in changed) and any("lora_" in n for n in changed)
    frozen = [n for n in before if "vision_tower" in n or ("lora_" not in n and "mm_projector" not in n)]
    assert all(torch.equal(dict(model.named_parameters())[n].detach(), before[n]) for n in frozen)

    # save -> reload gives the same logits; merged weights give the same logits as adapter + base
    trainer.save_model(args.output_dir)
    assert (Path(args.output_dir) / "adapter_config.json").is_file()
    from longva_plugins.training.peft_utils import load_adapter_into

    with torch.no_grad():
        want = model(**batch).logits
        base = LongVAForCausalLM.from_pretrained(config.model_name_or_path)
        reloaded = load_adapter_into(base, args.output_dir, merge=False).eval()
        torch.testing.assert_close(reloaded(**batch).logits, want, atol=1e-5, rtol=0)
        merged = load_adapter_into(LongVAForCausalLM.from_pretrained(config.model_name_or_path), args.output_dir, merge=True)
        torch.testing.assert_close(merged(**batch).logits, want, atol=1e-4, rtol=0)


def test_bf16_runs_load_the_frozen_base_in_bf16_and_train_in_fp32(tiny, dataset_file, tmp_path):
    from longva_plugins.training.run import build_trainer

    config, args = _config(tiny, dataset_file, tmp_path, bf16=True, max_steps=2)
    trainer = build_trainer(config, args)
    trainable = {n: p.dtype for n, p in trainer.model.named_parameters() if p.requires_grad}
    frozen = {n: p.dtype for n, p in trainer.model.named_parameters() if not p.requires_grad}
    assert trainable and set(trainable.values()) == {torch.float32}, "LoRA and the projector train in fp32"
    assert set(frozen.values()) == {torch.bfloat16}, "the frozen base is never upcast"
    result = trainer.train()
    assert torch.isfinite(torch.tensor(result.training_loss))


def test_gradient_checkpointing_gives_the_same_steps(tiny, dataset_file, tmp_path):
    """Gradient checkpointing of the language model and the vision tower (trained here) changes
    memory, not the result: the same losses and weights after 3 steps."""
    from longva_plugins.training.run import build_trainer

    runs = []
    for checkpointing in (False, True):
        config, args = _config(tiny, dataset_file, tmp_path / str(checkpointing), max_steps=3, tune_vision_tower=True,
                               activation_checkpointing=checkpointing)
        trainer = build_trainer(config, args)
        trainer.train()
        flags = {n: m.gradient_checkpointing for n, m in trainer.model.named_modules() if hasattr(m, "gradient_checkpointing")}
        assert any("vision_tower" in n for n in flags) and any("layers" in n for n in flags)
        assert all(flag == checkpointing for flag in flags.values()), flags
        losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
        runs.append((losses, {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}))
    assert runs[0][0] == pytest.approx(runs[1][0], abs=1e-5)
    for name, value in runs[0][1].items():
        torch.testing.assert_close(runs[1][1][name], value, atol=1e-5, rtol=0)


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

    config, args = _config(tiny, dataset_file, tmp_path, stage="projector", tune_vision_tower=True,
                           mm_vision_tower_lr=1e-2, max_steps=2)
    trainer = train(config, args)
    before = {n: p.detach().clone() for n, p in build_trainer_reference(config).named_parameters()}
    after = dict(trainer.model.named_parameters())
    changed = {n for n, p in after.items() if not torch.equal(p.detach(), before[n])}
    assert any("vision_tower" in n for n in changed) and any("mm_projector" in n for n in changed)
    assert all("vision_tower" in n or "mm_projector" in n for n in changed), sorted(changed)[:5]
    out = Path(args.output_dir)
    tower = load_file(out / "vision_tower.safetensors")
    projector = load_file(out / "mm_projector.safetensors")
    assert tower and all("vision_tower" in k for k in tower) and all("mm_projector" in k for k in projector)
    for name, value in {**tower, **projector}.items():
        assert torch.equal(value, after[name].detach()), name


def build_trainer_reference(config):
    from longva_plugins.models.longva import LongVAForCausalLM

    return LongVAForCausalLM.from_pretrained(config.model_name_or_path)


def test_merge_folds_a_lora_run_into_a_checkpoint_the_auto_classes_load(tiny, dataset_file, tmp_path):
    """``longva-plugins merge CHECKPOINT TRAINED OUT``: the merged checkpoint (reference layout, the
    base's tokenizer and tower files) gives the adapter-and-base logits through
    AutoModelForImageTextToText and the class the lmms-eval adapter loads."""
    from transformers import AutoModelForImageTextToText

    from longva_plugins.cli import main
    from longva_plugins.models.longva import LongVAForConditionalGeneration
    from longva_plugins.training.run import train

    config, args = _config(tiny, dataset_file, tmp_path, max_steps=3)
    trainer = train(config, args)
    batch = _batch(trainer)
    with torch.no_grad():
        want = trainer.model.eval()(**batch).logits
    out = tmp_path / "merged"
    assert main(["merge", config.model_name_or_path, args.output_dir, str(out)]) == 0
    base_files = {p.name for p in Path(config.model_name_or_path).iterdir() if not p.name.startswith("model")}
    assert base_files <= {p.name for p in out.iterdir()}, "tokenizer, tower config and the rest come along"
    for loader in (AutoModelForImageTextToText.from_pretrained, LongVAForConditionalGeneration.from_pretrained):
        model = loader(out).eval()
        assert type(model) is LongVAForConditionalGeneration
        with torch.no_grad():
            torch.testing.assert_close(model(**batch).logits, want, atol=1e-4, rtol=0)
    from longva_plugins.errors import CheckpointError
    from longva_plugins.training.merge import merge

    with pytest.raises(CheckpointError, match="not the output of a longva-plugins training run"):
        merge(config.model_name_or_path, tmp_path, tmp_path / "never")


@pytest.mark.parametrize("pack_length", [2000, 360])
def test_packing_gives_the_unpacked_loss_and_gradients(tiny, dataset_file, pack_length):
    """First-fit packing (one row for the whole batch, or rows of 360 tokens: image + text, video):
    no attention across samples (position ids restart), so the loss and the gradients equal the
    padded batch's."""
    from longva_plugins.models.longva import LongVAForConditionalGeneration

    path, processor = tiny
    dataset = LLaVAConversationDataset(dataset_file, processor, max_frames=2)
    examples = [dataset[i] for i in range(len(dataset))]
    padded = DataCollatorForLongVA(processor.pad_token_id)(examples)
    packed = DataCollatorForLongVA(processor.pad_token_id, pack_length=pack_length)(examples)
    assert "attention_mask" not in packed and packed["input_ids"].shape[0] == (1 if pack_length == 2000 else 2)
    assert (packed["position_ids"] == 0).sum() >= len(examples), "positions restart at every sample"
    assert packed["input_ids"].shape[0] * packed["input_ids"].shape[1] < padded["input_ids"].numel()
    model = LongVAForConditionalGeneration.from_pretrained(path)
    results = []
    for batch in (padded, packed):
        model.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None and "layers.0." in n}
        results.append((loss.item(), grads))
    assert results[1][0] == pytest.approx(results[0][0], abs=1e-5)
    for name, grad in results[0][1].items():
        torch.testing.assert_close(results[1][1][name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_deepspeed_configs_are_checked_before_the_run(tmp_path):
    """The shipped ZeRO-2/3 configs validate; a broken one, a stage DeepSpeed lacks, or a missing
    package is refused before the first step, naming the setting."""
    import importlib.util

    from longva_plugins.training.config import check_deepspeed_config

    examples = Path(__file__).resolve().parents[2] / "examples" / "deepspeed"
    assert [check_deepspeed_config(examples / name, require_package=False)["zero_optimization"]["stage"]
            for name in ("zero2.json", "zero3.json")] == [2, 3]
    bad = tmp_path / "zero5.json"
    bad.write_text('{"zero_optimization": {"stage": 5}}')
    with pytest.raises(SettingError, match=r"deepspeed=.*zero5.json: zero_optimization.stage=5 is not allowed"):
        parse_training_config({"deepspeed": str(bad)})
    cut = tmp_path / "cut.json"
    cut.write_text('{"zero_optimization": {"stage": 3')
    with pytest.raises(SettingError, match="is not valid JSON"):
        parse_training_config({"deepspeed": str(cut)})
    if importlib.util.find_spec("deepspeed") is None:
        with pytest.raises(SettingError, match="the deepspeed package is not installed"):
            parse_training_config({"deepspeed": str(examples / "zero3.json")})


def test_logits_at_labels_only_give_the_same_loss_and_gradients(tiny, dataset_file):
    """Training forwards compute the LM head and the fp32 logits only where a label is (the answers):
    the loss and every gradient equal the full-logits forward's, with and without the Trainer's
    ``num_items_in_batch``; evaluation forwards keep every position's logits."""
    from longva_plugins.models.longva import LongVAForConditionalGeneration

    path, processor = tiny
    dataset = LLaVAConversationDataset(dataset_file, processor, max_frames=2)
    batch = DataCollatorForLongVA(processor.pad_token_id)([dataset[i] for i in range(len(dataset))])
    model = LongVAForConditionalGeneration.from_pretrained(path).train()
    results = []
    for at_labels, extra in ((False, {}), (True, {}), (False, {"num_items_in_batch": 7}), (True, {"num_items_in_batch": 7})):
        model.logits_at_labels_only = at_labels
        model.zero_grad()
        out = model(**batch, **extra)
        out.loss.backward()
        results.append((out.loss.item(), out.logits.shape, {n: p.grad.clone() for n, p in model.named_parameters()
                                                           if p.grad is not None}))
    labelled = int((batch["labels"][:, 1:] != -100).sum())
    assert results[1][1] == (labelled, model.config.vocab_size) and results[0][1][:2] == batch["input_ids"].shape
    for full, slim in ((results[0], results[1]), (results[2], results[3])):
        assert slim[0] == pytest.approx(full[0], rel=1e-6)
        for name, grad in full[2].items():
            torch.testing.assert_close(slim[2][name], grad, atol=1e-6, rtol=1e-5, msg=name)
    model.eval()
    model.logits_at_labels_only = True
    with torch.no_grad():
        assert model(**batch).logits.shape[:2] == batch["input_ids"].shape, "evaluation keeps every position"


def test_qlora_is_refused_where_it_cannot_run(tiny, dataset_file, tmp_path):
    """QLoRA (``load_in_4bit``) needs CUDA and bitsandbytes: elsewhere the run stops before loading,
    naming the setting; it quantises a frozen base, so only stage lora takes it."""
    from longva_plugins.training.run import build_trainer

    with pytest.raises(SettingError, match=r"load_in_4bit=true quantises a frozen base: stage='full'"):
        parse_training_config({"load_in_4bit": True, "stage": "full"})
    if torch.cuda.is_available():
        pytest.skip("CUDA present: QLoRA runs in benchmarks/gpu_check.sh (training_engines)")
    config, args = _config(tiny, dataset_file, tmp_path, load_in_4bit=True)
    with pytest.raises(SettingError, match="load_in_4bit=true needs a CUDA device"):
        build_trainer(config, args)
