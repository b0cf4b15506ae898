"""Built-in video backends: PyAV (default), decord and torchcodec, behind ``longva_read_video``.

PyAV (:mod:`longva_plugins.video.pyav_reader`) seeks to the keyframe before each sampled frame when
that skips decoding, identifies frames by timestamp, and keeps only the sampled frames in memory.
"""

from __future__ import annotations

import importlib.util


from longva_plugins.errors import VideoDecodeError
from longva_plugins.hookspecs import hookimpl
from longva_plugins.video import VideoFrames, sample_indices

#: Order tried when the user names no backend. PyAV first: decord can crash the whole process
#: on some damaged files, which would kill an evaluation run.
DEFAULT_ORDER = ("pyav", "decord", "torchcodec")
_MODULES = {"pyav": "av", "decord": "decord", "torchcodec": "torchcodec"}


def _installed(name: str) -> bool:
    return importlib.util.find_spec(_MODULES[name]) is not None


def _read_pyav(path, num_frames, max_fps, indices=None) -> VideoFrames:
    from longva_plugins.video.pyav_reader import read_pyav

    return read_pyav(path, num_frames, max_fps, indices)


def _read_decord(path, num_frames, max_fps, indices=None) -> VideoFrames:
    from decord import VideoReader, cpu

    try:
        reader = VideoReader(path, ctx=cpu(0), num_threads=1)
        total = len(reader)
        if total <= 0:
            raise VideoDecodeError(f"video has no frames: {path}")
        fps = float(reader.get_avg_fps()) or None
        wanted = list(indices) if indices is not None else sample_indices(total, num_frames, fps, max_fps)
        frames = reader.get_batch([min(i, total - 1) for i in wanted]).asnumpy()
    except VideoDecodeError:
        raise
    except Exception as exc:  # decord.DECORDError and friends
        raise VideoDecodeError(f"cannot decode {path} with decord: {type(exc).__name__}: {exc}") from exc
    return VideoFrames(frames, wanted, fps, total, "decord")


def _read_torchcodec(path, num_frames, max_fps, indices=None) -> VideoFrames:
    from torchcodec.decoders import VideoDecoder

    try:
        decoder = VideoDecoder(path)
        total = decoder.metadata.num_frames
        fps = decoder.metadata.average_fps
        wanted = list(indices) if indices is not None else sample_indices(total, num_frames, fps, max_fps)
        frames = decoder.get_frames_at([min(i, total - 1) for i in wanted]).data.permute(0, 2, 3, 1).numpy()
    except VideoDecodeError:
        raise
    except Exception as exc:
        raise VideoDecodeError(f"cannot decode {path} with torchcodec: {type(exc).__name__}: {exc}") from exc
    return VideoFrames(frames, wanted, fps, total, "torchcodec")


READERS = {"pyav": _read_pyav, "decord": _read_decord, "torchcodec": _read_torchcodec}


@hookimpl
def longva_read_video(path, num_frames, max_fps, backend, indices):
    if backend is not None:
        if backend not in READERS:
            return None  # a third-party backend name: not ours
        if not _installed(backend):
            raise VideoDecodeError(
                f"video backend {backend!r} is not installed (needed for {path}); "
                f"pip install {'longva-plugins[decord]' if backend == 'decord' else _MODULES[backend]}"
            )
        return READERS[backend](path, num_frames, max_fps, indices)
    for name in DEFAULT_ORDER:
        if _installed(name):
            return READERS[name](path, num_frames, max_fps, indices)
    return None


@hookimpl
def longva_video_backends():
    return {name: _installed(name) for name in DEFAULT_ORDER}
