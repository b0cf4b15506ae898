"""LongVA configuration: a Qwen2 config plus the LLaVA multimodal fields, in the reference layout.

The released checkpoints (``lmms-lab/LongVA-7B``, ``-DPO``) store one flat ``config.json``: every
Qwen2 field plus ``mm_*`` / ``image_*`` fields, with ``model_type`` ``qwen2`` on one and
``llava_qwen`` on the other. :class:`LongVAConfig` reads either, keeps the language-model fields
where :class:`~transformers.Qwen2Config` expects them, and writes the same flat layout back, so
the original code can load what we save.

The vision tower is not described in ``config.json`` (the reference loads it by name with
``CLIPVisionModel.from_pretrained(mm_vision_tower)``). Its config comes from
``vision_tower_config.json`` in the checkpoint folder when present, else from the known values of
the named tower (:data:`KNOWN_VISION_TOWERS`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from transformers import CLIPVisionConfig, Qwen2Config

from longva_plugins.errors import CheckpointError
from longva_plugins.fileio import atomic_write_text

VISION_CONFIG_NAME = "vision_tower_config.json"

#: CLIP ViT-L/14 at 336 px, the tower LongVA was trained with (its weights come from the
#: LongVA checkpoint itself: the tower was fine-tuned).
CLIP_VIT_L_14_336 = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "num_channels": 3,
    "image_size": 336,
    "patch_size": 14,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
    "projection_dim": 768,
}
KNOWN_VISION_TOWERS = {
    "openai/clip-vit-large-patch14-336": CLIP_VIT_L_14_336,
}

#: The multimodal fields of the reference config and their LongVA-7B values.
MULTIMODAL_DEFAULTS = {
    "mm_vision_tower": "openai/clip-vit-large-patch14-336",
    "mm_hidden_size": 1024,
    "mm_projector_type": "mlp2x_gelu",
    "mm_vision_select_layer": -2,
    "mm_vision_select_feature": "patch",
    "mm_patch_merge_type": "unires",
    "mm_spatial_pool_mode": "average",
    "mm_spatial_pool_stride": 2,
    "image_aspect_ratio": "anyres",
    "image_grid_pinpoints": None,
    "mm_resampler_type": None,
    "tokenizer_padding_side": "right",
    "tokenizer_model_max_length": None,
}


def unires_pinpoints(max_tiles: int = 49, tile: int = 336) -> list[list[int]]:
    """Every ``[w, h]`` multiple of ``tile`` with ``w*h/tile**2 <= max_tiles``, except 1x1.

    This is the list LongVA-7B was trained with (``scripts/finetune.sh``): 2..49 tiles.
    """
    return [
        [w * tile, h * tile]
        for w in range(1, max_tiles + 1)
        for h in range(1, max_tiles + 1)
        if 1 < w * h <= max_tiles
    ]


class LongVAConfig(Qwen2Config):
    r"""Configuration of :class:`LongVAForCausalLM`.

    All :class:`~transformers.Qwen2Config` arguments, plus:

    Args:
        vision_config (`dict` or `CLIPVisionConfig`, *optional*):
            The CLIP vision tower. Defaults to the known config of ``mm_vision_tower`` when its width
            is ``mm_hidden_size``; otherwise ``None`` until :meth:`resolve_vision_config` reads the
            checkpoint folder's ``vision_tower_config.json`` (``from_pretrained`` of this class and
            of the model do; ``AutoConfig`` reads config.json alone).
        mm_vision_tower (`str`): name of the CLIP tower (its weights live in the checkpoint).
        mm_hidden_size (`int`): width of the CLIP features (1024 for ViT-L/14).
        mm_projector_type (`str`): ``"mlp2x_gelu"`` (Linear, exact GELU, Linear) or ``"linear"``.
        mm_vision_select_layer (`int`): hidden-state index taken from CLIP (``-2``).
        mm_vision_select_feature (`str`): ``"patch"`` (drop CLS) or ``"cls_patch"``.
        mm_patch_merge_type (`str`): ``"unires"`` for LongVA.
        mm_spatial_pool_mode (`str`): ``"average"``, ``"max"`` or ``"bilinear"``.
        mm_spatial_pool_stride (`int`): 2 gives 144 tokens per 336 px frame or tile.
        image_aspect_ratio (`str`): ``"anyres"`` (tiles) or ``"pad"``.
        image_grid_pinpoints (`list[list[int]]`): candidate ``[width, height]`` canvases.
    """

    model_type = "llava_qwen"

    def __init__(self, vision_config=None, **kwargs):
        for key, value in MULTIMODAL_DEFAULTS.items():
            kwargs.setdefault(key, value)
        super().__init__(**kwargs)
        if self.image_grid_pinpoints is None:
            self.image_grid_pinpoints = unires_pinpoints()
        if isinstance(vision_config, dict):
            vision_config = CLIPVisionConfig(**vision_config)
        if vision_config is None:
            # None until the checkpoint folder's vision_tower_config.json is read (AutoConfig hands
            # this class config.json alone): a tower of another width than the known one, or unknown
            known = KNOWN_VISION_TOWERS.get(_known_name(self.mm_vision_tower))
            if known is not None and known["hidden_size"] == self.mm_hidden_size:
                vision_config = CLIPVisionConfig(**known)
        self.vision_config = vision_config
        if self.vision_config is not None:
            self._check_vision_width()

    def _check_vision_width(self) -> None:
        if self.vision_config.hidden_size != self.mm_hidden_size:
            raise CheckpointError(
                f"mm_hidden_size is {self.mm_hidden_size} but the vision tower "
                f"{self.mm_vision_tower!r} has hidden_size {self.vision_config.hidden_size}; "
                f"ship a matching {VISION_CONFIG_NAME} in the checkpoint folder."
            )

    def resolve_vision_config(self, folder=None) -> CLIPVisionConfig:
        """The vision tower's config: the one held, else ``folder``'s ``vision_tower_config.json``,
        else the known config of ``mm_vision_tower`` (a clear error when none applies)."""
        if self.vision_config is None:
            vision_file = Path(os.fspath(folder)) / VISION_CONFIG_NAME if folder is not None else None
            if vision_file is not None and vision_file.is_file():
                self.vision_config = CLIPVisionConfig(**_read_vision_file(vision_file))
            else:
                self.vision_config = known_vision_config(self.mm_vision_tower)
            self._check_vision_width()
        return self.vision_config

    # ------------------------------------------------------------------ derived values
    @property
    def vision_grid(self) -> int:
        """Patches per side of one 336 px frame (24 for ViT-L/14-336)."""
        vision = self.resolve_vision_config()
        return vision.image_size // vision.patch_size

    @property
    def tokens_per_frame(self) -> int:
        """Visual tokens per frame or tile after pooling (144 for LongVA)."""
        pooled = -(-self.vision_grid // self.mm_spatial_pool_stride)
        return pooled * pooled

    # ------------------------------------------------------------------ (de)serialisation
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        config_dict, kwargs = cls.get_config_dict(pretrained_model_name_or_path, **kwargs)
        vision_file = Path(os.fspath(pretrained_model_name_or_path)) / VISION_CONFIG_NAME
        if vision_file.is_file():
            config_dict["vision_config"] = _read_vision_file(vision_file)
        # Both `llava_qwen` and `qwen2` (the hub copy of LongVA-7B) describe this model.
        config_dict["model_type"] = cls.model_type
        return cls.from_dict(config_dict, **kwargs)

    def to_dict(self):
        output = super().to_dict()
        output.pop("vision_config", None)  # vision_tower_config.json holds it (the reference reads config.json)
        # The reference reads rope_theta at top level (transformers 4.40 layout).
        rope = output.get("rope_parameters") or {}
        if "rope_theta" in rope:
            output["rope_theta"] = rope["rope_theta"]
        output["architectures"] = ["LlavaQwenForCausalLM"]
        output["model_type"] = "llava_qwen"
        return output

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)
        path = Path(save_directory) / VISION_CONFIG_NAME
        data = self.resolve_vision_config().to_dict()
        atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _known_name(name: str) -> str | None:
    """The key of :data:`KNOWN_VISION_TOWERS` that ``name`` (a hub id or a path ending in it) names."""
    for known in KNOWN_VISION_TOWERS:
        if name == known or str(name).rstrip("/").endswith(known.split("/")[-1]):
            return known
    return None


def _read_vision_file(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}).") from exc


def known_vision_config(name: str) -> CLIPVisionConfig:
    """The CLIP config of a known tower name (a hub id or a path ending in it)."""
    known = _known_name(name)
    if known is not None:
        return CLIPVisionConfig(**KNOWN_VISION_TOWERS[known])
    raise CheckpointError(
        f"unknown vision tower {name!r} and no {VISION_CONFIG_NAME} in the checkpoint folder: "
        f"add {VISION_CONFIG_NAME} (a CLIPVisionConfig) next to config.json. Known towers: "
        f"{', '.join(KNOWN_VISION_TOWERS)}."
    )


__all__ = ["KNOWN_VISION_TOWERS", "LongVAConfig", "VISION_CONFIG_NAME", "known_vision_config", "unires_pinpoints"]
