"""Tiny-model tests of LongVA: loading, errors, anyres grids, chunked paths, generation."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from longva_plugins.cli import main
from longva_plugins.errors import CheckpointError, ContextLengthError, InputMismatchError
from longva_plugins.models.longva import (
    IMAGE_TOKEN_INDEX,
    LongVAForCausalLM,
    LongVAProcessor,
    ensure_tiny_checkpoint,
    make_tiny_checkpoint,
)


@pytest.fixture(scope="module")
def tiny_dir():
    return ensure_tiny_checkpoint()


@pytest.fixture(scope="module")
def model(tiny_dir):
    return LongVAForCausalLM.from_pretrained(tiny_dir, attn_implementation="eager")


@pytest.fixture(scope="module")
def model_sdpa(tiny_dir):
    # SDPA's CPU kernel does not materialise the L x L attention matrix (43K tokens at 300 frames).
    return LongVAForCausalLM.from_pretrained(tiny_dir, attn_implementation="sdpa")


@pytest.fixture(scope="module")
def processor(tiny_dir):
    return LongVAProcessor.from_pretrained(tiny_dir)


def test_factory_writes_the_real_layout(tmp_path):
    assert main(["make-tiny-checkpoint", str(tmp_path / "ckpt"), "--seed", "3"]) == 0
    files = {p.name for p in (tmp_path / "ckpt").iterdir()}
    assert {"config.json", "model.safetensors.index.json", "tokenizer.json", "generation_config.json",
            "vision_tower_config.json"} <= files
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["architectures"] == ["LlavaQwenForCausalLM"] and config["model_type"] == "llava_qwen"
    assert config["mm_patch_merge_type"] == "unires" and "rope_theta" in config
    index = json.loads((tmp_path / "ckpt" / "model.safetensors.index.json").read_text())
    keys = set(index["weight_map"])
    assert "model.mm_projector.0.weight" in keys and "lm_head.weight" in keys
    assert any(k.startswith("model.vision_tower.vision_tower.vision_model.encoder.layers.") for k in keys)
    assert len(set(index["weight_map"].values())) >= 2, "sharded"


def test_factory_is_deterministic(tmp_path):
    a = make_tiny_checkpoint(tmp_path / "a", seed=5, num_shards=1)
    b = make_tiny_checkpoint(tmp_path / "b", seed=5, num_shards=1)
    ta, tb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def test_tokenizer_has_qwen2_special_tokens(processor):
    tok = processor.tokenizer
    for token in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        assert tok.convert_tokens_to_ids(token) != tok.unk_token_id
        assert len(tok(token, add_special_tokens=False)["input_ids"]) == 1


def test_save_pretrained_round_trips(model, tmp_path):
    model.save_pretrained(tmp_path / "saved")
    reloaded = LongVAForCausalLM.from_pretrained(tmp_path / "saved")
    for (name, a), (_, b) in zip(model.state_dict().items(), reloaded.state_dict().items()):
        assert torch.equal(a, b), name


def _single_file_copy(tiny_dir, tmp_path):
    target = tmp_path / "single"
    shutil.copytree(tiny_dir, target)
    tensors = {}
    for shard in sorted(target.glob("model-*.safetensors")):
        tensors.update(load_file(shard))
        shard.unlink()
    (target / "model.safetensors.index.json").unlink()
    return target, tensors


def test_missing_and_unexpected_keys_are_listed(tiny_dir, tmp_path):
    target, tensors = _single_file_copy(tiny_dir, tmp_path)
    tensors.pop("model.mm_projector.2.bias")
    tensors["model.some_extra.weight"] = torch.zeros(2)
    save_file(tensors, target / "model.safetensors")
    with pytest.raises(CheckpointError) as err:
        LongVAForCausalLM.from_pretrained(target)
    assert "model.mm_projector.2.bias" in str(err.value) and "model.some_extra.weight" in str(err.value)


def test_image_newline_key_is_tolerated(tiny_dir, tmp_path):
    target, tensors = _single_file_copy(tiny_dir, tmp_path)
    tensors["model.image_newline"] = torch.zeros(64)
    save_file(tensors, target / "model.safetensors")
    LongVAForCausalLM.from_pretrained(target)


def test_shape_mismatch_and_corrupt_files_fail_clearly(tiny_dir, tmp_path):
    target, tensors = _single_file_copy(tiny_dir, tmp_path)
    tensors["model.mm_projector.0.weight"] = torch.zeros(64, 16)
    save_file(tensors, target / "model.safetensors")
    with pytest.raises(CheckpointError, match="mm_projector"):
        LongVAForCausalLM.from_pretrained(target)
    (target / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json" + b"\x00" * 64)
    with pytest.raises(CheckpointError):
        LongVAForCausalLM.from_pretrained(target)


def test_pickle_only_checkpoints_are_refused(tiny_dir, tmp_path):
    target, tensors = _single_file_copy(tiny_dir, tmp_path)
    torch.save(tensors, target / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pickle"):
        LongVAForCausalLM.from_pretrained(target)


def test_anyres_two_dimensional_grid(model, processor):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (620, 600, 3), dtype=np.uint8))
    pixels, grid = processor.preprocess_anyres(image)
    assert grid == (2, 2) and pixels.shape == (5, 3, 336, 336)  # base + 2x2 tiles
    with torch.no_grad():
        tokens = model.encode_anyres(pixels, grid)
        assert tokens.shape == (4 * 144, 64)
        # tiles are row-major: tile (0, 1) is the second block of 144 tokens
        torch.testing.assert_close(tokens[144:288], model.encode_frames(pixels[2:3])[0], atol=1e-6, rtol=0)


def test_select_best_resolution_prefers_least_waste(processor):
    assert processor.select_best_resolution((500, 300)) == (672, 336)
    assert processor.select_best_resolution((300, 1000)) == (336, 1008)


def test_placeholder_mismatch_is_a_clear_error(model):
    ids = torch.tensor([1, IMAGE_TOKEN_INDEX, 2, IMAGE_TOKEN_INDEX])
    with pytest.raises(InputMismatchError, match="visual placeholders: 2, visual inputs: 1"):
        model.embed_multimodal(ids, [torch.zeros(144, 64)])


def test_text_is_tokenised_separately_around_image(processor):
    ids = processor.tokenize("a\n<image>\nb").tolist()
    pos = ids.index(IMAGE_TOKEN_INDEX)
    assert ids[:pos] == processor.tokenizer("a\n", add_special_tokens=False)["input_ids"]
    assert ids[pos + 1:] == processor.tokenizer("\nb", add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("num_frames", [1, 300])
def test_chunked_paths_match_unchunked(model_sdpa, processor, num_frames):
    model = model_sdpa
    rng = np.random.default_rng(num_frames)
    frames = rng.integers(0, 255, (num_frames, 40, 56, 3), dtype=np.uint8)
    pixels = processor.preprocess_frames(frames)
    full = model.encode_video(pixels, chunk_size=num_frames)
    chunked = model.encode_video(pixels, chunk_size=7)
    torch.testing.assert_close(chunked, full, atol=1e-6, rtol=0)
    ids = processor.tokenize(processor.build_prompt("What colour is the shape?"))
    embeds = model.embed_multimodal(ids, [full])
    assert embeds.shape[1] == num_frames * 144 + ids.numel() - 1
    positions = [0, embeds.shape[1] // 2, embeds.shape[1] - 1]
    reference = model(inputs_embeds=embeds).logits[0, positions].float()
    out = model.prefill(embeds, chunk_size=1000, logits_positions=positions)
    torch.testing.assert_close(out.logits, reference, atol=1e-4, rtol=0)
    assert out.past_key_values.get_seq_length() == embeds.shape[1]
    # inference only: no autograd graph is kept, even for inputs that require grad
    assert embeds.requires_grad and not out.logits.requires_grad
    assert not out.past_key_values.layers[0].keys.requires_grad


def test_generation_stops_at_im_end(model, processor):
    ids = processor.tokenize(processor.build_prompt("hello", with_image=False))
    embeds = model.embed_multimodal(ids, [])
    first = model.generate_from_embeds(embeds, max_new_tokens=1, do_sample=False, eos_token_id=None,
                                       pad_token_id=processor.pad_token_id)[0, 0].item()
    new = model.generate_from_embeds(embeds, max_new_tokens=8, do_sample=False, eos_token_id=first,
                                     pad_token_id=processor.pad_token_id)
    assert new[0].tolist() == [first], "generation must stop at the end-of-turn id"
    new = model.generate_from_embeds(embeds, max_new_tokens=6, do_sample=False,
                                     eos_token_id=processor.eos_token_id, pad_token_id=processor.pad_token_id)
    tail = new[0].tolist()
    assert processor.eos_token_id not in tail[:-1]


def test_valid_vocab_masking(model, processor):
    ids = processor.tokenize(processor.build_prompt("hi", with_image=False))
    embeds = model.embed_multimodal(ids, [])
    model.valid_vocab_size = 10
    try:
        new = model.generate_from_embeds(embeds, max_new_tokens=4, do_sample=False, eos_token_id=None,
                                         pad_token_id=processor.pad_token_id)
        assert max(new[0].tolist()) < 10
        score = model.score_continuation(embeds, torch.tensor([3, 4]))
        assert int(score.argmax_ids.max()) < 10
    finally:
        model.valid_vocab_size = None


def test_context_length_is_enforced(model):
    limit = model.config.max_position_embeddings
    with pytest.raises(ContextLengthError, match="max_frames_num"):
        model.check_length(limit + 1)
