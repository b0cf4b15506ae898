"""Applying the package's training hooks to any ``transformers.Trainer`` (ours or e.g. LLaVA's)."""

from __future__ import annotations


def apply_longva_hooks(trainer, stage: str):
    """Add hook-contributed callbacks to ``trainer`` and let ``longva_wrap_model`` replace its model.

    Works on any ``transformers.Trainer`` subclass: it only uses ``add_callback`` and ``model``.
    Returns the trainer.
    """
    from longva_plugins.plugins import get_plugin_manager

    hook = get_plugin_manager().hook
    for callbacks in hook.longva_trainer_callbacks(trainer_args=trainer.args, stage=stage):
        for callback in callbacks or []:
            trainer.add_callback(callback)
    wrapped = hook.longva_wrap_model(model=trainer.model, stage=stage)
    if wrapped is not None:
        trainer.model = wrapped
        trainer.model_wrapped = wrapped
    return trainer


__all__ = ["apply_longva_hooks"]
