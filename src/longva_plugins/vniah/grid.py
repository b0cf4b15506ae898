"""The V-NIAH grid (frames x depths x needles) and the reference insertion rule."""

from __future__ import annotations

import os
from dataclasses import dataclass

from longva_plugins.errors import SettingError

PAPER_DEPTHS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


@dataclass(frozen=True)
class GridSpec:
    """Frame counts ``range(frames_min, frames_max + 1, frames_step)`` x ``depths``."""

    frames_min: int
    frames_max: int
    frames_step: int
    depths: tuple[float, ...]

    def __post_init__(self):
        if self.frames_min < 1 or self.frames_step < 1 or self.frames_max < self.frames_min:
            raise SettingError(f"invalid V-NIAH frame range {self.frames_min}..{self.frames_max} step {self.frames_step}")
        bad = [d for d in self.depths if not 0.0 <= d <= 1.0]
        if bad or not self.depths:
            raise SettingError(f"V-NIAH depths must lie in [0, 1]; got {list(self.depths)}")

    @property
    def frame_counts(self) -> list[int]:
        return list(range(self.frames_min, self.frames_max + 1, self.frames_step))


PRESETS = {
    # The paper: 200..3000 step 200 (15 values) x 6 depths (x 5 needles).
    "paper": GridSpec(200, 3000, 200, PAPER_DEPTHS),
    # Quick default that runs on the tiny checkpoint on a laptop CPU.
    "small": GridSpec(4, 16, 4, (0.0, 0.5, 1.0)),
    "medium": GridSpec(50, 500, 50, PAPER_DEPTHS),
}


def parse_grid(spec: str | None) -> GridSpec:
    """A preset name, or ``frames=MIN:MAX:STEP;depths=D1,D2,...``."""
    spec = (spec or "small").strip()
    if spec in PRESETS:
        return PRESETS[spec]
    try:
        fields = dict(part.split("=", 1) for part in spec.split(";") if part)
        lo, hi, step = (int(x) for x in fields["frames"].split(":"))
        depths = tuple(float(x) for x in fields.get("depths", ",".join(map(str, PAPER_DEPTHS))).split(","))
    except (KeyError, ValueError) as exc:
        raise SettingError(
            f"cannot parse V-NIAH grid {spec!r}: use a preset ({', '.join(PRESETS)}) or "
            "'frames=MIN:MAX:STEP;depths=0,0.5,1'"
        ) from exc
    return GridSpec(lo, hi, step, depths)


def insertion_index(depth: float, num_frames: int) -> int:
    """Reference rule: ``idx = int(depth * num_frames)``; the needle goes before haystack[idx]."""
    return int(depth * num_frames)


def cell_order_key(num_frames: int, depth: float, needle_index: int = 0) -> tuple:
    """Order in which cells share the most of one KV cache: by insertion index first (the prefix
    ``[system+user | haystack[:idx]]`` then only grows), then needle and frames (cells with the same
    prefix and needle and more frames extend the previous cell's ``[needle | haystack[idx:n]]``),
    then depth."""
    return insertion_index(depth, num_frames), needle_index, num_frames, depth


def layout(num_frames: int, depth: float) -> list[int | None]:
    """Frame order of one cell: haystack indices with ``None`` where the needle sits.

    ``haystack[:idx] + [needle] + haystack[idx:num_frames]``: ``num_frames + 1`` images.
    """
    idx = insertion_index(depth, num_frames)
    return list(range(idx)) + [None] + list(range(idx, num_frames))


def env_settings() -> dict:
    """The V-NIAH configuration from the environment (documented in docs/vniah.md); where a variable
    is unset, the evaluated checkpoint's ``eval_defaults`` (``vniah_grid``, ``vniah_haystack``,
    ``vniah_needles``, ...), then the package defaults."""
    from longva_plugins.lmms_eval_plugin.task_utils.common import setting

    needles = setting("vniah_needles", "synthetic")
    return {
        "grid": setting("vniah_grid", "small"),
        "haystack": setting("vniah_haystack", "synthetic"),
        "needles": needles,
        "cache_dir": os.environ.get("LONGVA_VNIAH_CACHE"),
        "train_frames": os.environ.get("LONGVA_VNIAH_TRAIN_FRAMES"),
        # vniah_d: the distractor set defaults to the one named like the needle set, if there is one
        "distractors": setting("vniah_distractors") or _named_like(needles),
        "distractor_period": setting("vniah_distractor_period"),
        # vniah_multi
        "multi_kinds": setting("vniah_multi_kinds", "retrieval,ordering,counting"),
        "multi_needles": setting("vniah_multi_needles", "1,2,3"),
        "multi_format": setting("vniah_multi_format", "mc"),
    }


def _named_like(needles: str | None) -> str | None:
    from longva_plugins.vniah.needles import distractor_set_names

    return needles if needles in distractor_set_names() else None


__all__ = ["GridSpec", "PAPER_DEPTHS", "PRESETS", "cell_order_key", "env_settings", "insertion_index", "layout",
           "parse_grid"]
