"""The V-NIAH family's cells without a model: items, VideoRoPE's distractor rule, VNBench's
several-needle questions and scoring."""

from __future__ import annotations

import random

import pytest

from longva_plugins.vniah.cells import (
    decode_items, default_period, distractor_cell, distractor_side, encode_items, needle_cell, order_key,
    videorope_draws,
)
from longva_plugins.vniah.multi import (
    KINDS, LETTERS, bare_question, build_cell, circular_accuracy, extract_letter, max_needles,
)
from longva_plugins.vniah.needles import synthetic_distractors, synthetic_needles


@pytest.mark.parametrize("items", [[0, 1, 2, "n3", 3, 4], ["n0", 0, 1], [0, 1, "d2"], [5, 6, "n1", "n2", 9, 10, 11], []])
def test_items_round_trip(items):
    assert decode_items(encode_items(items)) == items


def _videorope_input(query_frame_idx, num_frames, cycle, test_p):
    """VideoRoPE's eval_vision_niah_interrupt.py, restated: the order of the concatenated pieces."""
    if query_frame_idx - cycle <= 0 and query_frame_idx + cycle >= num_frames:
        mode = "no"
    elif query_frame_idx < cycle:
        mode = "after"
    elif query_frame_idx + cycle >= num_frames:
        mode = "before"
    elif test_p < 0.5:
        mode = "before"
    else:
        mode = "after"
    h = list(range(num_frames))
    q = query_frame_idx
    if mode == "before":
        return mode, h[:q - cycle] + ["D"] + h[q - cycle:q] + ["N"] + h[q:]
    if mode == "after":
        return mode, h[:q] + ["N"] + h[q:q + cycle] + ["D"] + h[q + cycle:]
    return "none", h[:q] + ["N"] + h[q:]


@pytest.mark.parametrize("frames", [5, 12, 40])
@pytest.mark.parametrize("period", [1, 3, 10])
def test_distractor_cells_follow_videorope(frames, period):
    for depth in (0.0, 0.2, 0.25, 0.5, 0.8, 1.0):
        for draw in (0.1, 0.9):
            side = distractor_side(frames, depth, period, draw)
            mode, expected = _videorope_input(int(depth * frames), frames, period, draw)
            assert side == mode
            got = ["N" if i == "n2" else "D" if i == "d2" else i for i in distractor_cell(frames, depth, 2, side, period)]
            assert got == expected


def test_videorope_draws_are_its_seeded_stream():
    rng = random.Random(24242424)
    assert videorope_draws(5) == [rng.random() for _ in range(5)]
    assert default_period(3000) == 200 and default_period(16) == 4 and default_period(2) == 1


def test_order_key_sorts_cells_lexicographically():
    cells = [needle_cell(4, d, k) for d in (0.0, 0.5, 1.0) for k in (0, 1)]
    ordered = sorted(cells, key=order_key)
    assert ordered[0] == [0, 1, 2, 3, "n0"] and ordered[-1] == ["n1", 0, 1, 2, 3]


def test_synthetic_distractors_pair_with_needles_and_answer_otherwise():
    needles, distractors = synthetic_needles(), synthetic_distractors()
    assert len(needles) == len(distractors)
    for needle, distractor in zip(needles, distractors):
        assert distractor.answer != needle.answer and distractor.image.shape == needle.image.shape
        shape = needle.id.rsplit("-", 1)[1]
        assert not distractor.id.endswith(shape), "the distractor is not the shape its needle's question names"


def test_bare_question_drops_answer_instructions():
    assert bare_question("\nWhat colour is it? Answer the question using a single word or phrase.") == "What colour is it?"
    assert bare_question("What is shown?\nPlease provide your answer by stating the letter.") == "What is shown?"
    assert bare_question("How many?") == "How many?"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("count", [1, 2, 3])
def test_several_needle_cells(kind, count):
    needles = synthetic_needles()
    for sample in range(len(needles)):
        cell = build_cell(kind, 10, count, sample, needles)
        assert cell == build_cell(kind, 10, count, sample, needles), "deterministic"
        assert [i for i in cell.items if isinstance(i, int)] == list(range(10)), "the haystack stays in order"
        inserted = [int(i[1:]) for i in cell.items if isinstance(i, str)]
        assert cell.answer in cell.options and len(set(cell.options)) == len(cell.options) <= 4
        if kind == "counting":
            assert inserted.count(sample) == count == int(cell.answer)
            foil = [i for i in inserted if i != sample]
            assert len(foil) == 1 and needles[foil[0]].answer != needles[sample].answer, "one needle of another answer"
        else:
            assert len(inserted) == count and sample in inserted
            assert len({needles[i].answer for i in inserted}) == count, "different answers"
            if kind == "ordering":
                assert cell.answer == ", ".join(needles[i].answer for i in inserted)
            else:
                assert cell.answer == needles[sample].answer
        tries = cell.tries("mc")
        assert len(tries) == len(cell.options)
        for question, letter, rotation in tries:  # the letter points at the answer in that rotation
            line = next(l for l in question.splitlines() if l.startswith(f"{letter}. "))
            assert line == f"{letter}. {cell.answer}"
        assert {letter for _, letter, _ in tries} == set(LETTERS[:len(cell.options)])
        assert len(cell.tries("open")) == 1 and cell.tries("open")[0][1] == cell.answer


