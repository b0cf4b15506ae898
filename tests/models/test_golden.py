"""Parity with the reference LongVA implementation on golden fixture folders.

Data-driven: the fixture folder comes from ``$LONGVA_GOLDEN_DIR`` (default: the copy of
``shared/fixtures/longva_tiny_a`` under ``tests/fixtures``). Every case in its ``cases.json`` is
checked, dispatched on its kind (video / image / V-NIAH) from the case's own fields, so another
folder of the same format with other shapes and extra cases runs unchanged. A case may store only
some intermediates (large cases drop ``clip_features_*``, ``projected_prepool_*`` or
``hidden_after_layer0``): every array and field that is stored is asserted, and a case fails only
when it stores nothing that can be checked. Tolerances follow the fixture README: preprocessing
exact (1e-6), vision features and embeddings 1e-5, hidden states and logits 1e-4, argmaxes
identical outside the listed near-tie positions.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from longva_plugins.models.longva import IMAGE_TOKEN_INDEX, LongVAForCausalLM
from longva_plugins.models.longva.configuration_longva import LongVAConfig
from longva_plugins.models.longva.processing_longva import LongVAImageProcessor

GOLDEN_DIR = Path(os.environ.get("LONGVA_GOLDEN_DIR", Path(__file__).resolve().parents[1] / "fixtures" / "longva_tiny_a"))
pytestmark = pytest.mark.golden

ATOL_PIXELS = 1e-6
ATOL_FEATURES = 1e-5
ATOL_OUTPUTS = 1e-4
#: Intermediates a fixture case may leave out to stay small.
OPTIONAL_INTERMEDIATES = re.compile(r"(clip_features_|projected_prepool_)\w+|hidden_after_layer0")


def load_cases(folder: Path) -> dict:
    return json.loads((folder / "cases.json").read_text())["cases"]


def case_kind(case: dict) -> str:
    if "prompt_layout" in case or "depth" in case:
        return "vniah"
    modalities = case.get("modalities") or []
    if "video" in modalities:
        return "video"
    if "image" in modalities:
        return "image"
    raise ValueError(f"unknown case kind: {sorted(case)}")


CASES = sorted(load_cases(GOLDEN_DIR).items())


class Checks:
    """Asserts stored arrays against computed ones and records what was checked."""

    def __init__(self, arrays):
        self.arrays = arrays
        self.done: list[str] = []

    def has(self, key: str) -> bool:
        return key in self.arrays.files

    def close(self, key: str, compute, atol: float) -> None:
        """Compare ``compute()`` with the stored ``key`` when it is stored (``compute`` is lazy)."""
        if self.has(key):
            _close(compute(), self.arrays[key], atol, key)
            self.done.append(key)

    def equal(self, what: str, actual, expected) -> None:
        assert actual == expected, f"{what}: {actual!r} != reference {expected!r}"
        self.done.append(what)

    def finish(self, name: str) -> None:
        assert self.done, f"case {name} stores nothing this test can check"


def _close(actual, expected, atol, what):
    actual = torch.as_tensor(actual).float()
    expected = torch.as_tensor(np.asarray(expected)).float()
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    diff = (actual - expected).abs().max().item() if actual.numel() else 0.0
    assert diff <= atol, f"{what}: max |diff| {diff:.3g} > {atol:g}"


def _check_field(checks: Checks, case: dict, field: str, actual) -> None:
    if field in case:
        checks.equal(field, actual, case[field])


def _check_lm_outputs(model, checks: Checks, case, inputs_embeds):
    out = model(inputs_embeds=inputs_embeds, output_hidden_states=True)
    checks.close("hidden_after_layer0", lambda: out.hidden_states[1][0], ATOL_OUTPUTS)
    checks.close("final_hidden", lambda: out.hidden_states[-1][0], ATOL_OUTPUTS)
    for key in checks.arrays.files:
        m = re.fullmatch(r"logits_last(\d+)", key)
        if m:
            checks.close(key, lambda: out.logits[0, -int(m.group(1)):], ATOL_OUTPUTS)
    argmax = out.logits[0].argmax(-1).numpy()
    if checks.has("argmax_all"):
        expected = checks.arrays["argmax_all"]
        assert argmax.shape == expected.shape, f"argmax_all: {argmax.shape} positions vs {expected.shape}"
        ties = set(case.get("argmax_near_ties", {}).get("positions", []))
        keep = np.array([i not in ties for i in range(len(expected))])
        mismatch = np.nonzero((argmax != expected) & keep)[0]
        assert mismatch.size == 0, f"argmax differs at positions {mismatch[:20].tolist()}"
        checks.done.append("argmax_all")
    _check_field(checks, case, "argmax_last", int(argmax[-1]))
    if "greedy_generate_5" in case:
        steps = case["greedy_generate_5"]
        new = model.generate_from_embeds(inputs_embeds, max_new_tokens=len(steps), do_sample=False,
                                         pad_token_id=model.config.eos_token_id, eos_token_id=None)
        checks.equal("greedy_generate_5", new[0].tolist(), steps)


def _check_feature_arrays(model, checks: Checks, pixel_values, pattern):
    """Per-frame/tile CLIP features and pre-pool projections where stored (index in the name)."""
    for key in list(checks.arrays.files):
        m = re.fullmatch(rf"clip_features_{pattern}(\d+)", key)
        if not m:
            continue
        index = int(m.group(1))
        feats = model.vision_tower(pixel_values[index : index + 1])[0]
        checks.close(key, lambda: feats, ATOL_FEATURES)
        checks.close(key.replace("clip_features_", "projected_prepool_"), lambda: model.mm_projector(feats), ATOL_FEATURES)


def _pixels(checks: Checks, raw_key: str, compute, stored_key: str, stored=lambda a: a):
    """The pixel values that feed the rest of a case. Preprocessing is checked where both the raw
    input and the pixel values are stored; the stored pixel values then feed the rest, which takes
    preprocessing out of the later comparisons."""
    reference = stored(checks.arrays[stored_key]) if checks.has(stored_key) else None
    if checks.has(raw_key):
        computed = compute(checks.arrays[raw_key])
        if reference is None:
            return computed
        _close(computed, reference, ATOL_PIXELS, stored_key)
        checks.done.append(stored_key)
    if reference is None:
        pytest.fail(f"case stores neither {raw_key} nor {stored_key}: no input to run")
    return torch.from_numpy(reference)


@torch.no_grad()
def check_video_case(model, image_processor, config, folder, name, case) -> list[str]:
    checks = Checks(np.load(folder / f"case_{name}.npz"))
    pixel_values = _pixels(checks, "frames", lambda f: image_processor(f, mode="crop"), "pixel_values")
    _check_feature_arrays(model, checks, pixel_values, "frame")
    visual = model.encode_video(pixel_values, chunk_size=3)
    _check_field(checks, case, "visual_tokens", visual.shape[0])
    if "num_frames" in case and "tokens_per_frame" in case:
        checks.equal("num_frames x tokens_per_frame", visual.shape[0], case["num_frames"] * case["tokens_per_frame"])
    embeds = model.embed_multimodal(torch.tensor(case["input_ids"]), [visual])
    _check_field(checks, case, "inputs_embeds_len", embeds.shape[1])
    checks.close("inputs_embeds", lambda: embeds[0], ATOL_FEATURES)
    _check_lm_outputs(model, checks, case, embeds)
    checks.finish(name)
    return checks.done


@torch.no_grad()
def check_image_case(model, image_processor, config, folder, name, case) -> list[str]:
    checks = Checks(np.load(folder / f"case_{name}.npz"))
    grid = None

    def preprocess(image):
        nonlocal grid
        pixels, grid = image_processor.anyres(image, config.image_grid_pinpoints)
        return pixels

    pixel_values = _pixels(checks, "image", preprocess, "pixel_values", stored=lambda a: a[0])
    if grid is None:  # preprocessing not run: the grid still follows from the image size alone
        if checks.has("image"):
            preprocess(checks.arrays["image"])
        else:
            grid = (case["grid_h"], case["grid_w"])
    if "grid_w" in case:
        checks.equal("grid (w, h)", [grid[1], grid[0]], [case["grid_w"], case["grid_h"]])
    _check_field(checks, case, "num_patches_incl_base", pixel_values.shape[0])
    _check_feature_arrays(model, checks, pixel_values, "tile")
    visual = model.encode_anyres(pixel_values, grid)
    _check_field(checks, case, "visual_tokens", visual.shape[0])
    embeds = model.embed_multimodal(torch.tensor(case["input_ids"]), [visual])
    _check_field(checks, case, "inputs_embeds_len", embeds.shape[1])
    checks.close("inputs_embeds", lambda: embeds[0], ATOL_FEATURES)
    _check_lm_outputs(model, checks, case, embeds)
    checks.finish(name)
    return checks.done


def vniah_prompt_embeds(model, image_processor, arrays, case):
    """The reference V-NIAH sequence: pre | haystack[:idx] | needle | haystack[idx:n] | question | post."""
    frames = model.encode_frames(image_processor(arrays["haystack_frames"], mode="pad"))  # (n, T, D)
    needle = model.encode_frames(image_processor([arrays["needle"]], mode="pad"))  # (1, T, D)
    n = case["num_frames"]
    idx = int(case["depth"] * n)
    assert idx == case.get("query_frame_idx", idx)
    visual = torch.cat([frames[:idx], needle, frames[idx:n]]).reshape(-1, frames.shape[-1])
    ids = case["pre_ids"] + [IMAGE_TOKEN_INDEX] + case["question_ids"] + case["post_ids"]
    return model.embed_multimodal(torch.tensor(ids), [visual]), frames, needle


@torch.no_grad()
def check_vniah_case(model, image_processor, config, folder, name, case) -> list[str]:
    checks = Checks(np.load(folder / f"case_{name}.npz"))
    arrays = checks.arrays
    checks.close("haystack_pixel_values", lambda: image_processor(arrays["haystack_frames"], mode="pad"), ATOL_PIXELS)
    checks.close("needle_pixel_values", lambda: image_processor([arrays["needle"]], mode="pad"), ATOL_PIXELS)
    embeds, _, _ = vniah_prompt_embeds(model, image_processor, arrays, case)
    _check_field(checks, case, "prompt_len", embeds.shape[1])
    checks.close("prompt_embeds", lambda: embeds[0], ATOL_FEATURES)
    for answer_name, answer in case.get("answers", {}).items():
        score = model.score_continuation(embeds, torch.tensor(answer["answer_ids"]), chunk_size=257)
        checks.close(f"{answer_name}__answer_span_logits", lambda: score.span_logits, ATOL_OUTPUTS)
        if "pred_ids" in answer:
            checks.equal(f"{answer_name} predicted ids", score.argmax_ids.tolist(), answer["pred_ids"])
        if "correct" in answer:
            checks.equal(f"{answer_name} correct", score.greedy_match, bool(answer["correct"]))
    checks.finish(name)
    return checks.done


CHECKERS = {"video": check_video_case, "image": check_image_case, "vniah": check_vniah_case}


@torch.no_grad()
def check_standard_forward(model, image_processor, config, folder, name, case) -> list[str]:
    """The same case through transformers' route, ``model(**inputs)`` / ``generate(**inputs)``, with
    the inputs the processor builds (the fixture ships no tokenizer: its ids are expanded by the
    processor's own placeholder rule, the pixels come from its image / video processor)."""
    from longva_plugins.models.longva.processing_longva import LongVAVideoProcessor, expand_placeholders

    checks = Checks(np.load(folder / f"case_{name}.npz"))
    videos = LongVAVideoProcessor(image_processor.size, image_processor.image_mean, image_processor.image_std)
    placeholder = config.vocab_size  # no tokenizer: the first id past the vocabulary stands for visual tokens
    model.valid_vocab_size = placeholder
    try:
        if case_kind(case) == "video":
            pixels = videos(checks.arrays["frames"])
            visual = {"pixel_values_videos": pixels["pixel_values_videos"], "video_grids": pixels["video_grids"]}
            tokens = int(pixels["video_grids"][0, 0]) * config.tokens_per_frame
        else:
            tiles, grid = image_processor.anyres(checks.arrays["image"], config.image_grid_pinpoints)
            visual = {"pixel_values": tiles, "image_grids": torch.tensor([list(grid)])}
            tokens = grid[0] * grid[1] * config.tokens_per_frame
        ids = torch.tensor([expand_placeholders(case["input_ids"], [tokens], placeholder)])
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), **visual)
        for key in checks.arrays.files:
            m = re.fullmatch(r"logits_last(\d+)", key)
            if m:
                checks.close(key, lambda: out.logits[0, -int(m.group(1)):], ATOL_OUTPUTS)
        _check_field(checks, case, "argmax_last", int(out.logits[0, -1].argmax()))
        if "greedy_generate_5" in case:
            steps = case["greedy_generate_5"]
            new = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **visual, max_new_tokens=len(steps),
                                 do_sample=False, pad_token_id=model.config.eos_token_id, eos_token_id=None)
            checks.equal("greedy_generate_5 (generate(**inputs))", new[0, ids.shape[1]:].tolist(), steps)
    finally:
        model.valid_vocab_size = None
    checks.finish(name)
    return checks.done


