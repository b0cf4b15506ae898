"""LongVA's processor: tokenizer + image processor + video processor + the ``qwen_1_5`` prompt.

``processor(text=..., images=..., videos=...)`` returns what ``model(**inputs)`` and
``model.generate(**inputs)`` take; :meth:`LongVAProcessor.apply_chat_template` renders the
reference's ChatML prompt. Pixels come from :mod:`.image_processing_longva` and
:mod:`.video_processing_longva`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image
from transformers.processing_utils import ProcessorMixin

from longva_plugins.errors import ContextLengthError, InputMismatchError, SettingError
from longva_plugins.constants import IMAGE_TOKEN_INDEX
from longva_plugins.models.longva.image_processing_longva import (  # noqa: F401  (re-exported)
    CLIP_MEAN, CLIP_STD, LongVAImageProcessor, _is_image, expand_to_square, select_best_resolution)
from longva_plugins.models.longva.video_processing_longva import LongVAVideoProcessor, _as_list, _is_video

DEFAULT_SYSTEM = "You are a helpful assistant."
IMAGE_PLACEHOLDER = "<image>"
VIDEO_PLACEHOLDER = "<video>"
CHAT_ROLES = ("system", "user", "assistant")


# The ``qwen_1_5`` (ChatML) template, written once; V-NIAH scoring and training data build their
# sequences from these pieces (docs/longva-numerics.md §1).
def chatml_open(role: str) -> str:
    """``<|im_start|>{role}\n``: the start of a turn."""
    return f"<|im_start|>{role}\n"


CHATML_END = "<|im_end|>"
CHATML_CLOSE = CHATML_END + "\n"


def chatml_turn(role: str, content: str) -> str:
    """One complete turn: ``<|im_start|>{role}\n{content}<|im_end|>\n``."""
    return chatml_open(role) + content + CHATML_CLOSE


def expand_placeholders(ids: Sequence[int], visual_tokens: Sequence[int], image_token_id: int,
                        values: Sequence[int] | None = None) -> list[int]:
    """``ids`` in the reference's form (one :data:`IMAGE_TOKEN_INDEX`, -200, per visual) with the
    ``i``-th placeholder repeated ``visual_tokens[i]`` times as ``image_token_id``: the
    ``input_ids`` of :meth:`LongVAProcessor.__call__` (the model puts visual token ``j`` at the
    ``j``-th placeholder position). ``values``, aligned with ``ids`` (e.g. training labels), are
    expanded the same way instead of ``ids`` themselves (``image_token_id`` then the fill, e.g. -100)."""
    ids = list(ids)
    if ids.count(IMAGE_TOKEN_INDEX) != len(visual_tokens):
        raise InputMismatchError(f"{ids.count(IMAGE_TOKEN_INDEX)} placeholders but {len(visual_tokens)} visuals")
    out, visual = [], iter(visual_tokens)
    for i, value in zip(ids, ids if values is None else values):
        out.extend([image_token_id] * next(visual) if i == IMAGE_TOKEN_INDEX else [value])
    return out


def _content_text(content) -> str:
    """A chat message's content as text: a string, or transformers' list of parts."""
    if isinstance(content, str):
        return content
    pieces = []
    for part in content:
        kind = part.get("type")
        if kind in ("image", "video"):
            pieces.append((IMAGE_PLACEHOLDER if kind == "image" else VIDEO_PLACEHOLDER) + "\n")
        elif kind == "text":
            pieces.append(part["text"])
        else:
            raise InputMismatchError(f"unknown content part type {kind!r}; use 'image', 'video' or 'text'")
    return "".join(pieces)


def _content_visuals(messages) -> tuple[list, list]:
    """The images and videos of transformers-style content parts, in order."""
    images, videos = [], []
    for message in messages:
        if isinstance(message["content"], str):
            continue
        for part in message["content"]:
            if part.get("type") == "image":
                image = part.get("image", part.get("url", part.get("path")))
                images.append(Image.open(image) if isinstance(image, (str, os.PathLike)) else image)
            elif part.get("type") == "video":
                video = part.get("video")
                if video is None or isinstance(video, (str, os.PathLike)):
                    raise InputMismatchError("a video part needs its frames ({'type': 'video', 'video': (F, H, W, 3) "
                                             "uint8}); sample them with longva_plugins.video.read_video")
                videos.append(video)
    return images, videos


class LongVAProcessor(ProcessorMixin):
    """transformers' processor for LongVA: tokenizer, image processor, video processor and the
    ``qwen_1_5`` chat template. ``processor(text=..., images=... | videos=...)`` gives the inputs
    of ``model(**inputs)`` / ``model.generate(**inputs)``; the long-video helpers
    (:meth:`preprocess_frames`, :meth:`tokenize`, :meth:`build_prompt`) feed the chunked path.

    Args:
        tokenizer: a Qwen2 tokenizer (``<|im_start|>``, ``<|im_end|>``, ``<|endoftext|>``).
        image_processor: a :class:`LongVAImageProcessor`.
        image_grid_pinpoints: anyres canvases (from the checkpoint config).
        max_length: refuse prompts longer than this (never truncate silently); ``None`` = no limit.
        tokens_per_frame: visual tokens per frame or tile (the model config's, 144 for LongVA).
    """

    def __init__(self, tokenizer=None, image_processor=None, chat_template=None,
                 image_grid_pinpoints: Sequence[Sequence[int]] | None = None, max_length: int | None = None,
                 tokens_per_frame: int = 144):
        image_processor = image_processor if image_processor is not None else LongVAImageProcessor()
        self.image_grid_pinpoints = [list(p) for p in (image_grid_pinpoints or [])]
        self.max_length = max_length
        #: visual tokens per frame or tile (the model config's ``tokens_per_frame``)
        self.tokens_per_frame = tokens_per_frame
        super().__init__(tokenizer, image_processor, chat_template=chat_template)
        # Frames go through the image processor's CLIP values. Not a ProcessorMixin attribute:
        # transformers checks those against its video-processor registry, which needs torchvision.
        self.video_processor = LongVAVideoProcessor(image_processor.size, image_processor.image_mean,
                                                    image_processor.image_std)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **tokenizer_kwargs) -> "LongVAProcessor":
        """From a checkpoint folder or hub id (the tokenizer, the anyres canvases and the tokens per
        frame of its config, CLIP values from ``preprocessor_config.json`` when it ships one: the
        released checkpoints do not), or from a folder :meth:`save_pretrained` wrote."""
        from transformers import AutoTokenizer

        from longva_plugins.models.longva.configuration_longva import LongVAConfig

        folder = Path(os.fspath(path))
        if folder.is_dir():  # a cut or corrupt file names itself, not a parser deep inside
            from longva_plugins.models.longva.loading import check_checkpoint_json

            check_checkpoint_json(folder)
        saved = folder / "processor_config.json"
        images = None
        if saved.is_file():  # written by save_pretrained (the image processor's values inside it)
            data = json.loads(saved.read_text())
            extras = {k: v for k, v in data.items() if k in ("image_grid_pinpoints", "max_length", "tokens_per_frame")}
            if isinstance(data.get("image_processor"), dict):
                images = {k: v for k, v in data["image_processor"].items() if k in ("size", "image_mean", "image_std")}
            tokenizer = AutoTokenizer.from_pretrained(os.fspath(path), **tokenizer_kwargs)
        else:
            config = LongVAConfig.from_pretrained(os.fspath(path))
            extras = {"image_grid_pinpoints": config.image_grid_pinpoints, "tokens_per_frame": config.tokens_per_frame}
            tokenizer = AutoTokenizer.from_pretrained(os.fspath(path), config=config, **tokenizer_kwargs)
        pre = folder / "preprocessor_config.json"
        if images is None and pre.is_file():  # the released checkpoints ship none: OpenAI CLIP values then
            data = json.loads(pre.read_text())
            crop = data.get("crop_size")
            images = {"image_mean": data.get("image_mean", CLIP_MEAN), "image_std": data.get("image_std", CLIP_STD)}
            if isinstance(crop, dict) or isinstance(data.get("size"), int):
                images["size"] = crop.get("height", 336) if isinstance(crop, dict) else data["size"]
        return cls(tokenizer, LongVAImageProcessor(**(images or {})), **extras)

    # ------------------------------------------------------------------ visual inputs
    def preprocess_frames(self, frames, mode: str = "crop") -> torch.Tensor:
        """Video frames ``(F, H, W, 3)`` uint8 (or a list of PIL images) -> ``(F, 3, 336, 336)``."""
        return self.image_processor(frames, mode=mode)

    def preprocess_anyres(self, image) -> tuple[torch.Tensor, tuple[int, int]]:
        """An image -> ``(pixel_values (1 + gh*gw, 3, 336, 336), (gh, gw))``."""
        if not self.image_grid_pinpoints:
            raise SettingError("this checkpoint has no image_grid_pinpoints; anyres images need them")
        return self.image_processor.anyres(image, self.image_grid_pinpoints)

    def select_best_resolution(self, size_wh, pinpoints=None) -> tuple[int, int]:
        return select_best_resolution(size_wh, pinpoints or self.image_grid_pinpoints)

    # ------------------------------------------------------------------ text
    def build_prompt(self, question: str, system: str = DEFAULT_SYSTEM, with_image: bool = True) -> str:
        """The single-turn ``qwen_1_5`` prompt, ending where the assistant starts answering."""
        user = f"{IMAGE_PLACEHOLDER}\n{question}" if with_image and IMAGE_PLACEHOLDER not in question else question
        return self.apply_chat_template([{"role": "user", "content": user}], system=system)

    def apply_chat_template(self, messages: Sequence[dict], system: str = DEFAULT_SYSTEM,
                            add_generation_prompt: bool = True, tokenize: bool = False, return_dict: bool = False,
                            continue_final_message: bool = False, return_tensors: str | None = "pt",
                            processor_kwargs: dict | None = None, **kwargs):
        """ChatML (``qwen_1_5``): ``messages`` is a list of ``{"role": system|user|assistant,
        "content"}``, the content a string or transformers' list of parts (``{"type": "image",
        "image": ...}``, ``{"type": "video", "video": frames}``, ``{"type": "text", "text": ...}``; a
        visual part becomes its placeholder and a line break, as the reference writes ``<image>\n``
        before the question). A system message replaces ``system``. Returns the prompt text, or with
        ``tokenize=True, return_dict=True`` the processor's inputs for it and the visuals of the
        parts (what transformers' ``image-text-to-text`` pipeline asks for)."""
        if kwargs:
            raise SettingError(f"apply_chat_template does not take {sorted(kwargs)}")
        if tokenize and not return_dict:
            raise SettingError("apply_chat_template(tokenize=True) returns the processor's inputs: set return_dict=True")
        messages = list(messages)
        if messages and messages[0]["role"] == "system":
            system = _content_text(messages.pop(0)["content"])
        parts = [chatml_turn("system", system)] if system is not None else []
        for message in messages:
            role = message["role"]
            if role not in CHAT_ROLES:
                raise InputMismatchError(f"unknown chat role {role!r}; use 'user' or 'assistant'")
            parts.append(chatml_turn(role, _content_text(message["content"])))
        if continue_final_message:
            if add_generation_prompt or not messages:
                raise SettingError("continue_final_message continues the last message: add_generation_prompt=False")
            parts[-1] = parts[-1][: -len(CHATML_CLOSE)]
        elif add_generation_prompt:
            parts.append(chatml_open("assistant"))
        text = "".join(parts)
        if not tokenize:
            return text
        images, videos = _content_visuals(messages)
        return self(text=text, images=images or None, videos=videos or None, return_tensors=return_tensors,
                    **(processor_kwargs or {}))

    def tokenize(self, prompt: str) -> torch.Tensor:
        """Token ids ``(L,)`` with :data:`IMAGE_TOKEN_INDEX` at each ``<image>``.

        The text on each side of ``<image>`` is tokenised separately, as the reference does
        (joining them would merge "\\n\\n" into one token). Never truncates.
        """
        ids = self._text_ids(prompt, (IMAGE_PLACEHOLDER,))
        if self.max_length is not None and len(ids) > self.max_length:
            raise ContextLengthError(
                f"prompt has {len(ids)} tokens, more than max_length={self.max_length}; shorten the question"
            )
        return torch.tensor(ids, dtype=torch.long)

    def _text_ids(self, prompt: str, placeholders: Sequence[str]) -> list[int]:
        """Token ids with :data:`IMAGE_TOKEN_INDEX` at each of ``placeholders``; the text between
        them tokenised piece by piece, as the reference does."""
        import re

        ids: list[int] = []
        for piece in re.split("(" + "|".join(re.escape(p) for p in placeholders) + ")", prompt):
            if piece in placeholders:
                ids.append(IMAGE_TOKEN_INDEX)
            elif piece:
                ids.extend(self.tokenizer(piece, add_special_tokens=False)["input_ids"])
        return ids

    # ------------------------------------------------------------------ transformers' processor call
    @property
    def image_token_id(self) -> int:
        """The id :meth:`__call__` repeats once per visual token in ``input_ids``: the first id past
        the tokenizer (a padding row of the embedding matrix: never a text token, never generated;
        the model replaces these positions by the visual features)."""
        return len(self.tokenizer)

    def __call__(self, images=None, text=None, videos=None, return_tensors: str | None = "pt",
                 padding_side: str = "left", **kwargs):
        """transformers' processor call: ``processor(text=..., images=..., videos=...)`` ->
        :class:`~transformers.BatchFeature` for ``model(**inputs)`` / ``model.generate(**inputs)``.

        ``text``: a prompt or a list of prompts (a batch, padded on ``padding_side``), each
        ``<image>`` / ``<video>`` standing for the next image / video in order (as in the reference,
        ``<image>`` may stand for a video when only videos are given). Each placeholder becomes as
        many :attr:`image_token_id` as the visual has tokens (144 per tile or frame for LongVA); the
        text around it is tokenised on its own, as the reference does. ``images``: PIL images or
        ``(H, W, 3)`` uint8 arrays, encoded as UniRes tiles (``pixel_values``, base thumbnail first,
        and ``image_grids``: tiles high x wide per image). ``videos``: each a ``(F, H, W, 3)`` uint8
        array or a list of frames (``pixel_values_videos`` and ``video_grids``: frames per video).
        Images and videos go in separate calls."""
        from transformers import BatchFeature

        ignored = {"padding": (True, "longest"), "truncation": (False, None), "add_special_tokens": (False,)}
        for name, value in kwargs.items():  # what transformers' pipelines pass; anything else is refused
            if name not in ignored or value not in ignored[name]:
                raise SettingError(f"processor(..., {name}={value!r}) is not supported: LongVA pads to the longest "
                                   "prompt, never truncates and adds no special tokens")
        if return_tensors not in (None, "pt"):
            raise SettingError(f"return_tensors={return_tensors!r}: LongVA's processor returns PyTorch tensors ('pt')")
        if padding_side not in ("left", "right"):
            raise SettingError(f"padding_side={padding_side!r}: use 'left' (generation) or 'right'")
        if text is None:
            raise InputMismatchError("text is required: a prompt with one <image> or <video> per visual")
        texts = [text] if isinstance(text, str) else list(text)
        images, videos = _as_list(images, _is_image), _as_list(videos, _is_video)
        if images and videos:
            raise InputMismatchError("images and videos in one call: process them in separate calls")
        found_images = sum(t.count(IMAGE_PLACEHOLDER) for t in texts)
        found_videos = sum(t.count(VIDEO_PLACEHOLDER) for t in texts)
        if videos and not found_videos:  # the reference writes <image> for a video
            found_images, found_videos = 0, found_images
        if (found_images, found_videos) != (len(images), len(videos)):
            raise InputMismatchError(
                f"the text has {found_images} image and {found_videos} video placeholders but {len(images)} images "
                f"and {len(videos)} videos are given: put one {IMAGE_PLACEHOLDER} per image and one "
                f"{VIDEO_PLACEHOLDER} (or {IMAGE_PLACEHOLDER}) per video in the text")
        data, tokens = {}, []
        if images:
            tiles = [self.preprocess_anyres(image) for image in images]
            data["pixel_values"] = torch.cat([pixels for pixels, _ in tiles])
            data["image_grids"] = torch.tensor([list(grid) for _, grid in tiles], dtype=torch.long)
            tokens = [gh * gw * self.tokens_per_frame for _, (gh, gw) in tiles]
        if videos:
            data.update(self.video_processor(videos))
            tokens = [frames * self.tokens_per_frame for (frames,) in data["video_grids"].tolist()]
        rows, used = [], 0
        for prompt in texts:
            ids = self._text_ids(prompt, (IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER))
            count = ids.count(IMAGE_TOKEN_INDEX)
            ids = self.expand_placeholders(ids, tokens[used:used + count])
            used += count
            if self.max_length is not None and len(ids) > self.max_length:
                raise ContextLengthError(f"prompt has {len(ids)} tokens with its visuals, more than "
                                         f"max_length={self.max_length}")
            rows.append(ids)
        width = max(len(ids) for ids in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for row, ids in enumerate(rows):
            span = slice(width - len(ids), width) if padding_side == "left" else slice(0, len(ids))
            input_ids[row, span] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, span] = 1
        return BatchFeature({"input_ids": input_ids, "attention_mask": attention_mask, **data})

    def expand_placeholders(self, ids: Sequence[int], visual_tokens: Sequence[int]) -> list[int]:
        """:func:`expand_placeholders` with this tokenizer's :attr:`image_token_id`."""
        return expand_placeholders(ids, visual_tokens, self.image_token_id)

    def batch_decode(self, ids, skip_special_tokens: bool = True) -> list[str]:
        return self.tokenizer.batch_decode(ids, skip_special_tokens=skip_special_tokens)

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    @property
    def eos_token_id(self) -> int:
        return self.tokenizer.convert_tokens_to_ids("<|im_end|>")

    @property
    def pad_token_id(self) -> int:
        return self.tokenizer.convert_tokens_to_ids("<|endoftext|>")

    def __len__(self) -> int:
        return len(self.tokenizer)

    def fingerprint(self) -> str:
        """A hash of the tokenizer (vocabulary, merges, special tokens) and the image preprocessing:
        what caches of token ids or embeddings must key on."""
        import hashlib

        h = hashlib.blake2b(digest_size=16)
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is not None:
            h.update(backend.to_str().encode())
        else:
            h.update(json.dumps(sorted(self.tokenizer.get_vocab().items())).encode())
        h.update(json.dumps(getattr(self.tokenizer, "special_tokens_map", {}), sort_keys=True, default=str).encode())
        images = self.image_processor
        h.update(json.dumps([images.size, images.mean.tolist(), images.std.tolist(), self.image_grid_pinpoints]).encode())
        return h.hexdigest()


__all__ = [
    "CHATML_CLOSE",
    "CHATML_END",
    "chatml_open",
    "chatml_turn",
    "CLIP_MEAN",
    "CLIP_STD",
    "DEFAULT_SYSTEM",
    "LongVAImageProcessor",
    "LongVAProcessor",
    "LongVAVideoProcessor",
    "expand_placeholders",
    "expand_to_square",
    "select_best_resolution",
]
