"""Procedural images for LongVA-nano: the *framed square* and the scenes it hides in.

The needle object is a small square of one of :data:`COLOURS` in a frame of a fine black-and-white
checker. Stage 2 (short vision) trains on anyres canvases where one tile holds the object among
distractor shapes of every colour (so colour alone never answers the question: only the framed
square counts). The V-NIAH needles (:func:`nano_needles`) show the object on backgrounds of a
style training never used; haystacks are other generators altogether (the V-NIAH synthetic video,
photographs).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

#: The object's colours: name -> RGB. The names are the answers.
COLOURS = {
    "red": (225, 30, 30),
    "green": (30, 175, 45),
    "blue": (35, 70, 230),
    "yellow": (245, 220, 25),
    "orange": (250, 135, 15),
    "purple": (140, 40, 200),
}
#: The question about the object, asked by stage 1 (text), stage 2 (images) and V-NIAH.
QUESTION = "What colour is the framed square? Answer with one word."
#: Anyres canvases of the stage-2 images (w, h): 1 to 9 tiles of 336 px plus the base thumbnail.
CANVASES = ((336, 336), (672, 336), (336, 672), (672, 672), (1008, 672), (672, 1008), (1008, 1008))
TILE = 336


def _rgb(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, size=3))


def _named_or_random(rng: np.random.Generator) -> tuple[int, int, int]:
    """A distractor colour: half the time one of the object's colours (jittered)."""
    if rng.random() < 0.5:
        base = np.array(list(COLOURS.values())[rng.integers(len(COLOURS))])
        return tuple(int(v) for v in np.clip(base + rng.integers(-20, 21, size=3), 0, 255))
    return _rgb(rng)


