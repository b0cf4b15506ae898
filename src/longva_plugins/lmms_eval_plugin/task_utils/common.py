"""Shared helpers of the video multiple-choice tasks: media roots, annotation loading, answer
extraction, missing-video bookkeeping and breakdown aggregation.

Used by :mod:`longva_plugins.lmms_eval_plugin.task_utils.videomme` and :mod:`longva_plugins.lmms_eval_plugin.task_utils.mlvu`; the
task folders ``tasks/longva_videomme`` and ``tasks/longva_mlvu`` only re-export those functions.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
from collections import defaultdict
from pathlib import Path

from longva_plugins.errors import DataError, SettingError
from longva_plugins.fileio import atomic_write_text

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".MP4", ".mkv", ".webm", ".avi", ".mov")
ANNOTATION_SUFFIXES = (".parquet", ".json", ".jsonl")

#: Environment variable choosing the answer extraction (see :func:`extract_choice`).
ANSWER_EXTRACTION_ENV = "LONGVA_ANSWER_EXTRACTION"
ANSWER_EXTRACTION_MODES = ("lmms_eval", "paper")


# --------------------------------------------------------------------------- media and data
#: Evaluation defaults a checkpoint may declare in its config (``"eval_defaults": {...}``), used
#: when the user sets none: key -> the environment variable it stands in for.
CHECKPOINT_DEFAULT_SETTINGS = {
    "vniah_needles": "LONGVA_VNIAH_NEEDLES",
    "vniah_haystack": "LONGVA_VNIAH_HAYSTACK",
    "vniah_grid": "LONGVA_VNIAH_GRID",
    "vniah_distractors": "LONGVA_VNIAH_DISTRACTORS",
    "vniah_distractor_period": "LONGVA_VNIAH_DISTRACTOR_PERIOD",
    "vniah_multi_kinds": "LONGVA_VNIAH_MULTI_KINDS",
    "vniah_multi_needles": "LONGVA_VNIAH_MULTI_NEEDLES",
    "vniah_multi_format": "LONGVA_VNIAH_MULTI_FORMAT",
}
_CHECKPOINT_DEFAULTS: dict[str, str] = {}


def set_checkpoint_defaults(defaults: dict | None, checkpoint: str = "") -> None:
    """Record the ``eval_defaults`` of the checkpoint being evaluated (the ``longva`` model does, when
    it loads: lmms-eval builds the model before the tasks). Unknown keys are logged and ignored."""
    _CHECKPOINT_DEFAULTS.clear()
    for key, value in (defaults or {}).items():
        if key in CHECKPOINT_DEFAULT_SETTINGS:
            _CHECKPOINT_DEFAULTS[key] = str(value)
        else:
            logger.warning("checkpoint %s: unknown eval_defaults key %r ignored (known: %s)", checkpoint, key,
                           ", ".join(CHECKPOINT_DEFAULT_SETTINGS))
    if _CHECKPOINT_DEFAULTS:
        logger.info("checkpoint %s declares evaluation defaults %s (used where the environment sets none)",
                    checkpoint, _CHECKPOINT_DEFAULTS)


def setting(key: str, fallback: str | None = None) -> str | None:
    """A task setting: its environment variable, else the checkpoint's declared default, else ``fallback``."""
    return os.environ.get(CHECKPOINT_DEFAULT_SETTINGS[key]) or _CHECKPOINT_DEFAULTS.get(key) or fallback


def hf_home() -> Path:
    """``$HF_HOME`` (default ``~/.cache/huggingface``), where lmms-eval's built-in tasks cache videos."""
    return Path(os.path.expanduser(os.environ.get("HF_HOME") or "~/.cache/huggingface"))


def media_root(env_var: str, default: Path) -> Path:
    """The folder named by ``env_var``, else ``default`` (the built-in task's layout)."""
    value = os.environ.get(env_var)
    return Path(os.path.expanduser(value)) if value else default


def find_video(root: Path, name: str) -> str:
    """The video path for ``name`` under ``root``, trying the usual extensions (.mp4, .MP4, .mkv, ...).

    Returns the ``.mp4`` candidate even when no file exists: the model then reports the missing
    file by its path and the task counts it, instead of exiting like lmms-eval's built-in tasks.
    """
    base = Path(root) / name
    stem = base.with_suffix("") if base.suffix in VIDEO_EXTENSIONS else base
    candidates = [base] + [stem.with_suffix(ext) for ext in VIDEO_EXTENSIONS]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    return str(base if base.suffix in VIDEO_EXTENSIONS else stem.with_suffix(".mp4"))