STANDARD = [(name, case) for name, case in CASES if case_kind(case) in ("video", "image")]


@pytest.mark.parametrize("name,case", STANDARD, ids=[name for name, _ in STANDARD])
def test_case_through_the_standard_forward(model, image_processor, config, name, case):
    """Video and image cases through ``model(**inputs)`` and ``generate(**inputs)`` match the
    reference implementation's logits (1e-4) and greedy tokens."""
    done = check_standard_forward(model, image_processor, config, GOLDEN_DIR, name, case)
    assert any(d.startswith("logits_last") or d == "argmax_last" for d in done)


def load_model(folder: Path) -> LongVAForCausalLM:
    torch.manual_seed(0)
    m = LongVAForCausalLM.from_pretrained(folder, attn_implementation="eager")
    assert m.dtype == torch.float32
    return m


def load_image_processor(folder: Path) -> LongVAImageProcessor:
    pre = json.loads((folder / "preprocessor_config.json").read_text())
    return LongVAImageProcessor(pre["crop_size"]["height"], pre["image_mean"], pre["image_std"])


@pytest.fixture(scope="module")
def model():
    return load_model(GOLDEN_DIR)


@pytest.fixture(scope="module")
def config():
    return LongVAConfig.from_pretrained(GOLDEN_DIR)


