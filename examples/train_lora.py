"""LoRA fine-tuning of LongVA on images and videos (LLaVA conversation format), on the tiny checkpoint.

    python examples/train_lora.py [--steps 20] [--output outputs/lora-example]

Generates a small synthetic dataset (coloured images, moving-bar videos, with questions and
answers), trains a LoRA adapter plus the projector, saves them, and evaluates the adapter with
`lmms-eval --model longva --model_args pretrained=...,peft=...` printed at the end. Replace
`model_name_or_path` and `data_path` for a real run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import av
import numpy as np
from PIL import Image

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (30, 60, 220)}


def make_dataset(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    records = []
    for i, (name, rgb) in enumerate(COLOURS.items()):
        Image.new("RGB", (160, 120), rgb).save(root / f"{name}.png")
        records.append({"id": f"img-{i}", "image": f"{name}.png",
                        "conversations": [{"from": "human", "value": "<image>\nWhat colour is the picture?"},
                                          {"from": "gpt", "value": name}]})
        video = root / f"{name}.mp4"
        with av.open(str(video), "w") as container:
            stream = container.add_stream("mpeg4", rate=4)
            stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
            for t in range(6):
                frame = np.zeros((48, 64, 3), np.uint8)
                frame[:] = rgb
                frame[:, t * 8 : t * 8 + 8] = 255
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        records.append({"id": f"vid-{i}", "video": video.name,
                        "conversations": [{"from": "human", "value": "<image>\nWhat colour is the video?"},
                                          {"from": "gpt", "value": name},
                                          {"from": "human", "value": "Is something moving?"},
                                          {"from": "gpt", "value": "yes, a white bar"}]})
    path = root / "train.json"
    path.write_text(json.dumps(records, indent=1))
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--output", default="outputs/lora-example")
    args = parser.parse_args()
    from longva_plugins.testing import ensure_tiny_checkpoint
    from longva_plugins.training.config import parse_training_config
    from longva_plugins.training.run import train

    out = Path(args.output)
    data = make_dataset(out / "data")
    # LongVA's keys and any transformers.TrainingArguments key, over LLaVA's defaults
    config, training_args = parse_training_config({
        "model_name_or_path": str(ensure_tiny_checkpoint()), "data_path": str(data), "stage": "lora", "lora_r": 8,
        "lora_alpha": 16, "max_frames": 4, "output_dir": str(out / "adapter"), "max_steps": args.steps,
        "learning_rate": 5e-3, "save_steps": 10})
    train(config, training_args)
    print(f"adapter saved to {training_args.output_dir}; evaluate it with:\n  lmms-eval eval --model longva --model_args "
          f"pretrained={config.model_name_or_path},peft={training_args.output_dir} --tasks vniah --limit 5")


if __name__ == "__main__":
    main()
