"""Training test data: LLaVA conversations over a generated image and video (imported by the tests here)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from e2e_media import write_image, write_video  # noqa: E402


def media_records(root: Path) -> list[dict]:
    """An image, a video and a text sample (their media written into ``root``)."""
    write_image(root / "img.png", size=(200, 120))
    write_video(root / "clip.mp4", num_frames=6)
    return [
        {"id": "img", "image": "img.png", "conversations": [{"from": "human", "value": "<image>\nWhat colour?"},
                                                             {"from": "gpt", "value": "red"}]},
        {"id": "vid", "video": "clip.mp4", "conversations": [{"from": "human", "value": "<image>\nWhat moves?"},
                                                              {"from": "gpt", "value": "a bar"}]},
        {"id": "txt", "conversations": [{"from": "human", "value": "Say yes."}, {"from": "gpt", "value": "yes"}]},
    ]
