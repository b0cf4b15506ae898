"""A haystack video of real photographs (scikit-image's sample photos), panned and zoomed.

    python examples/nano/make_photo_video.py --out photos.mp4 --frames 260

One frame a second (V-NIAH samples haystacks at 1 FPS), 336 x 336, H.264 through PyAV. Each frame
is a crop of one of the photographs that drifts and zooms from frame to frame, so consecutive
frames differ like footage. The photographs are read from the installed ``skimage/data`` folder
(no download); install them with ``pip install scikit-image``.
"""

from __future__ import annotations

import argparse
from importlib.util import find_spec
from pathlib import Path

import numpy as np
from PIL import Image

PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg",
          "retina.jpg", "camera.png", "grass.png", "gravel.png", "brick.png", "ihc.png", "color.png", "logo.png")


def photo_folder() -> Path:
    spec = find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the photo haystack needs scikit-image's sample photos: pip install scikit-image")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def frames(count: int, size: int = 336):
    folder = photo_folder()
    photos = [Image.open(folder / name).convert("RGB") for name in PHOTOS if (folder / name).is_file()]
    rng = np.random.default_rng(2024)
    per_shot = 10
    for start in range(0, count, per_shot):
        photo = photos[(start // per_shot) % len(photos)]
        w, h = photo.size
        side0 = rng.uniform(0.5, 1.0) * min(w, h)
        side1 = rng.uniform(0.4, 1.0) * min(w, h)
        x0, y0 = rng.uniform(0, w - side0), rng.uniform(0, h - side0)
        x1, y1 = rng.uniform(0, w - side1), rng.uniform(0, h - side1)
        for k in range(min(per_shot, count - start)):
            t = k / (per_shot - 1)
            side = side0 + (side1 - side0) * t
            x, y = x0 + (x1 - x0) * t, y0 + (y1 - y0) * t
            yield np.asarray(photo.crop((int(x), int(y), int(x + side), int(y + side))).resize((size, size), Image.BICUBIC))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--frames", type=int, default=260)
    args = parser.parse_args()
    import av

    from longva_plugins.fileio import atomic_output

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(args.out) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=1)
            stream.width = stream.height = 336
            stream.pix_fmt = "yuv420p"
            for array in frames(args.frames):
                container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
            container.mux(stream.encode())
    print(f"{args.frames} frames of photographs in {args.out}")


if __name__ == "__main__":
    main()
