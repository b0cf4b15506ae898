"""LongVA on transformers: CLIP tower -> mlp2x_gelu projector -> 2x2 pool (UniRes) -> Qwen2.

Notation used in shapes below:
    N  frames or tiles encoded at once          P  CLIP patches per frame (576 for 336/14)
    G  patches per side (24)                    T  visual tokens per frame after pooling (144)
    C  CLIP width (mm_hidden_size)              D  language-model width (hidden_size)
    L  sequence length                          V  vocabulary size

Composition, not copies: :class:`LongVAForCausalLM` *is* a transformers
:class:`~transformers.Qwen2ForCausalLM` whose inner ``model`` additionally holds
``mm_projector`` and ``vision_tower.vision_tower`` (a :class:`~transformers.CLIPVisionModel`).
That places every weight under the reference key names (``model.mm_projector.0.weight``,
``model.vision_tower.vision_tower.vision_model.*``), so the released checkpoints load as they are.

Frames are encoded in chunks keeping only the selected CLIP layer. The long-video paths (chunked
prefill over a KV cache, answer-span scoring, a KV cache split over ranks) are in
:mod:`.inference_longva`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPVisionModel, GenerationMixin, Qwen2ForCausalLM

from longva_plugins.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from longva_plugins.errors import InputMismatchError, SettingError
from longva_plugins.models.longva.configuration_longva import LongVAConfig
from longva_plugins.models.longva.inference_longva import LongVideoMixin, PrefillOutput, ScoreOutput

DEFAULT_ENCODE_CHUNK = 16


class LongVAProjector(nn.Sequential):
    """``mlp2x_gelu``: Linear(C -> D), exact (erf) GELU, Linear(D -> D); or ``linear``.

    An ``nn.Sequential`` so the parameters are named ``0.*`` and ``2.*`` as in the reference.
    """

    def __init__(self, config: LongVAConfig):
        kind = config.mm_projector_type
        if kind == "linear":
            super().__init__(nn.Linear(config.mm_hidden_size, config.hidden_size))
        elif kind.startswith("mlp") and kind.endswith("x_gelu"):
            depth = int(kind[len("mlp") : -len("x_gelu")])
            layers: list[nn.Module] = [nn.Linear(config.mm_hidden_size, config.hidden_size)]
            for _ in range(depth - 1):
                layers += [nn.GELU(), nn.Linear(config.hidden_size, config.hidden_size)]
            super().__init__(*layers)
        else:
            raise SettingError(f"mm_projector_type {kind!r} is not supported; use 'mlp2x_gelu' or 'linear'.")


class LongVAVisionTower(nn.Module):
    """Holds the CLIP model as ``.vision_tower`` (reference key layout) and selects one layer."""

    def __init__(self, config: LongVAConfig):
        super().__init__()
        self.vision_tower = CLIPVisionModel(config.resolve_vision_config())
        self.select_layer = config.mm_vision_select_layer
        self.select_feature = config.mm_vision_select_feature

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(N, 3, 336, 336) -> (N, P, C) features of ``hidden_states[select_layer]``.

        Runs only the encoder layers needed for that hidden state, so neither the other
        hidden states nor the unused last layer(s) are computed or kept.
        """
        # transformers < 5 nests the modules under `.vision_model`; 5.x flattens them.
        vision = getattr(self.vision_tower, "vision_model", self.vision_tower)
        layers = vision.encoder.layers
        n_states = len(layers) + 1  # embeddings output + one per layer
        index = self.select_layer % n_states
        hidden = vision.embeddings(pixel_values.to(vision.embeddings.patch_embedding.weight.dtype))
        hidden = vision.pre_layrnorm(hidden)  # (N, 1+P, C) = hidden_states[0]
        for layer in layers[:index]:
            hidden = layer(hidden, attention_mask=None)
            if isinstance(hidden, tuple):
                hidden = hidden[0]
        if self.select_feature == "patch":
            return hidden[:, 1:]  # (N, P, C) CLS dropped
        if self.select_feature == "cls_patch":
            return hidden
        raise SettingError(f"mm_vision_select_feature {self.select_feature!r} is not supported ('patch', 'cls_patch').")


