"""LongVA used as transformers' VLMs are (issue 33): ``inputs = processor(text=..., images=... |
videos=...)``, ``model(**inputs, labels=...)``, ``model.generate(**inputs)`` -- on the shipped nano,
against the long-video path the adapter runs (``embed_multimodal`` + ``generate_from_embeds``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture(scope="module")
def nano():
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from longva_plugins.nano.checkpoint import nano_checkpoint

    return AutoModelForImageTextToText.from_pretrained(nano_checkpoint()), AutoProcessor.from_pretrained(nano_checkpoint())


def _video(seed=0, frames=4):
    return np.random.default_rng(seed).integers(0, 255, (frames, 120, 160, 3), dtype=np.uint8)


def _image(seed=1, size=(500, 260)):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def _legacy_embeds(model, processor, prompt, video=None, image=None):
    with torch.no_grad():
        if video is not None:
            visual = model.encode_video(processor.preprocess_frames(video))
        else:
            visual = model.encode_anyres(*processor.preprocess_anyres(image))
        return model.embed_multimodal(processor.tokenize(prompt), [visual])


@pytest.mark.parametrize("kind", ["video", "image"])
def test_forward_of_processor_inputs_equals_the_long_video_path(nano, kind):
    model, processor = nano
    prompt = processor.build_prompt("What is shown?")
    visual = {"videos": _video()} if kind == "video" else {"images": _image()}
    inputs = processor(text=prompt, **visual, return_tensors="pt")
    tokens = model.config.tokens_per_frame
    if kind == "video":
        assert inputs["pixel_values_videos"].shape[0] == 4 and inputs["video_grids"].tolist() == [[4]]
        visual_tokens = 4 * tokens
    else:
        gh, gw = inputs["image_grids"][0].tolist()
        assert inputs["pixel_values"].shape[0] == 1 + gh * gw
        visual_tokens = gh * gw * tokens
    assert int((inputs["input_ids"] == processor.image_token_id).sum()) == visual_tokens
    with torch.no_grad():
        ours = model(**inputs).logits
        reference = model(inputs_embeds=_legacy_embeds(model, processor, prompt, **{kind: next(iter(visual.values()))})).logits
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)


def test_labels_give_the_loss_of_the_text_positions_only(nano):
    model, processor = nano
    prompt = processor.build_prompt("Describe it.") + "a red ball" + "<|im_end|>"
    inputs = processor(text=prompt, videos=_video(2))
    labels = inputs["input_ids"].clone()
    out = model(**inputs, labels=labels)
    # the same loss by hand: shifted cross-entropy over the positions that are not visual
    target = labels.masked_fill(labels == processor.image_token_id, -100)[0, 1:]
    manual = torch.nn.functional.cross_entropy(out.logits[0, :-1].float(), target, ignore_index=-100)
    torch.testing.assert_close(out.loss, manual, atol=1e-5, rtol=0)
    out.loss.backward()  # differentiable through the projector and the tower
    assert model.model.mm_projector[0].weight.grad is not None
    model.zero_grad(set_to_none=True)


def test_generate_encodes_once_and_equals_the_adapter_path(nano, monkeypatch):
    model, processor = nano
    prompt = processor.build_prompt("What happens?")
    video = _video(3)
    inputs = processor(text=prompt, videos=video)
    calls = []
    real = model.encode_frames
    monkeypatch.setattr(model, "encode_frames", lambda *a, **k: calls.append(1) or real(*a, **k))
    out = model.generate(**inputs, max_new_tokens=6, do_sample=False, min_new_tokens=6)
    assert len(calls) == 1, "the visuals are encoded once, at the prefill"
    new = out[:, inputs["input_ids"].shape[1]:]
    reference = model.generate_from_embeds(_legacy_embeds(model, processor, prompt, video=video), max_new_tokens=6,
                                           do_sample=False, min_new_tokens=6)
    assert new.tolist() == reference.tolist()
    assert int(new.max()) < model.valid_vocab_size  # the vocabulary guard applies to generate(**inputs)


def test_batches_pad_on_the_left_and_give_each_prompt_its_own_result(nano):
    model, processor = nano
    prompts = [processor.build_prompt("Short?"), processor.build_prompt("A much longer question about it?")]
    videos = [_video(4, 2), _video(5, 3)]
    batch = processor(text=prompts, videos=videos)
    assert batch["attention_mask"][0, 0] == 0 and batch["attention_mask"][:, -1].tolist() == [1, 1]
    with torch.no_grad():
        logits = model(**batch).logits[:, -1]
        for row, (prompt, video) in enumerate(zip(prompts, videos)):
            alone = model(**processor(text=prompt, videos=video)).logits[0, -1]
            torch.testing.assert_close(logits[row], alone, atol=1e-4, rtol=0)


def test_mismatched_placeholders_and_settings_are_clear_errors(nano):
    from longva_plugins.errors import InputMismatchError, SettingError

    model, processor = nano
    with pytest.raises(InputMismatchError, match="1 image and 0 video placeholders but 2 images"):
        processor(text="<image> what?", images=[_image(), _image(2)])
    with pytest.raises(InputMismatchError, match="separate calls"):
        processor(text="<image><video>", images=_image(), videos=_video())
    with pytest.raises(SettingError, match="return_tensors='np'"):
        processor(text="x", return_tensors="np")
    inputs = processor(text=processor.build_prompt("?"), videos=_video())
    inputs["input_ids"][0, -1] = processor.image_token_id  # one placeholder too many
    with pytest.raises(InputMismatchError, match="placeholder tokens but the visuals give"):
        model(**inputs)


def test_chat_messages_render_the_reference_prompt_and_tokenize_with_their_visuals(nano):
    model, processor = nano
    image = _image(6)
    reference = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<image>\n"
                 "What colour?<|im_end|>\n<|im_start|>assistant\n")  # the qwen_1_5 prompt of the original code
    messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "What colour?"}]}]
    assert processor.apply_chat_template(messages) == reference == processor.build_prompt("What colour?")
    inputs = processor.apply_chat_template(messages, tokenize=True, return_dict=True)
    direct = processor(text=reference, images=image)
    assert inputs.keys() == direct.keys() and all(torch.equal(inputs[k], direct[k]) for k in direct)
    system = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert processor.apply_chat_template(system).startswith("<|im_start|>system\nBe brief.<|im_end|>\n")


def test_image_text_to_text_pipeline_runs_on_images(nano):
    from transformers import pipeline

    from longva_plugins.nano.checkpoint import nano_checkpoint

    model, processor = nano
    image = _image(7)
    pipe = pipeline("image-text-to-text", model=nano_checkpoint())
    messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "What colour?"}]}]
    answer = pipe(text=messages, max_new_tokens=4)[0]["generated_text"][-1]["content"]
    inputs = processor(text=processor.build_prompt("What colour?"), images=image)
    expected = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert answer == processor.decode(expected[0, inputs["input_ids"].shape[1]:])
    # a video part (its frames) goes the same way, through apply_chat_template
    video = _video(9)
    messages = [{"role": "user", "content": [{"type": "video", "video": video}, {"type": "text", "text": "What?"}]}]
    answer = pipe(text=messages, max_new_tokens=4, generate_kwargs={"min_new_tokens": 2})[0]["generated_text"][-1]["content"]
    inputs = processor(text=processor.build_prompt("What?").replace("<image>", "<video>"), videos=video)
    expected = model.generate(**inputs, max_new_tokens=4, min_new_tokens=2, do_sample=False)
    assert answer == processor.decode(expected[0, inputs["input_ids"].shape[1]:]) and len(expected[0]) > inputs["input_ids"].shape[1]


def test_processor_save_pretrained_round_trips(nano, tmp_path):
    from transformers import AutoProcessor

    from longva_plugins.models.longva import LongVAProcessor

    _, processor = nano
    processor.save_pretrained(tmp_path)
    loaded = LongVAProcessor.from_pretrained(tmp_path)
    assert isinstance(AutoProcessor.from_pretrained(tmp_path), LongVAProcessor)
    assert loaded.fingerprint() == processor.fingerprint()  # tokenizer, CLIP values, canvases
    custom = LongVAProcessor(processor.tokenizer, type(processor.image_processor)(224, [0.5] * 3, [0.25] * 3),
                             image_grid_pinpoints=[[224, 448]], tokens_per_frame=9)
    custom.save_pretrained(tmp_path / "custom")
    again = LongVAProcessor.from_pretrained(tmp_path / "custom")
    assert (again.image_processor.size, again.image_processor.image_mean, again.image_grid_pinpoints,
            again.tokens_per_frame) == (224, [0.5] * 3, [[224, 448]], 9)
    assert (loaded.tokens_per_frame, loaded.image_grid_pinpoints) == (processor.tokens_per_frame, processor.image_grid_pinpoints)
    video, prompt = _video(8), processor.build_prompt("?")
    a, b = loaded(text=prompt, videos=video), processor(text=prompt, videos=video)
    assert all(torch.equal(a[k], b[k]) for k in b)
