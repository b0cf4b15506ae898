"""The training progress line: one per log step (loss, learning rate, tokens/s, peak memory), and
a summary at the end (steps, time, skipped samples by id)."""

from __future__ import annotations

import time

from transformers import TrainerCallback


def peak_memory_mib() -> float:
    """Peak memory of this process so far: CUDA allocations on a GPU, else the resident set."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RichProgressCallback(TrainerCallback):
    """Prints, on the main process, ``step s/total loss lr tokens/s peak memory`` at every log step
    (the Trainer's bar stays) and a one-line summary when training ends."""

    def __init__(self):
        self._last = None  # (time, tokens seen)
        self._start = None

    @staticmethod
    def _console():
        from rich.console import Console

        return Console(stderr=True)

    def on_train_begin(self, args, state, control, **kwargs):
        self._start = self._last = (time.monotonic(), state.num_input_tokens_seen or 0)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        now, tokens = time.monotonic(), state.num_input_tokens_seen or 0
        rate = ""
        if self._last is not None and tokens > self._last[1] and now > self._last[0]:
            rate = f" {(tokens - self._last[1]) / (now - self._last[0]):,.0f} tokens/s"
        self._last = (now, tokens)
        lr = logs.get("learning_rate")
        self._console().print(f"[bold]step {state.global_step}/{state.max_steps}[/] loss {logs['loss']:.4f}"
                              + (f" lr {lr:.3g}" if lr is not None else "") + rate
                              + f" peak {peak_memory_mib():,.0f} MiB", highlight=False)

    def on_train_end(self, args, state, control, train_dataloader=None, **kwargs):
        if not state.is_world_process_zero:
            return
        seconds = time.monotonic() - self._start[0] if self._start else 0.0
        dataset = getattr(train_dataloader, "dataset", None)
        skipped = list(getattr(dataset, "skipped", []) or [])
        line = f"[bold]trained[/] {state.global_step} steps in {seconds:,.0f} s, peak {peak_memory_mib():,.0f} MiB"
        if skipped:
            ids = ", ".join(str(i) for i, _ in skipped[:10]) + (" ..." if len(skipped) > 10 else "")
            line += f"; {len(skipped)} samples skipped ({ids})"
        self._console().print(line, highlight=False)