def test_retrieval_with_alike_needles_names_the_subject_by_rank():
    from longva_plugins.nano.scenes import nano_needles

    needles = nano_needles()  # one question for all
    for sample in range(len(needles)):
        cell = build_cell("retrieval", 30, 3, sample, needles)
        inserted = [int(i[1:]) for i in cell.items if isinstance(i, str)]
        rank = ("first", "second", "third")[inserted.index(sample)]
        assert f"the {rank} of them" in cell.stem and cell.answer == needles[sample].answer


def test_max_needles_counts_different_answers():
    needles = synthetic_needles()
    assert max_needles("retrieval", needles) == max_needles("ordering", needles) == 5


def test_extract_letter_is_vnbench_s():
    assert extract_letter("B. the red one") == "B"
    assert extract_letter("C") == "C"
    assert extract_letter("Both B and A") == "A", "A wins wherever it is (VNBench's eval.py)"
    assert extract_letter("red") == "red"


def test_circular_accuracy_needs_every_rotation():
    records = [
        *({"kind": "retrieval", "frames": 4, "needles": 1, "sample": 0, "correct": 1} for _ in range(4)),
        *({"kind": "retrieval", "frames": 4, "needles": 1, "sample": 1, "correct": c} for c in (1, 1, 1, 0)),
        *({"kind": "counting", "frames": 4, "needles": 2, "sample": 0, "correct": 1} for _ in range(4)),
    ]
    scores = circular_accuracy(records)
    assert scores["kinds"] == {"counting": 1.0, "retrieval": 0.5}
    assert scores["overall"] == 0.75 and scores["questions"] == 3
    assert scores["cells"]["retrieval"] == [{"Num. Frame": 4, "Needles": 1, "Score": 0.5}]
    assert scores["chance"] == {"counting": (1 / 4) ** 4, "retrieval": (1 / 4) ** 4}


