"""Frame sampling: our PyAV reader vs lmms-eval's ``read_video``, decord and torchcodec.

    python benchmarks/bench_video_decode.py [--minutes 1,10] [--gops 12,250] [--bframes 0,3] [--frames 8,16,32,64,128,384]

Videos: 640x360, 24 fps h264 (x264, ``ultrafast``), a keyframe every GOP frames (250 is x264's
default), without B-frames (``--bframes 0``: ultrafast's default) and with x264's default 3
B-frames and B-pyramid (``--bframes 3``), written once into the temp folder. For each video and each N (uniform
``linspace(0, n-1, N)``) and 1-FPS sampling (``max_fps=1``), every reader runs in a fresh process
(:mod:`_measure`): wall time and peak memory growth, side by side, with the ratios
lmms-eval / ours and decord / ours (> 1: ours is faster). torchcodec is measured when it imports.

``decoded``: the share of the stream's frames our reader decodes. It must decode every *reference*
frame from a sample's keyframe up to the sample; frames nothing refers to (most B-frames) it skips
unless they are samples (``skip_frame = "NONREF"``), so with B-frames the share drops below that of
a decoder that decodes everything on its way. ``pass share``: lmms-eval's time over ``decoded`` x one
full decoding pass (measured too) -- what a reader decoding that share at full-pass speed would gain.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from _measure import measure  # noqa: E402

SIZE = (640, 360)
FPS = 24


def make_video(path: str, seconds: int, gop: int, bframes: int = 0) -> str:
    """A ``seconds``-long h264 mp4 with a keyframe every ``gop`` frames (moving, changing content)
    and ``bframes`` consecutive B-frames at most (0: none; 3 with B-pyramid: x264's default)."""
    import av
    import numpy as np

    if os.path.exists(path):
        return path
    w, h = SIZE
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 255 // (w + h)], axis=-1).astype(np.uint8)
    noise = np.random.default_rng(0).integers(0, 255, size=(h // 6, w // 6, 3), dtype=np.uint8)
    tmp = path + ".tmp.mp4"
    with av.open(tmp, "w") as container:
        options = {"g": str(gop), "preset": "ultrafast", "crf": "28"}
        if bframes:
            options["x264-params"] = f"bframes={bframes}:b-pyramid=normal"
        stream = container.add_stream("libx264", rate=FPS, options=options)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(seconds * FPS):
            frame = np.roll(base, shift=(i * 3) % w, axis=1)
            frame[: h // 6, : w // 6] = np.roll(noise, i, axis=0)  # a textured patch that changes
            frame[h // 2 : h // 2 + 40, (i * 4) % (w - 40) : (i * 4) % (w - 40) + 40] = (i * 5) % 256
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)
    return path


def _count(n):
    return None if n == "1fps" else int(n)


def run_ours(path, n, setup_only=False, state=None):
    if setup_only:
        from longva_plugins.plugins import get_plugin_manager

        get_plugin_manager()  # imports and plugin discovery outside the measurement
        return None
    from longva_plugins.video import read_video

    result = read_video(path, num_frames=_count(n), max_fps=1.0 if n == "1fps" else None, backend="pyav")
    assert len(result.frames) >= 1


def run_decode_all(path, n, setup_only=False, state=None):
    """Every frame decoded (threaded PyAV, no conversion): the cost of one pass over the stream."""
    if setup_only:
        import av  # noqa: F401

        return None
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        assert sum(1 for _ in container.decode(stream)) >= 1


def decoded_fraction(path, n) -> float:
    """The share of the stream's frames our reader decodes for this sampling (its own count)."""
    from longva_plugins.video import probe_video, read_video

    result = read_video(path, num_frames=_count(n), max_fps=1.0 if n == "1fps" else None, backend="pyav")
    return result.extra["decoded"] / probe_video(path)[1]  # (fps, frame count)


def run_lmms_eval(path, n, setup_only=False, state=None):
    if setup_only:
        import lmms_eval.models.model_utils.load_video  # noqa: F401

        return None
    from lmms_eval.models.model_utils.load_video import read_video

    if n == "1fps":
        frames = read_video(path, num_frm=10**6, fps=1, backend="pyav")
    else:
        frames = read_video(path, num_frm=_count(n), backend="pyav")
    assert len(frames) >= 1


def _wanted(total: int, fps: float, n) -> list[int]:
    import numpy as np

    if n == "1fps":
        return list(range(0, total, max(1, round(fps))))
    return np.linspace(0, total - 1, int(n)).astype(int).tolist()


def run_decord(path, n, setup_only=False, state=None):
    """decord called directly (its own index, get_batch), as a user of decord would."""
    if setup_only:
        import decord  # noqa: F401

        return None
    from decord import VideoReader, cpu

    reader = VideoReader(path, ctx=cpu(0), num_threads=1)
    frames = reader.get_batch(_wanted(len(reader), reader.get_avg_fps(), n)).asnumpy()
    assert len(frames) >= 1


def run_torchcodec(path, n, setup_only=False, state=None):
    if setup_only:
        import torchcodec.decoders  # noqa: F401

        return None
    from torchcodec.decoders import VideoDecoder

    decoder = VideoDecoder(path)
    meta = decoder.metadata
    frames = decoder.get_frames_at(_wanted(meta.num_frames, meta.average_fps, n)).data
    assert len(frames) >= 1


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None and bool(__import__(module))
    except Exception:
        return False


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", default="1,10", help="video lengths in minutes (the issue also asks for 60)")
    parser.add_argument("--gops", default="12,250")
    parser.add_argument("--bframes", default="0,3", help="B-frames of each video (0: none, 3: x264's default)")
    parser.add_argument("--frames", default="8,16,32,64,128,384")
    args = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    readers = [("lmms-eval", run_lmms_eval), ("ours", run_ours)]
    if _importable("decord"):
        readers.append(("decord", run_decord))
    if _importable("torchcodec"):
        readers.append(("torchcodec", run_torchcodec))
    folder = tempfile.gettempdir()
    samplings = [x for x in args.frames.split(",") if x] + ["1fps"]
    table = Table(title=f"Sampling frames from {SIZE[0]}x{SIZE[1]} {FPS} fps h264 (fresh process each; s / peak MiB)")
    for col in ("video", "GOP", "B", "N", *(f"{name} s" for name, _ in readers), "lmms/ours", "decord/ours",
                "decoded", "pass share", *(f"{name} MiB" for name, _ in readers)):
        table.add_column(col, justify="right")
    console = Console()
    for minutes in [float(m) for m in args.minutes.split(",")]:
        for gop, bframes in [(int(g), int(b)) for g in args.gops.split(",") for b in args.bframes.split(",")]:
            seconds = int(minutes * 60)
            name = f"longva-bench-h264-{seconds}s-gop{gop}" + (f"-b{bframes}" if bframes else "") + ".mp4"
            path = make_video(os.path.join(folder, name), seconds, gop, bframes)
            one_pass, _ = measure(run_decode_all, path, None)
            console.print(f"{minutes:g} min GOP {gop} B {bframes}: decoding every frame takes {one_pass:.2f}s")
            for n in samplings:
                # What our reader decodes, at one full pass's speed: `fraction * one_pass`.
                fraction = decoded_fraction(path, n)
                times, mems = {}, {}
                for name, fn in readers:
                    times[name], mems[name] = measure(fn, path, n)
                ratio = lambda a: f"{times[a] / times['ours']:.2f}x" if a in times else "-"  # noqa: E731
                table.add_row(f"{minutes:g} min", str(gop), str(bframes), n, *(f"{times[name]:.2f}" for name, _ in readers),
                              ratio("lmms-eval"), ratio("decord"), f"{fraction:.0%}",
                              f"{times['lmms-eval'] / (fraction * one_pass):.2f}x",
                              *(f"{mems[name]:.0f}" for name, _ in readers))
                console.print(f"{minutes:g} min GOP {gop} B {bframes} N={n}: " + ", ".join(f"{k} {v:.2f}s" for k, v in times.items()))
    console.print(table)


if __name__ == "__main__":
    main()
