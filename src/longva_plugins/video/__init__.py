"""Video decoding for LongVA: uniform or fps-capped frame sampling through pluggable backends.

:func:`read_video` asks the ``longva_read_video`` hook (first result wins). The built-in
implementation (:mod:`longva_plugins.video.builtin`) offers PyAV (default), decord and, when
installed, torchcodec; a third-party plugin can add its own backend name or take over.

Sampling is the reference's: ``np.linspace(0, n - 1, N).astype(int)`` over the ``n`` decodable
frames (rounded down), so ``N`` larger than ``n`` repeats frames exactly as the original does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from longva_plugins.errors import VideoDecodeError

BACKENDS = ("pyav", "decord", "torchcodec")


@dataclass
class VideoFrames:
    """Decoded frames of one video.

    Attributes:
        frames: ``(N, H, W, 3)`` uint8 RGB.
        indices: the frame index of each row in the source video.
        fps: average frame rate reported by the container (``None`` if unknown).
        total_frames: number of frames in the video.
        backend: the backend that decoded it.
    """

    frames: np.ndarray
    indices: list[int]
    fps: float | None
    total_frames: int
    backend: str
    path: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        return self.total_frames / self.fps if self.fps else None

    @property
    def timestamps(self) -> list[float] | None:
        return [i / self.fps for i in self.indices] if self.fps else None


def sample_indices(total_frames: int, num_frames: int | None = None, fps: float | None = None,
                   max_fps: float | None = None) -> list[int]:
    """Frame indices to decode.

    ``max_fps`` first keeps at most that many frames per second (``floor(k * fps / max_fps)``);
    ``num_frames`` then samples uniformly, ``linspace(0, n - 1, N)`` rounded down, over the whole
    video when the fps-capped set is larger than ``num_frames`` (the reference rule).
    """
    if total_frames <= 0:
        raise ValueError("video has no frames")
    candidates = list(range(total_frames))
    if max_fps is not None:
        if max_fps <= 0:
            raise ValueError(f"max_fps must be positive; got {max_fps}")
        if fps and fps > max_fps:
            step = fps / max_fps
            candidates = sorted({int(k * step) for k in range(int(total_frames / step) + 1) if int(k * step) < total_frames})
    if num_frames is None or (max_fps is not None and len(candidates) <= num_frames):
        return candidates
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive; got {num_frames}")
    return np.linspace(0, total_frames - 1, num_frames).astype(int).tolist()


def probe_video(path: str | os.PathLike) -> tuple[float | None, int]:
    """``(average fps or None, frame count)`` from the container, decoding nothing.

    A container that reports no frame count (mkv, some webm) is counted by demuxing its packets.
    Raises :class:`VideoDecodeError` naming the file when it cannot be opened or has no video.
    """
    import av

    path = os.fspath(path)
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise VideoDecodeError(f"no video stream in {path}")
            stream = container.streams.video[0]
            fps = float(stream.average_rate) if stream.average_rate else None
            total = int(stream.frames or 0)
            if not total:
                total = sum(1 for packet in container.demux(stream) if packet.size)
    except VideoDecodeError:
        raise
    except Exception as exc:  # av.error.* and OSError
        raise VideoDecodeError(f"cannot open {path}: {type(exc).__name__}: {exc}") from exc
    return fps, total


def available_backends() -> dict[str, bool]:
    """``{backend: importable}`` across built-in and plugin backends."""
    from longva_plugins.plugins import get_plugin_manager

    found: dict[str, bool] = {}
    for contribution in get_plugin_manager().hook.longva_video_backends():
        found.update(contribution or {})
    return found


def read_video(path: str | os.PathLike, num_frames: int | None = None, max_fps: float | None = None,
               backend: str | None = None, indices: list[int] | None = None) -> VideoFrames:
    """Decode ``num_frames`` frames (and/or at most ``max_fps`` per second), or the explicit frame
    ``indices``, from ``path``.

    Raises:
        VideoDecodeError: the file is missing, empty, truncated or no backend can read it; the
            message names the file and the installed backends.
    """
    from longva_plugins.plugins import get_plugin_manager

    path = os.fspath(path)
    if not os.path.exists(path):
        raise VideoDecodeError(f"video not found: {path}")
    if os.path.isdir(path):
        raise VideoDecodeError(f"video path is a directory, not a file: {path}")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(f"video file is empty (0 bytes): {path}")
    result = get_plugin_manager().hook.longva_read_video(path=path, num_frames=num_frames, max_fps=max_fps,
                                                         backend=backend, indices=indices)
    if result is None:
        backends = available_backends()
        usable = [name for name, ok in backends.items() if ok]
        wanted = f"backend {backend!r}" if backend else "any backend"
        raise VideoDecodeError(
            f"cannot decode {path} with {wanted}; installed backends: {', '.join(usable) or 'none'} "
            "(pip install av, or pip install 'longva-plugins[decord]')"
        )
    result.path = path
    return result


__all__ = ["BACKENDS", "VideoDecodeError", "VideoFrames", "available_backends", "probe_video", "read_video", "sample_indices"]
