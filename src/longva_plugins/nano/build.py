"""Building LongVA-nano: the tokenizer (trained on the nano text corpus), the untrained checkpoint
the recipe (``examples/nano/``) starts from, merging a stage's weights, saving and installing
checkpoints. The shipped, trained checkpoint is located by
:func:`longva_plugins.nano.checkpoint.nano_checkpoint`."""

from __future__ import annotations

import os
from pathlib import Path

from longva_plugins.training.merge import merge_full_weights, merge_vision_weights, save_checkpoint  # noqa: F401  (the recipe's)
from longva_plugins.nano.checkpoint import NANO_POOL_STRIDE, NANO_TEXT, NANO_TOWER, NANO_VISION, SHIPPED


def nano_tokenizer():
    """The nano BPE: prompt pieces, filler and colour words are single tokens."""
    from longva_plugins.testing import build_tiny_tokenizer
    from longva_plugins.nano.text import corpus

    return build_tiny_tokenizer(vocab_size=NANO_TEXT["vocab_size"] - 3, corpus=corpus())


#: What the nano is evaluated with when the user sets nothing (config.json ``eval_defaults``): it
#: was trained to read the ``nano`` needles, not the default ``synthetic`` set.
NANO_EVAL_DEFAULTS = {"vniah_needles": "nano"}


def make_nano_init(out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """An untrained nano checkpoint (transformers' initialisation): the recipe's starting point.
    Its config declares :data:`NANO_EVAL_DEFAULTS`, which every later stage's checkpoint keeps."""
    import json

    from longva_plugins.fileio import atomic_write_text
    from longva_plugins.testing import make_tiny_checkpoint

    path = make_tiny_checkpoint(out_dir, seed=seed, num_shards=1, tokenizer=nano_tokenizer(), vision=NANO_VISION,
                                unit_scale=False, tower_name=NANO_TOWER, pool_stride=NANO_POOL_STRIDE, **NANO_TEXT)
    config = json.loads((path / "config.json").read_text())
    config["eval_defaults"] = dict(NANO_EVAL_DEFAULTS)
    atomic_write_text(path / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
    return path



def install_nano(checkpoint: str | os.PathLike, name: str = "longva-nano") -> Path:
    """Copy a trained nano checkpoint into this source tree's package folder as
    ``checkpoints/<name>`` (``longva-nano``: what :func:`nano_checkpoint` returns; ``longva-nano-mc``:
    :func:`nano_mc_checkpoint`); wheels carry both."""
    import shutil

    from longva_plugins.fileio import atomic_directory

    target = Path(__file__).resolve().parent / Path(SHIPPED).parent / name
    with atomic_directory(target) as tmp:
        shutil.copytree(checkpoint, tmp, dirs_exist_ok=True)
    return target


__all__ = ["NANO_EVAL_DEFAULTS", "install_nano", "make_nano_init", "merge_full_weights", "merge_vision_weights", "nano_tokenizer",
           "save_checkpoint"]
