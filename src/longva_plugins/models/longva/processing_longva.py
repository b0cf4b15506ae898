"""LongVA input processing: CLIP preprocessing, UniRes/anyres tiling and the ``qwen_1_5`` prompt.

Preprocessing reproduces the reference (OpenAI CLIP via the slow ``CLIPImageProcessor`` of
transformers 4.40 on Pillow) number for number: PIL bicubic resize of the shortest edge to 336,
centre crop, ``uint8 -> float64 * 1/255 -> float32``, then ``(x - mean) / std`` in float32. It is
written out here (a few lines of PIL and numpy) because transformers' processors changed their
resampling back-ends between versions; the golden tests pin the numbers.

Modes:
    ``crop``  video frames (shortest edge -> 336, centre crop).
    ``pad``   V-NIAH haystack frames and needles: expand to a square filled with the CLIP mean
              colour first (reference ``expand2square``), then as ``crop``.
    anyres    images: best canvas from ``image_grid_pinpoints``, aspect-preserving resize (ceil),
              pasted centred on black, cut into 336 px tiles row-major, base thumbnail first.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image
from transformers import BaseImageProcessor
from transformers.processing_utils import ProcessorMixin
from transformers.video_processing_utils import VideoProcessorMixin

from longva_plugins.errors import ContextLengthError, InputMismatchError, SettingError
from longva_plugins.constants import IMAGE_TOKEN_INDEX

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
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


def select_best_resolution(size_wh: tuple[int, int], pinpoints: Sequence[Sequence[int]]) -> tuple[int, int]:
    """The ``(width, height)`` canvas that keeps the most of the image (LLaVA-NeXT anyres rule).

    Maximise the effective resolution (area of the image scaled to fit, capped at the original
    area); ties go to the least wasted canvas area; the first candidate wins remaining ties.
    """
    width, height = size_wh
    best, best_effective, best_wasted = None, -1, math.inf
    for cand_w, cand_h in pinpoints:
        scale = min(cand_w / width, cand_h / height)
        effective = min(int(width * scale) * int(height * scale), width * height)
        wasted = cand_w * cand_h - effective
        if effective > best_effective or (effective == best_effective and wasted < best_wasted):
            best, best_effective, best_wasted = (int(cand_w), int(cand_h)), effective, wasted
    if best is None:
        raise SettingError("image_grid_pinpoints is empty: the checkpoint config lists no anyres canvas")
    return best


def _to_pil(image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3:
        raise InputMismatchError(f"expected an RGB uint8 array (H, W, 3); got dtype {array.dtype}, shape {array.shape}")
    return Image.fromarray(array, "RGB")


def expand_to_square(image: Image.Image, fill: tuple[int, int, int]) -> Image.Image:
    """Pad the short side so the image becomes square, content centred (reference expand2square)."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new(image.mode, (side, side), fill)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


class _CLIPPixels:
    """CLIP preprocessing as LongVA's reference runs it (see the module docstring); shared by the
    image and the video processor. ``size``, ``image_mean`` and ``image_std`` are what
    ``save_pretrained`` writes (transformers' names)."""

    def __init__(self, size: int = 336, image_mean: Sequence[float] = CLIP_MEAN, image_std: Sequence[float] = CLIP_STD,
                 **kwargs):
        super().__init__(**kwargs)
        self.size = int(size["height"] if isinstance(size, dict) else size)
        self.image_mean = [float(m) for m in image_mean]
        self.image_std = [float(v) for v in image_std]

    @property
    def mean(self) -> np.ndarray:
        return np.asarray(self.image_mean, dtype=np.float32)

    @property
    def std(self) -> np.ndarray:
        return np.asarray(self.image_std, dtype=np.float32)

    def pixels(self, images: Iterable, mode: str = "crop") -> torch.Tensor:
        """Preprocess images/frames -> ``(N, 3, S, S)`` float32. ``mode`` is ``crop`` or ``pad``."""
        if mode not in ("crop", "pad"):
            raise SettingError(f"preprocessing mode {mode!r} is not supported; use 'crop' or 'pad'")
        out = []
        for image in images:
            pil = _to_pil(image)
            if mode == "pad":
                pil = expand_to_square(pil, self.fill_colour)
            out.append(self._normalise(self._resize_crop(pil)))
        if not out:
            raise InputMismatchError("no image or frame to preprocess")
        return torch.from_numpy(np.stack(out))

    @property
    def fill_colour(self) -> tuple[int, int, int]:
        return tuple(int(m * 255) for m in self.mean.tolist())

    def _resize_crop(self, image: Image.Image) -> np.ndarray:
        width, height = image.size
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.size, int(self.size * long / short)
        new_size = (new_short, new_long) if width <= height else (new_long, new_short)
        if new_size != image.size:
            image = image.resize(new_size, Image.BICUBIC)
        array = np.asarray(image)
        top = (array.shape[0] - self.size) // 2
        left = (array.shape[1] - self.size) // 2
        return array[top : top + self.size, left : left + self.size]

    def _normalise(self, array: np.ndarray) -> np.ndarray:
        scaled = (array.astype(np.float64) * (1 / 255)).astype(np.float32)
        return ((scaled - self.mean) / self.std).transpose(2, 0, 1)  # (3, S, S)


