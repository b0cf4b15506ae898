"""LoRA through PEFT for LongVA: targets, trainable parts, saving, reloading and merging.

LoRA goes on the language model's linear layers (PEFT's ``target_modules`` meaning, contributions
of the ``longva_lora_target_modules`` hook added); the projector is fully trainable and saved
with the adapter (``modules_to_save``); the vision tower stays frozen unless asked. The rest of the
language model is frozen — never "unfrozen by mistake" as in LLaVA's ``--lora_enable`` path.
"""

from __future__ import annotations

import os

from longva_plugins.errors import CheckpointError


def lora_targets(model, config) -> str | list[str]:
    """The configured targets plus every hook contribution (a regex stays a regex if alone)."""
    from longva_plugins.plugins import get_plugin_manager

    extra = [t for contribution in get_plugin_manager().hook.longva_lora_target_modules(model=model, stage=config.stage)
             if contribution for t in contribution]
    if not extra:
        return config.lora_target_modules
    base = config.lora_target_modules
    if isinstance(base, str):
        return "|".join([f"(?:{base})"] + [f"(?:.*\\.{t})" for t in extra])
    return list(dict.fromkeys(list(base) + extra))


def apply_lora(model, config):
    """Wrap ``model`` with a PEFT LoRA adapter per ``config``; return the PEFT model."""
    from peft import LoraConfig, get_peft_model

    modules_to_save = ["mm_projector"] + (["vision_tower"] if config.tune_vision_tower else [])
    lora = LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=lora_targets(model, config), modules_to_save=modules_to_save, task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, lora)
    return peft_model


def base_model(model):
    """The model under PEFT's wrapper (the model itself when it has none)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def set_trainable(model, config) -> None:
    """Non-LoRA stages: which parameters train (projector stage: projector only)."""
    for name, param in model.named_parameters():
        if ".mm_projector." in f".{name}":
            param.requires_grad = True
        elif ".vision_tower." in f".{name}":
            param.requires_grad = config.tune_vision_tower
        else:
            param.requires_grad = config.stage == "full"


def load_adapter_into(model, adapter_dir: str | os.PathLike, merge: bool = True):
    """Apply a saved LongVA LoRA adapter (and the projector saved beside it) to ``model``."""
    from peft import PeftModel

    if not os.path.isfile(os.path.join(os.fspath(adapter_dir), "adapter_config.json")):
        raise CheckpointError(f"{adapter_dir} has no adapter_config.json: not a PEFT adapter folder")
    peft_model = PeftModel.from_pretrained(model, os.fspath(adapter_dir))
    return peft_model.merge_and_unload() if merge else peft_model


__all__ = ["apply_lora", "base_model", "load_adapter_into", "lora_targets", "set_trainable"]
