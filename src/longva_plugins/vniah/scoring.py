"""Scoring V-NIAH cells with LongVA: cached embeddings, one chunked forward, logits at the answer only.

A cell (frames ``n``, depth ``d``, needle ``k``) is the reference sequence
``[system+user prefix] [haystack[:idx], needle, haystack[idx:n]] [question] [<|im_end|>\\n<|im_start|>assistant\\n] [answer]``
with ``idx = int(d * n)``; it is correct iff the argmax at every answer position equals the
answer token (longva-reference.md §3). Each text piece is tokenised on its own, as the reference
does. Unlike the reference (full-vocabulary fp32 logits for every position on 8 GPUs), the
forward runs in chunks over a KV cache and computes logits only for the answer span, so memory
grows linearly with the number of frames.
"""

from __future__ import annotations

import copy
import logging
import threading

import torch

from longva_plugins.models.longva.processing_longva import CHATML_CLOSE, DEFAULT_SYSTEM, chatml_open, chatml_turn
from longva_plugins.vniah.cache import CellStore, EmbeddingCache, model_fingerprint
from longva_plugins.vniah.grid import insertion_index, layout
from longva_plugins.vniah.haystack import Haystack
from longva_plugins.vniah.needles import Needle

logger = logging.getLogger(__name__)

#: ``[system turn][user turn opened]`` before the visual tokens, and what closes the user turn.
PRE_TEXT = chatml_turn("system", DEFAULT_SYSTEM) + chatml_open("user")
POST_TEXT = CHATML_CLOSE + chatml_open("assistant")
PREPROCESSING = "pad336-clip"


