"""Scoring V-NIAH cells with LongVA: cached embeddings, one chunked forward, logits at the answer only.

A cell (frames ``n``, depth ``d``, needle ``k``) is the reference sequence
``[system+user prefix] [haystack[:idx], needle, haystack[idx:n]] [question] [<|im_end|>\\n<|im_start|>assistant\\n] [answer]``
with ``idx = int(d * n)``; it is correct iff the argmax at every answer position equals the
answer token (docs/longva-numerics.md §3). Each text piece is tokenised on its own, as the reference
does. Unlike the reference (full-vocabulary fp32 logits for every position on 8 GPUs), the
forward runs in chunks over a KV cache and computes logits only for the answer span, so memory
grows linearly with the number of frames.
"""

from __future__ import annotations

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
#: Tokens per prefill chunk of a cell (the adapter's ``prefill_chunk_size`` overrides it): a chunk's
#: activations are the part of the peak that grows with the chunk, so it stays small beside the
#: KV cache of a long cell (benchmarks/bench_vniah_lmms_eval.py).
DEFAULT_PREFILL_CHUNK = 2048


def crop_to(cache, length: int) -> None:
    """Cut a KV cache back to its first ``length`` tokens, in place (transformers 5's ``crop``
    takes the negative number of tokens to drop)."""
    extra = cache.get_seq_length() - length
    if extra > 0:
        cache.crop(-extra)


def _everyone_has(found: bool, model) -> bool:
    """``found`` on every rank of the model's sequence-parallel group (one rank alone: ``found``).
    Ranks that share a KV cache must run the same cells: a cell finished by one rank's store write
    while another rank looked is run again by all of them."""
    if not (hasattr(model, "uses_sharded_kv") and model.uses_sharded_kv()):
        return found
    from longva_plugins.distributed import all_agree, get_sequence_parallel_group

    return all_agree(found, get_sequence_parallel_group(), model.device if model.device.type == "cuda" else "cpu")


