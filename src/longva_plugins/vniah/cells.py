"""What a V-NIAH cell shows: its *items*, the images in order, and how they are written down.

An item is a haystack frame (its 1-FPS index, an ``int``) or an inserted image (a ``str``):
``"n3"`` is needle 3 of the needle set, ``"d3"`` distractor 3 of the distractor set. Every task of
the V-NIAH family (``vniah``, ``vniah_d``, ``vniah_multi``) is a list of cells, each a list of items
plus a question and an answer; the scorer (:mod:`longva_plugins.vniah.scoring`) keeps one KV cache
holding the items of the previous cell and prefills only what differs from the next one.

Items travel in lmms-eval documents as a compact string (:func:`encode_items`): ``"0-9,n3,10-15"``.
"""

from __future__ import annotations

import random

from longva_plugins.vniah.grid import insertion_index, layout

Item = int | str

#: VideoRoPE's V-NIAH-D: the distractor sits this many frames before or after the needle
#: (``cycle = 200`` in ``vision_niah_d/eval_vision_niah_interrupt.py``).
VIDEOROPE_PERIOD = 200
#: The seed of VideoRoPE's ``random.random()`` stream that picks the distractor's side.
VIDEOROPE_SEED = 24242424


def needle_item(index: int) -> str:
    return f"n{index}"


def distractor_item(index: int) -> str:
    return f"d{index}"


def runs(items: list[Item]) -> list[range | str]:
    """``items`` with every run of consecutive haystack frames as one ``range``:
    ``[0, 1, 2, "n3", 3, 4]`` -> ``[range(0, 3), "n3", range(3, 5)]``."""
    out: list[range | str] = []
    for item in items:
        if isinstance(item, str):
            out.append(item)
        elif out and isinstance(out[-1], range) and out[-1].stop == item:
            out[-1] = range(out[-1].start, item + 1)
        else:
            out.append(range(item, item + 1))
    return out


def encode_items(items: list[Item]) -> str:
    """``[0, 1, 2, "n3", 3, 4]`` -> ``"0-2,n3,3-4"`` (runs of consecutive frames as ranges)."""
    return ",".join(part if isinstance(part, str) else str(part.start) if len(part) == 1
                    else f"{part.start}-{part.stop - 1}" for part in runs(items))


def decode_items(text: str) -> list[Item]:
    """The inverse of :func:`encode_items`."""
    items: list[Item] = []
    for part in filter(None, text.split(",")):
        if part[0].isdigit():
            lo, _, hi = part.partition("-")
            items.extend(range(int(lo), int(hi or lo) + 1))
        else:
            items.append(part)
    return items


def haystack_frames_used(items: list[Item]) -> int:
    """How many haystack frames (from the start of the haystack) a cell needs."""
    return max((i for i in items if isinstance(i, int)), default=-1) + 1


def order_key(items: list[Item]) -> bytes:
    """Cells sorted by this key visit the tree of their item lists depth first, so with one KV cache
    holding the previous cell's items every shared prefix is prefilled once.

    The order is the items' lexicographic order (frames by index, before inserts; inserts by name),
    packed into one bytes object -- ``00`` + 4 big-endian bytes a frame, ``01`` + the name + ``00``
    an insert -- so a run holding thousands of requests of thousands of frames keeps 5 bytes a frame
    per request for its sort, not a Python object per frame."""
    return b"".join(b"\x00" + i.to_bytes(4, "big") if isinstance(i, int) else b"\x01" + i.encode() + b"\x00"
                    for i in items)


def needle_cell(num_frames: int, depth: float, needle_index: int) -> list[Item]:
    """The V-NIAH cell: ``haystack[:idx] + [needle] + haystack[idx:num_frames]``."""
    return [needle_item(needle_index) if i is None else i for i in layout(num_frames, depth)]


# --------------------------------------------------------------------------- V-NIAH-D
def distractor_side(num_frames: int, depth: float, period: int, draw: float) -> str:
    """Where VideoRoPE's V-NIAH-D puts the distractor of a cell: ``"before"`` (``period`` frames
    before the needle), ``"after"`` (``period`` frames after it) or ``"none"`` (neither fits), with
    ``draw`` in [0, 1) choosing when both fit -- the original's rule, condition for condition."""
    idx = insertion_index(depth, num_frames)
    if idx - period <= 0 and idx + period >= num_frames:
        return "none"
    if idx < period:
        return "after"
    if idx + period >= num_frames:
        return "before"
    return "before" if draw < 0.5 else "after"


def distractor_cell(num_frames: int, depth: float, needle_index: int, side: str, period: int) -> list[Item]:
    """The V-NIAH-D cell: the V-NIAH cell with the needle's distractor inserted before haystack
    frame ``idx - period`` (side ``"before"``) or ``idx + period`` (``"after"``)."""
    idx = insertion_index(depth, num_frames)
    items = needle_cell(num_frames, depth, needle_index)
    if side == "none":
        return items
    at = idx - period if side == "before" else idx + period
    position = items.index(at)
    return items[:position] + [distractor_item(needle_index)] + items[position:]


def videorope_draws(count: int) -> list[float]:
    """The first ``count`` values of VideoRoPE's stream (one per cell, in its loop order: frames,
    then depth, then needle), so a grid it also ran gets its sides."""
    rng = random.Random(VIDEOROPE_SEED)
    return [rng.random() for _ in range(count)]


def default_period(max_frames: int) -> int:
    """VideoRoPE's 200 frames, or a quarter of the grid's longest cell where that is shorter (a
    grid of at most 200 frames would otherwise hold no distractor)."""
    return max(1, min(VIDEOROPE_PERIOD, max_frames // 4))


__all__ = ["Item", "runs", "VIDEOROPE_PERIOD", "VIDEOROPE_SEED", "decode_items", "default_period", "distractor_cell",
           "distractor_item", "distractor_side", "encode_items", "haystack_frames_used", "needle_cell", "needle_item",
           "order_key", "videorope_draws"]