class VNIAHScorer:
    """Scores cells of one (model, haystack, needle set), reusing embeddings and finished cells."""

    def __init__(self, model, processor, haystack: Haystack, needles: list[Needle], needle_set_id: str,
                 cache: EmbeddingCache | None = None, store: CellStore | None = None,
                 encode_chunk_size: int = 16, prefill_chunk_size: int | None = 8192):
        self.model = model
        self.processor = processor
        self.haystack = haystack
        self.needles = needles
        self.needle_set_id = needle_set_id
        self.cache = cache or EmbeddingCache()
        self.store = store or CellStore(self.cache.root)
        self.encode_chunk_size = encode_chunk_size
        self.prefill_chunk_size = prefill_chunk_size
        self.fingerprint = model_fingerprint(model, processor)
        self.scored = 0  # cells actually computed (not served from the store)
        self.reuse_prefix = True
        # KV cache of [system+user prefix | haystack[:K]]: every cell's sequence up to its needle is
        # a prefix of it (causal attention), so it is computed once and cropped per cell.
        self._prefix_cache = None
        self._prefix_frames = -1

    # ------------------------------------------------------------------ embeddings
    @torch.no_grad()
    def _encode(self, images) -> torch.Tensor:
        pixels = self.processor.preprocess_frames(images, mode="pad")
        return self.model.encode_frames(pixels, chunk_size=self.encode_chunk_size)  # (m, T, D)

    def haystack_embeds(self, num_frames: int) -> torch.Tensor:
        """``(num_frames, T, D)`` embeddings of haystack frames 0..num_frames-1."""
        def compute(missing):
            # Only on a cache miss: a cached grid never decodes the haystack video again. Frames are
            # decoded and encoded a chunk at a time, so raw frames never pile up in memory.
            self.haystack.check_length(num_frames)
            step = max(1, self.encode_chunk_size) * 4
            return torch.cat([self._encode(self.haystack.frames(missing[i:i + step]))
                              for i in range(0, len(missing), step)])

        return self.cache.get_or_compute(
            self.fingerprint, PREPROCESSING, self.haystack.identity, list(range(num_frames)), compute
        )

    def needle_embeds(self, needle_index: int) -> torch.Tensor:
        """``(1, T, D)`` embedding of one needle."""
        needle = self.needles[needle_index]
        return self.cache.get_or_compute(
            self.fingerprint, PREPROCESSING, f"{self.needle_set_id}:{needle.id}", [0],
            lambda _: self._encode([needle.image]),
        )

    def cell_block(self, num_frames: int, depth: float, needle_index: int) -> torch.Tensor:
        """``((num_frames + 1) * T, D)`` visual block of one cell."""
        frames = self.haystack_embeds(num_frames)
        needle = self.needle_embeds(needle_index)
        ordered = [needle[0] if i is None else frames[i] for i in layout(num_frames, depth)]
        return torch.cat(ordered)  # ((n+1)*T, D)

    # ------------------------------------------------------------------ sequence and scoring
    def prompt_embeds(self, block: torch.Tensor, question: str) -> torch.Tensor:
        """``(1, L, D)``: prefix, visual block, question and assistant header, each tokenised alone."""
        pre = self._embed_text(PRE_TEXT)
        return torch.cat([pre, block.unsqueeze(0).to(pre.device, pre.dtype), self._embed_text(question),
                          self._embed_text(POST_TEXT)], dim=1)  # (1, L, D)

    def cell_key(self, num_frames: int, depth: float, needle_index: int, mode: str = "ppl") -> dict:
        return dict(model=self.fingerprint, haystack=self.haystack.identity, needles=self.needle_set_id,
                    needle=self.needles[needle_index].id, frames=num_frames, depth=f"{depth:.4f}", mode=mode)

    def _embed_text(self, text: str) -> torch.Tensor:
        embed = self.model.get_input_embeddings()
        return embed(self.processor.tokenize(text).to(embed.weight.device)).unsqueeze(0)  # (1, n, D)

    def _prefix_kv(self, idx: int):
        """A private copy of the KV cache of ``[prefix | haystack[:idx]]``."""
        if self._prefix_cache is None or idx > self._prefix_frames:
            frames = self.haystack_embeds(idx).reshape(-1, self.model.config.hidden_size)  # (idx*T, D)
            pre = self._embed_text(PRE_TEXT)  # (1, P, D)
            embeds = torch.cat([pre, frames.unsqueeze(0).to(pre.device, pre.dtype)], dim=1)  # (1, P+idx*T, D)
            self._prefix_cache = self.model.prefill(embeds, chunk_size=self.prefill_chunk_size).past_key_values
            self._prefix_frames = idx
            self._prefix_pre_len = embeds.shape[1] - idx * self.model.config.tokens_per_frame
        cache = copy.deepcopy(self._prefix_cache)
        extra = cache.get_seq_length() - (self._prefix_pre_len + idx * self.model.config.tokens_per_frame)
        if extra > 0:
            cache.crop(-extra)  # transformers 5: a negative count of tokens to drop
        return cache

    @torch.no_grad()
    def score(self, num_frames: int, depth: float, needle_index: int, answer: str | None = None) -> dict:
        """The cell's outcome (from the store when already computed)."""
        needle = self.needles[needle_index]
        answer = needle.answer if answer is None else answer
        key = self.cell_key(num_frames, depth, needle_index)
        key["answer"] = answer
        cached = self.store.get(**key)
        if cached is not None:
            return cached
        answer_ids = self.processor.tokenize(answer)
        idx = insertion_index(depth, num_frames)
        if self.reuse_prefix and idx > 0:
            frames = self.haystack_embeds(num_frames)
            rest = torch.cat([self.needle_embeds(needle_index)[0], *frames[idx:num_frames]])  # ((n-idx+1)*T, D)
            question = self._embed_text(needle.question)
            tail = torch.cat([rest.unsqueeze(0).to(question.device, question.dtype), question,
                              self._embed_text(POST_TEXT)], dim=1)
            result = self.model.score_continuation(tail, answer_ids, chunk_size=self.prefill_chunk_size,
                                                   past_key_values=self._prefix_kv(idx))
        else:
            prompt = self.prompt_embeds(self.cell_block(num_frames, depth, needle_index), needle.question)
            result = self.model.score_continuation(prompt, answer_ids, chunk_size=self.prefill_chunk_size)
        record = {
            "frames": num_frames, "depth": depth, "needle": needle.id, "answer": answer,
            "correct": int(result.greedy_match), "nll_mean": result.nll_mean,
            "pred_ids": result.argmax_ids.tolist(), "answer_ids": answer_ids.tolist(),
        }
        self.store.put(record, **key)
        self.scored += 1
        return record


_SCORERS: dict = {}
_LOCK = threading.Lock()


def get_scorer(model, processor, haystack_spec: str, needles_spec: str, cache_dir=None, **kwargs) -> VNIAHScorer:
    """One scorer per (model object, haystack, needle set, cache) in this process."""
    from longva_plugins.vniah.haystack import resolve_haystack
    from longva_plugins.vniah.needles import resolve_needles

    key = (id(model), haystack_spec, needles_spec, str(cache_dir))
    with _LOCK:
        if key not in _SCORERS:
            needle_set_id, needles = resolve_needles(needles_spec)
            cache = EmbeddingCache(cache_dir)
            _SCORERS[key] = VNIAHScorer(model, processor, resolve_haystack(haystack_spec), needles, needle_set_id,
                                        cache=cache, **kwargs)
        return _SCORERS[key]


__all__ = ["POST_TEXT", "PRE_TEXT", "VNIAHScorer", "get_scorer"]
