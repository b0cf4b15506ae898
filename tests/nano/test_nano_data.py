"""LongVA-nano's data: text NIAH samples, the procedural scenes, the ``nano`` needles, checkpoint merge."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from longva_plugins.nano.scenes import COLOURS, QUESTION, TILE, nano_needles, training_image
from longva_plugins.nano.text import TextNeedleTask


@pytest.fixture(scope="module")
def processor():
    from longva_plugins.models.longva import LongVAProcessor
    from longva_plugins.nano.build import nano_tokenizer

    return LongVAProcessor(nano_tokenizer())


def test_nano_tokenizer_keeps_colours_and_prompt_pieces_whole(processor):
    for name in COLOURS:
        assert len(processor.tokenize(name)) == 1 and len(processor.tokenize(" " + name)) == 1, name
    assert len(processor) <= 1024


@pytest.mark.parametrize("length", [64, 257, 1000])
def test_text_sample_has_one_needle_and_learns_only_the_answer(processor, length):
    task = TextNeedleTask(processor)
    rng = np.random.default_rng(3)
    for _ in range(5):
        ids, labels, colour = task.sample(rng, length)
        assert len(ids) == len(labels) == length
        body = ids[len(task.pre): length - len(task.post) - len(task.answers[colour])]
        planted = [t for t in body if t in task.needles.values()]
        assert planted == [task.needles[colour]], "exactly one colour word, the answer's, in the haystack"
        learned = [t for t, lab in zip(ids, labels) if lab != -100]
        assert learned == task.answers[colour] == processor.tokenize(colour).tolist() + [processor.eos_token_id]
        assert processor.decode(ids[-len(task.post) - 2:-2], skip_special_tokens=False).startswith("\n" + QUESTION)


def test_text_batches_repeat_by_seed_and_needles_spread_over_depths(processor):
    task = TextNeedleTask(processor)
    a, _ = task.batch(np.random.default_rng([1, 2]), 4, 128)
    b, _ = task.batch(np.random.default_rng([1, 2]), 4, 128)
    assert torch.equal(a, b)
    depths = []
    rng = np.random.default_rng(0)
    for _ in range(200):
        ids, _, colour = task.sample(rng, 200)
        depths.append(ids.index(task.needles[colour]) / 200)
    assert min(depths) < 0.15 and max(depths) > 0.8
    with pytest.raises(ValueError, match="no room"):
        task.sample(rng, task.overhead)


def _object_mask(image: np.ndarray, colour: str) -> np.ndarray:
    return (np.abs(image.astype(int) - np.array(COLOURS[colour])).sum(-1) < 8)


@pytest.mark.parametrize("difficulty", [0.0, 0.5, 1.0])
def test_scene_holds_the_square_in_one_tile(difficulty):
    from longva_plugins.nano.scenes import cell_labels, compose

    for seed in range(6):
        image, colour, box = compose(np.random.default_rng([int(difficulty * 10), seed]), difficulty)
        array = np.asarray(image)
        h, w = array.shape[:2]
        assert h % TILE == 0 and w % TILE == 0 and (h // TILE) * (w // TILE) <= 9
        x0, y0, x1, y1 = box
        assert x0 // TILE == (x1 - 1) // TILE and y0 // TILE == (y1 - 1) // TILE, "the square lies in one tile"
        side = x1 - x0
        lo, hi = round(150 + (44 - 150) * difficulty), round(300 + (96 - 300) * difficulty)
        assert lo <= side <= hi and y1 - y0 == side
        centre = array[(y0 + y1) // 2, (x0 + x1) // 2].astype(int)
        assert np.abs(centre - np.array(COLOURS[colour])).max() <= 12, "its fill is the named colour"
        frame = array[y0 + 1:y0 + 5, x0 + 1:x1 - 1].astype(int)
        assert frame.min() < 60 and frame.max() > 195, "inside a black-and-white checker frame"
        if x1 <= TILE and y1 <= TILE:  # the probe's labels in a single-tile scene: cells the square covers
            labels = cell_labels(box, colour)
            assert set(labels) <= {0, 1 + list(COLOURS).index(colour)} and labels.any()
    image, colour, box = compose(np.random.default_rng(1), 1.0, with_object=False)
    assert colour is None and box is None and not cell_labels(box, colour).any()


def test_curriculum_starts_grey_and_large():
    easy, colour = training_image(np.random.default_rng(0), difficulty=0.0)
    array = np.asarray(easy).astype(float)
    mask = _object_mask(np.asarray(easy), colour)
    ys, xs = np.nonzero(mask)
    if len(ys):
        assert ys.max() - ys.min() > 60, "difficulty 0 draws a large square"
    saturation = array.max(-1) - array.min(-1)
    assert np.median(saturation[~mask]) < 60, "and a grey background"
    with pytest.raises(ValueError, match="difficulty"):
        training_image(np.random.default_rng(0), difficulty=1.5)


def test_nano_needles_one_per_colour_and_content_addressed():
    from longva_plugins.vniah.needles import needles_digest, resolve_needles

    needles = nano_needles()
    assert [n.answer for n in needles] == list(COLOURS)
    for needle in needles:
        assert needle.question == "\n" + QUESTION
        assert _object_mask(needle.image, needle.answer).sum() > 100
    identity, resolved = resolve_needles("nano")
    assert identity == f"plugin:nano:{needles_digest(needles)}" and len(resolved) == len(needles)
    changed = nano_needles()
    changed[0].image = changed[0].image.copy()
    changed[0].image[0, 0] ^= 1
    assert needles_digest(changed) != needles_digest(needles), "one pixel changes the cache identity"


def test_merge_vision_weights_replaces_projector_and_tower_only(tiny_checkpoint, tmp_path):
    from safetensors.torch import save_file

    from longva_plugins.errors import CheckpointError
    from longva_plugins.models.longva import LongVAForCausalLM
    from longva_plugins.nano.build import merge_vision_weights

    base = LongVAForCausalLM.from_pretrained(tiny_checkpoint)
    state = base.state_dict()
    projector = {k: torch.full_like(v, 0.25) for k, v in state.items() if "mm_projector" in k}
    tower = {k: v + 1 for k, v in state.items() if "vision_tower" in k}
    weights = tmp_path / "w"
    weights.mkdir()
    save_file(projector, weights / "mm_projector.safetensors")
    save_file(tower, weights / "vision_tower.safetensors")
    merged = LongVAForCausalLM.from_pretrained(merge_vision_weights(tiny_checkpoint, weights, tmp_path / "merged"))
    after = merged.state_dict()
    for k, v in state.items():
        expected = projector.get(k, tower.get(k, v))
        assert torch.equal(after[k], expected), k
    assert (tmp_path / "merged" / "tokenizer.json").is_file()
    save_file({"nope.weight": torch.zeros(1)}, weights / "mm_projector.safetensors")
    with pytest.raises(CheckpointError, match="nope.weight"):
        merge_vision_weights(tiny_checkpoint, weights, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_report_tables_and_figures(tmp_path):
    from longva_plugins.nano.report import by_frames, write_report
    from longva_plugins.vniah.results import cell_scores, write_all_accuracies

    def run(name, correct):
        records = [{"frames": n, "depth": d, "correct": correct(n, d)} for n in (10, 50) for d in (0.0, 1.0) for _ in range(2)]
        folder = tmp_path / name / "longva" / "vniah"
        write_all_accuracies(cell_scores(records), folder)
        from longva_plugins.nano.report import vniah_summary

        return vniah_summary(tmp_path / name)

    long = run("long", lambda n, d: 1)
    control = run("control", lambda n, d: int(n == 10 or d == 1.0))
    assert long["by_frames"] == {10: 1.0, 50: 1.0} and control["by_frames"] == {10: 1.0, 50: 0.5}
    assert by_frames(control["scores"]) == control["by_frames"]
    report = write_report(tmp_path, {"long": {"256": 1.0}, "control": {"256": 0.5}},
                          {"long/syn": long, "control/syn": control}, 60.0, 4096, 160, "frames=10:50:40")
    text = report.read_text()
    assert "| control/syn (avg 0.750) | 1.00 | 0.50 |" in text and "| long | 1.00 |" in text
    assert (tmp_path / "heatmaps-syn.png").stat().st_size > 1000
    import json

    assert json.loads((tmp_path / "report.json").read_text())["vniah"]["control/syn"]["average"] == 0.75