class LongVAForConditionalGeneration(LongVideoMixin, Qwen2ForCausalLM, GenerationMixin):
    """LongVA: a Qwen2 causal LM that also owns the CLIP tower and the projector.

    ``forward`` / ``generate`` take what ``LongVAProcessor(...)`` returns (``input_ids`` with
    visual placeholders and the pixels), as transformers' VLMs do, or Qwen2's ``input_ids`` /
    ``inputs_embeds``; the long-video helpers (chunked encode and prefill, answer-span scoring,
    a KV cache split over ranks) work on ``inputs_embeds`` built by :meth:`embed_multimodal`.
    ``LongVAForCausalLM`` is the same class (its earlier name).
    """

    config_class = LongVAConfig
    base_model_prefix = "model"
    _no_split_modules = ["Qwen2DecoderLayer", "CLIPEncoderLayer"]

    def __init__(self, config: LongVAConfig):
        super().__init__(config)
        self.model.vision_tower = LongVAVisionTower(config)
        self.model.mm_projector = LongVAProjector(config)
        #: argmax and generation ignore ids >= this (the tokenizer's length, set at load); None = all.
        self.valid_vocab_size: int | None = None
        #: in training forwards with labels, compute logits only where a label is (the training
        #: entry points set it; a long video's fp32 logits over every position are otherwise the
        #: largest activation: ``tokens x vocabulary x 8`` bytes with their gradient)
        self.logits_at_labels_only = False
        self.post_init()

    @property
    def image_token_id(self) -> int | None:
        """The placeholder id of visual tokens in ``input_ids`` (the processor's ``image_token_id``:
        the first id past the tokenizer, i.e. :attr:`valid_vocab_size`)."""
        return self.valid_vocab_size

    # ------------------------------------------------------------------ transformers' standard forward
    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, labels=None,
                logits_to_keep=0, pixel_values=None, image_grids=None, pixel_values_videos=None, video_grids=None,
                **kwargs):
        """Qwen2's forward, plus the visuals of ``processor(text=..., images=... | videos=...)``:
        ``pixel_values`` (UniRes tiles, base thumbnail first per image) with ``image_grids``
        (tiles high x wide per image), or ``pixel_values_videos`` with ``video_grids`` (frames per
        video). They are encoded and put in place of the :attr:`image_token_id` positions of
        ``input_ids``, in order; ``labels`` at those positions are ignored (-100). ``generate``
        passes them at the prefill only (transformers drops these inputs at decode steps)."""
        if pixel_values is not None or pixel_values_videos is not None:
            if input_ids is None or inputs_embeds is not None:
                raise InputMismatchError("visual inputs go with input_ids holding their placeholder tokens "
                                         "(processor(...)), not with inputs_embeds")
            inputs_embeds, labels = self.embed_inputs(input_ids, pixel_values, image_grids, pixel_values_videos,
                                                      video_grids, labels)
            input_ids = None
        if labels is not None and self.training and self.logits_at_labels_only and not logits_to_keep:
            return self._loss_at_labels(input_ids, attention_mask, position_ids, inputs_embeds, labels, **kwargs)
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                               inputs_embeds=inputs_embeds, labels=labels, logits_to_keep=logits_to_keep, **kwargs)

    def _loss_at_labels(self, input_ids, attention_mask, position_ids, inputs_embeds, labels, num_items_in_batch=None,
                        **kwargs):
        """transformers' causal-LM loss (next token, -100 ignored, summed over ``num_items_in_batch``
        when the Trainer gives it, else the mean), with the LM head and the fp32 logits computed at
        the labelled positions only; ``logits`` are those rows, ``(labelled positions, V)``."""
        from transformers.modeling_outputs import CausalLMOutputWithPast

        outputs = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                             inputs_embeds=inputs_embeds, **kwargs)
        hidden = outputs.last_hidden_state[:, :-1]
        targets = labels[:, 1:].to(hidden.device)
        keep = targets != IGNORE_INDEX
        logits = self.lm_head(hidden[keep]).float()  # (n, V)
        loss = F.cross_entropy(logits, targets[keep], reduction="sum")
        loss = loss / (num_items_in_batch if num_items_in_batch is not None else keep.sum().clamp(min=1))
        return CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=outputs.past_key_values,
                                      hidden_states=outputs.hidden_states, attentions=outputs.attentions)

    def embed_inputs(self, input_ids, pixel_values=None, image_grids=None, pixel_values_videos=None, video_grids=None,
                     labels=None):
        """``(inputs_embeds, labels)`` of the standard forward's inputs: the visuals encoded and put in
        place of the :attr:`image_token_id` positions, in order (a clear error when their numbers
        differ); ``labels`` at those positions set to -100. What :meth:`forward` runs before the
        language model -- and what a caller that splits the sequence over ranks runs first."""
        embed = self.get_input_embeddings()
        if pixel_values is None and pixel_values_videos is None:
            return embed(input_ids), labels
        mask = input_ids == self._placeholder_id()
        features = self._encode_visuals(pixel_values, image_grids, pixel_values_videos, video_grids)
        if int(mask.sum()) != features.shape[0]:
            raise InputMismatchError(
                f"input_ids hold {int(mask.sum())} visual placeholder tokens but the visuals give "
                f"{features.shape[0]} tokens: build the inputs with the checkpoint's processor, one "
                "<image>/<video> per visual")
        inputs_embeds = embed(input_ids.masked_fill(mask, 0))
        inputs_embeds = inputs_embeds.masked_scatter(mask.unsqueeze(-1), features.to(inputs_embeds.dtype))
        if labels is not None:
            labels = labels.masked_fill(mask.to(labels.device), IGNORE_INDEX)
        return inputs_embeds, labels

    def _placeholder_id(self) -> int:
        if self.image_token_id is None:
            raise InputMismatchError("this model has no visual placeholder id: it was loaded from a checkpoint "
                                     "without a tokenizer; set model.valid_vocab_size to the tokenizer's length")
        return self.image_token_id

    def _encode_visuals(self, pixel_values, image_grids, pixel_values_videos, video_grids) -> torch.Tensor:
        """``(total visual tokens, D)``: every image's tiles, then every video's frames, in order."""
        blocks, start = [], 0
        if pixel_values is not None:
            if image_grids is None:
                raise InputMismatchError("pixel_values need image_grids (tiles high x wide per image)")
            for gh, gw in image_grids.reshape(-1, 2).tolist():
                blocks.append(self.encode_anyres(pixel_values[start:start + 1 + gh * gw], (gh, gw)))
                start += 1 + gh * gw
            if start != pixel_values.shape[0]:
                raise InputMismatchError(f"image_grids cover {start} tiles but pixel_values hold {pixel_values.shape[0]}")
        if pixel_values_videos is not None:
            if video_grids is None:
                raise InputMismatchError("pixel_values_videos need video_grids (frames per video)")
            start = 0
            for (frames,) in video_grids.reshape(-1, 1).tolist():
                blocks.append(self.encode_video(pixel_values_videos[start:start + frames]))
                start += frames
            if start != pixel_values_videos.shape[0]:
                raise InputMismatchError(f"video_grids cover {start} frames but pixel_values_videos hold "
                                         f"{pixel_values_videos.shape[0]}")
        return torch.cat(blocks)

    def generate(self, *args, **kwargs):
        """transformers' ``generate``; ids at or above :attr:`valid_vocab_size` are never produced."""
        kwargs["logits_processor"] = self.vocabulary_processors(kwargs.get("logits_processor"))
        return super().generate(*args, **kwargs)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """Load a checkpoint in the reference layout (see :mod:`.loading`)."""
        from longva_plugins.models.longva.loading import load_pretrained

        return load_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs)

    def reference_state_dict(self) -> dict[str, torch.Tensor]:
        """The state dict under the reference key names (``...vision_tower.vision_model.*``).

        transformers 5 flattens ``CLIPVisionModel`` (no ``vision_model.`` level); released
        checkpoints and the original code use the nested names, so they are written that way.
        """
        prefix = "model.vision_tower.vision_tower."
        out = {}
        for key, value in self.state_dict().items():
            if key.startswith(prefix) and not key.startswith(prefix + "vision_model."):
                key = prefix + "vision_model." + key[len(prefix):]
            out[key] = value
        return out

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save in the reference layout (flat config.json, reference key names, safetensors)."""
        if kwargs.get("state_dict") is None:
            kwargs["state_dict"] = self.reference_state_dict()
            kwargs["save_original_format"] = False
        return super().save_pretrained(save_directory, *args, **kwargs)

    @property
    def vision_tower(self) -> LongVAVisionTower:
        return self.model.vision_tower

    @property
    def mm_projector(self) -> LongVAProjector:
        return self.model.mm_projector

    # ------------------------------------------------------------------ visual encoding
    def _pool(self, features: torch.Tensor) -> torch.Tensor:
        """(N, P, D) -> (N, T, D): 2-D pooling of each frame's G x G grid, row-major."""
        n, p, d = features.shape
        g = math.isqrt(p)
        if g * g != p:
            raise InputMismatchError(f"cannot pool {p} patches per frame: not a square grid")
        grid = features.view(n, g, g, d).permute(0, 3, 1, 2)  # (N, D, G, G)
        stride = self.config.mm_spatial_pool_stride
        mode = self.config.mm_spatial_pool_mode
        if mode == "average":
            pooled = F.avg_pool2d(grid, stride)
        elif mode == "max":
            pooled = F.max_pool2d(grid, stride)
        elif mode == "bilinear":
            size = (math.ceil(g / stride), math.ceil(g / stride))
            pooled = F.interpolate(grid, size=size, mode="bilinear")
        else:
            raise SettingError(f"mm_spatial_pool_mode {mode!r} is not supported ('average', 'max', 'bilinear').")
        return pooled.permute(0, 2, 3, 1).reshape(n, -1, d)  # (N, T, D)

    def encode_frames(self, pixel_values: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
        """Encode 336 px frames or tiles: CLIP layer ``mm_vision_select_layer`` -> projector -> pool.

        The projector runs before pooling (it is non-linear, so the order matters).

        Args:
            pixel_values: ``(N, 3, H, W)`` preprocessed frames.
            chunk_size: frames per CLIP batch (default 16); bounds peak memory for long videos.

        Returns:
            ``(N, T, D)`` visual tokens, in the language model's dtype. Differentiable (training);
            inference callers wrap it in ``torch.no_grad()``.
        """
        if pixel_values.dim() != 4:
            raise InputMismatchError(f"pixel_values must be (N, 3, H, W); got shape {tuple(pixel_values.shape)}")
        chunk = chunk_size or DEFAULT_ENCODE_CHUNK
        # first parameter, not [0]: PEFT may wrap the projector (modules_to_save)
        weight = next(self.model.mm_projector.parameters())
        out = []
        for start in range(0, pixel_values.shape[0], chunk):
            frames = pixel_values[start : start + chunk].to(weight.device)
            feats = self.model.vision_tower(frames)  # (n, P, C)
            feats = self.model.mm_projector(feats.to(weight.dtype))  # (n, P, D)
            out.append(self._pool(feats).to(self.dtype))  # (n, T, D)
        return torch.cat(out, dim=0)

    def encode_video(self, pixel_values: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
        """(F, 3, 336, 336) -> (F*T, D): frames in time order, each row-major, no separators."""
        tokens = self.encode_frames(pixel_values, chunk_size)  # (F, T, D)
        return tokens.reshape(-1, tokens.shape[-1])  # (F*T, D)

    def encode_anyres(self, pixel_values: torch.Tensor, grid_hw: tuple[int, int] | None = None,
                      chunk_size: int | None = None) -> torch.Tensor:
        """UniRes image: (1+H*W, 3, 336, 336) with the base thumbnail first -> (H*W*T, D).

        The reference encodes the base thumbnail and then discards it (``unires``); CLIP treats
        each image independently, so it is skipped here. Tiles stay in row-major order, each
        pooled on its own, with no newline tokens.
        """
        tiles = pixel_values[1:]
        if grid_hw is not None and grid_hw[0] * grid_hw[1] != tiles.shape[0]:
            raise InputMismatchError(
                f"anyres grid {grid_hw[0]}x{grid_hw[1]} needs {grid_hw[0] * grid_hw[1]} tiles; got {tiles.shape[0]}"
            )
        return self.encode_video(tiles, chunk_size)

    def masked_argmax(self, logits: torch.Tensor) -> torch.Tensor:
        """Argmax over the valid vocabulary (ids below ``valid_vocab_size``)."""
        if self.valid_vocab_size is not None and self.valid_vocab_size < logits.shape[-1]:
            logits = logits[..., : self.valid_vocab_size]
        return logits.argmax(dim=-1)

    def vocabulary_processors(self, extra=None):
        """``LogitsProcessorList`` (``extra`` first) that never lets ids >= ``valid_vocab_size`` win."""
        from transformers import LogitsProcessorList

        processors = LogitsProcessorList(extra or [])
        guarded = any(isinstance(p, _SuppressInvalidIds) for p in processors)
        if not guarded and self.valid_vocab_size is not None and self.valid_vocab_size < self.config.vocab_size:
            processors.append(_SuppressInvalidIds(self.valid_vocab_size))
        return processors

#: the earlier name of :class:`LongVAForConditionalGeneration` (the same class)
LongVAForCausalLM = LongVAForConditionalGeneration


class _SuppressInvalidIds:
    """Logits processor: ids >= ``limit`` (padding rows of the embedding matrix) never win."""

    def __init__(self, limit: int):
        self.limit = limit

    def __call__(self, input_ids, scores):
        scores[:, self.limit :] = -float("inf")
        return scores


__all__ = [
    "IMAGE_TOKEN_INDEX",
    "LongVAForCausalLM",
    "LongVAForConditionalGeneration",
    "LongVAProjector",
    "LongVAVisionTower",
    "PrefillOutput",
    "ScoreOutput",
]
