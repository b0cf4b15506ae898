"""`lmms-eval --model longva` end to end on the tiny checkpoint, offline, on small local tasks.

Covers every output type (generate_until on video and on images, loglikelihood, multiple_choice),
bad media (one corrupt and one missing video among good ones) and data-parallel runs under
torchrun with 2 CPU processes.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from e2e_media import write_corrupt_video, write_image, write_video
from e2e_utils import read_results, read_samples, run_lmms_eval

pytestmark = pytest.mark.slow
TASKS = "e2e_video_gen,e2e_image_gen,e2e_loglik,e2e_mc"
N_VIDEO_DOCS, N_IMAGE_DOCS = 5, 3


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tasks")
    folder = root / "longva_e2e"
    shutil.copytree(Path(__file__).parent / "tasks" / "longva_e2e", folder)
    videos = []
    for i in range(3):
        write_video(folder / f"good{i}.mp4", num_frames=6 + 3 * i, seed=i)
        videos.append(f"good{i}.mp4")
    write_corrupt_video(folder / "corrupt.mp4")
    videos += ["corrupt.mp4", "missing.mp4"]  # missing.mp4 is never written
    with open(folder / "video.jsonl", "w") as f:
        for i, name in enumerate(videos):
            f.write(json.dumps({"id": i, "video": name, "question": "What moves in the video?", "answer": "bar"}) + "\n")
    with open(folder / "image.jsonl", "w") as f:
        for i in range(N_IMAGE_DOCS):
            write_image(folder / f"img{i}.png", size=(120 + 300 * i, 80 + 40 * i), seed=i)
            f.write(json.dumps({"id": i, "image": f"img{i}.png", "question": "Which option? A, B or C.",
                                "answer": "A", "choice_index": i % 3}) + "\n")
    return root


def _check_outputs(out: Path):
    results = read_results(out)
    assert results["config"]["model_backend"].startswith("longva_plugins.lmms_eval_plugin.adapter.LongVA")
    assert set(TASKS.split(",")) <= set(results["results"])
    video = read_samples(out, "e2e_video_gen")
    assert sorted(s["doc_id"] for s in video) == list(range(N_VIDEO_DOCS)), "every doc answered exactly once"
    responses = {s["doc_id"]: s["filtered_resps"] for s in video}
    responses = {k: v[0] if isinstance(v, list) else v for k, v in responses.items()}
    assert responses[3] == "" and responses[4] == "", "corrupt and missing videos give empty answers"
    assert all(isinstance(responses[i], str) for i in range(3))
    loglik = read_samples(out, "e2e_loglik")
    assert len(loglik) == N_VIDEO_DOCS
    mc = read_samples(out, "e2e_mc")
    assert sorted(s["doc_id"] for s in mc) == list(range(N_IMAGE_DOCS))
    per_sample = [s["acc"] for s in mc]
    assert results["results"]["e2e_mc"]["acc,none"] == pytest.approx(sum(per_sample) / len(per_sample))
    return results


def test_single_process_all_output_types(task_dir, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    proc = run_lmms_eval(
        ["--model", "longva", "--model_args", f"pretrained={tiny_checkpoint},max_frames_num=4",
         "--tasks", TASKS, "--include_path", str(task_dir), "--output_path", str(out), "--log_samples"],
        cwd=tmp_path,
    )
    _check_outputs(out)
    log = proc.stdout + proc.stderr
    assert "corrupt.mp4" in log and "missing.mp4" in log, "bad videos must be reported by name"
    assert "answered empty" in log


def test_torchrun_two_processes(task_dir, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"]
    run_lmms_eval(
        ["--model", "longva", "--model_args", f"pretrained={tiny_checkpoint},max_frames_num=4,device=cpu",
         "--tasks", TASKS, "--include_path", str(task_dir), "--output_path", str(out), "--log_samples"],
        cwd=tmp_path, launcher=launcher, timeout=900,
    )
    _check_outputs(out)


def _responses(out: Path, task: str) -> dict:
    return {s["doc_id"]: s["filtered_resps"] for s in read_samples(out, task)}


def test_sequence_parallel_answers_equal_one_process(task_dir, tiny_checkpoint, tmp_path):
    """Every output type under torchrun with `sequence_parallel=2` (both ranks one KV cache, the
    prompt prefilled in chunks into it, decode steps over both shares) answers as one process:
    the same generated text, loglikelihoods and choices; bad videos still answered empty."""
    args = f"pretrained={tiny_checkpoint},max_frames_num=8,prefill_chunk_size=256,device=cpu"
    runs = {}
    for name, launcher, extra in (("single", None, ""), ("sp2", [sys.executable, "-m", "torch.distributed.run",
                                                                "--standalone", "--nproc_per_node", "2", "-m"],
                                  ",sequence_parallel=2")):
        out = tmp_path / name
        run_lmms_eval(["--model", "longva", "--model_args", args + extra, "--tasks", TASKS, "--include_path",
                       str(task_dir), "--output_path", str(out), "--log_samples"], cwd=tmp_path, launcher=launcher,
                      timeout=900)
        _check_outputs(out)
        runs[name] = {task: _responses(out, task) for task in TASKS.split(",")}
    for task in TASKS.split(","):
        single, split = runs["single"][task], runs["sp2"][task]
        assert split.keys() == single.keys(), task
        for doc_id, want in single.items():
            got = split[doc_id]
            if task == "e2e_video_gen" or task == "e2e_image_gen":
                assert got == want, (task, doc_id)
            else:  # loglikelihood results, as lmms-eval logs them: strings such as ["6.33", "False"]
                assert _close(got, want), (task, doc_id, got, want)


def _close(got, want) -> bool:
    """Equal, except numbers, which may differ by 1e-3 relative (the merge order of the split attention)."""
    if isinstance(want, (list, tuple)):
        return isinstance(got, (list, tuple)) and len(got) == len(want) and all(map(_close, got, want))
    try:
        a, b = float(got), float(want)
    except (TypeError, ValueError):
        return got == want
    return a == b or abs(a - b) <= 1e-3 * max(1.0, abs(b))
