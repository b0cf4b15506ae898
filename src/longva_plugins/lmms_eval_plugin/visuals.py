"""Turning what lmms-eval's ``doc_to_visual`` returns into LongVA visual embedding blocks.

Accepted visuals, one embedding block (one ``<image>`` placeholder) each:

- a path (``str`` / ``os.PathLike``) to a video: frames sampled with the adapter's
  ``max_frames_num`` / ``max_fps`` / ``video_decode_backend``, centre-cropped, UniRes-encoded;
  a path to an image file is opened as an image;
- a ``PIL.Image``: UniRes anyres tiles;
- a ``(F, H, W, 3)`` uint8 array: video frames;
- an :class:`~longva_plugins.lmms_eval_plugin.protocols.EmbedsItself` (a ``longva_embed(model, processor)
  -> Tensor (n, D)`` method): it computes its own
  block (V-NIAH uses this to reuse cached haystack embeddings).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from longva_plugins.lmms_eval_plugin.protocols import EmbedsItself
from longva_plugins.errors import ContextLengthError, VideoDecodeError, VisualInputError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def _check_frame_budget(adapter, num_frames: int) -> None:
    tokens = num_frames * adapter.model.config.tokens_per_frame
    try:
        adapter.model.check_length(tokens)
    except ContextLengthError as exc:
        raise ContextLengthError(f"{num_frames} frames need {tokens} visual tokens: {exc}") from None


def _encode_frames(adapter, frames: np.ndarray) -> torch.Tensor:
    _check_frame_budget(adapter, len(frames))
    pixels = adapter.processor.preprocess_frames(frames, mode="crop")
    return adapter.model.encode_video(pixels, chunk_size=adapter.encode_chunk_size)


def _encode_image(adapter, image: Image.Image) -> torch.Tensor:
    pixels, grid = adapter.processor.preprocess_anyres(image)
    return adapter.model.encode_anyres(pixels, grid, chunk_size=adapter.encode_chunk_size)


def _encode_path(adapter, path: str) -> torch.Tensor:
    if os.path.splitext(path)[1].lower() in IMAGE_SUFFIXES:
        try:
            with Image.open(path) as image:
                return _encode_image(adapter, image.convert("RGB"))
        except (OSError, UnidentifiedImageError) as exc:
            raise VisualInputError(f"cannot read image {path}: {exc}") from exc
    from longva_plugins.video import read_video

    _check_frame_budget(adapter, adapter.max_frames_num)
    try:
        video = read_video(path, num_frames=adapter.max_frames_num, max_fps=adapter.max_fps,
                           backend=adapter.video_decode_backend)
    except VideoDecodeError as exc:
        raise VisualInputError(str(exc)) from exc
    return _encode_frames(adapter, video.frames)


@torch.no_grad()
def encode_visuals(adapter, visuals) -> list[torch.Tensor]:
    """One ``(n_i, D)`` block per visual, in order."""
    blocks = []
    for visual in visuals:
        if isinstance(visual, EmbedsItself):
            blocks.append(visual.longva_embed(adapter.model, adapter.processor))
        elif isinstance(visual, (str, os.PathLike)):
            blocks.append(_encode_path(adapter, os.fspath(visual)))
        elif isinstance(visual, Image.Image):
            try:
                blocks.append(_encode_image(adapter, visual.convert("RGB")))
            except OSError as exc:
                raise VisualInputError(f"cannot decode image: {exc}") from exc
        elif isinstance(visual, np.ndarray) and visual.ndim == 4:
            blocks.append(_encode_frames(adapter, visual))
        else:
            raise VisualInputError(
                f"unsupported visual of type {type(visual).__name__}; expected a video path, a PIL image, "
                "a (F, H, W, 3) uint8 array or an object with longva_embed()"
            )
    return blocks


__all__ = ["VisualInputError", "encode_visuals"]
