"""Multiple-choice questions about synthetic videos, in Video-MME's and MLVU's real data layouts.

A video is a sequence of *shots* (one procedural scene of :mod:`longva_plugins.nano.scenes` held
for some frames); some shots show the framed square of one colour (an *event*, 1 to 4 per video,
each its own colour). Every question needs the whole video:

* ``appear`` -- which of four colours of framed square appears (one of the options does; videos
  with at most 3 events);
* ``first``  -- which colour of framed square appears first (videos with 2+ events);
* ``count``  -- how many times a framed square appears (1 to 4);
* ``order``  -- in which order two of the colours appear (videos with 2+ events).

:func:`write_bench` writes the videos and annotations in the layouts the tasks read
(``videomme/test-00000-of-00001.parquet`` with ``videomme/data/<videoID>.mp4`` and
``videomme/subtitle/<videoID>.srt``; ``mlvu/dev.json`` with ``mlvu/video/<n>_<type>/*.mp4``);
:func:`make_mini_bench` is ``longva-plugins make-mini-bench DIR`` (64 / 128 / 256 frame videos,
short / medium / long, seeds no training clip uses); :func:`alignment_records` turns a bench of
12-frame clips into LLaVA conversations whose prompts are the tasks' own ``doc_to_text`` output
(the recipe's multiple-choice alignment stage, ``examples/nano/``).
"""

from __future__ import annotations

import contextlib
import json
import os
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from longva_plugins.nano.scenes import COLOURS, QUESTION, TILE, compose

KINDS = ("appear", "first", "count", "order")
#: Video-MME ``task_type`` and MLVU ``task_type`` of each kind (names the real benchmarks use).
VIDEOMME_TASK_TYPES = {"appear": "Object Recognition", "first": "Temporal Perception", "count": "Counting Problem",
                       "order": "Temporal Reasoning"}
MLVU_TASK_TYPES = {"appear": "needle", "first": "order", "count": "count", "order": "order"}
#: MLVU dev's video folders are numbered by question type.
MLVU_FOLDERS = {"plotQA": "1_plotQA", "needle": "2_needle", "ego": "3_ego", "count": "4_count", "order": "5_order",
                "anomaly_reco": "6_anomaly_reco", "topic_reasoning": "7_topic_reasoning"}
QUESTIONS = {
    "appear": "Which colour of framed square appears in the video?",
    "first": "Which colour of framed square appears first in the video?",
    "count": "How many times does a framed square appear in the video?",
    "order": "In which order do the {a} and the {b} framed squares appear?",
}
#: The mini benchmark's durations: frames of each video (4 fps: 16, 32 and 64 seconds).
DURATIONS = {"short": 64, "medium": 128, "long": 256}
FPS = 4
#: The canonical-options mode (``make-mini-bench --canonical-options``): every colour question
#: lists these four colours in this order, so the right letter is a function of the colour seen
#: (A red, B green, C blue, D yellow) -- no option lookup needed; the other colours still appear in
#: the videos, as events no option names.
CANONICAL = ("red", "green", "blue", "yellow")
#: Frames of a training clip, frames a shot is held in one and in the mini benchmark.
CLIP_FRAMES = 12
CLIP_SHOT = (1, 3)
BENCH_SHOT = (4, 16)
#: Scene difficulty range of every shot (see :func:`longva_plugins.nano.scenes.compose`).
DIFFICULTY = (0.2, 0.8)
#: The tasks whose prompt formats the alignment stage trains on, and the Video-MME ones of them.
VIDEOMME_TASKS = ("longva_videomme", "longva_videomme_paper", "longva_videomme_w_subtitle")
TASKS = VIDEOMME_TASKS + ("longva_mlvu_dev",)


@dataclass
class Question:
    kind: str
    text: str
    options: list[str]  # option texts, in the order shown
    answer: int  # index into options


@dataclass
class VideoPlan:
    shots: list[tuple[int, str | None]]  # (frames, event colour or None)

    @property
    def events(self) -> list[str]:
        return [colour for _, colour in self.shots if colour]

    @property
    def frames(self) -> int:
        return sum(n for n, _ in self.shots)


