"""LongVA's image processor: CLIP preprocessing as the reference runs it, and UniRes/anyres tiles.

Preprocessing reproduces the reference (OpenAI CLIP via the slow ``CLIPImageProcessor`` of
transformers 4.40 on Pillow) number for number: PIL bicubic resize of the shortest edge to 336,
centre crop, ``uint8 -> float64 * 1/255 -> float32``, then ``(x - mean) / std`` in float32. It is
written out here (a few lines of PIL and numpy) because transformers' processors changed their
resampling back-ends between versions; the golden tests pin the numbers.

Modes:
    ``crop``  video frames (shortest edge -> 336, centre crop).
    ``pad``   V-NIAH haystack frames and needles: expand to a square filled with the CLIP mean
              colour first (reference ``expand2square``), then as ``crop``.
    anyres    images: best canvas from ``image_grid_pinpoints``, aspect-preserving resize (ceil),
              pasted centred on black, cut into 336 px tiles row-major, base thumbnail first.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image
from transformers import BaseImageProcessor

from longva_plugins.errors import InputMismatchError, SettingError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def select_best_resolution(size_wh: tuple[int, int], pinpoints: Sequence[Sequence[int]]) -> tuple[int, int]:
    """The ``(width, height)`` canvas that keeps the most of the image (LLaVA-NeXT anyres rule).

    Maximise the effective resolution (area of the image scaled to fit, capped at the original
    area); ties go to the least wasted canvas area; the first candidate wins remaining ties.
    """
    width, height = size_wh
    best, best_effective, best_wasted = None, -1, math.inf
    for cand_w, cand_h in pinpoints:
        scale = min(cand_w / width, cand_h / height)
        effective = min(int(width * scale) * int(height * scale), width * height)
        wasted = cand_w * cand_h - effective
        if effective > best_effective or (effective == best_effective and wasted < best_wasted):
            best, best_effective, best_wasted = (int(cand_w), int(cand_h)), effective, wasted
    if best is None:
        raise SettingError("image_grid_pinpoints is empty: the checkpoint config lists no anyres canvas")
    return best


def _to_pil(image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3:
        raise InputMismatchError(f"expected an RGB uint8 array (H, W, 3); got dtype {array.dtype}, shape {array.shape}")
    return Image.fromarray(array, "RGB")


def expand_to_square(image: Image.Image, fill: tuple[int, int, int]) -> Image.Image:
    """Pad the short side so the image becomes square, content centred (reference expand2square)."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new(image.mode, (side, side), fill)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def _is_image(value) -> bool:
    return isinstance(value, Image.Image) or (isinstance(value, (np.ndarray, torch.Tensor)) and value.ndim == 3)


class _CLIPPixels:
    """CLIP preprocessing as LongVA's reference runs it (see the module docstring); shared by the
    image and the video processor. ``size``, ``image_mean`` and ``image_std`` are what
    ``save_pretrained`` writes (transformers' names)."""

    def __init__(self, size: int = 336, image_mean: Sequence[float] = CLIP_MEAN, image_std: Sequence[float] = CLIP_STD,
                 **kwargs):
        super().__init__(**kwargs)
        self.size = int(size["height"] if isinstance(size, dict) else size)
        self.image_mean = [float(m) for m in image_mean]
        self.image_std = [float(v) for v in image_std]

    @property
    def mean(self) -> np.ndarray:
        return np.asarray(self.image_mean, dtype=np.float32)

    @property
    def std(self) -> np.ndarray:
        return np.asarray(self.image_std, dtype=np.float32)

    def pixels(self, images: Iterable, mode: str = "crop") -> torch.Tensor:
        """Preprocess images/frames -> ``(N, 3, S, S)`` float32. ``mode`` is ``crop`` or ``pad``."""
        if mode not in ("crop", "pad"):
            raise SettingError(f"preprocessing mode {mode!r} is not supported; use 'crop' or 'pad'")
        out = []
        for image in images:
            pil = _to_pil(image)
            if mode == "pad":
                pil = expand_to_square(pil, self.fill_colour)
            out.append(self._normalise(self._resize_crop(pil)))
        if not out:
            raise InputMismatchError("no image or frame to preprocess")
        return torch.from_numpy(np.stack(out))

    @property
    def fill_colour(self) -> tuple[int, int, int]:
        return tuple(int(m * 255) for m in self.mean.tolist())

    def _resize_crop(self, image: Image.Image) -> np.ndarray:
        width, height = image.size
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.size, int(self.size * long / short)
        new_size = (new_short, new_long) if width <= height else (new_long, new_short)
        if new_size != image.size:
            image = image.resize(new_size, Image.BICUBIC)
        array = np.asarray(image)
        top = (array.shape[0] - self.size) // 2
        left = (array.shape[1] - self.size) // 2
        return array[top : top + self.size, left : left + self.size]

    def _normalise(self, array: np.ndarray) -> np.ndarray:
        scaled = (array.astype(np.float64) * (1 / 255)).astype(np.float32)
        return ((scaled - self.mean) / self.std).transpose(2, 0, 1)  # (3, S, S)


class LongVAImageProcessor(_CLIPPixels, BaseImageProcessor):
    """transformers' image processor for LongVA: exact CLIP preprocessing (``crop``, and ``pad``
    for V-NIAH frames and needles) and UniRes/anyres tiles (:meth:`anyres`). Called with images
    it returns ``(N, 3, S, S)`` pixels; ``save_pretrained`` / ``from_pretrained`` round-trip it
    (``preprocessor_config.json``)."""

    model_input_names = ["pixel_values", "image_grids"]

    def __call__(self, images: Iterable, mode: str = "crop") -> torch.Tensor:
        """Preprocess images/frames -> ``(N, 3, S, S)`` float32. ``mode`` is ``crop`` or ``pad``."""
        return self.pixels(images, mode)

    preprocess = __call__

    def anyres(self, image, pinpoints: Sequence[Sequence[int]]) -> tuple[torch.Tensor, tuple[int, int]]:
        """UniRes/anyres tiles -> ``((1 + gh*gw, 3, S, S), (gh, gw))``, base thumbnail first."""
        pil = _to_pil(image)
        target_w, target_h = select_best_resolution(pil.size, pinpoints)
        scale_w, scale_h = target_w / pil.width, target_h / pil.height
        if scale_w < scale_h:
            new_w, new_h = target_w, min(math.ceil(pil.height * scale_w), target_h)
        else:
            new_w, new_h = min(math.ceil(pil.width * scale_h), target_w), target_h
        canvas = Image.new("RGB", (target_w, target_h), (0, 0, 0))
        canvas.paste(pil.resize((new_w, new_h)), ((target_w - new_w) // 2, (target_h - new_h) // 2))
        tiles = [
            canvas.crop((left, top, left + self.size, top + self.size))
            for top in range(0, target_h, self.size)
            for left in range(0, target_w, self.size)
        ]
        base = pil.resize((self.size, self.size))
        grid = (target_h // self.size, target_w // self.size)
        return self([base] + tiles, mode="crop"), grid


__all__ = ["CLIP_MEAN", "CLIP_STD", "LongVAImageProcessor", "expand_to_square", "select_best_resolution"]