def background(rng: np.random.Generator, size: tuple[int, int], saturation: float = 1.0) -> Image.Image:
    """A training background (w, h): a two-colour gradient or smooth colour noise, plus grain;
    ``saturation`` scales its colourfulness (0: grey)."""
    w, h = size
    if rng.random() < 0.5:
        a, b = np.array(_rgb(rng), np.float32), np.array(_rgb(rng), np.float32)
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        t = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        pixels = a + (b - a) * t[..., None]
    else:
        cells = rng.integers(2, 7)
        small = rng.integers(0, 256, size=(cells, cells, 3)).astype(np.uint8)
        pixels = np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC), np.float32)
    grey = pixels.mean(axis=-1, keepdims=True)
    pixels = grey + saturation * (pixels - grey)
    pixels = pixels + rng.uniform(0, 18) * rng.standard_normal(size=pixels.shape, dtype=np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def draw_distractor(draw: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, h: int) -> None:
    """One shape of any colour that is *not* the framed square (at most one plain outline)."""
    size = int(rng.integers(16, 160))
    x0, y0 = int(rng.integers(-size // 2, w)), int(rng.integers(-size // 2, h))
    box = (x0, y0, x0 + size, y0 + int(size * rng.uniform(0.5, 1.5)))
    colour = _named_or_random(rng)
    outline = None if rng.random() < 0.6 else ((0, 0, 0) if rng.random() < 0.5 else (255, 255, 255))
    kind = rng.integers(4)
    width = int(rng.integers(2, 6))
    if kind == 0:
        draw.ellipse(box, fill=colour, outline=outline, width=width)
    elif kind == 1:
        draw.rectangle(box, fill=colour, outline=outline, width=width)
    elif kind == 2:
        draw.polygon([(box[0], box[3]), ((box[0] + box[2]) / 2, box[1]), (box[2], box[3])], fill=colour, outline=outline)
    else:
        draw.line([(box[0], box[1]), (box[2], box[3])], fill=colour, width=int(rng.integers(3, 12)))


def draw_object(image: Image.Image, x: int, y: int, size: int, colour: tuple[int, int, int]) -> None:
    """The framed square with top-left ``(x, y)`` and side ``size``, in place: a frame of a fine
    black-and-white checker (3 px cells) around a flat fill of ``colour``."""
    frame = max(6, size // 6)
    yy, xx = np.mgrid[0:size, 0:size]
    square = np.where((((yy // 3) + (xx // 3)) % 2 == 0)[..., None], 0, 255).astype(np.uint8).repeat(3, axis=-1)
    square[frame:size - frame, frame:size - frame] = colour
    image.paste(Image.fromarray(square), (x, y))


def compose(rng: np.random.Generator, difficulty: float = 1.0, canvas: tuple[int, int] | None = None,
            with_object: bool = True, colour: str | None = None) -> tuple[Image.Image, str | None, tuple[int, int, int, int] | None]:
    """A procedural scene: ``(image, colour name or None, square's box (x0, y0, x1, y1) or None)``.

    ``canvas`` (w, h) defaults to a random one of :data:`CANVASES`; the framed square (of a random
    colour, or ``colour``) lies inside one 336 px tile. ``difficulty`` in [0, 1] sets the curriculum: at 0 a large
    square (150-300 px) on a grey background, alone; at 1 a small one (44-96 px) on a colourful
    background among distractor shapes of every colour."""
    if not 0.0 <= difficulty <= 1.0:
        raise ValueError(f"difficulty must lie in [0, 1]; got {difficulty}")
    w, h = canvas or CANVASES[rng.integers(len(CANVASES))]
    image = background(rng, (w, h), saturation=difficulty)
    draw = ImageDraw.Draw(image)
    tiles = max(1, (w * h) // (TILE * TILE))
    for _ in range(int(rng.binomial(2 + 3 * tiles, difficulty))):
        draw_distractor(draw, rng, w, h)
    name = box = None
    if with_object:
        name = list(COLOURS)[rng.integers(len(COLOURS))]  # drawn also when ``colour`` is given: same stream
        name = colour or name
        lo, hi = round(150 + (44 - 150) * difficulty), round(300 + (96 - 300) * difficulty)
        size = int(rng.integers(lo, hi + 1))
        tx, ty = int(rng.integers(max(1, w // TILE))) * TILE, int(rng.integers(max(1, h // TILE))) * TILE
        x, y = tx + int(rng.integers(4, TILE - size - 3)), ty + int(rng.integers(4, TILE - size - 3))
        draw_object(image, x, y, size, COLOURS[name])
        box = (x, y, x + size, y + size)
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    return image, name, box


def training_image(rng: np.random.Generator, difficulty: float = 1.0, with_object: bool = True) -> tuple[Image.Image, str | None]:
    """A stage-2 image (see :func:`compose`): ``(image, colour name or None)``."""
    image, name, _ = compose(rng, difficulty, with_object=with_object)
    return image, name


def cell_labels(box: tuple[int, int, int, int] | None, colour: str | None, grid: int = 4, size: int = TILE,
                share: float = 0.2) -> np.ndarray:
    """Per-cell targets of a ``grid x grid`` split of a ``size`` px tile: ``1 + colour index`` where
    the cell holds at least ``share`` of the square, else 0 (the tower's pretraining labels)."""
    labels = np.zeros(grid * grid, dtype=np.int64)
    if box is None:
        return labels
    x0, y0, x1, y1 = box
    area = (x1 - x0) * (y1 - y0)
    cell = size / grid
    for r in range(grid):
        for c in range(grid):
            ox = max(0.0, min(x1, (c + 1) * cell) - max(x0, c * cell))
            oy = max(0.0, min(y1, (r + 1) * cell) - max(y0, r * cell))
            if ox * oy >= share * area:
                labels[r * grid + c] = 1 + list(COLOURS).index(colour)
    return labels


def needle_image(colour: str, seed: int, size: int = TILE, framed: bool = True) -> Image.Image:
    """A V-NIAH needle: the framed square on a pale textured card beside two plain shapes that do
    not cover it, a style stage 2 never drew (its backgrounds are gradients and colour noise).
    ``framed=False`` draws the same card with a plain square (no checker frame) instead: a V-NIAH-D
    distractor, the same kind of object that does not answer "the framed square"."""
    rng = np.random.default_rng([7919, seed])
    tint = np.array([rng.integers(200, 250) for _ in range(3)], np.float32)
    pixels = tint + rng.normal(0, 6, size=(size, size, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    side = int(rng.integers(60, 90))
    x, y = int(rng.integers(8, size - side - 8)), int(rng.integers(8, size - side - 8))
    draw = ImageDraw.Draw(image)
    for _ in range(2):
        draw_distractor(draw, rng, size, size)
    if framed:
        draw_object(image, x, y, side, COLOURS[colour])  # drawn last: nothing covers it
    else:
        draw.rectangle((x, y, x + side - 1, y + side - 1), fill=COLOURS[colour])
    pad = 6  # and a margin of the card around it, so no shape touches the frame
    margin = np.asarray(image).copy()
    card = np.clip(tint + rng.normal(0, 6, size=margin.shape), 0, 255).astype(np.uint8)
    ring = np.zeros(margin.shape[:2], bool)
    ring[max(0, y - pad):y + side + pad, max(0, x - pad):x + side + pad] = True
    ring[y:y + side, x:x + side] = False
    margin[ring] = card[ring]
    return Image.fromarray(margin)


def nano_needles():
    """The ``nano`` V-NIAH needle set: one needle per colour of :data:`COLOURS`."""
    from longva_plugins.vniah.needles import Needle

    return [Needle(np.asarray(needle_image(name, i)), "\n" + QUESTION, name, id=f"nano-{i}-{name}")
            for i, name in enumerate(COLOURS)]


def nano_distractors():
    """The ``nano`` V-NIAH-D distractor set, paired with :func:`nano_needles` by position: the
    needle's card (same seed, same shapes) with a plain square of the next colour where the framed
    square was -- it looks like the needle but is not a framed square; its answer is its colour."""
    from longva_plugins.vniah.needles import Needle

    names = list(COLOURS)
    out = []
    for i, name in enumerate(names):
        other = names[(i + 1) % len(names)]
        out.append(Needle(np.asarray(needle_image(other, i, framed=False)), "\n" + QUESTION, other,
                          id=f"nano-distractor-{i}-{other}"))
    return out


__all__ = ["CANVASES", "COLOURS", "QUESTION", "background", "cell_labels", "compose", "draw_object", "nano_distractors",
           "nano_needles", "needle_image",
           "training_image"]
