"""A small rich progress line for training runs."""

from __future__ import annotations

from transformers import TrainerCallback


class RichProgressCallback(TrainerCallback):
    """Prints ``step/total loss`` lines with rich on the main process."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        from rich.console import Console

        Console(stderr=True).print(f"[bold]step {state.global_step}/{state.max_steps}[/] loss {logs['loss']:.4f}",
                                   highlight=False)
