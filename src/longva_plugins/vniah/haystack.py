"""V-NIAH haystacks: a deterministic synthetic video (the embedded default) or any user video.

The paper's haystack is a feature film sampled at 1 FPS (docs/longva-numerics.md §3), which cannot be
redistributed. :class:`SyntheticHaystack` generates frames procedurally: each frame depends only
on ``(seed, index)``, so any frame can be produced on demand without holding the video, and
consecutive frames differ (drifting gradient, moving shapes, a frame counter bar) like real
footage. :class:`VideoHaystack` samples a user's video at 1 FPS.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np

from longva_plugins.errors import SettingError


class Haystack:
    """A sequence of 1-FPS frames. Subclasses provide :meth:`frames` and :attr:`identity`."""

    identity: str
    length: int | None

    def frames(self, indices) -> np.ndarray:
        """``(len(indices), H, W, 3)`` uint8 frames."""
        raise NotImplementedError

    def check_length(self, num_frames: int) -> None:
        if self.length is not None and num_frames > self.length:
            raise SettingError(
                f"LONGVA_VNIAH_GRID asks for {num_frames} frames but the haystack {self.identity} "
                f"(LONGVA_VNIAH_HAYSTACK) has {self.length} frames at 1 FPS; allowed: at most {self.length} frames "
                "(use a longer video or a smaller grid)"
            )


@dataclass
class SyntheticHaystack(Haystack):
    """Procedural 1-FPS frames of ``size`` (H, W), deterministic by ``seed``; unbounded length."""

    seed: int = 0
    size: tuple[int, int] = (96, 160)

    def __post_init__(self):
        self.length = None
        self.identity = f"synthetic:v1:seed={self.seed}:size={self.size[0]}x{self.size[1]}"

    def frame(self, index: int) -> np.ndarray:
        h, w = self.size
        rng = np.random.default_rng([self.seed, index])
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        phase = index * 0.07 + self.seed
        base = np.stack([
            127 + 100 * np.sin(xx / w * 3.0 + phase),
            127 + 100 * np.sin(yy / h * 2.0 - phase * 0.8),
            127 + 100 * np.cos((xx + yy) / (w + h) * 4.0 + phase * 0.5),
        ], axis=-1)
        for _ in range(3):  # a few shapes that drift from frame to frame
            cy, cx = rng.integers(0, h), rng.integers(0, w)
            r = int(rng.integers(h // 10, h // 4))
            colour = rng.integers(0, 255, size=3)
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
            base[mask] = colour
        bar = int((index % 60) / 60 * w)  # a "timecode" bar
        base[-4:, :bar] = 255
        return np.clip(base, 0, 255).astype(np.uint8)

    def frames(self, indices) -> np.ndarray:
        return np.stack([self.frame(int(i)) for i in indices])


def one_fps_indices(total: int, fps: float | None) -> list[int]:
    """The original's 1-FPS haystack frames, ``range(0, total, round(avg_fps))``
    (``vision_niah/produce_haystack_embedding.py``): every ``round(fps)``-th source frame."""
    step = max(1, round(fps)) if fps else 1
    return list(range(0, total, step))


class VideoHaystack(Haystack):
    """A user video sampled at 1 FPS with the original's rule (:func:`one_fps_indices`).

    Only the frames asked for are decoded (the PyAV reader seeks), so a feature-length haystack is
    never held in memory.
    """

    def __init__(self, path: str | os.PathLike, backend: str | None = None):
        from longva_plugins.errors import VideoDecodeError
        from longva_plugins.video import probe_video

        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise SettingError(f"haystack video not found: {self.path}; set LONGVA_VNIAH_HAYSTACK to a video file")
        stat = os.stat(self.path)
        digest = hashlib.sha256(f"{os.path.abspath(self.path)}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
        self.identity = f"video:{os.path.basename(self.path)}:{digest}"
        self.backend = backend
        try:  # the 1-FPS length from the header: a grid that does not fit fails at task build
            fps, total = probe_video(self.path)
        except VideoDecodeError as exc:
            raise SettingError(f"LONGVA_VNIAH_HAYSTACK={self.path}: {exc}") from exc
        if total <= 0:
            raise SettingError(f"LONGVA_VNIAH_HAYSTACK={self.path}: the video has no frames")
        self.source_indices = one_fps_indices(total, fps)
        self.length = len(self.source_indices)

    def frames(self, indices) -> np.ndarray:
        from longva_plugins.video import read_video

        wanted = [self.source_indices[int(i)] for i in indices]
        return read_video(self.path, indices=wanted, backend=self.backend).frames


def resolve_haystack(spec: str | None) -> Haystack:
    """``synthetic`` / ``synthetic:SEED``, a registered name (``longva_haystacks`` hook) or a path."""
    spec = spec or "synthetic"
    if spec == "synthetic" or spec.startswith("synthetic:"):
        seed = int(spec.split(":", 1)[1]) if ":" in spec else 0
        return SyntheticHaystack(seed=seed)
    from longva_plugins.plugins import get_plugin_manager

    for contribution in get_plugin_manager().hook.longva_haystacks():
        if contribution and spec in contribution:
            return contribution[spec]()
    if os.path.exists(spec):
        return VideoHaystack(spec)
    raise SettingError(f"unknown V-NIAH haystack {spec!r}: use 'synthetic', 'synthetic:SEED' or a video file path")


__all__ = ["Haystack", "SyntheticHaystack", "VideoHaystack", "one_fps_indices", "resolve_haystack"]
