"""Built-in video backends: PyAV (default), decord and torchcodec, behind ``longva_read_video``.

PyAV streams: it decodes in order and keeps only the sampled frames, so memory holds N frames,
never the whole video, and a container that reports no frame count is first counted by demuxing
packets (no decoding) instead of being decoded twice into memory.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from longva_plugins.errors import VideoDecodeError
from longva_plugins.hookspecs import hookimpl
from longva_plugins.video import VideoFrames, sample_indices

#: Order tried when the user names no backend. PyAV first: decord can crash the whole process
#: on some damaged files, which would kill an evaluation run.
DEFAULT_ORDER = ("pyav", "decord", "torchcodec")
_MODULES = {"pyav": "av", "decord": "decord", "torchcodec": "torchcodec"}


def _installed(name: str) -> bool:
    return importlib.util.find_spec(_MODULES[name]) is not None


def _read_pyav(path, num_frames, max_fps) -> VideoFrames:
    import av

    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise VideoDecodeError(f"no video stream in {path}")
            stream = container.streams.video[0]
            fps = float(stream.average_rate) if stream.average_rate else None
            total = stream.frames
            if not total:  # container without a frame count: count packets, decode nothing
                total = sum(1 for packet in container.demux(stream) if packet.size)
                container.seek(0)
            if total <= 0:
                raise VideoDecodeError(f"video has no frames: {path}")
            wanted = sample_indices(total, num_frames, fps, max_fps)
            keep = set(wanted)
            last = max(wanted)
            decoded: dict[int, np.ndarray] = {}
            index = -1
            for index, frame in enumerate(container.decode(stream)):
                if index in keep:
                    decoded[index] = frame.to_ndarray(format="rgb24")
                if index >= last:
                    break
    except VideoDecodeError:
        raise
    except Exception as exc:  # av.error.* and OSError: unreadable / truncated container
        raise VideoDecodeError(f"cannot decode {path} with PyAV: {type(exc).__name__}: {exc}") from exc
    missing = [i for i in keep if i not in decoded]
    if missing and not decoded:
        raise VideoDecodeError(f"video has no decodable frames (truncated?): {path}")
    if missing:  # truncated tail: reuse the last decodable frame, as frame-count estimates overshoot
        available = sorted(decoded)
        for i in missing:
            decoded[i] = decoded[max(a for a in available if a <= i) if any(a <= i for a in available) else available[0]]
    return VideoFrames(np.stack([decoded[i] for i in wanted]), wanted, fps, total, "pyav",
                       extra={"substituted_frames": len(missing)})


def _read_decord(path, num_frames, max_fps) -> VideoFrames:
    from decord import VideoReader, cpu

    try:
        reader = VideoReader(path, ctx=cpu(0), num_threads=1)
        total = len(reader)
        if total <= 0:
            raise VideoDecodeError(f"video has no frames: {path}")
        fps = float(reader.get_avg_fps()) or None
        wanted = sample_indices(total, num_frames, fps, max_fps)
        frames = reader.get_batch(wanted).asnumpy()
    except VideoDecodeError:
        raise
    except Exception as exc:  # decord.DECORDError and friends
        raise VideoDecodeError(f"cannot decode {path} with decord: {type(exc).__name__}: {exc}") from exc
    return VideoFrames(frames, wanted, fps, total, "decord")


def _read_torchcodec(path, num_frames, max_fps) -> VideoFrames:
    from torchcodec.decoders import VideoDecoder

    try:
        decoder = VideoDecoder(path)
        total = decoder.metadata.num_frames
        fps = decoder.metadata.average_fps
        wanted = sample_indices(total, num_frames, fps, max_fps)
        frames = decoder.get_frames_at(wanted).data.permute(0, 2, 3, 1).numpy()
    except VideoDecodeError:
        raise
    except Exception as exc:
        raise VideoDecodeError(f"cannot decode {path} with torchcodec: {type(exc).__name__}: {exc}") from exc
    return VideoFrames(frames, wanted, fps, total, "torchcodec")


READERS = {"pyav": _read_pyav, "decord": _read_decord, "torchcodec": _read_torchcodec}


@hookimpl
def longva_read_video(path, num_frames, max_fps, backend):
    if backend is not None:
        if backend not in READERS:
            return None  # a third-party backend name: not ours
        if not _installed(backend):
            raise VideoDecodeError(
                f"video backend {backend!r} is not installed (needed for {path}); "
                f"pip install {'longva-plugins[decord]' if backend == 'decord' else _MODULES[backend]}"
            )
        return READERS[backend](path, num_frames, max_fps)
    for name in DEFAULT_ORDER:
        if _installed(name):
            return READERS[name](path, num_frames, max_fps)
    return None


@hookimpl
def longva_video_backends():
    return {name: _installed(name) for name in DEFAULT_ORDER}
