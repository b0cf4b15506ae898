"""LongVA-nano: a trained toy LongVA that shows long context transfer on a CPU.

Shipped in the package (``checkpoints/longva-nano/``, the reference on-disk layout) and used by
``longva-plugins demo``. Recipe: ``examples/nano/`` (stage 0 the tower, stage 1 long text, stage 2
short images, V-NIAH zero-shot); the README gives its measured tables.

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


def nano_tokenizer():
    """The nano BPE: prompt pieces, filler and colour words are single tokens."""
    from longva_plugins.models.longva.tiny import build_tiny_tokenizer
    from longva_plugins.nano.text import corpus

    return build_tiny_tokenizer(vocab_size=NANO_TEXT["vocab_size"] - 3, corpus=corpus())


def make_nano_init(out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """An untrained nano checkpoint (transformers' initialisation): the recipe's starting point."""
    from longva_plugins.models.longva.tiny import make_tiny_checkpoint

    return make_tiny_checkpoint(out_dir, seed=seed, num_shards=1, tokenizer=nano_tokenizer(), vision=NANO_VISION,
                                unit_scale=False, tower_name=NANO_TOWER, pool_stride=NANO_POOL_STRIDE,
                                **NANO_TEXT)


def nano_checkpoint() -> Path:
    """The folder of the shipped, trained LongVA-nano checkpoint (inside the installed package)."""
    folder = Path(os.fspath(resources.files("longva_plugins.models.longva") / SHIPPED))
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"the LongVA-nano checkpoint is missing from {folder}; reinstall longva-plugins or "
                              "regenerate it with `bash examples/nano/run_recipe.sh --install`")
    return folder


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


def save_checkpoint(model, source: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Save ``model``'s weights with every other file of the checkpoint folder ``source``
    (config, tokenizer, ...) as the checkpoint folder ``out_dir``, atomically."""
    import shutil

    from longva_plugins.fileio import atomic_directory

    with atomic_directory(out_dir) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns("model*.safetensors*"))
        model.save_pretrained(tmp, safe_serialization=True)
    return Path(out_dir)


def install_nano(checkpoint: str | os.PathLike) -> Path:
    """Copy a trained nano checkpoint into this source tree's package folder (what
    :func:`nano_checkpoint` returns and wheels carry)."""
    import shutil

    from longva_plugins.fileio import atomic_directory

    target = Path(__file__).resolve().parent / SHIPPED
    with atomic_directory(target) as tmp:
        shutil.copytree(checkpoint, tmp, dirs_exist_ok=True)
    return target


__all__ = ["NANO_TEXT", "NANO_TOWER", "NANO_VISION", "install_nano", "make_nano_init", "merge_vision_weights",
           "nano_checkpoint", "nano_tokenizer", "save_checkpoint"]