@pytest.fixture(scope="module")
def image_processor():
    return load_image_processor(GOLDEN_DIR)


@pytest.mark.parametrize("name,case", CASES, ids=[name for name, _ in CASES])
def test_case(model, image_processor, config, name, case):
    """Every stored intermediate and output of the case matches the reference implementation."""
    done = CHECKERS[case_kind(case)](model, image_processor, config, GOLDEN_DIR, name, case)
    stored = set(np.load(GOLDEN_DIR / f"case_{name}.npz").files)
    # arrays the checks consume as inputs (raw images) or that have no check of their own
    inputs = {"frames", "image", "haystack_frames", "needle"} | {k for k in stored if k.endswith("__lm_inputs_tail") or k.endswith("__argmax_all")}
    unchecked = sorted(stored - inputs - set(done))
    assert not unchecked, f"case {name} stores arrays the test does not check: {unchecked}"


def reduce_fixture(source: Path, target: Path) -> Path:
    """A copy of ``source`` whose cases drop every optional intermediate (as large cases do)."""
    shutil.copytree(source, target)
    for npz in target.glob("case_*.npz"):
        data = np.load(npz)
        kept = {k: data[k] for k in data.files if not OPTIONAL_INTERMEDIATES.fullmatch(k)}
        np.savez_compressed(npz, **kept)
    return target


