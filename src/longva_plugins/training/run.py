"""Assembling and running a LongVA training job from a :class:`LongVATrainingConfig`."""

from __future__ import annotations

import logging

import torch
from transformers import TrainingArguments

from longva_plugins.training.config import LongVATrainingConfig
from longva_plugins.training.data import LLaVAConversationDataset, collate
from longva_plugins.training.hooks import apply_longva_hooks
from longva_plugins.training.peft_utils import apply_lora, set_trainable
from longva_plugins.training.trainer import LongVATrainer

logger = logging.getLogger(__name__)


def build_trainer(config: LongVATrainingConfig):
    from longva_plugins.models.longva import LongVAForCausalLM, LongVAProcessor

    torch.manual_seed(config.seed)
    model = LongVAForCausalLM.from_pretrained(config.model_name_or_path, torch_dtype=torch.float32)
    processor = LongVAProcessor.from_pretrained(config.model_name_or_path)
    if config.stage == "lora":
        for param in model.parameters():
            param.requires_grad = False
        model = apply_lora(model, config)
    else:
        set_trainable(model, config)
    dataset = LLaVAConversationDataset(config.data_path, processor, config.media_root, config.max_frames,
                                       config.on_bad_sample)
    args = TrainingArguments(
        output_dir=config.output_dir, learning_rate=config.learning_rate, num_train_epochs=config.num_train_epochs,
        max_steps=config.max_steps, per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps, logging_steps=config.logging_steps,
        save_strategy="no", report_to=[], seed=config.seed, remove_unused_columns=False, use_cpu=not torch.cuda.is_available(),
        disable_tqdm=False, lr_scheduler_type="constant", dataloader_num_workers=config.dataloader_num_workers,
    )
    trainer = LongVATrainer(model=model, args=args, train_dataset=dataset, data_collator=collate,
                            processing_class=processor.tokenizer, longva_config=config)
    return apply_longva_hooks(trainer, config.stage)


def train(config: LongVATrainingConfig):
    """Train and save: the adapter (+ projector) for LoRA, the projector for stage ``projector``, the
    whole model for ``full``. Returns the trainer."""
    trainer = build_trainer(config)
    trainer.train()
    if config.stage == "lora":
        trainer.model.save_pretrained(config.output_dir)
    else:
        trainer.save_model(config.output_dir)
    return trainer


__all__ = ["build_trainer", "train"]
