"""LongVA's video processor: every sampled frame through the image processor's CLIP preprocessing."""

from __future__ import annotations

import numpy as np
import torch
from transformers.video_processing_utils import VideoProcessorMixin

from longva_plugins.errors import SettingError
from longva_plugins.models.longva.image_processing_longva import _CLIPPixels, _is_image


def _is_video(value) -> bool:
    return isinstance(value, (np.ndarray, torch.Tensor)) and value.ndim == 4 or (
        isinstance(value, (list, tuple)) and len(value) > 0 and all(_is_image(v) for v in value))


def _as_list(value, is_one) -> list:
    """``None`` -> ``[]``; one image (video) -> ``[it]``; a list of them -> the list."""
    if value is None:
        return []
    if is_one(value):
        return [value]
    return list(value)


class LongVAVideoProcessor(_CLIPPixels, VideoProcessorMixin):
    """transformers' video processor for LongVA: every frame through the same CLIP preprocessing
    (shortest edge to 336, centre crop). ``videos``: one or more ``(F, H, W, 3)`` uint8 arrays or
    lists of frames (frames are sampled by the caller: ``longva_plugins.video``)."""

    model_input_names = ["pixel_values_videos", "video_grids"]

    def __call__(self, videos, **kwargs):
        from transformers import BatchFeature

        if kwargs:
            raise SettingError(f"LongVAVideoProcessor takes no options; got {sorted(kwargs)}")
        frames = [self.pixels(video) for video in _as_list(videos, _is_video)]
        return BatchFeature({"pixel_values_videos": torch.cat(frames),
                             "video_grids": torch.tensor([[len(f)] for f in frames], dtype=torch.long)})

    preprocess = __call__


__all__ = ["LongVAVideoProcessor"]