@pytest.fixture(scope="module")
def reduced_dir(tmp_path_factory):
    return reduce_fixture(GOLDEN_DIR, tmp_path_factory.mktemp("golden") / "reduced")


def test_reduced_fixture_passes(model, image_processor, config, reduced_dir):
    """A case without clip_features_*/projected_prepool_*/hidden_after_layer0 is valid and still
    checked on everything it stores (otherwise large fixtures would fail or be skipped)."""
    for name, case in load_cases(reduced_dir).items():
        stored = np.load(reduced_dir / f"case_{name}.npz").files
        assert not any(OPTIONAL_INTERMEDIATES.fullmatch(k) for k in stored)
        done = CHECKERS[case_kind(case)](model, image_processor, config, reduced_dir, name, case)
        assert done and not any(OPTIONAL_INTERMEDIATES.fullmatch(k) for k in done)


def test_reduced_fixture_fails_on_a_wrong_model(image_processor, config, reduced_dir):
    """One perturbed decoder weight must fail every reduced case (the checks still bite)."""
    wrong = load_model(reduced_dir)
    with torch.no_grad():
        wrong.model.layers[-1].mlp.down_proj.weight.mul_(1.05)
    for name, case in load_cases(reduced_dir).items():
        with pytest.raises(AssertionError):
            CHECKERS[case_kind(case)](wrong, image_processor, config, reduced_dir, name, case)


def test_case_with_nothing_to_check_fails(model, image_processor, config, tmp_path):
    """A case that stores only inputs cannot pass by checking nothing."""
    folder = tmp_path / "bare"
    shutil.copytree(GOLDEN_DIR, folder)
    cases = load_cases(folder)
    name = next(n for n, c in cases.items() if case_kind(c) == "video")
    data = np.load(folder / f"case_{name}.npz")
    np.savez_compressed(folder / f"case_{name}.npz", frames=data["frames"])
    bare = {k: v for k, v in cases[name].items() if k in ("input_ids", "modalities")}
    with pytest.raises(AssertionError, match="nothing this test can check"):
        check_video_case(model, image_processor, config, folder, name, bare)
