"""One training run for ``bench_training.py``: ``longva-plugins train``'s code path (config file ->
``build_trainer`` -> ``train``) with a callback that measures the run, written to ``OUT.<RANK>.json``.

    python benchmarks/_train_probe.py CONFIG OUT            (or under torchrun, one file per rank)

Recorded: the resident set when training begins (model loaded, data read), the process's peak
(``ru_maxrss``: its whole life, as ``time -v``), the seconds of each optimizer step, and the
non-padding tokens of each step's batch.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time


def _rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> int:
    import yaml
    from transformers import TrainerCallback

    from longva_plugins.training.config import parse_training_config
    from longva_plugins.training.run import build_trainer

    config_path, out = sys.argv[1:3]
    record = {"steps": [], "tokens": []}

    class Probe(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            record["rss_begin_mib"] = _rss_mib()

        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            record["steps"].append(time.perf_counter() - self.start)

    config, args = parse_training_config(yaml.safe_load(open(config_path)))
    trainer = build_trainer(config, args)
    collate = trainer.data_collator

    def counting(examples):
        batch = collate(examples)
        record["tokens"].append(sum(int(e["input_ids"].shape[0]) for e in examples))  # without padding
        return batch

    trainer.data_collator = counting
    trainer.add_callback(Probe())
    trainer.train()
    record["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    record["rank"] = args.process_index
    with open(f"{out}.{args.process_index}.json", "w") as handle:
        json.dump(record, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