def _needle_folder(root, count):
    import json

    import numpy as np
    from PIL import Image

    root.mkdir()
    rows = []
    for i in range(count):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(root / f"{i}.png")
        rows.append({"image": f"{i}.png", "question": f"\nWhat is {i}?", "answer": str(i)})
    (root / "needles.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return root


def test_distractor_settings_for_a_needle_folder(tmp_path, monkeypatch):
    """A needle folder has no distractor set of its name: without LONGVA_VNIAH_DISTRACTORS the
    settings are refused (never its own needles used as distractors); a folder of as many distractors
    is accepted, one of another size refused."""
    from longva_plugins.errors import SettingError
    from longva_plugins.lmms_eval_plugin.task_utils.vniah import check_distractor_settings
    from longva_plugins.vniah.grid import env_settings

    needles = _needle_folder(tmp_path / "needles", 3)
    monkeypatch.setenv("LONGVA_VNIAH_NEEDLES", str(needles))
    monkeypatch.setenv("LONGVA_VNIAH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LONGVA_VNIAH_DISTRACTORS", raising=False)
    with pytest.raises(SettingError, match="LONGVA_VNIAH_DISTRACTORS is unset"):
        check_distractor_settings(env_settings())
    monkeypatch.setenv("LONGVA_VNIAH_DISTRACTORS", str(_needle_folder(tmp_path / "distractors", 3)))
    grid, found, _, distractors, period = check_distractor_settings(env_settings())
    assert len(distractors) == len(found) == 3 and period == default_period(max(grid.frame_counts))
    monkeypatch.setenv("LONGVA_VNIAH_DISTRACTORS", str(_needle_folder(tmp_path / "two", 2)))
    with pytest.raises(SettingError, match="has 2 distractors but the needle set has 3"):
        check_distractor_settings(env_settings())
    monkeypatch.setenv("LONGVA_VNIAH_NEEDLES", "synthetic")
    monkeypatch.delenv("LONGVA_VNIAH_DISTRACTORS")
    assert env_settings()["distractors"] == "synthetic", "a built-in needle set brings its distractors"


@pytest.mark.parametrize("check, env, named", [
    ("d", {"LONGVA_VNIAH_DISTRACTORS": "nope"}, "LONGVA_VNIAH_DISTRACTORS"),
    ("d", {"LONGVA_VNIAH_DISTRACTORS": "nano"}, "LONGVA_VNIAH_DISTRACTORS"),  # 6 distractors for 5 needles
    ("d", {"LONGVA_VNIAH_DISTRACTOR_PERIOD": "8"}, "LONGVA_VNIAH_DISTRACTOR_PERIOD"),  # no room in an 8-frame grid
    ("d", {"LONGVA_VNIAH_DISTRACTOR_PERIOD": "0"}, "LONGVA_VNIAH_DISTRACTOR_PERIOD"),
    ("d", {"LONGVA_VNIAH_DISTRACTOR_PERIOD": "two"}, "LONGVA_VNIAH_DISTRACTOR_PERIOD"),
    ("multi", {"LONGVA_VNIAH_MULTI_NEEDLES": "6"}, "LONGVA_VNIAH_MULTI_NEEDLES"),  # 5 synthetic answers
    ("multi", {"LONGVA_VNIAH_MULTI_NEEDLES": "4", "LONGVA_VNIAH_GRID": "frames=2:4:2;depths=0"},
     "LONGVA_VNIAH_MULTI_NEEDLES"),  # 5 images, 3 places
    ("multi", {"LONGVA_VNIAH_MULTI_NEEDLES": "two"}, "LONGVA_VNIAH_MULTI_NEEDLES"),
    ("multi", {"LONGVA_VNIAH_MULTI_NEEDLES": "0"}, "LONGVA_VNIAH_MULTI_NEEDLES"),
    ("multi", {"LONGVA_VNIAH_MULTI_KINDS": "retrieval,sorting"}, "LONGVA_VNIAH_MULTI_KINDS"),
    ("multi", {"LONGVA_VNIAH_MULTI_FORMAT": "letters"}, "LONGVA_VNIAH_MULTI_FORMAT"),
    ("multi", {"LONGVA_VNIAH_MULTI_KINDS": "ordering", "LONGVA_VNIAH_MULTI_NEEDLES": "1"}, "LONGVA_VNIAH_MULTI_NEEDLES"),
])
def test_every_bad_setting_is_refused_naming_it(tmp_path, monkeypatch, check, env, named):
    from longva_plugins.errors import SettingError
    from longva_plugins.lmms_eval_plugin.task_utils.vniah import check_distractor_settings, check_multi_settings
    from longva_plugins.vniah.grid import env_settings

    for key, value in {"LONGVA_VNIAH_GRID": "frames=4:8:4;depths=0,1", "LONGVA_VNIAH_CACHE": str(tmp_path), **env}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingError) as info:
        (check_distractor_settings if check == "d" else check_multi_settings)(env_settings())
    assert named in str(info.value) and env[named] in str(info.value)


def test_good_settings_pass_the_checks(tmp_path, monkeypatch):
    from longva_plugins.lmms_eval_plugin.task_utils.vniah import check_distractor_settings, check_multi_settings
    from longva_plugins.vniah.grid import env_settings

    monkeypatch.setenv("LONGVA_VNIAH_GRID", "frames=4:8:4;depths=0,1")
    monkeypatch.setenv("LONGVA_VNIAH_CACHE", str(tmp_path))
    monkeypatch.setenv("LONGVA_VNIAH_DISTRACTOR_PERIOD", "3")
    assert check_distractor_settings(env_settings())[-1] == 3
    monkeypatch.setenv("LONGVA_VNIAH_MULTI_NEEDLES", "3,1")
    assert check_multi_settings(env_settings())[2:] == (["retrieval", "ordering", "counting"], [1, 3], "mc")


def test_order_key_is_the_items_lexicographic_order():
    """The packed key sorts as the items do element by element (frames by index before inserts,
    inserts by name), frame indices past one byte included."""
    import itertools

    def reference(items):
        return tuple((0, i, "") if isinstance(i, int) else (1, 0, i) for i in items)

    pool = [[0, 1, 2], [0, 1, "n1"], [0, 1, "n12"], [0, 300, "n2"], [0, 256], [0, 1], ["n1", 0], ["d1", 0],
            [0, 1, 2, "n0"], [255, 0], [256, 0], [70000], ["n1"], []]
    for a, b in itertools.product(pool, repeat=2):
        assert (order_key(a) < order_key(b)) == (reference(a) < reference(b)), (a, b)
        assert (order_key(a) == order_key(b)) == (a == b), (a, b)
