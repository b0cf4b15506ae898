"""Assembling and running a LongVA training job: :class:`LongVATrainingConfig` (what to train) and
``transformers.TrainingArguments`` (how), as ``longva-plugins train`` and LLaVA-NeXT's ``train.py``
take them."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import torch

from longva_plugins.errors import SettingError
from longva_plugins.training.config import LongVATrainingConfig, parse_training_config
from longva_plugins.training.data import DataCollatorForLongVA, LLaVAConversationDataset
from longva_plugins.training.hooks import apply_longva_hooks
from longva_plugins.training.peft_utils import apply_lora, base_model, set_trainable
from longva_plugins.training.trainer import LongVATrainer

logger = logging.getLogger(__name__)
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
#: the file transformers' Trainer writes last into a checkpoint: a checkpoint without it was cut
TRAINER_STATE = "trainer_state.json"


def load_dtype(config: LongVATrainingConfig, args) -> torch.dtype:
    """The dtype the base model is loaded in: the run's half precision where the weights stay
    frozen (LoRA, projector stage) or where DeepSpeed keeps fp32 master weights; float32 for a
    full fine-tune under autocast (the optimizer needs fp32 weights)."""
    half = torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else None
    if half is None:
        return torch.float32
    if config.stage != "full" or args.deepspeed:
        return half
    return torch.float32


def keep_trainable_in_float32(model) -> int:
    """Trainable parameters in float32 (LoRA matrices, the projector) over a half-precision frozen
    base, as the optimizer needs them; returns how many were cast."""
    cast = 0
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
            cast += 1
    return cast


def checkpoint_is_complete(path: Path) -> str | None:
    """``None`` if ``path`` is a checkpoint the Trainer finished writing, else why not."""
    if not path.is_dir():
        return "no such folder"
    try:
        json.loads((path / TRAINER_STATE).read_text())
    except OSError:
        return f"no {TRAINER_STATE} (the run stopped while saving it)"
    except ValueError:
        return f"{TRAINER_STATE} is cut short (the run stopped while saving it)"
    return None


def resolve_resume(value, output_dir: str | Path) -> str | None:
    """``resume_from_checkpoint``: ``true`` -> the newest complete ``checkpoint-N`` of ``output_dir``
    (none: start from the beginning), a path -> that checkpoint (refused when incomplete),
    unset/false -> ``None``. Checkpoints cut by a kill during a save are removed, with a message."""
    if value is None or str(value).strip().lower() in ("", "false", "no", "0", "none"):
        return None
    if str(value).strip().lower() in ("true", "yes", "1", "last"):
        folder = Path(output_dir)
        found = sorted(((int(m.group(1)), p) for p in folder.glob("checkpoint-*")
                        if (m := _CHECKPOINT.match(p.name)) and p.is_dir()), reverse=True)
        for _, path in found:
            why = checkpoint_is_complete(path)
            if why is None:
                return str(path)
            logger.warning("removing %s, which cannot be resumed from: %s", path, why)
            shutil.rmtree(path, ignore_errors=True)
        logger.warning("resume_from_checkpoint=true: no checkpoint in %s yet; starting from the beginning", folder)
        return None
    why = checkpoint_is_complete(Path(value))
    if why is not None:
        raise SettingError(f"resume_from_checkpoint={value}: {why}; name a complete checkpoint-N folder or use true")
    return str(value)


def join_sequence_parallel_group(config: LongVATrainingConfig, args):
    """With ``sequence_parallel: S > 1``: the group of S consecutive ranks this rank shares its
    samples with (set as the ring kernels' group); ``None`` otherwise. Settings that cannot run are
    refused before the model loads."""
    size = config.sequence_parallel
    if size == 1:
        return None
    world = args.world_size  # (initialises the process group torchrun describes)
    if world % size:
        raise SettingError(f"sequence_parallel={size} does not divide the {world} ranks of this run; use a divisor "
                           f"of {world} (torchrun --nproc_per_node)")
    if args.per_device_train_batch_size != 1:
        raise SettingError(f"sequence_parallel={size} shards one sample at a time: per_device_train_batch_size="
                           f"{args.per_device_train_batch_size} is not allowed; use 1 (and gradient_accumulation_steps "
                           "for larger batches)")
    if args.deepspeed or args.fsdp:
        raise SettingError(f"sequence_parallel={size} runs under DDP; it does not combine with deepspeed / fsdp yet")
    from longva_plugins.distributed import consecutive_groups, set_sequence_parallel_group

    group = consecutive_groups(world, size)[args.process_index // size]
    set_sequence_parallel_group(group)
    return group


def quantization_config(config: LongVATrainingConfig, args):
    """QLoRA's 4-bit NF4 base (double quantisation, compute in the run's half precision), the tower,
    projector and LM head left unquantised; ``None`` without ``load_in_4bit``. Refused, naming the
    setting, where it cannot run (no CUDA device, no bitsandbytes)."""
    if not config.load_in_4bit:
        return None
    import importlib.util

    if not torch.cuda.is_available():
        raise SettingError("load_in_4bit=true needs a CUDA device (bitsandbytes' 4-bit kernels); this machine has "
                           "none -- drop load_in_4bit")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise SettingError("load_in_4bit=true needs bitsandbytes: pip install 'longva-plugins[qlora]'")
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.float16 if args.fp16 else torch.bfloat16,
                              llm_int8_skip_modules=["vision_tower", "mm_projector", "lm_head"])


def build_trainer(config: LongVATrainingConfig, args=None):
    """A :class:`LongVATrainer` for ``config`` and ``args`` (``TrainingArguments``; LLaVA's defaults
    when omitted)."""
    from longva_plugins.models.longva import LongVAForConditionalGeneration, LongVAProcessor

    if args is None:
        config, args = parse_training_config(config.to_dict())
    config.check_complete()
    group = join_sequence_parallel_group(config, args)
    torch.manual_seed(args.seed)
    attention = None
    if group is not None:
        from longva_plugins.attention import ZIGZAG  # (registers the ring attention names)

        attention = ZIGZAG
    quantized = quantization_config(config, args)
    extra = {"quantization_config": quantized, "device_map": {"": args.local_process_index}} if quantized else {}
    model = LongVAForConditionalGeneration.from_pretrained(config.model_name_or_path, dtype=load_dtype(config, args),
                                                           attn_implementation=attention, **extra)
    processor = LongVAProcessor.from_pretrained(config.model_name_or_path)
    if config.stage == "lora":
        for param in model.parameters():
            param.requires_grad = False
        if quantized:
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        model = apply_lora(model, config)
    else:
        set_trainable(model, config)
    keep_trainable_in_float32(model)
    model.config.use_cache = False  # no KV cache in training forwards (LLaVA's train.py; restored before saving)
    base_model(model).logits_at_labels_only = True  # the LM head only where a loss is taken
    max_length = config.model_max_length or getattr(model.config, "max_position_embeddings", None)
    dataset = LLaVAConversationDataset(config.data_path, processor, config.media_root, config.max_frames,
                                       config.on_bad_sample, model_max_length=max_length)
    try:
        trainer = LongVATrainer(model=model, args=args, train_dataset=dataset,
                                data_collator=DataCollatorForLongVA(processor.pad_token_id or 0,
                                                                    pack_length=max_length if config.packing else None),
                                processing_class=processor.tokenizer, longva_config=config, sequence_parallel_group=group)
    except ValueError as exc:  # the Trainer's own refusal of a combination of settings
        raise SettingError(f"training settings refused by transformers' Trainer: {exc}") from exc
    if args.fsdp and not trainer.is_fsdp_enabled:
        raise SettingError(f"fsdp={args.fsdp}: accelerate runs FSDP on GPUs only; here ({args.device}) this run would "
                           "silently be plain data parallel -- drop fsdp, or run on CUDA devices")
    return apply_longva_hooks(trainer, config.stage)


def train(config: LongVATrainingConfig, args=None):
    """Train (resuming per ``args.resume_from_checkpoint``) and save into ``args.output_dir``: the
    adapter (+ projector) for LoRA, the projector for stage ``projector``, the whole model for
    ``full``. Returns the trainer."""
    trainer = build_trainer(config, args)
    resume = resolve_resume(trainer.args.resume_from_checkpoint, trainer.args.output_dir)
    trainer.train(resume_from_checkpoint=resume)
    base_model(trainer.model).config.use_cache = True
    trainer.save_model(trainer.args.output_dir)
    return trainer


__all__ = ["build_trainer", "checkpoint_is_complete", "join_sequence_parallel_group", "quantization_config", "keep_trainable_in_float32", "load_dtype", "resolve_resume",
           "train"]