def plan_video(rng: np.random.Generator, frames: int, shot: tuple[int, int], canonical: bool = False) -> VideoPlan:
    """Shots of ``shot`` frames (the last one cut to fit) and 1 to 4 events at distinct shots.
    ``canonical``: one event of a :data:`CANONICAL` colour and 0 to 2 of the others, in random
    order (every video supports the canonical ``appear`` question)."""
    lengths = []
    while sum(lengths) < frames:
        lengths.append(int(rng.integers(shot[0], shot[1] + 1)))
    lengths[-1] -= sum(lengths) - frames
    if canonical:
        others = [c for c in COLOURS if c not in CANONICAL]
        colours = [str(rng.choice(CANONICAL))] + list(rng.permutation(others)[:int(rng.integers(0, len(others) + 1))])
        colours = [colours[i] for i in rng.permutation(len(colours)).tolist()]
        events = len(colours)
    else:
        events = int(rng.integers(1, 5))
        colours = list(rng.permutation(list(COLOURS))[:events])
    at = sorted(rng.choice(len(lengths), size=min(events, len(lengths)), replace=False).tolist())
    marked = dict(zip(at, colours))
    return VideoPlan([(n, marked.get(i)) for i, n in enumerate(lengths) if n > 0])


def questions_for(rng: np.random.Generator, plan: VideoPlan, canonical: bool = False) -> list[Question]:
    """Every kind the video supports (``first`` and ``order`` need two events). ``canonical``: the
    colour questions list :data:`CANONICAL` in its order -- ``appear`` when exactly one of those
    colours appears, ``first`` when the first event's colour is one of them."""
    if canonical:
        return _canonical_questions(rng, plan)
    events, names = plan.events, list(COLOURS)
    absent = [c for c in names if c not in events]
    out = []
    if len(absent) >= 3:  # one option appears, three do not
        present = events[int(rng.integers(len(events)))]
        options = [present] + list(rng.permutation(absent)[:3])
        out.append(_shuffled(rng, "appear", QUESTIONS["appear"], options))
    out.append(Question("count", QUESTIONS["count"], ["1", "2", "3", "4"], len(events) - 1))
    if len(events) >= 2:
        others = [c for c in events if c != events[0]] + absent
        options = [events[0]] + list(rng.permutation(others)[:3])
        out.append(_shuffled(rng, "first", QUESTIONS["first"], options))
        i, j = sorted(rng.choice(len(events), size=2, replace=False).tolist())
        a, b = events[i], events[j]
        third = str(rng.choice([c for c in names if c not in (a, b)]))
        options = [f"{a}, then {b}", f"{b}, then {a}", f"{a}, then {third}", f"{third}, then {b}"]
        shown = (a, b) if rng.random() < 0.5 else (b, a)  # the question's mention order is no clue
        out.append(_shuffled(rng, "order", QUESTIONS["order"].format(a=shown[0], b=shown[1]), options))
    return out


def _canonical_questions(rng: np.random.Generator, plan: VideoPlan) -> list[Question]:
    events = plan.events
    out = []
    shown = [c for c in CANONICAL if c in events]
    if len(shown) == 1:
        out.append(Question("appear", QUESTIONS["appear"], list(CANONICAL), CANONICAL.index(shown[0])))
    out.append(Question("count", QUESTIONS["count"], ["1", "2", "3", "4"], len(events) - 1))
    if len(events) >= 2 and events[0] in CANONICAL:
        out.append(Question("first", QUESTIONS["first"], list(CANONICAL), CANONICAL.index(events[0])))
    return out


def _shuffled(rng, kind: str, text: str, options: list[str]) -> Question:
    """``options[0]`` is the right one; shuffle them."""
    order = rng.permutation(len(options)).tolist()
    return Question(kind, text, [options[k] for k in order], order.index(0))


