"""lmms-eval glue of the V-NIAH family (used by ``tasks/vniah/*.yaml``): ``vniah`` / ``vniah_gen``
(the paper), ``vniah_d`` / ``vniah_d_gen`` (VideoRoPE's distractors) and ``vniah_multi`` /
``vniah_multi_gen`` (VNBench's retrieval, ordering and counting with several needles).

Documents are grid cells built by the ``*_process_docs`` functions from the environment
(``LONGVA_VNIAH_GRID``, ``LONGVA_VNIAH_HAYSTACK``, ``LONGVA_VNIAH_NEEDLES``, ``LONGVA_VNIAH_CACHE``,
and for the new tasks ``LONGVA_VNIAH_DISTRACTORS``, ``LONGVA_VNIAH_DISTRACTOR_PERIOD``,
``LONGVA_VNIAH_MULTI_*``; docs/vniah.md).
``doc_to_visual`` returns a :class:`VNIAHVisual`: the ``longva`` adapter asks it for its cached
embedding block (``longva_embed``) or, for ``vniah``, for the cell's score
(``longva_loglikelihood``: teacher-forced, resumable). For ``vniah_gen`` the visual is also a
real path to a 1-FPS mp4 with the needle inserted, so any lmms-eval video model can run it.
"""

from __future__ import annotations

import logging
import os
import re
import string
from pathlib import Path

from longva_plugins.errors import SettingProblems, StorageError
from longva_plugins.fileio import atomic_output
from longva_plugins.vniah.grid import env_settings, parse_grid

logger = logging.getLogger(__name__)


def _settings() -> dict:
    return env_settings()


def check_task_settings(settings: dict):
    """``(grid, needles)`` for the V-NIAH environment settings, or one ``SettingError`` naming every
    bad one (grid, haystack, needle folder, training-length line, cache folder) before any sample."""
    from longva_plugins.vniah.haystack import resolve_haystack
    from longva_plugins.vniah.needles import resolve_needles

    problems = SettingProblems("V-NIAH task settings")
    grid = problems.attempt(lambda: parse_grid(settings["grid"]))
    haystack = problems.attempt(lambda: resolve_haystack(settings["haystack"]))
    needles = problems.attempt(lambda: resolve_needles(settings["needles"])[1])
    if grid is not None and haystack is not None:
        problems.attempt(lambda: haystack.check_length(max(grid.frame_counts)))
    train = settings["train_frames"]
    if train:
        try:
            ok = float(train) > 0
        except ValueError:
            ok = False
        if not ok:
            problems.add("LONGVA_VNIAH_TRAIN_FRAMES", train, "a number of frames > 0 (or unset for no line)")
    cache = settings["cache_dir"]
    if cache and os.path.exists(cache) and not os.path.isdir(cache):
        problems.add("LONGVA_VNIAH_CACHE", cache, "a folder (it is a file)")
    else:
        from longva_plugins.fileio import check_writable
        from longva_plugins.vniah.cache import vniah_cache_dir

        try:  # embeddings and finished cells go there: find out now, not at the first cell
            check_writable(vniah_cache_dir(cache))
        except StorageError as exc:
            problems.add("LONGVA_VNIAH_CACHE", cache or str(vniah_cache_dir()), f"a folder that can be written ({exc})")
    problems.raise_if_any()
    return grid, needles


def _int_list(name: str, value: str, problems, minimum: int = 1) -> list[int]:
    try:
        out = [int(v) for v in str(value).split(",") if v.strip()]
    except ValueError:
        out = []
    if not out or min(out) < minimum:
        problems.add(name, value, f"a comma-separated list of whole numbers >= {minimum}")
        return []
    return sorted(set(out))


