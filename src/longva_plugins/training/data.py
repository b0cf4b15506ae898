"""LLaVA conversation data -> LongVA training samples (``qwen_1_5`` template, loss on answers only).

A sample (LLaVA's format, docs/longva-numerics.md §6)::

    {"id": "x1", "image": "a.jpg" | "video": "b.mp4",
     "conversations": [{"from": "human", "value": "<image>\\nWhat is this?"}, {"from": "gpt", "value": "A cat."}, ...]}

Labels are ``-100`` everywhere except the assistant's answer tokens and the ``<|im_end|>`` that
closes each answer (so the model learns to stop). Media paths are relative to ``media_root``.
Bad samples (missing media, media without ``<image>``, ``<image>`` without media, empty or
malformed conversations) are reported by id and either skipped (``on_bad_sample="skip"``, logged)
or raised (``"error"``).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from longva_plugins.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from longva_plugins.errors import DataError

logger = logging.getLogger(__name__)
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


@dataclass
class Sample:
    """One tokenised training sample: ``input_ids`` with ``-200`` placeholders and aligned ``labels``."""

    id: str
    input_ids: torch.Tensor
    labels: torch.Tensor
    pixel_values: torch.Tensor | None
    modality: str  # "image", "video" or "text"
    grid: tuple[int, int] | None = None


def tokenize_conversation(processor, conversations: list[dict], system: str | None = None):
    """``(input_ids, labels)`` for a multi-turn conversation in the ``qwen_1_5`` template."""
    from longva_plugins.models.longva.processing_longva import CHATML_CLOSE, CHATML_END, DEFAULT_SYSTEM, chatml_open, chatml_turn

    system = DEFAULT_SYSTEM if system is None else system
    ids: list[int] = []
    labels: list[int] = []

    def add(text: str, train: bool) -> None:
        piece = processor.tokenize(text).tolist() if text else []
        ids.extend(piece)
        labels.extend(piece if train else [IGNORE_INDEX] * len(piece))

    add(chatml_turn("system", system), False)
    for turn in conversations:
        role = ROLES.get(turn.get("from", ""))
        if role is None:
            raise DataError(f"unknown speaker {turn.get('from')!r}; use 'human' or 'gpt'")
        if role == "user":
            add(chatml_turn("user", turn["value"]) + chatml_open("assistant"), False)
        else:
            add(str(turn["value"]), True)
            add(CHATML_END, True)  # learn to end the turn
            add(CHATML_CLOSE[len(CHATML_END):], False)
    return torch.tensor(ids, dtype=torch.long), torch.tensor(labels, dtype=torch.long)


def validate(record: dict, media_root: Path) -> str | None:
    """``None`` if the record is usable, else the reason."""
    convs = record.get("conversations")
    if not isinstance(convs, list) or not convs:
        return "empty or missing conversations"
    if not any(ROLES.get(t.get("from")) == "assistant" and str(t.get("value", "")).strip() for t in convs):
        return "no assistant answer to learn from"
    media = record.get("image") or record.get("video")
    has_placeholder = any("<image>" in str(t.get("value", "")) for t in convs)
    if media and not has_placeholder:
        return "media given but no <image> in the conversation"
    if has_placeholder and not media:
        return "<image> in the conversation but no image or video"
    if media and not (media_root / media).is_file():
        return f"media file missing: {media_root / media}"
    return None


class LLaVAConversationDataset(Dataset):
    """LLaVA-format JSON (a list, or JSON lines) as tokenised LongVA samples with media."""

    def __init__(self, path: str | os.PathLike, processor, media_root: str | os.PathLike | None = None,
                 max_frames: int = 8, on_bad_sample: str = "skip"):
        if on_bad_sample not in ("skip", "error"):
            raise DataError(f"on_bad_sample must be 'skip' or 'error'; got {on_bad_sample!r}")
        self.path = Path(path)
        self.processor = processor
        self.media_root = Path(media_root) if media_root else self.path.parent
        self.max_frames = max_frames
        text = self.path.read_text()
        try:
            records = json.loads(text) if text.lstrip().startswith("[") else [json.loads(l) for l in text.splitlines() if l.strip()]
        except json.JSONDecodeError as exc:
            raise DataError(f"{self.path} is not valid JSON / JSON lines: {exc}") from exc
        self.records, self.skipped = [], []
        for i, record in enumerate(records):
            reason = validate(record, self.media_root)
            if reason is None:
                self.records.append(record)
                continue
            sample_id = record.get("id", f"#{i}")
            if on_bad_sample == "error":
                raise DataError(f"{self.path}: sample {sample_id}: {reason}")
            self.skipped.append((sample_id, reason))
        if self.skipped:
            logger.warning("skipped %d bad samples of %s: %s", len(self.skipped), self.path,
                           "; ".join(f"{i}: {r}" for i, r in self.skipped[:10]))
        if not self.records:
            raise DataError(f"{self.path}: no usable sample ({len(self.skipped)} skipped)")

    def __len__(self) -> int:
        return len(self.records)

    def modality_lengths(self) -> list[tuple[str, int]]:
        """Cheap (modality, text length) per sample, for the modality-length-grouped sampler."""
        out = []
        for r in self.records:
            modality = "video" if r.get("video") else "image" if r.get("image") else "text"
            out.append((modality, sum(len(str(t.get("value", ""))) for t in r["conversations"])))
        return out

    def __getitem__(self, index: int) -> Sample:
        record = self.records[index]
        input_ids, labels = tokenize_conversation(self.processor, record["conversations"])
        pixel_values, grid, modality = None, None, "text"
        if record.get("image"):
            from PIL import Image

            with Image.open(self.media_root / record["image"]) as image:
                pixel_values, grid = self.processor.preprocess_anyres(image.convert("RGB"))
            modality = "image"
        elif record.get("video"):
            from longva_plugins.video import read_video

            frames = read_video(self.media_root / record["video"], num_frames=self.max_frames).frames
            pixel_values, modality = self.processor.preprocess_frames(frames), "video"
        return Sample(str(record.get("id", index)), input_ids, labels, pixel_values, modality, grid)


def collate(samples: list[Sample]) -> dict:
    """Keep samples as a list: their lengths differ until visual tokens are spliced in."""
    return {"samples": samples}


def build_inputs(model, samples: list[Sample], pad_token_id: int = 0):
    """Splice visual features into each sample and pad the batch.

    Returns ``inputs_embeds (B, L, D)``, ``labels (B, L)`` (visual and padding positions
    ``-100``) and ``attention_mask (B, L)``. Differentiable in the projector (and the tower if
    it is trainable).
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    embeds, labels = [], []
    for sample in samples:
        blocks = []
        if sample.pixel_values is not None:
            if sample.modality == "image":
                blocks.append(base.encode_anyres(sample.pixel_values, sample.grid))
            else:
                blocks.append(base.encode_video(sample.pixel_values))
        embed = base.embed_multimodal(sample.input_ids, blocks)[0]  # (L', D)
        label = []
        for token, lab in zip(sample.input_ids.tolist(), sample.labels.tolist()):
            label.extend([IGNORE_INDEX] * blocks[0].shape[0] if token == IMAGE_TOKEN_INDEX else [lab])
        embeds.append(embed)
        labels.append(torch.tensor(label, dtype=torch.long))
    length = max(e.shape[0] for e in embeds)
    batch = len(embeds)
    dim = embeds[0].shape[-1]
    out = embeds[0].new_zeros(batch, length, dim)
    lab = torch.full((batch, length), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros(batch, length, dtype=torch.long)
    for i, (e, l) in enumerate(zip(embeds, labels)):  # right padding
        out[i, : e.shape[0]] = e
        lab[i, : l.shape[0]] = l
        mask[i, : e.shape[0]] = 1
    return out, lab.to(out.device), mask.to(out.device)


__all__ = ["IGNORE_INDEX", "LLaVAConversationDataset", "Sample", "build_inputs", "collate", "tokenize_conversation",
           "validate"]
