"""V-NIAH needle sets: image + question + short answer, in the ``lmms-lab/v_niah_needles`` format.

Sources, by name:

- ``synthetic`` (built in, offline): five generated images, each a large coloured shape with a
  word on it; every question starts with ``"\\n"``, carries a locating prompt ("Find the frame
  with ...") and an answer-format instruction, and its answer is only visible in the needle.
- a local folder: ``needles.jsonl`` / ``needles.json`` / ``*.parquet`` with columns
  ``image`` (file name relative to the folder, or encoded bytes), ``question``, ``answer``
  (a local snapshot of ``lmms-lab/v_niah_needles`` is such a folder); or the original's
  ``vision_niah/needle_datasets/`` layout: ``dataset.json``, a list of
  ``{"path": <file in images/>, "prompt": "\n<question>", "answer": ...}``, plus ``images/``.
- ``lmms-lab/v_niah_needles`` (split ``test``) through :mod:`datasets` when the hub is reachable.
- names contributed by plugins through the ``longva_needle_sets`` hook.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from longva_plugins.errors import DataError, SettingProblems

HUB_NEEDLES = "lmms-lab/v_niah_needles"


@dataclass
class Needle:
    """One needle: an RGB image ``(H, W, 3)`` uint8, the question and the expected answer."""

    image: np.ndarray
    question: str
    answer: str
    id: str = ""


_SYNTHETIC = [
    ("circle", "red", "APPLE", (230, 30, 30)),
    ("square", "blue", "RIVER", (30, 60, 230)),
    ("triangle", "green", "FOREST", (30, 200, 60)),
    ("star", "yellow", "SUN", (240, 220, 30)),
    ("diamond", "purple", "GRAPE", (150, 40, 200)),
]


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box, colour) -> None:
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=colour)
    elif shape == "diamond":
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=colour)
    else:  # star
        points = []
        for k in range(10):
            r = (x1 - x0) / 2 if k % 2 == 0 else (x1 - x0) / 5
            angle = np.pi / 2 + k * np.pi / 5
            points.append((cx + r * np.cos(angle), cy - r * np.sin(angle)))
        draw.polygon(points, fill=colour)


def _synthetic_card(shape: str, colour, word: str, size: tuple[int, int]) -> np.ndarray:
    """A synthetic needle's card: a large ``shape`` of ``colour`` on white, ``word`` under it."""
    w, h = size
    image = Image.new("RGB", size, (245, 245, 240))
    draw = ImageDraw.Draw(image)
    _draw_shape(draw, shape, (w * 0.15, h * 0.1, w * 0.85, h * 0.8), colour)
    draw.text((w * 0.3, h * 0.85), word, fill=(0, 0, 0))
    return np.asarray(image)


def synthetic_needles(size: tuple[int, int] = (224, 224)) -> list[Needle]:
    """The built-in offline needle set (deterministic)."""
    needles = []
    for i, (shape, colour_name, word, colour) in enumerate(_SYNTHETIC):
        question = (
            f"\nFind the frame with a large {shape} on a white background. "
            f"What colour is the {shape}? Answer the question using a single word or phrase."
        )
        needles.append(Needle(_synthetic_card(shape, colour, word, size), question, colour_name,
                              id=f"synthetic-{i}-{shape}"))
    return needles


def synthetic_distractors(size: tuple[int, int] = (224, 224)) -> list[Needle]:
    """The ``synthetic`` V-NIAH-D distractors, paired with :func:`synthetic_needles` by position:
    the same card (a large shape on white with a word) showing the *next* needle's shape in the
    colour after that -- needle-like, but not the shape its needle's question asks about; its answer
    is its colour."""
    out = []
    for i in range(len(_SYNTHETIC)):
        shape = _SYNTHETIC[(i + 1) % len(_SYNTHETIC)][0]
        _, colour_name, word, colour = _SYNTHETIC[(i + 2) % len(_SYNTHETIC)]
        out.append(Needle(_synthetic_card(shape, colour, word, size), "", colour_name,
                          id=f"synthetic-distractor-{i}-{colour_name}-{shape}"))
    return out


