"""Training LongVA: LLaVA-format data, LLaVA's trainer design on transformers.Trainer, PEFT LoRA.

Names are imported lazily so that loading the plugin manager does not import ``Trainer``.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "LongVATrainingConfig": "config", "parse_training_config": "config", "LLaVAConversationDataset": "data",
    "DataCollatorForLongVA": "data", "tokenize_conversation": "data", "apply_longva_hooks": "hooks", "apply_lora": "peft_utils",
    "load_adapter_into": "peft_utils", "set_trainable": "peft_utils", "LongVATrainer": "trainer",
    "ModalityLengthGroupedSampler": "trainer", "build_trainer": "run", "train": "run",
}


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(name)


__all__ = sorted(_EXPORTS)
