"""LLaVA conversation data -> LongVA training samples (``qwen_1_5`` template, loss on answers only).

A sample (LLaVA's format, docs/longva-numerics.md §6)::

    {"id": "x1", "image": "a.jpg" | "video": "b.mp4",
     "conversations": [{"from": "human", "value": "<image>\\nWhat is this?"}, {"from": "gpt", "value": "A cat."}, ...]}

Labels are ``-100`` everywhere except the assistant's answer tokens and the ``<|im_end|>`` that
closes each answer (so the model learns to stop). Media paths are relative to ``media_root``.
Each sample becomes the inputs of the model's standard forward, as ``LongVAProcessor(...)`` builds
them: ``input_ids`` with the ``<image>`` expanded to one placeholder id per visual token,
``labels`` (visual positions ``-100``), and ``pixel_values`` + ``image_grids`` (UniRes tiles) or
``pixel_values_videos`` + ``video_grids`` (sampled frames); :class:`DataCollatorForLongVA` pads
them into a batch for ``model(**batch)``.

Bad samples (missing media, media without ``<image>``, ``<image>`` without media, empty or
malformed conversations; found when the file is read) and samples that fail when they are built
(a video that does not decode, more tokens than ``model_max_length``: never truncated) are
reported by id and either skipped (``on_bad_sample="skip"``, logged and counted) or stop the run
(``"error"``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from torch.utils.data import Dataset

from longva_plugins.constants import IGNORE_INDEX
from longva_plugins.errors import DataError, SampleError
from longva_plugins.models.longva.processing_longva import (
    CHATML_CLOSE,
    CHATML_END,
    DEFAULT_SYSTEM,
    chatml_open,
    chatml_turn,
    expand_placeholders,
)

logger = logging.getLogger(__name__)
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


def tokenize_conversation(processor, conversations: list[dict], system: str | None = None):
    """``(input_ids, labels)`` for a multi-turn conversation in the ``qwen_1_5`` template."""
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
                 max_frames: int = 8, on_bad_sample: str = "skip", model_max_length: int | None = None):
        if on_bad_sample not in ("skip", "error"):
            raise DataError(f"on_bad_sample must be 'skip' or 'error'; got {on_bad_sample!r}")
        self.path = Path(path)
        self.processor = processor
        self.media_root = Path(media_root) if media_root else self.path.parent
        self.max_frames = max_frames
        self.on_bad_sample = on_bad_sample
        self.model_max_length = model_max_length
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

    def __getitem__(self, index: int) -> dict:
        """The model inputs of sample ``index``; a sample that fails to build is skipped (the next
        one is returned, the failure logged and counted in :attr:`skipped`) or raises."""
        for offset in range(len(self.records)):
            position = (index + offset) % len(self.records)
            record = self.records[position]
            sample_id = str(record.get("id", f"#{position}"))
            try:
                return self.example(record)
            except (DataError, SampleError, OSError) as exc:
                if self.on_bad_sample == "error":
                    raise DataError(f"{self.path}: sample {sample_id}: {exc}") from exc
                if sample_id not in {i for i, _ in self.skipped}:
                    self.skipped.append((sample_id, str(exc)))
                    logger.warning("skipped sample %s of %s: %s", sample_id, self.path, exc)
        raise DataError(f"{self.path}: no sample could be built ({len(self.skipped)} skipped)")

    def example(self, record: dict) -> dict:
        """One record as model inputs (see the module docstring); raises on a bad sample."""
        input_ids, labels = tokenize_conversation(self.processor, record["conversations"])
        example = {"modality": "text"}
        visual_tokens = []
        if record.get("image"):
            from PIL import Image

            with Image.open(self.media_root / record["image"]) as image:
                pixel_values, (gh, gw) = self.processor.preprocess_anyres(image.convert("RGB"))
            example.update(modality="image", pixel_values=pixel_values, image_grids=torch.tensor([[gh, gw]]))
            visual_tokens = [gh * gw * self.processor.tokens_per_frame]
        elif record.get("video"):
            from longva_plugins.video import read_video

            frames = read_video(self.media_root / record["video"], num_frames=self.max_frames).frames
            pixel_values = self.processor.preprocess_frames(frames)
            example.update(modality="video", pixel_values_videos=pixel_values,
                           video_grids=torch.tensor([[pixel_values.shape[0]]]))
            visual_tokens = [pixel_values.shape[0] * self.processor.tokens_per_frame]
        ids = self.processor.expand_placeholders(input_ids.tolist(), visual_tokens)
        expanded_labels = expand_placeholders(input_ids.tolist(), visual_tokens, IGNORE_INDEX, values=labels.tolist())
        if self.model_max_length is not None and len(ids) > self.model_max_length:
            raise DataError(f"{len(ids)} tokens ({sum(visual_tokens)} visual) exceed model_max_length="
                            f"{self.model_max_length}; lower max_frames or raise model_max_length")
        example.update(input_ids=torch.tensor(ids, dtype=torch.long), labels=torch.tensor(expanded_labels, dtype=torch.long))
        return example


#: the order of a batch's rows: the model encodes every image, then every video, in row order
_ROW_ORDER = {"image": 0, "video": 1, "text": 2}


class DataCollatorForLongVA:
    """Batch examples for ``model(**batch)``; pixels concatenated with their grids, in the order the
    model's forward encodes visuals (every image, then every video, in row order).

    Padded (default): ``input_ids`` (``pad_token_id``), ``labels`` (-100) and ``attention_mask``,
    right padding, rows ordered images, videos, text.

    ``pack_length`` set: first-fit packing (lmms-engine's and TRL's padding-free training): examples
    go, longest first, into the first row with room for them (rows of at most ``pack_length``
    tokens; an example longer than that gets a row of its own; an image never after a video),
    each row flattened by
    transformers' ``DataCollatorWithFlattening`` -- ``position_ids`` restart at every example, the
    first label of each is -100 -- so attention stays inside each example (transformers builds the
    block-diagonal mask from the position ids when no ``attention_mask`` is given). Padding at the end of a row is a
    sequence of its own (positions from 0, labels -100). Packed batches carry ``use_cache=False``:
    transformers reads packed rows from the position ids only when no KV cache is built.
    """

    def __init__(self, pad_token_id: int = 0, pack_length: int | None = None):
        self.pad_token_id = pad_token_id
        self.pack_length = pack_length

    def __call__(self, examples: list[dict]) -> dict:
        examples = sorted(examples, key=lambda e: _ROW_ORDER[e["modality"]])
        batch = self._packed(examples) if self.pack_length else self._padded(examples)
        rows = batch.pop("_rows")
        for pixels, grids in (("pixel_values", "image_grids"), ("pixel_values_videos", "video_grids")):
            with_pixels = [e for row in rows for e in row if pixels in e]
            if with_pixels:
                batch[pixels] = torch.cat([e[pixels] for e in with_pixels])
                batch[grids] = torch.cat([e[grids] for e in with_pixels])
        return batch

    def _padded(self, examples: list[dict]) -> dict:
        length = max(e["input_ids"].shape[0] for e in examples)
        batch = {
            "input_ids": torch.full((len(examples), length), self.pad_token_id, dtype=torch.long),
            "labels": torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long),
            "attention_mask": torch.zeros(len(examples), length, dtype=torch.long),
        }
        for row, example in enumerate(examples):
            n = example["input_ids"].shape[0]
            batch["input_ids"][row, :n] = example["input_ids"]
            batch["labels"][row, :n] = example["labels"]
            batch["attention_mask"][row, :n] = 1
        batch["_rows"] = [[e] for e in examples]
        return batch

    def _bins(self, examples: list[dict]) -> list[list[dict]]:
        """First-fit decreasing: images, then videos (into the last image row or rows after it, so
        every image comes before every video), then text into any row."""
        rows: list[list[dict]] = []
        room: list[int] = []

        def place(example, candidates):
            n = example["input_ids"].shape[0]
            for i in candidates:
                if room[i] >= n:
                    rows[i].append(example)
                    room[i] -= n
                    return
            rows.append([example])
            room.append(self.pack_length - n)

        for modality in ("image", "video"):
            first = max(len(rows) - 1, 0)
            for example in sorted((e for e in examples if e["modality"] == modality),
                                  key=lambda e: -e["input_ids"].shape[0]):
                place(example, range(first, len(rows)))
        for example in sorted((e for e in examples if e["modality"] == "text"), key=lambda e: -e["input_ids"].shape[0]):
            place(example, range(len(rows)))
        # inside a row: its visual examples keep their order (all of one modality), text after
        return [sorted(row, key=lambda e: _ROW_ORDER[e["modality"]]) for row in rows]

    def _packed(self, examples: list[dict]) -> dict:
        from transformers import DataCollatorWithFlattening

        flatten = DataCollatorWithFlattening(return_tensors="pt", separator_id=IGNORE_INDEX)
        rows = self._bins(examples)
        flat = [flatten([{"input_ids": e["input_ids"], "labels": e["labels"]} for e in row]) for row in rows]
        length = max(f["input_ids"].shape[1] for f in flat)
        batch = {
            "input_ids": torch.full((len(rows), length), self.pad_token_id, dtype=torch.long),
            "labels": torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long),
            "position_ids": torch.arange(length).repeat(len(rows), 1),
        }
        for i, f in enumerate(flat):
            n = f["input_ids"].shape[1]
            batch["input_ids"][i, :n] = f["input_ids"][0]
            batch["labels"][i, :n] = f["labels"][0]
            batch["position_ids"][i, :n] = f["position_ids"][0]
            batch["position_ids"][i, n:] = torch.arange(length - n)  # the padding: a sequence of its own
        batch["_rows"] = rows
        batch["use_cache"] = False  # transformers detects packed rows only without a KV cache
        return batch


__all__ = ["DataCollatorForLongVA", "IGNORE_INDEX", "LLaVAConversationDataset", "tokenize_conversation", "validate"]
