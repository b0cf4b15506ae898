"""Test data of the task-utils tests: tiny generated videos and rows in the official schemas."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def write_video(path: Path, num_frames: int = 40, fps: int = 10, size: tuple[int, int] = (32, 24)) -> Path:
    """A tiny mpeg4 .mp4 (PyAV) of ``num_frames`` frames at ``fps``."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(num_frames):
            frame = np.full((size[1], size[0], 3), (i * 6) % 256, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def videomme_row(
    i: int,
    duration: str = "short",
    domain: str = "Knowledge",
    task_type: str = "OCR Problems",
) -> dict:
    """A row in the exact column schema of lmms-eval/Video-MME."""
    return {
        "video_id": f"{i:03d}",
        "duration": duration,
        "domain": domain,
        "sub_category": "Humanity & History",
        "url": "https://www.youtube.com/watch?v=x",
        "videoID": f"vid{i}",
        "question_id": f"{i:03d}-1",
        "task_type": task_type,
        "question": "What colour is the car?",
        "options": ["A. Blue.", "B. Red.", "C. Green.", "D. Yellow."],
        "answer": "B",
    }


def mlvu_row(i: int, task_type: str = "needle", answer: str = "A") -> dict:
    """A row in the exact column schema of sy1998/MLVU_dev."""
    return {
        "video_name": f"{task_type}/m{i}.mp4",
        "duration": 4.0,
        "question": "What appears in the video?\n(A) a bar\n(B) a cat\n(C) a car\n(D) a tree",
        "candidates": ["a bar", "a cat", "a car", "a tree"],
        "answer": answer,
        "task_type": task_type,
        "question_id": str(i),
    }


def write_results_file(
    folder: Path,
    frames: int,
    overall: float,
    stamp: str = "2026-11-22T10-00-00",
    model_args=None,
) -> Path:
    """A results file in lmms-eval 0.7.3's layout (``<output>/<model>/<date>_results.json``)."""
    run = folder / "longva"
    run.mkdir(parents=True, exist_ok=True)
    value = {
        "overall": overall,
        "n": 6,
        "per_duration": {"short": overall + 6, "medium": overall, "long": overall - 6},
        "missing_videos": 0,
        "missing_video_paths": [],
    }
    path = run / f"{stamp}_results.json"
    path.write_text(
        json.dumps(
            {
                "results": {
                    "longva_videomme": {
                        "alias": "longva_videomme",
                        "longva_videomme_accuracy,none": value,
                        "longva_videomme_accuracy_stderr,none": "N/A",
                    }
                },
                "config": {
                    "model": "longva",
                    "model_args": model_args if model_args is not None else f"pretrained=/ckpt,max_frames_num={frames}",
                },
            }
        )
    )
    return path
