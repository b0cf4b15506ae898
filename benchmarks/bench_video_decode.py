"""Our video reader vs lmms-eval's ``read_video``: time and peak memory for N frames of a long video.

    python benchmarks/bench_video_decode.py [--minutes 3] [--frames 8,32,128]

Two containers of the same synthetic video: mp4 (reports its frame count) and mkv (reports
none, so lmms-eval falls back to decoding every frame into memory, while ours counts packets
without decoding and then keeps only the sampled frames). Each measurement runs in its own process.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from _measure import measure  # noqa: E402


def make_video(path: str, seconds: int, fps: int = 10, size=(320, 240)) -> str:
    import av
    import numpy as np

    if os.path.exists(path):
        return path
    w, h = size
    tmp = path + ".tmp" + os.path.splitext(path)[1]
    with av.open(tmp, "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(seconds * fps):
            frame = np.full((h, w, 3), (i * 3) % 255, np.uint8)
            frame[:, (i * 7) % w : (i * 7) % w + 10] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)
    return path


def run_ours(path, n, setup_only=False, state=None):
    if setup_only:
        from longva_plugins.plugins import get_plugin_manager

        get_plugin_manager()  # imports and plugin discovery outside the measurement
        return None
    from longva_plugins.video import read_video

    frames = read_video(path, num_frames=n, backend="pyav").frames
    assert len(frames) == n


def run_lmms_eval(path, n, setup_only=False, state=None):
    if setup_only:
        import lmms_eval.models.model_utils.load_video  # noqa: F401

        return None
    from lmms_eval.models.model_utils.load_video import read_video

    frames = read_video(path, num_frm=n, backend="pyav")
    assert len(frames) >= 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3)
    parser.add_argument("--frames", default="8,32,128")
    args = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    folder = tempfile.gettempdir()
    seconds = int(args.minutes * 60)
    table = Table(title=f"Decoding N frames of a {seconds} s, 10 fps, 320x240 video (PyAV backend in both)")
    for col in ("container", "N", "lmms-eval s", "ours s", "time ratio", "lmms-eval MiB", "ours MiB", "memory ratio"):
        table.add_column(col, justify="right")
    for ext in ("mp4", "mkv"):
        path = make_video(os.path.join(folder, f"longva-bench-{seconds}s.{ext}"), seconds)
        for n in [int(x) for x in args.frames.split(",")]:
            lt, lm = measure(run_lmms_eval, path, n)
            ot, om = measure(run_ours, path, n)
            table.add_row(ext, str(n), f"{lt:.2f}", f"{ot:.2f}", f"{lt / ot:.2f}x", f"{lm:.0f}", f"{om:.0f}",
                          f"{lm / max(om, 1):.1f}x")
    Console().print(table)


if __name__ == "__main__":
    main()
