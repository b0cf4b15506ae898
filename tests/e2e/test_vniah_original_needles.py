"""The original's needle folder (`dataset.json` + `images/`) and a real-looking h264 haystack
through `lmms-eval --model longva --tasks vniah`."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
from e2e_utils import offline_env, read_results, read_samples, run_lmms_eval
from PIL import Image

pytestmark = pytest.mark.slow


def _haystack(path, seconds=10):
    import av

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, size=(90, 160, 3), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(30000, 1001), options={"g": "250", "bf": "2"})
        stream.width, stream.height, stream.pix_fmt = 160, 90, "yuv420p"
        for i in range(int(seconds * 29.97)):
            frame = np.roll(base, i * 2, axis=1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_original_needle_folder_and_video_haystack(tiny_checkpoint, tmp_path):
    needles = tmp_path / "needle_datasets"
    (needles / "images").mkdir(parents=True)
    rows = []
    for i, colour in enumerate(((220, 30, 30), (30, 30, 220))):
        Image.fromarray(np.full((120, 90, 3), colour, np.uint8)).save(needles / "images" / f"{i}.png")
        rows.append({"path": f"{i}.png", "prompt": "\nFind the frame of a plain colour. What colour is it?",
                     "answer": ("red", "blue")[i]})
    (needles / "dataset.json").write_text(json.dumps(rows))
    haystack = _haystack(tmp_path / "movie.mp4")
    out = tmp_path / "out"
    env = offline_env(LONGVA_VNIAH_NEEDLES=str(needles), LONGVA_VNIAH_HAYSTACK=str(haystack),
                      LONGVA_VNIAH_GRID="frames=4:8:4;depths=0,0.5,1", LONGVA_VNIAH_CACHE=str(tmp_path / "cache"))
    run_lmms_eval(["--model", "longva", "--model_args", f"pretrained={tiny_checkpoint}", "--tasks", "vniah",
                   "--output_path", str(out), "--log_samples"], cwd=tmp_path, env=env)
    samples = read_samples(out, "vniah")
    assert len(samples) == 2 * 3 * 2  # frame counts x depths x needles
    assert {s["vniah_accuracy"]["needle"] for s in samples} == {"needle_datasets-0", "needle_datasets-1"}
    scores = json.loads((out / "longva" / "vniah" / "all_accuracies.json").read_text())
    assert sorted({(s["Num. Frame"], s["Frame Depth"]) for s in scores}) == [
        (4, 0.0), (4, 50.0), (4, 100.0), (8, 0.0), (8, 50.0), (8, 100.0)]
    average = read_results(out)["results"]["vniah"]["vniah_accuracy,none"]
    assert average == pytest.approx(sum(s["Score"] for s in scores) / len(scores))
