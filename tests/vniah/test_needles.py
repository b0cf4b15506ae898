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
