"""Parity with the reference LongVA implementation on golden fixture folders.

Data-driven: the fixture folder comes from ``$LONGVA_GOLDEN_DIR`` (default: the copy of
``shared/fixtures/longva_tiny_a`` under ``tests/fixtures``). Every case in its ``cases.json`` is
checked, dispatched on its kind (video / image / V-NIAH) from the case's own fields, so another
folder of the same format with other shapes and extra cases runs unchanged. Tolerances follow the
fixture README: preprocessing exact (1e-6), vision features and embeddings 1e-5, hidden states
and logits 1e-4, argmaxes identical outside the listed near-tie positions.
"""

from __future__ import annotations

import json
import os
import re
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


def _cases() -> dict:
    return json.loads((GOLDEN_DIR / "cases.json").read_text())["cases"]


def case_kind(case: dict) -> str:
    if "prompt_layout" in case or "depth" in case:
        return "vniah"
    modalities = case.get("modalities") or []
    if "video" in modalities:
        return "video"
    if "image" in modalities:
        return "image"
    raise ValueError(f"unknown case kind: {sorted(case)}")


CASES = sorted(_cases().items())


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = LongVAForCausalLM.from_pretrained(GOLDEN_DIR, attn_implementation="eager")
    assert m.dtype == torch.float32
    return m


@pytest.fixture(scope="module")
def config():
    return LongVAConfig.from_pretrained(GOLDEN_DIR)


@pytest.fixture(scope="module")
def image_processor():
    pre = json.loads((GOLDEN_DIR / "preprocessor_config.json").read_text())
    return LongVAImageProcessor(pre["crop_size"]["height"], pre["image_mean"], pre["image_std"])


def _close(actual, expected, atol, what):
    actual = torch.as_tensor(actual).float()
    expected = torch.as_tensor(np.asarray(expected)).float()
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    diff = (actual - expected).abs().max().item() if actual.numel() else 0.0
    assert diff <= atol, f"{what}: max |diff| {diff:.3g} > {atol:g}"


def _check_lm_outputs(model, arrays, case, inputs_embeds):
    out = model(inputs_embeds=inputs_embeds, output_hidden_states=True)
    _close(out.hidden_states[1][0], arrays["hidden_after_layer0"], ATOL_OUTPUTS, "hidden_after_layer0")
    _close(out.hidden_states[-1][0], arrays["final_hidden"], ATOL_OUTPUTS, "final_hidden")
    for key in arrays.files:
        m = re.fullmatch(r"logits_last(\d+)", key)
        if m:
            _close(out.logits[0, -int(m.group(1)):], arrays[key], ATOL_OUTPUTS, key)
    argmax = out.logits[0].argmax(-1).numpy()
    expected = arrays["argmax_all"]
    ties = set(case.get("argmax_near_ties", {}).get("positions", []))
    keep = np.array([i not in ties for i in range(len(expected))])
    mismatch = np.nonzero((argmax != expected) & keep)[0]
    assert mismatch.size == 0, f"argmax differs at positions {mismatch[:20].tolist()}"
    assert int(argmax[-1]) == case["argmax_last"]
    steps = case["greedy_generate_5"]
    new = model.generate_from_embeds(inputs_embeds, max_new_tokens=len(steps), do_sample=False,
                                     pad_token_id=model.config.eos_token_id, eos_token_id=None)
    assert new[0].tolist() == steps


def _check_feature_arrays(model, arrays, pixel_values, pattern):
    """Per-frame/tile CLIP features and pre-pool projections where stored (index in the name)."""
    checked = 0
    for key in arrays.files:
        m = re.fullmatch(rf"clip_features_{pattern}(\d+)", key)
        if not m:
            continue
        index = int(m.group(1))
        feats = model.vision_tower(pixel_values[index : index + 1])[0]
        _close(feats, arrays[key], ATOL_FEATURES, key)
        projected = key.replace("clip_features_", "projected_prepool_")
        if projected in arrays.files:
            _close(model.mm_projector(feats), arrays[projected], ATOL_FEATURES, projected)
        checked += 1
    return checked