def video_problem(path: str) -> str | None:
    """Why ``path`` cannot be a readable video (``"missing"``, ``"empty"``, ``"unreadable"``), or ``None``.

    A cheap check on the file system only; decoding errors of present files are the model's to
    report (the ``longva`` adapter logs them and answers empty, which is scored as wrong).
    """
    if not os.path.exists(path):
        return "missing"
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        return "unreadable"
    if os.path.getsize(path) == 0:
        return "empty"
    return None


def _annotation_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    for suffix in ANNOTATION_SUFFIXES:  # the hub layouts keep parquet shards in a sub-folder
        files = sorted(p for p in path.rglob(f"*{suffix}") if p.is_file())
        if files:
            return files
    return []


def load_annotations(env_var: str, hub_name: str, split: str, what: str, video_hint: str):
    """The annotation rows of a benchmark as a ``datasets.Dataset``.

    From the local parquet/json/jsonl file or folder named by ``env_var`` when set, otherwise from
    the hub dataset ``hub_name`` (which works offline once cached). Raises :class:`DataError`
    naming what to download and where to put it when neither is available.

    :param what: a human name of the data, for messages ("Video-MME").
    :param video_hint: where the videos are expected, for messages.
    """
    import datasets

    local = os.environ.get(env_var)
    if local:
        path = Path(os.path.expanduser(local))
        files = _annotation_files(path) if path.exists() else []
        if not files:
            raise DataError(
                f"{env_var}={local}: no annotation file there. Point it at a local copy of the {what} "
                f"annotations ({hub_name}, parquet or json/jsonl in the official column schema), e.g. "
                f"`hf download {hub_name} --repo-type dataset --local-dir <dir>` then {env_var}=<dir>."
            )
        kind = "parquet" if files[0].suffix == ".parquet" else "json"
        try:
            return datasets.load_dataset(kind, data_files=[str(f) for f in files], split="train")
        except Exception as exc:
            raise DataError(f"{env_var}={local}: cannot read {what} annotations ({type(exc).__name__}: {exc})") from exc
    try:
        return datasets.load_dataset(hub_name, split=split)
    except Exception as exc:
        raise DataError(
            f"{what} annotations not found: {hub_name} is not in the datasets cache and cannot be downloaded "
            f"({type(exc).__name__}: {str(exc)[:200]}). Either run once online, or download it "
            f"(`hf download {hub_name} --repo-type dataset --local-dir <dir>`) and set {env_var}=<dir> "
            f"(parquet or json/jsonl in the official column schema). Videos are read from {video_hint}."
        ) from exc


def require_columns(doc: dict, columns: tuple[str, ...], what: str) -> None:
    """Raise :class:`DataError` when ``doc`` lacks one of the official ``columns``."""
    absent = [c for c in columns if c not in doc]
    if absent:
        raise DataError(
            f"{what} annotations lack the column(s) {', '.join(absent)} (a row has: {', '.join(sorted(doc))}); "
            f"use the official schema ({', '.join(columns)})."
        )


# --------------------------------------------------------------------------- answer extraction
def answer_extraction_mode() -> str:
    """The answer extraction in force: ``$LONGVA_ANSWER_EXTRACTION`` or ``"lmms_eval"``."""
    mode = (os.environ.get(ANSWER_EXTRACTION_ENV) or "lmms_eval").strip().lower()
    if mode not in ANSWER_EXTRACTION_MODES:
        raise SettingError(f"{ANSWER_EXTRACTION_ENV}={mode!r}; use one of {', '.join(ANSWER_EXTRACTION_MODES)}")
    return mode


# Phrases the mid-2024 lmms-eval Video-MME/MLVU extractor deleted before looking for a letter. Two
# pairs were joined by missing commas in that list, so only the joined strings were deleted; kept
# as it behaved, since the paper's numbers were computed with it.
_PAPER_PREFIXES = (
    "The best answer is",
    "The correct answer is",
    "The answer is",
    "The answer",
    "The best option isThe correct option is",
    "Best answer:Best option:",
)


def _extract_paper(text: str, choices: str) -> str:
    """The extraction of the lmms-eval release the LongVA paper used (first capital choice letter)."""
    s = text.strip()
    for prefix in _PAPER_PREFIXES:
        s = s.replace(prefix, "")
    match = re.search(f"[{re.escape(choices)}]", s)
    # The original also returned "" for long answers without a letter, which this covers.
    return match.group(0) if match else ""


