"""LongVA-nano: a trained toy LongVA that shows long context transfer on a CPU.

Shipped in the package (``checkpoints/longva-nano/``, the reference on-disk layout) and used by
``longva-plugins demo``. Recipe: ``examples/nano/`` (stage 0 the tower, stage 1 long text, stage 2
short images, V-NIAH zero-shot); docs/nano.md gives its measured tables.

Architecture: Qwen2 language model (4 layers, width 128, 4 query / 2 key-value heads, byte-level
BPE of 1024 tokens); CLIP tower at 336 px with 21 px patches (16 x 16 grid, width 64, 3 layers of
which LongVA uses the first 2: it takes the second-to-last hidden state) and a 4 x 4 pool
(``mm_spatial_pool_stride=4``), so 16 visual tokens per frame or tile.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from longva_plugins.errors import CheckpointError

NANO_TEXT = {"hidden_size": 128, "num_layers": 4, "vocab_size": 1024}
NANO_VISION = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 4,
               "patch_size": 21, "projection_dim": 64}
NANO_POOL_STRIDE = 4
NANO_TOWER = "nano-clip-vit-336-patch21"
#: Where the trained checkpoint lives inside the package.
SHIPPED = "checkpoints/longva-nano"


#: The multiple-choice oracle: LongVA-nano after stage 3 on canonical-options clips (docs/nano.md).
SHIPPED_MC = "checkpoints/longva-nano-mc"


def _shipped(relative: str, how: str) -> Path:
    folder = Path(os.fspath(resources.files("longva_plugins.nano") / relative))
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"the {Path(relative).name} checkpoint is missing from {folder}; reinstall "
                              f"longva-plugins or regenerate it with `{how}`")
    return folder


def nano_checkpoint() -> Path:
    """The folder of the shipped, trained LongVA-nano checkpoint (inside the installed package)."""
    return _shipped(SHIPPED, "bash examples/nano/run_recipe.sh --install")


def nano_mc_checkpoint() -> Path:
    """The folder of the shipped LongVA-nano-mc: the nano taught to answer the multiple-choice
    tasks' colour questions when their options come in the canonical order
    (``make-mini-bench --canonical-options``); ``longva-plugins demo --task videomme|mlvu`` runs it."""
    return _shipped(SHIPPED_MC, "python examples/nano/mc_oracle.py --install")


# Building a nano (tokenizer, untrained init, merging stage weights, saving and installing
# checkpoints) is longva_plugins/nano/build.py; this module locates the shipped one.
__all__ = ["NANO_POOL_STRIDE", "NANO_TEXT", "NANO_TOWER", "NANO_VISION", "SHIPPED", "SHIPPED_MC", "nano_checkpoint",
           "nano_mc_checkpoint"]