def scene(rng: np.random.Generator, colour: str | None) -> np.ndarray:
    """One shot's scene ``(TILE, TILE, 3)`` uint8, with the framed square of ``colour`` (or none)."""
    difficulty = float(rng.uniform(*DIFFICULTY))
    image, _, _ = compose(rng, difficulty, canvas=(TILE, TILE), with_object=colour is not None, colour=colour)
    return np.asarray(image.convert("RGB"))


def render(plan: VideoPlan, rng: np.random.Generator, pool: list[np.ndarray] | None = None) -> list[np.ndarray]:
    """The frames of the video: each shot's scene, held; shots without an event come from ``pool``
    (scenes drawn once) when one is given -- fast enough for thousands of training clips."""
    frames = []
    for n, colour in plan.shots:
        image = pool[int(rng.integers(len(pool)))] if pool and colour is None else scene(rng, colour)
        frames.extend([image] * n)
    return frames


def write_mp4(path: Path, frames: list[np.ndarray], fps: int = FPS) -> None:
    """H.264 mp4 (PyAV), written beside and renamed into place."""
    import av

    from longva_plugins.fileio import atomic_output

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = TILE, TILE, "yuv420p"
            stream.options = {"crf": "23", "preset": "ultrafast"}
            for array in frames:
                container.mux(stream.encode(__import__("av").VideoFrame.from_ndarray(array, format="rgb24")))
            container.mux(stream.encode())


def subtitles(plan: VideoPlan, rng: np.random.Generator) -> str:
    """An .srt in Video-MME's markup, one line of filler words a shot (no clue to any answer)."""
    from longva_plugins.nano.text import FILLER

    blocks, start = [], 0
    for i, (n, _) in enumerate(plan.shots):
        words = " ".join(str(w) for w in rng.choice(FILLER, size=int(rng.integers(3, 7))))
        blocks.append(f"{i + 1}\n{_stamp(start / FPS)} --> {_stamp((start + n) / FPS)}\n"
                      f'<font color="white" size=".72c">{words}</font>\n')
        start += n
    return "\n".join(blocks)


