"""Videos of several codecs and structures, written with PyAV for the decoding tests."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

#: name -> (file suffix, codec, stream options, variable frame rate, first pts, rotation)
KINDS = {
    "h264_bframes": (".mp4", "libx264", {"g": "12", "bf": "3"}, False, 0, None),
    "h264_no_bframes": (".mp4", "libx264", {"g": "12", "bf": "0"}, False, 0, None),
    "h264_gop250": (".mp4", "libx264", {"g": "250", "bf": "2"}, False, 0, None),
    "mpeg4_gop12": (".mp4", "mpeg4", {"g": "12"}, False, 0, None),
    "mpeg4_gop250": (".mp4", "mpeg4", {"g": "250"}, False, 0, None),
    "vp9_webm": (".webm", "libvpx-vp9", {"g": "30", "deadline": "realtime", "cpu-used": "8"}, False, 0, None),
    "mjpeg_avi": (".avi", "mjpeg", {}, False, 0, None),
    "h264_vfr_offset": (".mkv", "libx264", {"g": "24", "bf": "2"}, True, 5000, None),
    "mkv_no_count": (".mkv", "mpeg4", {"g": "50"}, False, 0, None),
    "h264_rotated": (".mp4", "libx264", {"g": "24", "bf": "2"}, False, 0, "90"),
}


def frame_pattern(i: int, size=(64, 48)) -> np.ndarray:
    """A frame that differs from its neighbours (moving bar, drifting colour, seeded noise)."""
    w, h = size
    rng = np.random.default_rng(i)
    frame = np.zeros((h, w, 3), np.uint8)
    frame[:] = ((i * 7) % 256, (i * 13) % 256, (255 - i * 5) % 256)
    frame[:, (i * 3) % w : (i * 3) % w + 8] = 255
    frame[: h // 4, : w // 4] = rng.integers(0, 255, size=(h // 4, w // 4, 3))
    return frame


def write_kind(folder: Path, kind: str, num_frames: int = 90, fps: int = 24) -> Path:
    import av

    suffix, codec, options, vfr, first_pts, rotation = KINDS[kind]
    path = Path(folder) / f"{kind}{suffix}"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height = 64, 48
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        if vfr:
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            stream.metadata["rotate"] = rotation
        pts = first_pts
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(frame_pattern(i), format="rgb24")
            if vfr:  # irregular gaps: 20, 40 or 70 ms
                frame.pts = pts
                frame.time_base = Fraction(1, 1000)
                pts += (20, 40, 70)[i % 3]
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
