"""PyAV frame reader with seek-based sparse sampling.

Frame ``i`` is the ``i``-th frame of a full sequential decode (presentation order). The reader
first demuxes the stream's packets without decoding (I/O only) to learn every frame's
presentation timestamp and where the keyframes are; frames are then identified by timestamp,
which stays correct with B-frames, variable frame rates, streams whose first timestamp is not 0
and containers that report no frame count. For each wanted frame (in order) it seeks to the
keyframe at or before it when that keyframe lies beyond the current decode position (decoding
forward would cost more), else it decodes forward; frames that nothing refers to (B-frames) are
skipped unless wanted (``skip_frame = "NONREF"`` for their packets), and only kept frames are
converted to RGB.

Sequential decoding is the fallback where seeking cannot be trusted: packets without timestamps,
duplicate timestamps, or a decoded frame whose timestamp is not the expected one (said at debug
level). A damaged file raises :class:`~longva_plugins.errors.VideoDecodeError` naming the path.
"""

from __future__ import annotations

import bisect
import logging

import numpy as np

from longva_plugins.errors import VideoDecodeError

logger = logging.getLogger(__name__)


class _Unreliable(Exception):
    """Seeking gave a frame other than the expected one: decode sequentially instead."""


def _frame_index(container, stream) -> tuple[list[int], list[int]] | None:
    """``(sorted presentation timestamps, sorted keyframe timestamps)`` of every frame, or ``None``
    when the packets do not allow it (missing or duplicate timestamps)."""
    stamps, keys = [], []
    for packet in container.demux(stream):
        if not packet.size:  # the demuxer's final empty packet
            continue
        if packet.pts is None:
            return None
        stamps.append(int(packet.pts))
        if packet.is_keyframe:
            keys.append(int(packet.pts))
    stamps.sort()
    if len(set(stamps)) != len(stamps) or not keys:
        return None
    return stamps, sorted(keys)


def _rgb(frame) -> np.ndarray:
    return frame.to_ndarray(format="rgb24")


def _decode_wanted(container, stream, targets):
    """Frames decoded from the current position on, in presentation order. Packets of frames that
    are not wanted are decoded with ``skip_frame = "NONREF"``: a frame no other frame refers to
    (most B-frames) is then not decoded at all, while every reference frame still is, so each
    wanted frame is exactly the one a full decode gives. Streams without such frames (intra-only,
    or x264 ``ultrafast``: no B-frames) skip nothing."""
    context = stream.codec_context
    try:
        for packet in container.demux(stream):
            mode = "DEFAULT" if packet.pts is None or int(packet.pts) in targets else "NONREF"
            if context.skip_frame != mode:
                context.skip_frame = mode
            yield from packet.decode()
    finally:
        context.skip_frame = "DEFAULT"


def _decode_seeking(container, stream, stamps: list[int], keys: list[int], wanted: list[int], stats: dict):
    """``{index: rgb}`` for the sorted unique ``wanted`` indices, seeking between them; counts
    seeks and decoded frames in ``stats``."""
    targets = {stamps[i]: i for i in wanted}
    order = sorted(targets)
    decoded: dict[int, np.ndarray] = {}
    frames = None
    position = None  # timestamp of the last frame decoded
    pos = 0
    while pos < len(order):
        target = order[pos]
        key = keys[bisect.bisect_right(keys, target) - 1] if keys[0] <= target else keys[0]
        if frames is None or position is None or key > position:
            if frames is not None:
                frames.close()  # resets skip_frame before the next seek
            container.seek(key, stream=stream, backward=True, any_frame=False)
            frames = _decode_wanted(container, stream, targets)
            position = None
            stats["seeks"] += 1
        for frame in frames:
            stats["decoded"] += 1
            pts = frame.pts
            if pts is None:
                raise _Unreliable("decoded frame without a timestamp")
            position = int(pts)
            if position in targets and targets[position] not in decoded:
                decoded[targets[position]] = _rgb(frame)
            if position >= target:
                break
        else:
            break  # end of stream: the remaining targets are past the last decodable frame
        while pos < len(order) and order[pos] <= position:
            if targets[order[pos]] not in decoded:
                raise _Unreliable(f"no frame at timestamp {order[pos]} (decoding passed it at {position})")
            pos += 1
    return decoded


def _decode_sequential(container, stream, wanted: list[int], stats: dict) -> dict[int, np.ndarray]:
    """``{index: rgb}``: decode in order from the start, keeping the wanted frames."""
    container.seek(0)  # the index was built by demuxing the whole stream
    keep = set(wanted)
    last = max(wanted)
    decoded: dict[int, np.ndarray] = {}
    for index, frame in enumerate(container.decode(stream)):
        stats["decoded"] = index + 1
        if index in keep:
            decoded[index] = _rgb(frame)
        if index >= last:
            break
    return decoded


def read_pyav(path: str, num_frames: int | None, max_fps: float | None, indices=None, seek: bool = True):
    """Decode the sampled frames of ``path`` with PyAV (see the module docstring).

    :param indices: explicit frame indices (sequential-decode numbering); otherwise sampled with
        :func:`longva_plugins.video.sample_indices` from ``num_frames`` / ``max_fps``.
    :param seek: ``False`` forces sequential decoding (the reference the tests compare with).
    :return: a :class:`longva_plugins.video.VideoFrames`.
    """
    import av

    from longva_plugins.video import VideoFrames, sample_indices

    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise VideoDecodeError(f"no video stream in {path}")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            fps = float(stream.average_rate) if stream.average_rate else None
            index = _frame_index(container, stream)
            total = len(index[0]) if index else int(stream.frames or 0)
            if index is None and not total:
                container.seek(0)
                total = sum(1 for packet in container.demux(stream) if packet.size)
            if total <= 0:
                raise VideoDecodeError(f"video has no frames: {path}")
            wanted = list(indices) if indices is not None else sample_indices(total, num_frames, fps, max_fps)
            if not wanted:
                raise VideoDecodeError(f"no frame indices to decode from {path}")
            unique = sorted(set(wanted))
            decoded = None
            stats = {"seeks": 0, "decoded": 0, "mode": "seek"}
            if seek and index is not None:
                present = [i for i in unique if 0 <= i < total]
                try:
                    decoded = _decode_seeking(container, stream, index[0], index[1], present, stats) if present else {}
                except _Unreliable as exc:
                    logger.debug("pyav: seeking is unreliable on %s (%s); decoding sequentially", path, exc)
            elif seek:
                logger.debug("pyav: %s has packets without usable timestamps; decoding sequentially", path)
            if decoded is None:
                stats = {"seeks": 0, "decoded": 0, "mode": "sequential"}
                decoded = _decode_sequential(container, stream, unique, stats)
    except VideoDecodeError:
        raise
    except Exception as exc:  # av.error.* and OSError: unreadable / truncated container
        raise VideoDecodeError(f"cannot decode {path} with PyAV: {type(exc).__name__}: {exc}") from exc
    if not decoded:
        raise VideoDecodeError(f"video has no decodable frames (truncated?): {path}")
    missing = [i for i in unique if i not in decoded]
    if missing:  # truncated tail: reuse the last decodable frame, as frame-count estimates overshoot
        available = sorted(decoded)
        for i in missing:
            before = [a for a in available if a <= i]
            decoded[i] = decoded[before[-1] if before else available[0]]
    return VideoFrames(np.stack([decoded[i] for i in wanted]), wanted, fps, total, "pyav",
                       extra={"substituted_frames": len(missing), **stats})


__all__ = ["read_pyav"]