def _stamp(seconds: float) -> str:
    ms = int(round(seconds * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def write_bench(out: str | os.PathLike, seed: int, videos: dict[str, int], frames: dict[str, int],
                shot: tuple[int, int], progress: str | None = None, pool: int = 0, canonical: bool = False) -> dict:
    """Write both layouts under ``out``: for each duration ``d``, ``videos[d]`` Video-MME videos
    (every question they support) and as many MLVU videos (one question each, kinds in turn).
    ``plans.json`` maps each video to its events' colours in order.
    ``pool`` > 0 draws the shots without an event from that many scenes made once; ``canonical``:
    the colour questions in :data:`CANONICAL` order (:func:`questions_for`).
    Returns ``{"videomme": n questions, "mlvu": n questions}``."""
    from longva_plugins.fileio import atomic_write_text

    out = Path(out)
    vm, ml = out / "videomme", out / "mlvu"
    vm_rows, ml_rows, plans = [], [], {}
    pool_rng = np.random.default_rng([seed, 0])
    hay = [scene(pool_rng, None) for _ in range(pool)] or None
    jobs = [(d, i) for d in videos for i in range(videos[d])]
    iterator = jobs
    if progress:
        from rich.progress import track

        iterator = track(jobs, description=progress)
    for number, (duration, i) in enumerate(iterator):
        # Video-MME: one video, all its questions
        rng = np.random.default_rng([seed, 1, number])
        plan = plan_video(rng, frames[duration], shot, canonical)
        video_id = f"nano{seed}{duration[0]}{i:03d}"
        write_mp4(vm / "data" / f"{video_id}.mp4", render(plan, rng, hay))
        plans[f"videomme/data/{video_id}.mp4"] = plan.events
        atomic_write_text(vm / "subtitle" / f"{video_id}.srt", subtitles(plan, rng))
        for k, q in enumerate(questions_for(rng, plan, canonical)):
            letters = string.ascii_uppercase
            vm_rows.append({"video_id": f"{len(vm_rows) // 3 + 1:03d}", "duration": duration, "domain": "Synthetic",
                            "sub_category": "Framed squares", "url": "", "videoID": video_id,
                            "question_id": f"{video_id}-{k + 1}", "task_type": VIDEOMME_TASK_TYPES[q.kind],
                            "question": q.text, "options": [f"{letters[j]}. {o}" for j, o in enumerate(q.options)],
                            "answer": letters[q.answer]})
        # MLVU: one video, one question
        rng = np.random.default_rng([seed, 2, number])
        plan = plan_video(rng, frames[duration], shot, canonical)
        candidates = questions_for(rng, plan, canonical)
        q = next((c for c in candidates if c.kind == KINDS[number % len(KINDS)]), candidates[0])
        task_type = MLVU_TASK_TYPES[q.kind]
        name = f"{MLVU_FOLDERS[task_type]}/nano{seed}{duration[0]}{i:03d}.mp4"
        write_mp4(ml / "video" / name, render(plan, rng, hay))
        plans[f"mlvu/video/{name}"] = plan.events
        text = q.text + "\n" + "\n".join(f"({string.ascii_uppercase[j]}) {o}" for j, o in enumerate(q.options))
        ml_rows.append({"video_name": name, "duration": plan.frames / FPS, "question": text, "candidates": q.options,
                        "answer": q.options[q.answer], "task_type": task_type, "question_id": f"{name}-{q.kind}"})
    _write_parquet(vm / "test-00000-of-00001.parquet", vm_rows)
    atomic_write_text(ml / "dev.json", json.dumps(ml_rows, indent=1) + "\n")
    # the ground truth of every video (event colours in order), for reports and the alignment data
    atomic_write_text(out / "plans.json", json.dumps(plans, indent=1) + "\n")
    return {"videomme": len(vm_rows), "mlvu": len(ml_rows)}


def _write_parquet(path: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from longva_plugins.fileio import atomic_output

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        pq.write_table(pa.Table.from_pylist(rows), str(tmp))


def bench_env(root: str | os.PathLike) -> dict[str, str]:
    """The task settings that point ``longva_videomme*`` / ``longva_mlvu_dev`` at a bench folder."""
    root = Path(root).resolve()
    return {"LONGVA_VIDEOMME_ANNOTATIONS": str(root / "videomme" / "test-00000-of-00001.parquet"),
            "LONGVA_VIDEOMME_ROOT": str(root / "videomme" / "data"),
            "LONGVA_VIDEOMME_SUBTITLES": str(root / "videomme" / "subtitle"),
            "LONGVA_MLVU_ANNOTATIONS": str(root / "mlvu" / "dev.json"),
            "LONGVA_MLVU_ROOT": str(root / "mlvu" / "video")}


#: Model arguments the mini benchmark is run with: every frame of its 4 fps videos (64 to 256).
BENCH_MODEL_ARGS = f"max_frames_num={max(DURATIONS.values())},max_fps={FPS}"
#: Seeds of the mini benchmark (the alignment stage's clips use seeds below 1000).
BENCH_SEED = 1000


def make_mini_bench(out: str | os.PathLike, videos_per_duration: int = 8, seed: int = BENCH_SEED,
                    durations: dict[str, int] | None = None, canonical: bool = False) -> dict:
    """``longva-plugins make-mini-bench DIR [--canonical-options]``: the mini Video-MME and MLVU
    (see the module doc)."""
    frames = dict(durations or DURATIONS)
    counts = write_bench(out, seed, {d: videos_per_duration for d in frames}, frames, BENCH_SHOT, progress="mini bench",
                         canonical=canonical)
    return {**counts, "env": bench_env(out), "model_args": BENCH_MODEL_ARGS}


def bench_scores(output_path: str | os.PathLike, tasks=TASKS) -> dict[str, dict]:
    """``{task: {"accuracy" (0-1), "n", and the breakdowns (0-1)}}`` from the ``breakdown.json``
    files an lmms-eval run with ``--output_path output_path`` wrote."""
    from longva_plugins.lmms_eval_plugin.task_utils.common import SIDE_FOLDER

    scores = {}
    for task in tasks:
        path = Path(output_path) / SIDE_FOLDER / task / "breakdown.json"
        if not path.is_file():
            continue
        summary = json.loads(path.read_text())
        score = {"accuracy": summary["overall"] / 100.0, "n": summary["n"]}
        if task == "longva_mlvu_dev":
            score["m_avg"] = summary["m_avg"] / 100.0
        for key in ("per_duration", "per_task_type", "per_question_type"):
            if summary.get(key):
                score[key] = {k: v / 100.0 for k, v in summary[key].items()}
        scores[task] = score
    return scores


# --------------------------------------------------------------------------- alignment data
def task_prompt_kwargs(task: str) -> dict:
    """The ``lmms_eval_specific_kwargs["default"]`` of one of the package's task YAMLs (with its
    ``include`` chain), as lmms-eval hands them to ``doc_to_text``."""
    import yaml

    from longva_plugins.lmms_eval_plugin.builtin_tasks import package_task_dir

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))
    folder = next(p.parent for p in package_task_dir().rglob("*.yaml") if p.stem == task)
    config, name = {}, f"{task}.yaml"
    while name:
        data = yaml.load((folder / name).read_text(), Loader=Loader) or {}
        config = {**data, **config}
        name = data.get("include") if data.get("include") != name else None
    return dict((config.get("lmms_eval_specific_kwargs") or {}).get("default") or {})


@contextlib.contextmanager
def _environ(values: dict[str, str]):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def doc_to_text_functions() -> dict:
    """``{task: doc_to_text}`` of :data:`TASKS`, in that order: the functions the tasks' YAMLs name."""
    from longva_plugins.lmms_eval_plugin.task_utils import mlvu, videomme

    return {"longva_videomme": videomme.videomme_doc_to_text, "longva_videomme_paper": videomme.videomme_doc_to_text_paper,
            "longva_videomme_w_subtitle": videomme.videomme_doc_to_text_subtitle, "longva_mlvu_dev": mlvu.mlvu_doc_to_text}


#: The formats of the text-only questions: :data:`TASKS` but the subtitle one (no video, no subtitles).
TEXT_FORMATS = tuple(task for task in TASKS if task != "longva_videomme_w_subtitle")


def question_doc(task: str, question: Question) -> dict:
    """The doc a task's ``doc_to_text`` reads for ``question``: Video-MME's ``options`` list of
    ``"A. x"``, or MLVU's question text with ``"(A) x"`` lines."""
    letters = string.ascii_uppercase
    if task == "longva_mlvu_dev":
        return {"question": question.text + "\n" + "\n".join(f"({letters[j]}) {o}" for j, o in enumerate(question.options))}
    return {"question": question.text, "options": [f"{letters[j]}. {o}" for j, o in enumerate(question.options)]}


def task_prompts(root: str | os.PathLike) -> list[tuple[str, dict, str, str]]:
    """``(task, doc, video path relative to root, prompt)`` of every question of the bench at
    ``root`` in every task's format: the prompt is the task's own ``doc_to_text`` of the doc."""
    import datasets

    root = Path(root)
    text_of = doc_to_text_functions()
    out = []
    with _environ(bench_env(root)):
        vm_docs = datasets.load_dataset("parquet", data_files=str(root / "videomme" / "test-00000-of-00001.parquet"),
                                        split="train")
        ml_docs = json.loads((root / "mlvu" / "dev.json").read_text())
        for task in TASKS:
            kwargs = task_prompt_kwargs(task)
            for doc in (ml_docs if task == "longva_mlvu_dev" else vm_docs):
                video = (Path("mlvu/video") / doc["video_name"] if task == "longva_mlvu_dev"
                         else Path("videomme/data") / f"{doc['videoID']}.mp4")
                out.append((task, doc, str(video), text_of[task](doc, kwargs)))
    return out


def _kind_of(task: str, doc: dict) -> str:
    """The kind of a bench question (from its MLVU question id, or its Video-MME task type)."""
    if task == "longva_mlvu_dev":
        return str(doc["question_id"]).rsplit("-", 1)[1]
    return next(k for k, v in VIDEOMME_TASK_TYPES.items() if v == doc["task_type"])


def letter_answer(task: str, doc: dict) -> str:
    from longva_plugins.lmms_eval_plugin.task_utils.mlvu import answer_letter

    return answer_letter(doc) if task == "longva_mlvu_dev" else str(doc["answer"])


def alignment_records(root: str | os.PathLike, seed: int, colour_share: float = 0.3,
                      kinds: tuple[str, ...] = KINDS) -> list[dict]:
    """LLaVA conversations for the alignment stage from the clip bench at ``root``: each question of
    ``kinds`` in one task format drawn at random (answer: the letter), plus, for ``colour_share`` of
    the one-event videos, the V-NIAH question with the colour word as the answer (what stage 2
    taught, kept)."""
    rng = np.random.default_rng([seed, 3])
    plans = json.loads((Path(root) / "plans.json").read_text())
    by_question: dict[tuple[str, str], list] = {}
    for task, doc, video, prompt in task_prompts(root):
        if _kind_of(task, doc) not in kinds:
            continue
        by_question.setdefault((str(doc.get("question_id")), video), []).append((task, doc, video, prompt))
    records = []
    for n, ((_, video), variants) in enumerate(by_question.items()):
        task, doc, video, prompt = variants[int(rng.integers(len(variants)))]
        records.append({"id": f"mc-{seed}-{n}", "video": video,
                        "conversations": [{"from": "human", "value": f"<image>\n{prompt}"},
                                          {"from": "gpt", "value": letter_answer(task, doc)}]})
    for n, (video, events) in enumerate(sorted(plans.items())):
        if len(events) == 1 and rng.random() < colour_share:
            records.append({"id": f"colour-{seed}-{n}", "video": video,
                            "conversations": [{"from": "human", "value": f"<image>\n{QUESTION}"},
                                              {"from": "gpt", "value": events[0]}]})
    order = rng.permutation(len(records))
    return [records[i] for i in order]


def text_records(seed: int, count: int, shots: tuple[int, int] = (8, 160), canonical: bool = False,
                 kinds: tuple[str, ...] = KINDS) -> list[dict]:
    """Text-only conversations with the same questions, where the video would be: one run of filler
    words a shot, an event's colour word planted in its shot (stage 1's text needle), up to about
    1,500 tokens -- the questions' reasoning learnt on long text, which the video questions then
    reuse (LongVA's long-context transfer). Prompts: the three formats without subtitles; questions
    of ``kinds``, with the colour options in :data:`CANONICAL` order when ``canonical``."""
    from longva_plugins.nano.text import FILLER

    rng = np.random.default_rng([seed, 4])
    text_of = doc_to_text_functions()
    kwargs = {task: task_prompt_kwargs(task) for task in TEXT_FORMATS}
    records = []
    while len(records) < count:
        plan = plan_video(rng, int(rng.integers(*shots)), (1, 1), canonical)
        words = []
        for _, colour in plan.shots:
            shot = [str(w) for w in rng.choice(FILLER, size=int(rng.integers(2, 9)))]
            if colour:
                shot.insert(int(rng.integers(len(shot) + 1)), colour)
            words.extend(shot)
        for q in questions_for(rng, plan, canonical):
            if q.kind not in kinds:
                continue
            task = TEXT_FORMATS[int(rng.integers(len(TEXT_FORMATS)))]
            prompt = text_of[task](question_doc(task, q), kwargs[task])
            records.append({"id": f"text-{seed}-{len(records)}",
                            "conversations": [{"from": "human", "value": " ".join(words) + "\n" + prompt},
                                              {"from": "gpt", "value": string.ascii_uppercase[q.answer]}]})
    return records[:count]


__all__ = ["BENCH_MODEL_ARGS", "CANONICAL", "TEXT_FORMATS", "bench_scores", "doc_to_text_functions", "question_doc", "text_records", "DURATIONS", "KINDS", "MLVU_TASK_TYPES", "TASKS", "VIDEOMME_TASK_TYPES",
           "alignment_records", "bench_env", "make_mini_bench", "plan_video", "questions_for", "render",
           "task_prompt_kwargs", "task_prompts", "write_bench"]
