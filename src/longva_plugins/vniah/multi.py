"""Several needles in one haystack: VNBench's retrieval, ordering and counting on the V-NIAH engine.

VNBench (Zhao et al., arXiv 2406.09367, ``joez17/VideoNIAH``) plants needles in a video and asks
multiple-choice questions in one prompt format::

    <QUESTION>
    A. <OPTION1>
    ...
    Answer with the option's letter from the given choices directly.

Each question is asked once per rotation of its options ("circular evaluation": the options
shifted by 0, 1, 2, 3 places) and counts as correct only when every rotation is answered right;
a task's accuracy is the mean over its questions, the overall score the mean over the tasks
(``evaluation/eval.py``). Here the haystack is the V-NIAH haystack and the needles a V-NIAH needle
set; a cell is (frames ``n``, needles ``k``, sample ``s``), sample ``s`` being about needle ``s``:

- **retrieval**: ``k`` needles of different answers at random places; the question is needle
  ``s``'s own (when the ``k`` questions differ) or, when they are alike (LongVA-nano's needles
  all ask "What colour is the framed square?"), needle ``s``'s by its rank of appearance
  ("the second of them"). Options: its answer and other answers of the set.
- **ordering**: the same video; in which order do the ``k`` answers appear? Options: the true
  order and other permutations (``k = 2`` has two).
- **counting**: needle ``s`` inserted ``k`` times and one other needle once; how many times does
  needle ``s``'s answer appear? Options: four counts around ``k``.

``format="open"`` asks for the answer itself instead (the needle's answer, the answers in order
separated by commas, the count as a number), scored like V-NIAH.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

import numpy as np

from longva_plugins.vniah.cells import Item, needle_item

KINDS = ("retrieval", "ordering", "counting")
FORMATS = ("mc", "open")
LETTERS = "ABCD"
#: VNBench's answer instruction (its README's prompt).
MC_INSTRUCTION = "Answer with the option's letter from the given choices directly."
#: The most times a counting cell repeats its needle.
MAX_COUNT = 10
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
_SEED = 2406_09367


@dataclass
class MultiCell:
    """One question of the several-needle task (before rotating its options)."""

    kind: str
    frames: int
    needles: int
    sample: int
    items: list[Item]
    stem: str
    answer: str
    options: list[str] = field(default_factory=list)
    #: the open format's question (retrieval keeps the needle's own answer instructions)
    open_stem: str = ""

    def tries(self, fmt: str) -> list[tuple[str, str, int]]:
        """``(question, answer, rotation)`` per try: one per rotation of the options (``mc``), or
        the open question once."""
        if fmt == "open":
            return [(*open_question(self), 0)]
        out = []
        for r in range(len(self.options)):
            rotated = self.options[r:] + self.options[:r]
            lines = [f"{LETTERS[i]}. {o}" for i, o in enumerate(rotated)]
            question = "\n" + self.stem + "\n" + "\n".join(lines) + "\n" + MC_INSTRUCTION
            out.append((question, LETTERS[rotated.index(self.answer)], r))
        return out


def bare_question(question: str) -> str:
    """A needle's question without its leading newline and trailing answer-format instructions
    ("Answer the question using a single word or phrase.", "Answer with one word.")."""
    text = question.strip()
    while True:
        stripped = re.sub(r"\s*(?:Answer|Please (?:provide|answer))\b[^.?!]*[.?!]?\s*$", "", text)
        if stripped == text or not stripped:
            return text
        text = stripped


def _place(num_frames: int, inserts: list[str], rng: np.random.Generator) -> list[Item]:
    """Haystack frames ``0..n-1`` with ``inserts`` (in order) placed before distinct frames chosen
    at random (``n`` = after the last frame)."""
    slots = sorted(rng.choice(num_frames + 1, size=len(inserts), replace=False).tolist())
    items: list[Item] = []
    prev = 0
    for slot, insert in zip(slots, inserts):
        items.extend(range(prev, slot))
        items.append(insert)
        prev = slot
    items.extend(range(prev, num_frames))
    return items


def _distinct_answer_needles(answers: list[str], subject: int, count: int, rng: np.random.Generator) -> list[int]:
    """``subject`` and ``count - 1`` other needles, every answer different, in random order."""
    chosen, seen = [subject], {answers[subject]}
    for i in rng.permutation(len(answers)).tolist():
        if len(chosen) == count:
            break
        if answers[i] not in seen:
            chosen.append(i)
            seen.add(answers[i])
    order = rng.permutation(len(chosen)).tolist()
    return [chosen[i] for i in order]


def _options(correct: str, pool: list[str], rng: np.random.Generator, size: int = 4) -> list[str]:
    others = [p for p in dict.fromkeys(pool) if p != correct]
    picked = [others[i] for i in rng.permutation(len(others))[: size - 1].tolist()]
    options = [correct] + picked
    return [options[i] for i in rng.permutation(len(options)).tolist()]


def distinct_answers(needles) -> int:
    return len({n.answer for n in needles})


def max_needles(kind: str, needles) -> int:
    """The most needles a cell of ``kind`` can show with this needle set (different answers are
    needed to retrieve or order them; counting repeats one needle)."""
    return distinct_answers(needles) if kind in ("retrieval", "ordering") else MAX_COUNT


def build_cell(kind: str, num_frames: int, count: int, sample: int, needles) -> MultiCell:
    """The ``kind`` question of cell (``num_frames``, ``count`` needles, sample ``sample``);
    deterministic in those (retrieval and ordering of one cell share their video)."""
    answers = [n.answer for n in needles]
    subject = sample % len(needles)
    if kind == "counting":
        rng = np.random.default_rng([_SEED, 1, num_frames, count, sample])
        foil = next((i for i in rng.permutation(len(needles)).tolist() if answers[i] != answers[subject]), None)
        inserts = [subject] * count + ([foil] if foil is not None else [])
        inserts = [inserts[i] for i in rng.permutation(len(inserts)).tolist()]
        items = _place(num_frames, [needle_item(i) for i in inserts], rng)
        stem = (f"Some inserted frames answer this question: {bare_question(needles[subject].question)} "
                f"How many of them show the answer \"{answers[subject]}\"?")
        pool = [str(c) for c in range(1, count + 5)]
        return MultiCell(kind, num_frames, count, sample, items, stem, str(count), _options(str(count), pool, rng))
    rng = np.random.default_rng([_SEED, 0, num_frames, count, sample])
    chosen = _distinct_answer_needles(answers, subject, count, rng)
    items = _place(num_frames, [needle_item(i) for i in chosen], rng)
    if kind == "retrieval":
        questions = {bare_question(needles[i].question) for i in chosen}
        own = needles[subject].question.lstrip("\n")
        if len(questions) == len(chosen):
            stem, mc_stem = own, bare_question(own)
        else:
            rank = chosen.index(subject)
            ordinal = ORDINALS[rank] if rank < len(ORDINALS) else f"{rank + 1}th"
            lead = f"{len(chosen)} inserted frames look alike; consider the {ordinal} of them to appear."
            stem, mc_stem = f"{lead} {own}", f"{lead} {bare_question(own)}"
        pool = [answers[i] for i in chosen] + answers
        options = _options(answers[subject], pool, rng)
        return MultiCell(kind, num_frames, count, sample, items, mc_stem, answers[subject], options, open_stem=stem)
    in_order = ", ".join(answers[i] for i in chosen)
    asked = list(dict.fromkeys(bare_question(needles[i].question) for i in chosen))
    about = (f"each answer this question: {asked[0]}" if len(asked) == 1
             else "each answer one of these questions: " + " / ".join(asked))
    stem = f"{len(chosen)} inserted frames {about} In which order do their answers appear in the video?"
    perms = [", ".join(answers[chosen[i]] for i in p) for p in itertools.permutations(range(len(chosen)))]
    return MultiCell(kind, num_frames, count, sample, items, stem, in_order, _options(in_order, perms, rng))


def open_question(cell: MultiCell) -> tuple[str, str]:
    """``(question, answer)`` of the open format."""
    if cell.kind == "retrieval":
        return "\n" + (cell.open_stem or cell.stem), cell.answer
    hint = "Answer with a number." if cell.kind == "counting" else "Answer with the answers in order, separated by commas."
    return f"\n{cell.stem} {hint}", cell.answer


def extract_letter(prediction: str) -> str:
    """VNBench's answer extraction (``evaluation/eval.py``): the text before the first ``.``, then
    ``A`` if it contains an ``A``, else ``B``, ``C``, ``D`` -- in that order, not by position."""
    head = prediction.split(".")[0]
    return next((letter for letter in LETTERS if letter in head), head)


def circular_accuracy(records: list[dict]) -> dict:
    """VNBench's scores from per-try records (``kind``, ``frames``, ``needles``, ``sample``,
    ``correct``): a question counts when every try of it is correct. Returns ``{"overall",
    "kinds": {kind: accuracy}, "cells": {kind: [{"Num. Frame", "Needles", "Score"}]}, "questions",
    "chance": {kind: accuracy of a guesser}}``; the overall score is the mean of the kinds'
    accuracies, chance that of a guesser among ``m`` options right on all ``m`` tries (rotations)
    of a question, ``(1/m)^m``."""
    questions: dict[tuple, list[int]] = {}
    for r in records:
        questions.setdefault((r["kind"], int(r["frames"]), int(r["needles"]), int(r["sample"])), []).append(int(r["correct"]))
    passed = {key: int(all(v)) for key, v in questions.items()}
    guessed: dict[str, list[float]] = {}
    for (kind, *_), tries in questions.items():
        guessed.setdefault(kind, []).append((1 / len(tries)) ** len(tries))
    kinds: dict[str, list[int]] = {}
    cells: dict[tuple, list[int]] = {}
    for (kind, n, k, _), ok in passed.items():
        kinds.setdefault(kind, []).append(ok)
        cells.setdefault((kind, n, k), []).append(ok)
    by_kind = {kind: sum(v) / len(v) for kind, v in sorted(kinds.items())}
    grid: dict[str, list[dict]] = {}
    for (kind, n, k), v in sorted(cells.items()):
        grid.setdefault(kind, []).append({"Num. Frame": n, "Needles": k, "Score": sum(v) / len(v)})
    overall = sum(by_kind.values()) / len(by_kind) if by_kind else 0.0
    return {"overall": overall, "kinds": by_kind, "cells": grid, "questions": len(passed),
            "chance": {kind: sum(v) / len(v) for kind, v in sorted(guessed.items())}}


__all__ = ["FORMATS", "KINDS", "LETTERS", "MAX_COUNT", "MC_INSTRUCTION", "MultiCell", "bare_question", "build_cell",
           "circular_accuracy", "distinct_answers", "extract_letter", "max_needles", "open_question"]
