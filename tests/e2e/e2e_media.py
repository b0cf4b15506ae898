"""Synthetic media for end-to-end tests: small mp4 videos (PyAV) and PNG images."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_video(path: str | Path, num_frames: int = 12, size: tuple[int, int] = (64, 48), fps: int = 4, seed: int = 0) -> Path:
    """A short mp4 whose frames differ (moving bar on a seeded colour)."""
    import av

    width, height = size
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=3)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(num_frames):
            frame = np.zeros((height, width, 3), np.uint8)
            frame[:] = base
            frame[:, (i * 5) % width : (i * 5) % width + 6] = 255
            for packet in stream.encode(__import__("av").VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return Path(path)


def write_image(path: str | Path, size: tuple[int, int] = (120, 80), seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    array = rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(array).save(path)
    return Path(path)


def write_corrupt_video(path: str | Path) -> Path:
    Path(path).write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 200)
    return Path(path)
