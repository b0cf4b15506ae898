"""LongVA-nano stage 2 data: procedural single images in LLaVA's conversation format.

    python examples/nano/make_images.py --out DIR --count 4000 --seed 0

Writes ``DIR/images/*.jpg`` and ``DIR/data.json``: each image is an anyres canvas (1 to 9 tiles of
336 px) with one framed square in one tile, at a curriculum ``--difficulty`` (0: a large square on
grey; 1: a small one among distractor shapes of every colour on a colourful background); the
conversation asks the square's colour. No video, and every sample stays under 256 tokens (at most 10 tiles x 16 visual
tokens plus the text).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--count", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--difficulty", default="1", help="curriculum level in [0, 1], or FROM:TO to ramp over the images")
    args = parser.parse_args()
    from rich.progress import track

    from longva_plugins.fileio import atomic_output, atomic_write_text
    from longva_plugins.nano.scenes import QUESTION, training_image

    out = Path(args.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    records = []
    lo, _, hi = args.difficulty.partition(":")
    lo, hi = float(lo), float(hi or lo)
    for i in track(range(args.count), description="stage-2 images"):
        level = lo + (hi - lo) * i / max(args.count - 1, 1)
        image, colour = training_image(np.random.default_rng([args.seed, i]), difficulty=level)
        name = f"images/{i:06d}.jpg"
        with atomic_output(out / name) as tmp:
            image.save(tmp, format="JPEG", quality=92)
        records.append({"id": f"nano-{args.seed}-{i}", "image": name,
                        "conversations": [{"from": "human", "value": f"<image>\n{QUESTION}"},
                                          {"from": "gpt", "value": colour}]})
    atomic_write_text(out / "data.json", json.dumps(records))
    print(f"{len(records)} images in {out}")


if __name__ == "__main__":
    main()
