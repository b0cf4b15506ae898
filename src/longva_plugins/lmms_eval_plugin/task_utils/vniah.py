"""lmms-eval glue of the ``vniah`` and ``vniah_gen`` tasks (used by ``tasks/vniah/*.yaml``).

Documents are grid cells built by :func:`vniah_process_docs` from the environment
(``LONGVA_VNIAH_GRID``, ``LONGVA_VNIAH_HAYSTACK``, ``LONGVA_VNIAH_NEEDLES``, ``LONGVA_VNIAH_CACHE``).
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
from longva_plugins.vniah.grid import cell_order_key, env_settings, layout, parse_grid

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
        return get_scorer(model, processor, self.doc["haystack"], self.doc["needles"], _settings()["cache_dir"], **options)

    @staticmethod
    def longva_plan(model, processor, visuals, **options) -> None:
        """Called by the ``longva`` adapter once, before the first cell, with every V-NIAH visual
        it will score: each scorer's KV cache is sized for its longest cell (allocated once)."""
        longest: dict = {}  # (haystack, needles) -> the visual with the most frames
        for visual in visuals:
            key = (visual.doc["haystack"], visual.doc["needles"])
            if key not in longest or visual.doc["frames"] > longest[key].doc["frames"]:
                longest[key] = visual
        for visual in longest.values():
            visual._scorer(model, processor, **options).reserve(visual.doc["frames"])

    def longva_sort_key(self) -> tuple:
        """Requests sorted by this key share one KV cache best (insertion index first)."""
        return cell_order_key(self.doc["frames"], self.doc["depth"], self.doc["needle_index"])

    def longva_embed(self, model, processor, **options):
        return self._scorer(model, processor, **options).cell_block(self.doc["frames"], self.doc["depth"],
                                                                    self.doc["needle_index"])

    def longva_loglikelihood(self, model, processor, continuation: str, **options):
        """``(nll_mean, correct)`` of the cell; ``options``: the adapter's ``prefill_chunk_size`` /
        ``encode_chunk_size`` (``None`` keeps the scorer's defaults)."""
        record = self._scorer(model, processor, **options).score(
            self.doc["frames"], self.doc["depth"], self.doc["needle_index"], answer=continuation
        )
        return record["nll_mean"], bool(record["correct"])

    def materialise(self) -> str:
        """Write the cell's 1-FPS mp4 (needle inserted) if missing; return its path."""
        if not os.path.isfile(self):
            write_cell_video(self.doc, str(self))
        return str(self)


def _video_path(doc: dict) -> str:
    from longva_plugins.vniah.cache import cache_key, vniah_cache_dir

    root = vniah_cache_dir(_settings()["cache_dir"])
    key = cache_key(doc["haystack"], doc["needles"], doc["needle_id"], doc["frames"], doc["depth"])
    return str(root / "videos" / f"{key[:20]}.mp4")


def write_cell_video(doc: dict, path: str) -> None:
    """The haystack frames with the needle inserted, as an mp4 at 1 FPS (atomic write)."""
    import av
    import numpy as np
    from PIL import Image

    from longva_plugins.vniah.haystack import resolve_haystack
    from longva_plugins.vniah.needles import resolve_needles

    haystack = resolve_haystack(doc["haystack"])
    _, needles = resolve_needles(doc["needles"])
    frames = haystack.frames(range(doc["frames"]))
    h, w = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
    needle = np.asarray(Image.fromarray(needles[doc["needle_index"]].image).resize((w, h)))
    ordered = [needle if i is None else frames[i][:h, :w] for i in layout(doc["frames"], doc["depth"])]
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
    answer = normalise_answer(doc["answer"])
    got = normalise_answer(prediction)
    correct = int(got == answer or (bool(answer) and re.search(rf"\b{re.escape(answer)}\b", got) is not None))
    return {"vniah_gen_accuracy": {**_cell_fields(doc), "correct": correct, "prediction": prediction}}


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
    try:  # the only post-run hook lmms-eval offers; it must never raise
        out_dir = side_output_dir(args, task) or Path("vniah_results") / task
        write_all_accuracies(scores, out_dir)
        train = _settings()["train_frames"]
        heatmap = plot_heatmap(scores, out_dir / "heatmap.png", title=task, train_frames=float(train) if train else None)
        settings = _settings()
        write_breakdown(out_dir, task, {"average": average, "cells": cells, "n": len(items),
                                        "needles": settings["needles"], "haystack": settings["haystack"]})
        logger.info("V-NIAH %s: average %.3f (needles %s, haystack %s); heatmap at %s", task, average,
                    settings["needles"], settings["haystack"], heatmap)
    except StorageError as exc:  # disk full, read-only folder: the run ends non-zero, naming the file
        from longva_plugins.lmms_eval_plugin.compat import stop_run

        stop_run(exc)
    except Exception as exc:
        logger.warning("V-NIAH: could not write all_accuracies.json / heatmap (%s: %s)", type(exc).__name__, exc)
    return average


def vniah_aggregate(items, args=None):
    return _aggregate(items, args, "vniah")


def vniah_gen_aggregate(items, args=None):
    return _aggregate(items, args, "vniah_gen")


__all__ = [
    "VNIAHVisual",
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