def _decode_image(value, root: Path) -> np.ndarray:
    """The RGB array of a needle image given as bytes, a path or a datasets image dict."""
    try:
        if isinstance(value, dict) and value.get("bytes"):
            image = Image.open(io.BytesIO(value["bytes"]))
        elif isinstance(value, dict) and value.get("path"):
            image = Image.open(root / value["path"])
        elif isinstance(value, (bytes, bytearray)):
            image = Image.open(io.BytesIO(value))
        elif isinstance(value, Image.Image):
            image = value
        else:
            image = Image.open(root / str(value))
        array = np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise DataError(f"needle image {_describe(value)} in {root} cannot be read: {exc}") from exc
    if array.size == 0:
        raise DataError(f"needle image {_describe(value)} in {root} is empty ({array.shape[1]}x{array.shape[0]} px)")
    return array


def _describe(value) -> str:
    if isinstance(value, dict):
        return repr(value.get("path") or "<bytes>")
    return "<bytes>" if isinstance(value, (bytes, bytearray)) else repr(str(value))


def _read_json(path: Path, lines: bool = False):
    """A JSON (or JSON lines) file of a needle folder; a broken one is a setting error naming it."""
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        return [json.loads(line) for line in text.splitlines() if line.strip()] if lines else json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"LONGVA_VNIAH_NEEDLES: {path} is not valid JSON{' lines' if lines else ''} "
                        f"({exc.msg} at line {exc.lineno}, column {exc.colno})") from exc


def _original_rows(root: Path) -> list[dict]:
    """Rows of the original's ``dataset.json`` (``path`` / ``prompt`` / ``answer``) as ours."""
    rows = _read_json(root / "dataset.json")
    if not isinstance(rows, list):
        raise DataError(f"{root / 'dataset.json'} must hold a list of {{\"path\", \"prompt\", \"answer\"}} objects")
    out = []
    for row in rows:
        row = dict(row) if isinstance(row, dict) else {}
        path = str(row.pop("path", ""))
        if path and not (root / path).is_file() and (root / "images" / path).is_file():
            path = f"images/{path}"
        if path:
            row["image"] = path
        if "prompt" in row:
            row["question"] = row.pop("prompt")
        out.append(row)
    return out


def load_needle_folder(folder: str | os.PathLike) -> list[Needle]:
    """Needles from a local folder (see the module docstring for the layout)."""
    root = Path(folder)
    rows: list[dict] = []
    if (root / "dataset.json").is_file():
        rows = _original_rows(root)
    elif (root / "needles.jsonl").is_file():
        rows = _read_json(root / "needles.jsonl", lines=True)
    elif (root / "needles.json").is_file():
        rows = _read_json(root / "needles.json")
    elif parquet := sorted(root.rglob("*.parquet")):  # a hub snapshot keeps them under data/
        import datasets

        rows = list(datasets.load_dataset("parquet", data_files=[str(p) for p in parquet], split="train"))
    else:
        raise DataError(
            f"LONGVA_VNIAH_NEEDLES={root}: no dataset.json (the original's layout), needles.jsonl, needles.json "
            "or *.parquet with image/question/answer columns"
        )
    problems = SettingProblems(f"LONGVA_VNIAH_NEEDLES={root}")
    needles = []
    for i, row in enumerate(rows):
        missing = [k for k in ("image", "question", "answer") if k not in row]
        if missing:
            problems.add_message(f"needle {i} lacks {', '.join(missing)}")
            continue
        try:
            image = _decode_image(row["image"], root)
        except DataError as exc:
            problems.add_message(f"needle {i}: {exc}")
            continue
        needles.append(Needle(image, str(row["question"]), str(row["answer"]), id=f"{root.name}-{i}"))
    if not rows:
        problems.add_message("the folder holds no needles")
    problems.raise_if_any(DataError)
    return needles