class LongVAImageProcessor(_CLIPPixels, BaseImageProcessor):
    """transformers' image processor for LongVA: exact CLIP preprocessing (``crop``, and ``pad``
    for V-NIAH frames and needles) and UniRes/anyres tiles (:meth:`anyres`). Called with images
    it returns ``(N, 3, S, S)`` pixels; ``save_pretrained`` / ``from_pretrained`` round-trip it
    (``preprocessor_config.json``)."""

    model_input_names = ["pixel_values", "image_grids"]

    def __call__(self, images: Iterable, mode: str = "crop") -> torch.Tensor:
        """Preprocess images/frames -> ``(N, 3, S, S)`` float32. ``mode`` is ``crop`` or ``pad``."""
        return self.pixels(images, mode)

    preprocess = __call__

    def anyres(self, image, pinpoints: Sequence[Sequence[int]]) -> tuple[torch.Tensor, tuple[int, int]]:
        """UniRes/anyres tiles -> ``((1 + gh*gw, 3, S, S), (gh, gw))``, base thumbnail first."""
        pil = _to_pil(image)
        target_w, target_h = select_best_resolution(pil.size, pinpoints)
        scale_w, scale_h = target_w / pil.width, target_h / pil.height
        if scale_w < scale_h:
            new_w, new_h = target_w, min(math.ceil(pil.height * scale_w), target_h)
        else:
            new_w, new_h = min(math.ceil(pil.width * scale_h), target_w), target_h
        canvas = Image.new("RGB", (target_w, target_h), (0, 0, 0))
        canvas.paste(pil.resize((new_w, new_h)), ((target_w - new_w) // 2, (target_h - new_h) // 2))
        tiles = [
            canvas.crop((left, top, left + self.size, top + self.size))
            for top in range(0, target_h, self.size)
            for left in range(0, target_w, self.size)
        ]
        base = pil.resize((self.size, self.size))
        grid = (target_h // self.size, target_w // self.size)
        return self([base] + tiles, mode="crop"), grid


class LongVAVideoProcessor(_CLIPPixels, VideoProcessorMixin):
    """transformers' video processor for LongVA: every frame through the same CLIP preprocessing
    (shortest edge to 336, centre crop). ``videos``: one or more ``(F, H, W, 3)`` uint8 arrays or
    lists of frames (frames are sampled by the caller: ``longva_plugins.video``)."""

    model_input_names = ["pixel_values_videos", "video_grids"]

    def __call__(self, videos, **kwargs):
        from transformers import BatchFeature

        if kwargs:
            raise SettingError(f"LongVAVideoProcessor takes no options; got {sorted(kwargs)}")
        frames = [self.pixels(video) for video in _as_list(videos, _is_video)]
        return BatchFeature({"pixel_values_videos": torch.cat(frames),
                             "video_grids": torch.tensor([[len(f)] for f in frames], dtype=torch.long)})

    preprocess = __call__


def expand_placeholders(ids: Sequence[int], visual_tokens: Sequence[int], image_token_id: int) -> list[int]:
    """``ids`` in the reference's form (one :data:`IMAGE_TOKEN_INDEX`, -200, per visual) with the
    ``i``-th placeholder repeated ``visual_tokens[i]`` times as ``image_token_id``: the
    ``input_ids`` of :meth:`LongVAProcessor.__call__` (the model puts visual token ``j`` at the
    ``j``-th placeholder position)."""
    ids = list(ids)
    if ids.count(IMAGE_TOKEN_INDEX) != len(visual_tokens):
        raise InputMismatchError(f"{ids.count(IMAGE_TOKEN_INDEX)} placeholders but {len(visual_tokens)} visuals")
    out, visual = [], iter(visual_tokens)
    for i in ids:
        out.extend([image_token_id] * next(visual) if i == IMAGE_TOKEN_INDEX else [i])
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


def _is_image(value) -> bool:
    return isinstance(value, Image.Image) or (isinstance(value, (np.ndarray, torch.Tensor)) and value.ndim == 3)


def _is_video(value) -> bool:
    return isinstance(value, (np.ndarray, torch.Tensor)) and value.ndim == 4 or (
        isinstance(value, (list, tuple)) and len(value) > 0 and all(_is_image(v) for v in value))


def _as_list(value, is_one) -> list:
    """``None`` -> ``[]``; one image (video) -> ``[it]``; a list of them -> the list."""
    if value is None:
        return []
    if is_one(value):
        return [value]
    return list(value)


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
