"""Folding a training run's output into a checkpoint in the reference layout (``longva-plugins merge``).

The result loads with ``LongVAForConditionalGeneration.from_pretrained``, transformers' Auto
classes and the lmms-eval ``longva`` model, like the checkpoint it started from:

- a LoRA run (``adapter_config.json``): the adapter merged into the language model, the projector
  (and tower) saved beside it by PEFT's ``modules_to_save`` put in place;
- a ``stage: projector`` run (``mm_projector.safetensors``, ``vision_tower.safetensors``);
- a ``stage: full`` run (``model*.safetensors``).

Every other file of the base checkpoint (tokenizer, ``vision_tower_config.json``, generation
config) is copied; the folder is written beside and renamed into place.
"""

from __future__ import annotations

import os
from pathlib import Path

from longva_plugins.errors import CheckpointError


def merge_vision_weights(checkpoint: str | os.PathLike, weights_dir: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """``checkpoint`` with the projector (and tower) a ``stage: projector`` run saved in
    ``weights_dir`` (``mm_projector.safetensors``, ``vision_tower.safetensors``), as a new checkpoint
    folder ``out_dir`` in the reference layout (written beside, then renamed into place)."""
    import torch
    from safetensors.torch import load_file

    from longva_plugins.models.longva.modeling_longva import LongVAForCausalLM

    weights = Path(weights_dir)
    state = {}
    for name in ("mm_projector.safetensors", "vision_tower.safetensors"):
        if (weights / name).is_file():
            state.update(load_file(weights / name))
    if not state:
        raise CheckpointError(f"{weights} holds neither mm_projector.safetensors nor vision_tower.safetensors")
    model = LongVAForCausalLM.from_pretrained(checkpoint, torch_dtype=torch.float32)
    known = set(model.state_dict())
    unknown = sorted(set(state) - known)
    if unknown:
        raise CheckpointError(f"{weights}: weights the model does not have: {', '.join(unknown[:5])}")
    model.load_state_dict(state, strict=False)
    return save_checkpoint(model, checkpoint, out_dir)


def merge_full_weights(checkpoint: str | os.PathLike, weights_dir: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """``checkpoint``'s folder (config, tokenizer, ...) with every weight a ``stage: full`` run saved
    in ``weights_dir``, as a new checkpoint folder ``out_dir`` (written beside, renamed into place)."""
    import torch

    from longva_plugins.models.longva.modeling_longva import LongVAForCausalLM

    if not any(Path(weights_dir).glob("model*.safetensors")):
        raise CheckpointError(f"{weights_dir} holds no model*.safetensors: not the output of a stage: full run")
    model = LongVAForCausalLM.from_pretrained(weights_dir, torch_dtype=torch.float32)
    return save_checkpoint(model, checkpoint, out_dir)


def save_checkpoint(model, source: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Save ``model``'s weights with every other file of the checkpoint folder ``source``
    (config, tokenizer, ...) as the checkpoint folder ``out_dir``, atomically."""
    import shutil

    from longva_plugins.fileio import atomic_directory

    with atomic_directory(out_dir) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns("model*.safetensors*"))
        model.save_pretrained(tmp, safe_serialization=True)
    return Path(out_dir)


def merge_lora_adapter(checkpoint: str | os.PathLike, adapter_dir: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """``checkpoint`` with the LoRA adapter of ``adapter_dir`` merged in (and the projector / tower
    trained with it), as the checkpoint folder ``out_dir``."""
    import torch

    from longva_plugins.models.longva.modeling_longva import LongVAForConditionalGeneration
    from longva_plugins.training.peft_utils import load_adapter_into

    model = LongVAForConditionalGeneration.from_pretrained(checkpoint, dtype=torch.float32)
    merged = load_adapter_into(model, adapter_dir, merge=True)
    return save_checkpoint(merged, checkpoint, out_dir)


def merge(checkpoint: str | os.PathLike, trained: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Fold what a training run saved in ``trained`` (a LoRA adapter, projector-stage weights or a
    full model) into ``checkpoint``, as ``out_dir``."""
    trained = Path(trained)
    if not trained.is_dir():
        raise CheckpointError(f"{trained}: no such folder (the output_dir of a training run)")
    if (trained / "adapter_config.json").is_file():
        return merge_lora_adapter(checkpoint, trained, out_dir)
    if (trained / "mm_projector.safetensors").is_file() or (trained / "vision_tower.safetensors").is_file():
        return merge_vision_weights(checkpoint, trained, out_dir)
    if any(trained.glob("model*.safetensors")):
        return merge_full_weights(checkpoint, trained, out_dir)
    raise CheckpointError(f"{trained} holds no adapter_config.json, mm_projector.safetensors or model*.safetensors: "
                          "not the output of a longva-plugins training run")


__all__ = ["merge", "merge_full_weights", "merge_lora_adapter", "merge_vision_weights", "save_checkpoint"]
