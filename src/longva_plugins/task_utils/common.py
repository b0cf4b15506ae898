"""Shared helpers for video multiple-choice tasks: media roots, answer extraction, breakdowns."""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path

from longva_plugins.errors import DataError

VIDEO_EXTENSIONS = (".mp4", ".MP4", ".mkv", ".webm", ".avi", ".mov")


def hf_home() -> Path:
    return Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))


def media_root(env_var: str, default: Path) -> Path:
    return Path(os.environ.get(env_var) or default)


def find_video(root: Path, name: str) -> str:
    """The video path for ``name`` under ``root``, trying the usual extensions.

    Returns the first candidate even when none exists: the model reports a missing file by its
    path and the task counts it, instead of exiting.
    """
    base = root / name
    stem = base.with_suffix("") if base.suffix in VIDEO_EXTENSIONS else base
    candidates = [base] + [stem.with_suffix(ext) for ext in VIDEO_EXTENSIONS]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    return str(base if base.suffix else stem.with_suffix(".mp4"))


_PHRASES = r"(?:the\s+)?(?:correct\s+|best\s+|final\s+)?(?:answer|option|choice)\s*(?:is|:)?\s*"


def extract_choice(text, choices: str = "ABCD", options: list[str] | None = None) -> str:
    """The option letter a free-form answer names, or ``""`` when none (or an ambiguous set) is named.

    Priority: a letter opening the answer ("B", "(B)", "B.", "B) red", "b"); a letter after an
    answer phrase ("The answer is B."); a single standalone letter anywhere; the text of exactly
    one option ("red" when an option reads "B. red"). Several different standalone letters with
    none in front ("A or C") is ambiguous and gives ``""``.
    """
    if not isinstance(text, str):
        return ""
    s = text.strip()
    if not s:
        return ""
    letters = re.escape(choices) + re.escape(choices.lower())
    start = re.match(rf"^[\(\[\s]*([{letters}])(?:[\)\]\.:,\s]|$)", s)
    if start:
        return start.group(1).upper()
    phrase = re.search(rf"{_PHRASES}[\(\[]?([{letters}])(?![A-Za-z])", s, flags=re.IGNORECASE)
    if phrase:
        return phrase.group(1).upper()
    standalone = {m.group(1) for m in re.finditer(rf"(?<![A-Za-z])[\(\[]?([{re.escape(choices)}])[\)\]\.]?(?![A-Za-z])", s)}
    if len(standalone) == 1:
        return standalone.pop()
    if options:
        lowered = s.lower().rstrip(".")
        hits = []
        for letter, option in zip(choices, options):
            body = re.sub(rf"^\(?[{re.escape(choices)}][\)\.:]\s*", "", str(option)).strip().lower().rstrip(".")
            if body and (lowered == body or re.search(rf"\b{re.escape(body)}\b", lowered)):
                hits.append(letter)
        if len(hits) == 1:
            return hits[0]
    return ""


def accuracy_by(items: list[dict], key: str) -> dict[str, float]:
    groups: dict[str, list[float]] = defaultdict(list)
    for item in items:
        groups[str(item.get(key, "unknown"))].append(float(item["score"]))
    return {name: 100.0 * sum(v) / len(v) for name, v in sorted(groups.items())}


def missing_report(items: list[dict]) -> dict:
    missing = sorted({item["video_path"] for item in items if item.get("missing_video")})
    return {"missing_videos": len(missing), "missing_video_paths": missing[:50]}


def load_annotations(env_var: str, hub_name: str, split: str, what: str, root_hint: Path):
    """Annotations from a local parquet/json/jsonl (``env_var``) or the hub; a clear error if neither."""
    import datasets

    local = os.environ.get(env_var)
    if local:
        path = Path(local)
        if not path.exists():
            raise DataError(f"{env_var}={local} does not exist; point it at the {what} annotation file (parquet/json/jsonl)")
        files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
        if not files:
            raise DataError(f"{env_var}={local} holds no parquet file; point it at the {what} annotation file")
        kind = "parquet" if files[0].suffix == ".parquet" else "json"
        return datasets.load_dataset(kind, data_files=[str(f) for f in files], split="train")
    try:
        return datasets.load_dataset(hub_name, split=split)
    except Exception as exc:
        raise DataError(
            f"{what} annotations not found: set {env_var} to a local copy of {hub_name} (parquet or json in the "
            f"official column schema), or run once online so datasets caches it; videos go under {root_hint} "
            f"(override with the matching *_ROOT variable). ({type(exc).__name__}: {str(exc)[:200]})"
        ) from exc


__all__ = ["accuracy_by", "extract_choice", "find_video", "hf_home", "load_annotations", "media_root", "missing_report"]