def check_distractor_settings(settings: dict):
    """``(grid, needles, distractor set id, distractors, period)`` for ``vniah_d``, or one
    ``SettingError`` naming every bad setting: an unknown distractor set or one of another size than
    the needle set, a period that is not a whole number >= 1 or leaves every cell of the grid
    without a distractor."""
    from longva_plugins.vniah.cells import default_period, distractor_side
    from longva_plugins.vniah.needles import resolve_distractors

    grid, needles = check_task_settings(settings)
    problems = SettingProblems("V-NIAH-D settings")
    found = problems.attempt(lambda: resolve_distractors(settings["distractors"], needles))
    raw = settings["distractor_period"]
    period = default_period(max(grid.frame_counts))
    if raw not in (None, ""):
        try:
            period = int(raw)
            if period < 1:
                raise ValueError
        except ValueError:
            problems.add("LONGVA_VNIAH_DISTRACTOR_PERIOD", raw, "a whole number of frames >= 1")
            period = None
        if period and all(distractor_side(n, d, period, 0.0) == "none" for n in grid.frame_counts for d in grid.depths):
            problems.add("LONGVA_VNIAH_DISTRACTOR_PERIOD", raw,
                         f"a period that leaves room for a distractor in some cell of the grid (frames up to "
                         f"{max(grid.frame_counts)}: below {max(grid.frame_counts)})")
    problems.raise_if_any()
    set_id, distractors = found
    return grid, needles, set_id, distractors, period


