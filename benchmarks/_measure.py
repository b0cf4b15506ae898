"""Run one measurement in a fresh process and report its wall time and peak memory growth.

Peak memory is the growth of the process's peak resident set size over its resident size right
before the measured call: the peak counter (``VmHWM``) is reset through ``/proc/self/clear_refs``
first, so the model's weights, the inputs and the interpreter do not count. Linux only.
"""

from __future__ import annotations

import multiprocessing as mp
import time


def _child(queue, fn, args):
    import torch

    torch.set_num_threads(1)
    import gc

    setup = fn(*args, setup_only=True)
    gc.collect()
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as handle:  # reset VmHWM to the current RSS
        handle.write("5")
    start = time.perf_counter()
    fn(*args, state=setup)
    elapsed = time.perf_counter() - start
    peak = _status_kib("VmHWM")
    queue.put((elapsed, max(peak - before, 0) / 1024.0))


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def measure(fn, *args) -> tuple[float, float]:
    """``(seconds, peak MiB growth)`` of ``fn(*args, state=fn(*args, setup_only=True))``."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, fn, args))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        return float("nan"), float("nan")
    return queue.get()
