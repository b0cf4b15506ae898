"""Needle folders: our layout, the original's `dataset.json` + `images/`, and settings errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from longva_plugins.errors import DataError, SettingError
from longva_plugins.vniah.needles import load_needle_folder, resolve_needles


def _image(path, colour):
    Image.fromarray(np.full((40, 30, 3), colour, np.uint8)).save(path)


def test_the_original_needle_folder_layout_loads_as_it_is(tmp_path):
    (tmp_path / "images").mkdir()
    rows = []
    for i, colour in enumerate((10, 200)):
        _image(tmp_path / "images" / f"n{i}.png", colour)
        rows.append({"path": f"n{i}.png", "prompt": f"\nFind the frame {i}. What is it?", "answer": f"thing{i}"})
    (tmp_path / "dataset.json").write_text(json.dumps(rows))
    identity, needles = resolve_needles(str(tmp_path))
    assert identity.startswith("folder:")
    assert [n.question for n in needles] == [r["prompt"] for r in rows]
    assert [n.answer for n in needles] == ["thing0", "thing1"]
    assert needles[1].image.shape == (40, 30, 3) and int(needles[1].image[0, 0, 0]) == 200
    # the identity (what embedding caches key on) follows the content, not the folder's name
    _image(tmp_path / "images" / "n1.png", 201)
    changed, _ = resolve_needles(str(tmp_path))
    assert changed != identity and changed.startswith("folder:")
    assert resolve_needles(str(tmp_path))[0] == changed


def test_unreadable_and_empty_images_are_all_listed(tmp_path):
    _image(tmp_path / "good.png", 50)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    rows = [{"image": name, "question": "\nq", "answer": "a"} for name in ("good.png", "broken.png", "empty.png", "gone.png")]
    rows.append({"image": "good.png", "answer": "no question"})
    (tmp_path / "needles.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError) as info:
        load_needle_folder(tmp_path)
    message = str(info.value)
    assert isinstance(info.value, SettingError) and len(info.value.problems) == 4
    for text in ("broken.png", "empty.png", "gone.png", "needle 4 lacks question", "LONGVA_VNIAH_NEEDLES="):
        assert text in message
    assert "good.png" not in message


def test_a_folder_without_needles_names_the_layouts(tmp_path):
    with pytest.raises(DataError, match="dataset.json"):
        load_needle_folder(tmp_path)


def test_video_haystack_samples_one_fps_as_the_original(tmp_path):
    """range(0, total, round(fps)): at 29.97 fps every 30th source frame (not floor(k * 29.97))."""
    from fractions import Fraction

    import av

    from longva_plugins.vniah.haystack import VideoHaystack, one_fps_indices

    path = tmp_path / "ntsc.mp4"
    total = 95
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(30000, 1001), options={"g": "30", "bf": "2"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(total):
            frame = np.full((48, 64, 3), (i * 2) % 256, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    assert one_fps_indices(3001, 29.97) == list(range(0, 3001, 30))
    assert one_fps_indices(3001, 29.97)[100] == 3000  # floor(100 * 29.97) would be 2997
    haystack = VideoHaystack(path)
    assert haystack.source_indices == [0, 30, 60, 90] and haystack.length == 4
    with av.open(str(path)) as container:
        every = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    np.testing.assert_array_equal(haystack.frames([1, 3]), np.stack([every[30], every[90]]))
    with pytest.raises(SettingError, match="asks for 5 frames"):
        haystack.check_length(5)


def test_a_local_snapshot_of_the_hub_needle_set_loads(tmp_path):
    """lmms-lab/v_niah_needles as `hf download` lays it out: data/test-*.parquet with an image column."""
    import datasets

    images = []
    for colour in (10, 240):
        path = tmp_path / f"{colour}.png"
        _image(path, colour)
        images.append(str(path))
    features = datasets.Features({"image": datasets.Image(), "question": datasets.Value("string"),
                                  "answer": datasets.Value("string")})
    table = datasets.Dataset.from_dict({"image": images, "question": ["\nq1", "\nq2"], "answer": ["a1", "a2"]},
                                       features=features)
    snapshot = tmp_path / "v_niah_needles"
    (snapshot / "data").mkdir(parents=True)
    table.to_parquet(str(snapshot / "data" / "test-00000-of-00001.parquet"))
    _, needles = resolve_needles(str(snapshot))
    assert [n.answer for n in needles] == ["a1", "a2"] and [n.question for n in needles] == ["\nq1", "\nq2"]
    assert int(needles[1].image[0, 0, 0]) == 240