@pytest.mark.parametrize("name,case", [c for c in CASES if case_kind(c[1]) == "video"], ids=lambda v: v if isinstance(v, str) else "")
@torch.no_grad()
def test_video_case(model, image_processor, name, case):
    arrays = np.load(GOLDEN_DIR / f"case_{name}.npz")
    pixel_values = image_processor(arrays["frames"], mode="crop")
    _close(pixel_values, arrays["pixel_values"], ATOL_PIXELS, "pixel_values")
    pixel_values = torch.from_numpy(arrays["pixel_values"])  # take preprocessing out of the rest
    assert _check_feature_arrays(model, arrays, pixel_values, "frame") >= 1
    visual = model.encode_video(pixel_values, chunk_size=3)
    assert visual.shape[0] == case["visual_tokens"] == case["num_frames"] * case["tokens_per_frame"]
    embeds = model.embed_multimodal(torch.tensor(case["input_ids"]), [visual])
    assert embeds.shape[1] == case["inputs_embeds_len"]
    _close(embeds[0], arrays["inputs_embeds"], ATOL_FEATURES, "inputs_embeds")
    _check_lm_outputs(model, arrays, case, embeds)


@pytest.mark.parametrize("name,case", [c for c in CASES if case_kind(c[1]) == "image"], ids=lambda v: v if isinstance(v, str) else "")
@torch.no_grad()
def test_image_case(model, config, image_processor, name, case):
    arrays = np.load(GOLDEN_DIR / f"case_{name}.npz")
    pixel_values, grid = image_processor.anyres(arrays["image"], config.image_grid_pinpoints)
    assert [grid[1], grid[0]] == [case["grid_w"], case["grid_h"]]
    assert pixel_values.shape[0] == case["num_patches_incl_base"]
    _close(pixel_values, arrays["pixel_values"][0], ATOL_PIXELS, "pixel_values")
    pixel_values = torch.from_numpy(arrays["pixel_values"][0])
    assert _check_feature_arrays(model, arrays, pixel_values, "tile") >= 1
    visual = model.encode_anyres(pixel_values, grid)
    assert visual.shape[0] == case["visual_tokens"]
    embeds = model.embed_multimodal(torch.tensor(case["input_ids"]), [visual])
    assert embeds.shape[1] == case["inputs_embeds_len"]
    _close(embeds[0], arrays["inputs_embeds"], ATOL_FEATURES, "inputs_embeds")
    _check_lm_outputs(model, arrays, case, embeds)


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


@pytest.mark.parametrize("name,case", [c for c in CASES if case_kind(c[1]) == "vniah"], ids=lambda v: v if isinstance(v, str) else "")
@torch.no_grad()
def test_vniah_case(model, image_processor, name, case):
    arrays = np.load(GOLDEN_DIR / f"case_{name}.npz")
    _close(image_processor(arrays["haystack_frames"], mode="pad"), arrays["haystack_pixel_values"], ATOL_PIXELS, "haystack")
    _close(image_processor([arrays["needle"]], mode="pad"), arrays["needle_pixel_values"], ATOL_PIXELS, "needle")
    embeds, _, _ = vniah_prompt_embeds(model, image_processor, arrays, case)
    assert embeds.shape[1] == case["prompt_len"]
    _close(embeds[0], arrays["prompt_embeds"], ATOL_FEATURES, "prompt_embeds")
    outcomes = set()
    for answer_name, answer in case["answers"].items():
        score = model.score_continuation(embeds, torch.tensor(answer["answer_ids"]), chunk_size=257)
        _close(score.span_logits, arrays[f"{answer_name}__answer_span_logits"], ATOL_OUTPUTS, f"{answer_name} span logits")
        assert score.argmax_ids.tolist() == answer["pred_ids"]
        assert score.greedy_match == bool(answer["correct"])
        outcomes.add(bool(answer["correct"]))
    assert outcomes, "V-NIAH case without answers"