def check_multi_settings(settings: dict):
    """``(grid, needles, kinds, needle counts, format)`` for ``vniah_multi``, or one ``SettingError``
    naming every bad setting: unknown kinds or format, needle counts that are not whole numbers,
    more needles than the needle set has different answers (retrieval, ordering) or than the
    shortest haystack of the grid can hold (one per frame boundary)."""
    from longva_plugins.vniah.multi import FORMATS, KINDS, max_needles

    grid, needles = check_task_settings(settings)
    problems = SettingProblems("V-NIAH several-needle settings")
    kinds = [k.strip() for k in str(settings["multi_kinds"]).split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        problems.add("LONGVA_VNIAH_MULTI_KINDS", settings["multi_kinds"], f"a comma-separated subset of {', '.join(KINDS)}")
    fmt = settings["multi_format"]
    if fmt not in FORMATS:
        problems.add("LONGVA_VNIAH_MULTI_FORMAT", fmt, " or ".join(FORMATS))
    counts = _int_list("LONGVA_VNIAH_MULTI_NEEDLES", settings["multi_needles"], problems)
    if counts and not unknown:
        for kind in kinds:
            most = max_needles(kind, needles)
            if max(counts) > most:
                problems.add("LONGVA_VNIAH_MULTI_NEEDLES", settings["multi_needles"],
                             f"at most {most} needles for {kind} with needle set {settings['needles']!r} "
                             "(it has that many different answers)")
        if kinds == ["ordering"] and max(counts) < 2:
            problems.add("LONGVA_VNIAH_MULTI_NEEDLES", settings["multi_needles"],
                         "at least one count >= 2 for ordering (one needle has no order)")
        inserts = max(counts) + (1 if "counting" in kinds else 0)
        shortest = min(grid.frame_counts)
        if inserts > shortest + 1:
            problems.add("LONGVA_VNIAH_MULTI_NEEDLES", settings["multi_needles"],
                         f"at most {shortest + 1} inserted images: the grid's shortest haystack has {shortest} frames "
                         f"(LONGVA_VNIAH_GRID={settings['grid']}); counting also inserts one other needle")
    problems.raise_if_any()
    return grid, needles, kinds, counts, fmt


def vniah_process_docs(dataset):
    """Replace the placeholder dataset by one document per (frames, depth, needle) cell."""
    import datasets

    settings = _settings()
    grid, needles = check_task_settings(settings)
    rows = [
        {"frames": n, "depth": d, "needle_index": k, "needle_id": needle.id,
         "question": needle.question, "answer": needle.answer,
         "haystack": settings["haystack"], "needles": settings["needles"]}
        for n in grid.frame_counts for d in grid.depths for k, needle in enumerate(needles)
    ]
    return datasets.Dataset.from_list(rows)


def vniah_d_process_docs(dataset):
    """One document per (frames, depth, needle) cell with the needle's distractor inserted
    ``period`` frames before or after it (VideoRoPE's V-NIAH-D; its random side draws, in its loop
    order, so a grid it ran gets the same sides)."""
    import datasets

    from longva_plugins.vniah.cells import distractor_cell, distractor_side, encode_items, videorope_draws

    settings = _settings()
    grid, needles, _, distractors, period = check_distractor_settings(settings)
    cells = [(n, d, k) for n in grid.frame_counts for d in grid.depths for k in range(len(needles))]
    rows = []
    for (n, d, k), draw in zip(cells, videorope_draws(len(cells))):
        side = distractor_side(n, d, period, draw)
        rows.append({"frames": n, "depth": d, "needle_index": k, "needle_id": needles[k].id,
                     "question": needles[k].question, "answer": needles[k].answer,
                     "items": encode_items(distractor_cell(n, d, k, side, period)), "side": side,
                     "distractor_answer": distractors[k].answer, "period": period,
                     "haystack": settings["haystack"], "needles": settings["needles"],
                     "distractors": settings["distractors"]})
    return datasets.Dataset.from_list(rows)


def vniah_multi_process_docs(dataset):
    """One document per try of each (kind, frames, needles, sample) question: four rotations of the
    options in VNBench's multiple-choice format (one question in the open format)."""
    import datasets

    from longva_plugins.vniah.cells import encode_items
    from longva_plugins.vniah.multi import build_cell

    settings = _settings()
    grid, needles, kinds, counts, fmt = check_multi_settings(settings)
    rows = []
    for kind in kinds:
        for n in grid.frame_counts:
            for k in counts:
                if kind == "ordering" and k < 2:  # one needle has no order to ask about
                    continue
                for sample in range(len(needles)):
                    cell = build_cell(kind, n, k, sample, needles)
                    for question, answer, rotation in cell.tries(fmt):
                        rows.append({"kind": kind, "frames": n, "needle_count": k, "sample": sample,
                                     "rotation": rotation, "format": fmt, "items": encode_items(cell.items),
                                     "question": question, "answer": answer,
                                     "haystack": settings["haystack"], "needles": settings["needles"]})
    return datasets.Dataset.from_list(rows)


class VNIAHVisual(str):
    """A V-NIAH cell as a visual. As a ``str`` it is the path of the cell's mp4 (written on demand
    by :meth:`materialise` for other models); the ``longva`` adapter uses the methods instead."""

    def __new__(cls, doc: dict, path: str):
        obj = super().__new__(cls, path)
        obj.doc = dict(doc)
        return obj

    def __reduce__(self):  # pickled when ranks that share a KV cache exchange their requests
        return VNIAHVisual, (self.doc, str(self))

    def _scorer(self, model, processor, **options):
        from longva_plugins.vniah.scoring import get_scorer

        options = {k: v for k, v in options.items() if v is not None}
        return get_scorer(model, processor, self.doc["haystack"], self.doc["needles"], _settings()["cache_dir"],
                          distractors_spec=self.doc.get("distractors"), **options)

    def items(self) -> list:
        """The cell's images in order (:mod:`longva_plugins.vniah.cells`)."""
        return doc_items(self.doc)

    @staticmethod
    def longva_plan(model, processor, visuals, **options) -> None:
        """Called by the ``longva`` adapter once, before the first cell, with every V-NIAH visual
        it will score: each scorer's KV cache is sized for its longest cell (allocated once)."""
        for visual in visuals:
            scorer = visual._scorer(model, processor, **options)
            if "items" in visual.doc:
                scorer.reserve_cell(visual.items(), visual.doc["question"], visual.doc["answer"])
            else:
                scorer.reserve(visual.doc["frames"])

    def longva_sort_key(self) -> tuple:
        """Requests sorted by this key share one KV cache best: grouped by scorer, then in the
        lexicographic order of their items (the depth-first order of their prefix tree)."""
        from longva_plugins.vniah.cells import order_key

        doc = self.doc
        return (doc.get("haystack") or "", doc.get("needles") or "", doc.get("distractors") or "", order_key(self.items()))

    def longva_embed(self, model, processor, **options):
        return self._scorer(model, processor, **options).items_block(self.items())

    def longva_loglikelihood(self, model, processor, continuation: str, **options):
        """``(nll_mean, correct)`` of the cell; ``options``: the adapter's ``prefill_chunk_size`` /
        ``encode_chunk_size`` (``None`` keeps the scorer's defaults)."""
        scorer = self._scorer(model, processor, **options)
        if "items" in self.doc:
            record = scorer.score_items(self.items(), self.doc["question"], continuation)
        else:
            record = scorer.score(self.doc["frames"], self.doc["depth"], self.doc["needle_index"], answer=continuation)
        return record["nll_mean"], bool(record["correct"])

    def materialise(self) -> str:
        """Write the cell's 1-FPS mp4 (needle inserted) if missing; return its path."""
        if not os.path.isfile(self):
            write_cell_video(self.doc, str(self))
        return str(self)


def doc_items(doc: dict) -> list:
    """A document's images in order: its ``items`` (``vniah_d``, ``vniah_multi``), or the V-NIAH
    cell of its frames, depth and needle."""
    from longva_plugins.vniah.cells import decode_items, needle_cell

    if "items" in doc:
        return decode_items(doc["items"])
    return needle_cell(doc["frames"], doc["depth"], doc["needle_index"])


def _video_path(doc: dict) -> str:
    """Where a cell's mp4 goes, named by what it shows (one file for every task and try that shows it)."""
    from longva_plugins.vniah.cache import cache_key, vniah_cache_dir
    from longva_plugins.vniah.cells import encode_items

    root = vniah_cache_dir(_settings()["cache_dir"])
    key = cache_key(doc["haystack"], doc["needles"], doc.get("distractors") or "", encode_items(doc_items(doc)))
    return str(root / "videos" / f"{key[:20]}.mp4")


def write_cell_video(doc: dict, path: str) -> None:
    """The cell's images -- haystack frames with its needles (and distractor) inserted -- as an mp4
    at 1 FPS (atomic write)."""
    import av
    import numpy as np
    from PIL import Image

    from longva_plugins.vniah.cells import haystack_frames_used
    from longva_plugins.vniah.haystack import resolve_haystack
    from longva_plugins.vniah.needles import resolve_distractors, resolve_needles

    items = doc_items(doc)
    haystack = resolve_haystack(doc["haystack"])
    _, needles = resolve_needles(doc["needles"])
    inserted = {"n": needles}
    if any(isinstance(i, str) and i.startswith("d") for i in items):
        inserted["d"] = resolve_distractors(doc["distractors"], needles)[1]
    frames = haystack.frames(range(haystack_frames_used(items)))
    h, w = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2

    def image(item):
        if isinstance(item, int):
            return frames[item][:h, :w]
        return np.asarray(Image.fromarray(inserted[item[0]][int(item[1:])].image).resize((w, h)))

    ordered = [image(item) for item in items]
    with atomic_output(path) as tmp, av.open(str(tmp), "w") as container:
        stream = container.add_stream("mpeg4", rate=1)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for frame in ordered:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def vniah_doc_to_visual(doc):
    return [VNIAHVisual(doc, _video_path(doc))]


def vniah_gen_doc_to_visual(doc):
    visual = VNIAHVisual(doc, _video_path(doc))
    visual.materialise()  # other lmms-eval models read the file
    return [visual]


def vniah_doc_to_text(doc, lmms_eval_specific_kwargs=None):
    # The reference places the question right after the visual tokens; it starts with "\n".
    return "<image>" + doc["question"]


def vniah_doc_to_target(doc):
    return doc["answer"]


def _cell_fields(doc) -> dict:
    return {"frames": doc["frames"], "depth": doc["depth"], "needle": doc["needle_id"]}


def vniah_process_results(doc, results):
    nll, is_greedy = results[0]
    return {"vniah_accuracy": {**_cell_fields(doc), "correct": int(bool(is_greedy)), "nll_mean": float(nll)}}


def normalise_answer(text: str) -> str:
    text = text.lower().strip()
    text = text.translate(str.maketrans("", "", string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def vniah_gen_process_results(doc, results):
    prediction = results[0] if isinstance(results[0], str) else str(results[0])
    return {"vniah_gen_accuracy": {**_cell_fields(doc), "correct": _matches(doc["answer"], prediction),
                                   "prediction": prediction}}


def vniah_d_process_results(doc, results):
    nll, is_greedy = results[0]
    return {"vniah_d_accuracy": {**_cell_fields(doc), "side": doc["side"], "correct": int(bool(is_greedy)),
                                 "nll_mean": float(nll)}}


def _matches(answer: str, prediction: str) -> int:
    """V-NIAH's generation rule: the normalised answer equals, or appears as words in, the prediction."""
    answer, got = normalise_answer(answer), normalise_answer(prediction)
    return int(got == answer or (bool(answer) and re.search(rf"\b{re.escape(answer)}\b", got) is not None))


def vniah_d_gen_process_results(doc, results):
    prediction = results[0] if isinstance(results[0], str) else str(results[0])
    return {"vniah_d_gen_accuracy": {**_cell_fields(doc), "side": doc["side"], "prediction": prediction,
                                     "correct": _matches(doc["answer"], prediction),
                                     "distracted": _matches(doc["distractor_answer"], prediction)}}


def _multi_fields(doc) -> dict:
    return {"kind": doc["kind"], "frames": doc["frames"], "needles": doc["needle_count"], "sample": doc["sample"],
            "rotation": doc["rotation"]}


def vniah_multi_process_results(doc, results):
    nll, is_greedy = results[0]
    return {"vniah_multi_accuracy": {**_multi_fields(doc), "correct": int(bool(is_greedy)), "nll_mean": float(nll)}}


def multi_gen_correct(doc, prediction: str) -> int:
    """A generated answer of the several-needle task: VNBench's letter extraction in the
    multiple-choice format; in the open format the count's first number (counting), else V-NIAH's
    normalised match (retrieval; ordering needs the whole sequence, punctuation aside)."""
    from longva_plugins.vniah.multi import extract_letter

    if doc["format"] == "mc":
        return int(extract_letter(prediction) == doc["answer"])
    if doc["kind"] == "counting":
        number = re.search(r"\d+", prediction)
        return int(number is not None and number.group() == doc["answer"])
    if doc["kind"] == "ordering":
        return int(normalise_answer(prediction) == normalise_answer(doc["answer"]))
    return _matches(doc["answer"], prediction)


def vniah_multi_gen_process_results(doc, results):
    prediction = results[0] if isinstance(results[0], str) else str(results[0])
    return {"vniah_multi_gen_accuracy": {**_multi_fields(doc), "prediction": prediction,
                                         "correct": multi_gen_correct(doc, prediction)}}


def _write_side_files(task: str, write) -> None:
    """Run ``write()``, which writes a task's files beside lmms-eval's results. It runs in an
    aggregation, the only post-run hook lmms-eval offers, so it must never raise: a file that could
    not be written (disk full, read-only folder) ends the run non-zero naming it; any other failure
    is logged and the score still returned."""
    try:
        write()
    except StorageError as exc:
        from longva_plugins.lmms_eval_plugin.compat import stop_run

        stop_run(exc)
    except Exception as exc:
        logger.warning("%s: could not write its breakdown / all_accuracies.json / heatmap (%s: %s)", task,
                       type(exc).__name__, exc)


def _aggregate(items, args, task: str) -> float:
    """The average cell score, the number lmms-eval prints. The per-cell scores go to
    ``<--output_path>/longva/<task>/``: ``all_accuracies.json`` and ``avg_accuracy.txt`` as the
    original writes them, ``heatmap.png`` and ``breakdown.json`` (every cell)."""
    from longva_plugins.lmms_eval_plugin.task_utils.common import side_output_dir, write_breakdown
    from longva_plugins.vniah.plot import plot_heatmap
    from longva_plugins.vniah.results import average_accuracy, cell_scores, write_all_accuracies

    scores = cell_scores(items)
    average = average_accuracy(scores)
    cells = {f"frames={s['Num. Frame']},depth={s['Frame Depth']}": s["Score"] for s in scores}

    def write():
        settings = _settings()
        out_dir = side_output_dir(args, task) or Path("vniah_results") / task
        write_all_accuracies(scores, out_dir)
        train = settings["train_frames"]
        heatmap = plot_heatmap(scores, out_dir / "heatmap.png", title=task, train_frames=float(train) if train else None)
        summary = {"average": average, "cells": cells, "n": len(items),
                   "needles": settings["needles"], "haystack": settings["haystack"]}
        if items and "side" in items[0]:  # V-NIAH-D: where the distractor sat, and how often it won
            summary["distractors"] = settings["distractors"]
            summary["by_side"] = {side: sum(i["correct"] for i in group) / len(group)
                                  for side, group in _group(items, "side").items()}
            if "distracted" in items[0]:
                summary["distracted"] = sum(i["distracted"] for i in items) / len(items)
        write_breakdown(out_dir, task, summary)
        logger.info("V-NIAH %s: average %.3f (needles %s, haystack %s); heatmap at %s", task, average,
                    settings["needles"], settings["haystack"], heatmap)

    _write_side_files(task, write)
    return average


def _group(items, field: str) -> dict:
    out: dict = {}
    for item in items:
        out.setdefault(item[field], []).append(item)
    return dict(sorted(out.items()))


def _aggregate_multi(items, args, task: str) -> float:
    """VNBench's overall score (the mean of the kinds' circular accuracies), the number lmms-eval
    prints. Under ``<--output_path>/longva/<task>/``: ``breakdown.json`` (per kind, per cell, with
    the chance level of the multiple-choice format) and per kind ``<kind>/all_accuracies.json`` and
    ``<kind>/heatmap.png`` (rows: needles, columns: frames)."""
    from longva_plugins.lmms_eval_plugin.task_utils.common import side_output_dir, write_breakdown
    from longva_plugins.vniah.multi import circular_accuracy
    from longva_plugins.vniah.plot import plot_heatmap
    from longva_plugins.vniah.results import write_all_accuracies

    scores = circular_accuracy(items)

    def write():
        settings = _settings()
        out_dir = side_output_dir(args, task) or Path("vniah_results") / task
        for kind, cells in scores["cells"].items():
            write_all_accuracies(cells, out_dir / kind)
            plot_heatmap(cells, out_dir / kind / "heatmap.png", title=f"{task} {kind}", rows="Needles",
                         row_label="Needles")
        summary = {"overall": scores["overall"], "kinds": scores["kinds"], "questions": scores["questions"],
                   "cells": scores["cells"], "n": len(items), "format": settings["multi_format"],
                   "needles": settings["needles"], "haystack": settings["haystack"]}
        if settings["multi_format"] == "mc":
            summary["chance"] = scores["chance"]
        write_breakdown(out_dir, task, summary)
        logger.info("%s: overall %.3f (%s); heatmaps under %s", task, scores["overall"],
                    ", ".join(f"{k} {v:.3f}" for k, v in scores["kinds"].items()), out_dir)

    _write_side_files(task, write)
    return scores["overall"]


def vniah_aggregate(items, args=None):
    return _aggregate(items, args, "vniah")


def vniah_d_aggregate(items, args=None):
    return _aggregate(items, args, "vniah_d")


def vniah_d_gen_aggregate(items, args=None):
    return _aggregate(items, args, "vniah_d_gen")


def vniah_multi_aggregate(items, args=None):
    return _aggregate_multi(items, args, "vniah_multi")


def vniah_multi_gen_aggregate(items, args=None):
    return _aggregate_multi(items, args, "vniah_multi_gen")


def vniah_gen_aggregate(items, args=None):
    return _aggregate(items, args, "vniah_gen")


__all__ = [
    "VNIAHVisual",
    "check_distractor_settings",
    "check_multi_settings",
    "doc_items",
    "multi_gen_correct",
    "vniah_d_aggregate",
    "vniah_d_gen_aggregate",
    "vniah_d_gen_process_results",
    "vniah_d_process_docs",
    "vniah_d_process_results",
    "vniah_multi_aggregate",
    "vniah_multi_gen_aggregate",
    "vniah_multi_gen_process_results",
    "vniah_multi_process_docs",
    "vniah_multi_process_results",
    "normalise_answer",
    "vniah_aggregate",
    "vniah_doc_to_target",
    "vniah_doc_to_text",
    "vniah_doc_to_visual",
    "vniah_gen_aggregate",
    "vniah_gen_doc_to_visual",
    "vniah_gen_process_results",
    "vniah_process_docs",
    "vniah_process_results",
    "write_cell_video",
]