def load_hub_needles(name: str = HUB_NEEDLES) -> list[Needle]:
    import datasets

    try:
        rows = datasets.load_dataset(name, split="test")
    except Exception as exc:  # offline or missing: say what to do
        raise DataError(
            f"cannot load needle set {name!r} from the hub ({type(exc).__name__}); offline, download it once and "
            "point LONGVA_VNIAH_NEEDLES at a local folder, or use the built-in 'synthetic' set"
        ) from exc
    return [Needle(np.asarray(r["image"].convert("RGB")), r["question"], r["answer"], id=f"hub-{i}") for i, r in enumerate(rows)]


def needles_digest(needles: list[Needle]) -> str:
    """A hash of every needle's image, question, answer and id: what embedding caches key on, so
    a needle set whose content changes (a folder edited, a generator changed) is never served stale."""
    h = hashlib.sha256()
    for needle in needles:
        image = np.ascontiguousarray(needle.image)
        h.update(json.dumps([needle.id, needle.question, needle.answer, list(image.shape), str(image.dtype)]).encode())
        h.update(image.tobytes())
    return h.hexdigest()[:16]


def distractor_set_names() -> list[str]:
    """The names of the distractor sets plugins contribute (``longva_distractor_sets``)."""
    from longva_plugins.plugins import get_plugin_manager

    return sorted({name for contribution in get_plugin_manager().hook.longva_distractor_sets()
                   for name in (contribution or {})})


def resolve_distractors(spec: str | None, needles: list[Needle]) -> tuple[str, list[Needle]]:
    """``(identity, distractors)`` for a distractor-set name (``longva_distractor_sets`` hook) or a
    folder in a needle folder's layout, paired with ``needles`` by position (same count)."""
    from longva_plugins.errors import SettingError
    from longva_plugins.plugins import get_plugin_manager

    found = None
    for contribution in get_plugin_manager().hook.longva_distractor_sets():
        if spec and contribution and spec in contribution and found is None:
            found = (f"plugin-distractors:{spec}", list(contribution[spec]()))
    if found is None and spec and os.path.isdir(spec):
        found = (f"folder-distractors:{os.path.abspath(spec)}", load_needle_folder(spec))
    if found is None:
        what = (f"={spec!r} is not a distractor set" if spec
                else " is unset and the needle set has no distractor set of its name")
        raise SettingError(f"LONGVA_VNIAH_DISTRACTORS{what}; allowed: {', '.join(distractor_set_names())} "
                           "or a folder in a needle folder's layout (one distractor per needle)")
    identity, distractors = found
    if len(distractors) != len(needles):
        raise SettingError(f"LONGVA_VNIAH_DISTRACTORS={spec!r} has {len(distractors)} distractors but the needle set "
                           f"has {len(needles)}; allowed: a set with one distractor per needle (paired by position)")
    return f"{identity}:{needles_digest(distractors)}", distractors


def resolve_needles(spec: str | None) -> tuple[str, list[Needle]]:
    """``(identity, needles)`` for a needle-set name or folder; the identity ends with
    :func:`needles_digest` of the content."""
    spec = spec or "synthetic"

    def named(kind: str, needles: list[Needle]) -> tuple[str, list[Needle]]:
        return f"{kind}:{needles_digest(needles)}", needles

    if spec == "synthetic":
        return named("synthetic:v1", synthetic_needles())
    from longva_plugins.plugins import get_plugin_manager

    for contribution in get_plugin_manager().hook.longva_needle_sets():
        if contribution and spec in contribution:
            return named(f"plugin:{spec}", list(contribution[spec]()))
    if os.path.isdir(spec):
        return named(f"folder:{os.path.abspath(spec)}", load_needle_folder(spec))
    if spec == HUB_NEEDLES or "/" in spec:
        return named(f"hub:{spec}", load_hub_needles(spec))
    raise DataError(f"unknown needle set {spec!r}: use 'synthetic', a folder, or {HUB_NEEDLES}")


__all__ = ["HUB_NEEDLES", "Needle", "distractor_set_names", "load_hub_needles", "load_needle_folder", "resolve_distractors",
           "resolve_needles",
           "synthetic_distractors", "synthetic_needles"]