class VNIAHScorer:
    """Scores cells of one (model, haystack, needle set), reusing embeddings and finished cells."""

    def __init__(self, model, processor, haystack: Haystack, needles: list[Needle], needle_set_id: str,
                 cache: EmbeddingCache | None = None, store: CellStore | None = None,
                 encode_chunk_size: int = 16, prefill_chunk_size: int | None = DEFAULT_PREFILL_CHUNK):
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
        #: tokens the one KV cache is allocated for (:meth:`reserve`); 0 = grow as needed
        self.capacity = 0
        # The one KV cache of the grid: [system+user prefix | haystack[:K]]. Every cell's sequence up
        # to its needle is a prefix of it (causal attention); see _prefix_to and score.
        self._prefix_cache = None
        self._prefix_frames = 0
        self._prefix_pre_len = 0
        #: ``(idx, needle, frames)`` of the needle and haystack tail the cache holds after the prefix
        self._tail = None

    # ------------------------------------------------------------------ embeddings
    @torch.no_grad()
    def _encode(self, images) -> torch.Tensor:
        pixels = self.processor.preprocess_frames(images, mode="pad")
        return self.model.encode_frames(pixels, chunk_size=self.encode_chunk_size)  # (m, T, D)

    def haystack_range(self, start: int, end: int) -> torch.Tensor:
        """``(end - start, T, D)`` embeddings of haystack frames ``start .. end-1`` (from the cache)."""
        def compute(missing):
            # Only on a cache miss: a cached grid never decodes the haystack video again. Frames are
            # decoded, preprocessed and encoded one encoder chunk at a time and dropped at once, so
            # neither raw frames nor pixel tensors grow with the frame count.
            self.haystack.check_length(end)
            step = max(1, self.encode_chunk_size)
            return torch.cat([self._encode(self.haystack.frames(missing[i:i + step]))
                              for i in range(0, len(missing), step)])

        return self.cache.get_or_compute(
            self.fingerprint, PREPROCESSING, self.haystack.identity, list(range(start, end)), compute
        )

    def haystack_embeds(self, num_frames: int) -> torch.Tensor:
        """``(num_frames, T, D)`` embeddings of haystack frames 0..num_frames-1."""
        return self.haystack_range(0, num_frames)

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
        return torch.cat([pre, block.unsqueeze(0).to(pre.device, pre.dtype), self._question_embeds(question)],
                         dim=1)  # (1, L, D)

    def cell_key(self, num_frames: int, depth: float, needle_index: int, mode: str = "ppl") -> dict:
        return dict(model=self.fingerprint, haystack=self.haystack.identity, needles=self.needle_set_id,
                    needle=self.needles[needle_index].id, frames=num_frames, depth=f"{depth:.4f}", mode=mode)

    def _embed_text(self, text: str) -> torch.Tensor:
        embed = self.model.get_input_embeddings()
        return embed(self.processor.tokenize(text).to(embed.weight.device)).unsqueeze(0)  # (1, n, D)

    def cell_tokens(self, num_frames: int) -> int:
        """Tokens of the longest sequence of a cell with ``num_frames`` haystack frames (any needle):
        prefix, ``num_frames + 1`` images, question, assistant header and answer."""
        fixed = len(self.processor.tokenize(PRE_TEXT)) + len(self.processor.tokenize(POST_TEXT))
        return fixed + self._question_answer_tokens() + (num_frames + 1) * self.model.config.tokens_per_frame

    def _question_answer_tokens(self) -> int:
        """The most tokens a needle's question and answer take together."""
        return max(len(self.processor.tokenize(n.question)) + len(self.processor.tokenize(n.answer))
                   for n in self.needles)

    def reserve(self, num_frames: int) -> None:
        """Size the one KV cache for the longest cell to come (``num_frames`` haystack frames): it
        is allocated once at that length, so the grid never reallocates it (no growth, no freed
        buffers left in the heap). A cache already allocated smaller grows as needed."""
        self.capacity = max(self.capacity, self.cell_tokens(num_frames))

    def _frames_per_chunk(self) -> int:
        """Haystack frames per prefill forward: as many whole frames as fit a prefill chunk, at least one."""
        return max(1, (self.prefill_chunk_size or DEFAULT_PREFILL_CHUNK) // self.model.config.tokens_per_frame)

    def forward_tokens(self) -> int:
        """The most tokens one forward of the grid appends to the KV cache: a prefill chunk of
        frames, the needle, or the question with the answer."""
        text = self._question_answer_tokens() + len(self.processor.tokenize(POST_TEXT))
        return max(self._frames_per_chunk() * self.model.config.tokens_per_frame, text,
                   len(self.processor.tokenize(PRE_TEXT)))

    def _prefill_frames(self, cache, start: int, end: int) -> None:
        """Append haystack frames ``start .. end-1`` to ``cache``, a prefill chunk at a time."""
        step = self._frames_per_chunk()
        for first in range(start, end, step):
            last = min(end, first + step)
            frames = self.haystack_range(first, last).reshape(1, -1, self.model.config.hidden_size)  # (1, m*T, D)
            self.model.prefill(frames, chunk_size=self.prefill_chunk_size, past_key_values=cache)

    def _prefix_to(self, idx: int):
        """The one shared KV cache, set to ``[system+user prefix | haystack[:idx]]`` in place: cropped
        when it holds more, extended by prefilling only the missing frames when it holds fewer."""
        tokens = self.model.config.tokens_per_frame
        if self._prefix_cache is None:
            pre = self._embed_text(PRE_TEXT)
            # a cache split over ranks also holds one forward's new tokens beside each rank's share
            chunk = self.forward_tokens() if self.model.uses_sharded_kv() else 0
            cache = self.model.new_cache(self.capacity, chunk=chunk)
            self._prefix_cache = self.model.prefill(pre, chunk_size=self.prefill_chunk_size,
                                                    past_key_values=cache).past_key_values
            self._prefix_pre_len, self._prefix_frames = pre.shape[1], 0
        self._tail = None
        crop_to(self._prefix_cache, self._prefix_pre_len + min(idx, self._prefix_frames) * tokens)
        self._prefix_frames = min(idx, self._prefix_frames)
        self._prefill_frames(self._prefix_cache, self._prefix_frames, idx)
        self._prefix_frames = idx
        return self._prefix_cache

    def _sequence_to(self, idx: int, needle_index: int, num_frames: int):
        """The one shared KV cache, set to ``[prefix | haystack[:idx] | needle | haystack[idx:num_frames]]``
        in place. When it already holds that prefix and needle with fewer haystack frames after the
        needle (the previous cell had the same insertion index and needle and fewer frames: every
        ``depth = 0`` cell of a grid, for one), only the missing frames are prefilled; otherwise it is
        cropped back to the prefix and the needle and the frames after it are prefilled."""
        held = self._tail
        if held is not None and held[:2] == (idx, needle_index) and held[2] <= num_frames:
            cache, start = self._prefix_cache, held[2]
        else:
            cache, start = self._prefix_to(idx), idx
            needle = self.needle_embeds(needle_index).reshape(1, -1, self.model.config.hidden_size)  # (1, T, D)
            self.model.prefill(needle, chunk_size=self.prefill_chunk_size, past_key_values=cache)
        # the cache now ends after haystack[idx:start] (the previous cell was cropped before its question)
        self._prefill_frames(cache, start, num_frames)
        self._tail = (idx, needle_index, num_frames)
        return cache

    def _question_embeds(self, question: str) -> torch.Tensor:
        """``(1, n, D)``: the question and the assistant header, each tokenised alone."""
        return torch.cat([self._embed_text(question), self._embed_text(POST_TEXT)], dim=1)

    @torch.no_grad()
    def score(self, num_frames: int, depth: float, needle_index: int, answer: str | None = None) -> dict:
        """The cell's outcome (from the store when already computed).

        With :attr:`reuse_prefix` (default) the cell runs on the one shared KV cache: it is set to
        the cell's sequence up to its question (see :meth:`_sequence_to`), the question and the
        answer are appended and scored, and the cache is cropped back to before the question in
        place -- no copy. Cells scored in :func:`~longva_plugins.vniah.grid.cell_order_key` order
        (insertion index, needle, frames) grow the prefix monotonically, so every haystack frame
        is prefilled once per grid into the prefix, and cells that differ only in their frame count
        extend the previous cell's tail (the ``longva`` adapter sorts V-NIAH requests by that key).
        """
        needle = self.needles[needle_index]
        answer = needle.answer if answer is None else answer
        key = self.cell_key(num_frames, depth, needle_index)
        key["answer"] = answer
        cached = self.store.get(**key)
        if not _everyone_has(cached is not None, self.model):  # ranks sharing a KV cache decide together
            cached = None
        if cached is not None:
            return cached
        answer_ids = self.processor.tokenize(answer)
        idx = insertion_index(depth, num_frames)
        if self.reuse_prefix:
            cache = self._sequence_to(idx, needle_index, num_frames)
            length = cache.get_seq_length()
            try:
                result = self.model.score_continuation(self._question_embeds(needle.question), answer_ids,
                                                       chunk_size=self.prefill_chunk_size, past_key_values=cache)
            finally:
                crop_to(cache, length)
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

    def release(self) -> None:
        """Drop the shared KV cache (the grid is done)."""
        self._prefix_cache, self._prefix_frames, self._tail = None, 0, None


_SCORERS: dict = {}
_LOCK = threading.Lock()


def get_scorer(model, processor, haystack_spec: str, needles_spec: str, cache_dir=None, **kwargs) -> VNIAHScorer:
    """One scorer per (model object, haystack, needle set, cache) in this process."""
    from longva_plugins.vniah.haystack import resolve_haystack
    from longva_plugins.vniah.needles import resolve_needles

    key = (id(model), haystack_spec, needles_spec, str(cache_dir), tuple(sorted(kwargs.items())))
    with _LOCK:
        if key not in _SCORERS:
            needle_set_id, needles = resolve_needles(needles_spec)
            cache = EmbeddingCache(cache_dir)
            _SCORERS[key] = VNIAHScorer(model, processor, resolve_haystack(haystack_spec), needles, needle_set_id,
                                        cache=cache, **kwargs)
        return _SCORERS[key]


__all__ = ["POST_TEXT", "PRE_TEXT", "VNIAHScorer", "get_scorer"]