def extract_choice(text, choices: str = "ABCD", mode: str | None = None) -> str:
    """The option letter a generated answer names, or ``""`` when none.

    ``mode="lmms_eval"`` (default) is lmms-eval's own ``extract_mcq_answer``, exactly what the
    built-in ``videomme`` / ``mlvu_dev`` tasks score with, so our numbers are comparable with
    theirs. ``mode="paper"`` is the older first-capital-letter rule of the lmms-eval release the
    paper's tables were computed with (``$LONGVA_ANSWER_EXTRACTION=paper``). Both are
    case-sensitive: a lowercase "b" names no option, as in the built-ins.

    :param text: the model output (anything that is not a string gives ``""``).
    :param choices: the valid letters, e.g. ``"ABCD"``.
    """
    mode = mode or answer_extraction_mode()
    if not isinstance(text, str) or not text.strip():
        return ""
    if mode == "paper":
        return _extract_paper(text, choices)
    if mode != "lmms_eval":
        raise SettingError(f"answer extraction mode {mode!r}; use one of {', '.join(ANSWER_EXTRACTION_MODES)}")
    from longva_plugins.lmms_eval_plugin.compat import extract_mcq_answer

    return extract_mcq_answer(text, choices)


# --------------------------------------------------------------------------- aggregation
def accuracy_by(items: list[dict], key: str) -> dict[str, float]:
    """Accuracy in percent per value of ``item[key]`` (sorted by value)."""
    groups: dict[str, list[float]] = defaultdict(list)
    for item in items:
        groups[str(item.get(key, "unknown"))].append(float(item.get("score", 0.0)))
    return {name: 100.0 * sum(scores) / len(scores) for name, scores in sorted(groups.items())}


def failure_report(items: list[dict], limit: int = 100) -> dict:
    """Counts of samples whose video was missing/unreadable or whose answer named no option."""
    bad = sorted({item["video_path"] for item in items if item.get("video_problem")})
    return {
        "missing_videos": len(bad),
        "missing_video_paths": bad[:limit],
        "no_option_answers": sum(1 for item in items if not item.get("pred_answer")),
    }


def log_failures(task: str, summary: dict, root_env: str) -> None:
    """Say at the end of a run how many videos were missing, naming a few and the variable to fix."""
    count = summary.get("missing_videos", 0)
    if count:
        paths = summary.get("missing_video_paths", [])
        logger.warning(
            "%s: %d video(s) missing or unreadable, scored as wrong: %s%s. Download them, or point %s "
            "at the folder that has them.",
            task,
            count,
            ", ".join(paths[:10]),
            " ..." if len(paths) > 10 else "",
            root_env,
        )


#: Folder under ``--output_path`` that holds each task's breakdowns and plots (``longva/<task>/``).
SIDE_FOLDER = "longva"


def side_output_dir(args, task: str) -> Path | None:
    """``<--output_path>/longva/<task>``, where a task's breakdowns, tables and plots go; ``None``
    without an output path. lmms-eval's printed table and ``results.json`` keep plain numbers."""
    root = getattr(args, "output_path", None)
    return Path(root) / SIDE_FOLDER / task if root else None


def write_breakdown(folder: Path | None, task: str, summary: dict) -> Path | None:
    """Write ``summary`` as ``<folder>/breakdown.json`` (atomically); ``folder`` is normally
    :func:`side_output_dir` (``None``: no output path, the summary is only logged)."""
    if folder is None:
        logger.info("%s: no --output_path, breakdown not written: %s", task, json.dumps(summary)[:2000])
        return None
    path = folder / "breakdown.json"
    atomic_write_text(path, json.dumps(summary, indent=2))
    logger.info("%s: breakdown written to %s", task, path)
    return path


def never_raises(task: str):
    """Wrap an aggregation so a bug or odd item can never crash the end of a run (lmms-eval calls
    aggregations after all generation is done; an exception there would lose the whole run). A
    failed aggregation gives NaN, logged with its cause; one that could not write its files
    (:class:`~longva_plugins.errors.StorageError`) also makes the run end non-zero."""

    def decorate(func):
        @functools.wraps(func)
        def wrapper(items, args=None):
            from longva_plugins.errors import StorageError

            try:
                return func(items, args=args)
            except StorageError as exc:  # a side file could not be written: the run ends non-zero
                from longva_plugins.lmms_eval_plugin.compat import stop_run

                stop_run(exc)
                return float("nan")
            except Exception:
                logger.exception(
                    "%s: aggregation failed; per-sample results are in the samples file (--log_samples)",
                    task,
                )
                return float("nan")

        return wrapper

    return decorate


@never_raises("missing_videos")
def missing_videos(items, args=None) -> int:
    """The ``*_missing_videos`` metric: questions whose video was missing or unreadable (scored wrong)."""
    return failure_report(items)["missing_videos"]


__all__ = [
    "ANSWER_EXTRACTION_ENV",
    "ANSWER_EXTRACTION_MODES",
    "accuracy_by",
    "answer_extraction_mode",
    "extract_choice",
    "failure_report",
    "find_video",
    "hf_home",
    "load_annotations",
    "log_failures",
    "missing_videos",
    "media_root",
    "never_raises",
    "require_columns",
    "SIDE_FOLDER",
    "side_output_dir",
    "write_breakdown",
    "video_problem",
]
