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

import functools
import logging
import threading

import torch

from longva_plugins.models.longva.processing_longva import CHATML_CLOSE, DEFAULT_SYSTEM, chatml_open, chatml_turn
from longva_plugins.vniah.cache import CellStore, EmbeddingCache, cache_key, model_fingerprint
from longva_plugins.vniah.cells import Item, encode_items, needle_cell, needle_item, runs
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
    """Scores cells of one (model, haystack, needle set[, distractor set]), reusing embeddings and
    finished cells.

    A cell is a list of items (:mod:`longva_plugins.vniah.cells`: haystack frame indices and
    inserted images), a question and an answer. :meth:`score` is the V-NIAH cell (frames, depth,
    needle); :meth:`score_items` any cell of the family (V-NIAH-D, several needles).
    """

    def __init__(self, model, processor, haystack: Haystack, needles: list[Needle], needle_set_id: str,
                 cache: EmbeddingCache | None = None, store: CellStore | None = None,
                 encode_chunk_size: int = 16, prefill_chunk_size: int | None = DEFAULT_PREFILL_CHUNK,
                 distractors: list[Needle] | None = None, distractor_set_id: str | None = None):
        self.model = model
        self.processor = processor
        self.haystack = haystack
        self.needles = needles
        self.needle_set_id = needle_set_id
        self.distractors = distractors or []
        self.distractor_set_id = distractor_set_id
        self.cache = cache or EmbeddingCache()
        self.store = store or CellStore(self.cache.root)
        self.encode_chunk_size = encode_chunk_size
        self.prefill_chunk_size = prefill_chunk_size
        self.fingerprint = model_fingerprint(model, processor)
        self.scored = 0  # cells actually computed (not served from the store)
        self.reuse_prefix = True
        #: tokens the one KV cache is allocated for (:meth:`reserve`); 0 = grow as needed
        self.capacity = 0
        #: the most question + answer tokens of a planned cell (:meth:`reserve_cell`)
        self._text_tokens = 0
        # The one KV cache of the grid: [system+user prefix | the items of the last cell]. Every
        # cell's sequence up to its question shares a prefix with it (causal attention): it is
        # cropped to the common items and only the rest is prefilled (see _cache_for).
        self._prefix_cache = None
        self._prefix_pre_len = 0
        #: the items the cache holds after the prefix
        self._held: list[Item] = []

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

    def _inserted(self, item: str) -> tuple[Needle, str]:
        """The image an insert item stands for and the identity of its set."""
        kind, index = item[0], int(item[1:])
        if kind == "n":
            return self.needles[index], self.needle_set_id
        if kind == "d" and self.distractors:
            return self.distractors[index], self.distractor_set_id
        raise ValueError(f"unknown V-NIAH item {item!r} (needles: n0..n{len(self.needles) - 1}, "
                         f"distractors: {len(self.distractors)})")

    def insert_embeds(self, item: str) -> torch.Tensor:
        """``(1, T, D)`` embedding of an inserted image (a needle ``"nK"`` or a distractor ``"dK"``)."""
        image, set_id = self._inserted(item)
        return self.cache.get_or_compute(
            self.fingerprint, PREPROCESSING, f"{set_id}:{image.id}", [0], lambda _: self._encode([image.image]),
        )

    def needle_embeds(self, needle_index: int) -> torch.Tensor:
        """``(1, T, D)`` embedding of one needle."""
        return self.insert_embeds(needle_item(needle_index))

    def item_embeds(self, items: list[Item]) -> torch.Tensor:
        """``(len(items), T, D)``: runs of consecutive haystack frames are read from the cache together."""
        return torch.cat([self.insert_embeds(part) if isinstance(part, str) else self.haystack_range(part.start, part.stop)
                          for part in runs(items)])

    def cell_block(self, num_frames: int, depth: float, needle_index: int) -> torch.Tensor:
        """``((num_frames + 1) * T, D)`` visual block of one V-NIAH cell."""
        return self.items_block(needle_cell(num_frames, depth, needle_index))

    def items_block(self, items: list[Item]) -> torch.Tensor:
        """``(len(items) * T, D)`` visual block of a cell's items."""
        return self.item_embeds(items).reshape(-1, self.model.config.hidden_size)

    # ------------------------------------------------------------------ sequence and scoring
    def prompt_embeds(self, block: torch.Tensor, question: str) -> torch.Tensor:
        """``(1, L, D)``: prefix, visual block, question and assistant header, each tokenised alone."""
        pre = self._embed_text(PRE_TEXT)
        return torch.cat([pre, block.unsqueeze(0).to(pre.device, pre.dtype), self._question_embeds(question)],
                         dim=1)  # (1, L, D)

    def cell_key(self, num_frames: int, depth: float, needle_index: int, mode: str = "ppl") -> dict:
        return dict(model=self.fingerprint, haystack=self.haystack.identity, needles=self.needle_set_id,
                    needle=self.needles[needle_index].id, frames=num_frames, depth=f"{depth:.4f}", mode=mode)

    def items_key(self, items: list[Item], question: str, answer: str) -> dict:
        """The store key of any cell: every identity its outcome depends on, content-addressed."""
        return dict(model=self.fingerprint, haystack=self.haystack.identity, needles=self.needle_set_id,
                    distractors=self.distractor_set_id or "", items=encode_items(items),
                    question=cache_key(question), answer=answer, mode="ppl")

    def _embed_text(self, text: str) -> torch.Tensor:
        embed = self.model.get_input_embeddings()
        return embed(self.processor.tokenize(text).to(embed.weight.device)).unsqueeze(0)  # (1, n, D)

    def _text_length(self, question: str, answer: str) -> int:
        return len(self.processor.tokenize(question)) + len(self.processor.tokenize(answer))

    @functools.cached_property
    def _pre_tokens(self) -> int:
        return len(self.processor.tokenize(PRE_TEXT))

    @functools.cached_property
    def _post_tokens(self) -> int:
        return len(self.processor.tokenize(POST_TEXT))

    @functools.cached_property
    def _needle_text_tokens(self) -> int:
        """The most tokens a needle's question and answer take together."""
        return max(self._text_length(n.question, n.answer) for n in self.needles)

    def _cell_tokens(self, images: int) -> int:
        """Tokens of the longest sequence of a cell with ``images`` images: prefix, images, question,
        assistant header and answer."""
        return (self._pre_tokens + self._post_tokens + self._question_answer_tokens()
                + images * self.model.config.tokens_per_frame)

    def cell_tokens(self, num_frames: int) -> int:
        """Tokens of the longest V-NIAH cell with ``num_frames`` haystack frames (and its needle)."""
        return self._cell_tokens(num_frames + 1)

    def _question_answer_tokens(self) -> int:
        """The most tokens a question and answer of this grid take together."""
        return max(self._needle_text_tokens, self._text_tokens)

    def reserve(self, num_frames: int) -> None:
        """Size the one KV cache for the longest cell to come (``num_frames`` haystack frames): it
        is allocated once at that length, so the grid never reallocates it (no growth, no freed
        buffers left in the heap). A cache already allocated smaller grows as needed."""
        self.capacity = max(self.capacity, self.cell_tokens(num_frames))

    def reserve_cell(self, items: list[Item], question: str, answer: str) -> None:
        """:meth:`reserve` for any cell: its images, question and answer."""
        self._text_tokens = max(self._text_tokens, self._text_length(question, answer))
        self.capacity = max(self.capacity, self._cell_tokens(len(items)))

    def _frames_per_chunk(self) -> int:
        """Images per prefill forward: as many whole images as fit a prefill chunk, at least one."""
        return max(1, (self.prefill_chunk_size or DEFAULT_PREFILL_CHUNK) // self.model.config.tokens_per_frame)

    def forward_tokens(self) -> int:
        """The most tokens one forward of the grid appends to the KV cache: a prefill chunk of
        images, or the question with the answer."""
        text = self._question_answer_tokens() + self._post_tokens
        return max(self._frames_per_chunk() * self.model.config.tokens_per_frame, text, self._pre_tokens)

    def _prefill_items(self, cache, items: list[Item]) -> None:
        """Append ``items`` to ``cache``, a prefill chunk of whole images at a time."""
        step = self._frames_per_chunk()
        for first in range(0, len(items), step):
            block = self.item_embeds(items[first:first + step]).reshape(1, -1, self.model.config.hidden_size)
            self.model.prefill(block, chunk_size=self.prefill_chunk_size, past_key_values=cache)

    def _cache_for(self, items: list[Item]):
        """The one shared KV cache, set to ``[system+user prefix | items]`` in place: cropped to the
        items it shares with the previous cell, then only the rest is prefilled. Cells in
        :func:`~longva_plugins.vniah.cells.order_key` order (V-NIAH's
        :func:`~longva_plugins.vniah.grid.cell_order_key`, for one) visit the tree of their item
        lists depth first: every shared prefix -- the haystack before a needle, a needle and the
        frames after it -- is prefilled once per grid."""
        if self._prefix_cache is None:
            pre = self._embed_text(PRE_TEXT)
            # a cache split over ranks also holds one forward's new tokens beside each rank's share
            chunk = self.forward_tokens() if self.model.uses_sharded_kv() else 0
            cache = self.model.new_cache(self.capacity, chunk=chunk)
            self._prefix_cache = self.model.prefill(pre, chunk_size=self.prefill_chunk_size,
                                                    past_key_values=cache).past_key_values
            self._prefix_pre_len, self._held = pre.shape[1], []
        common = 0
        for held, item in zip(self._held, items):
            if held != item:
                break
            common += 1
        crop_to(self._prefix_cache, self._prefix_pre_len + common * self.model.config.tokens_per_frame)
        self._held = list(items[:common])  # true even if the prefill below fails half-way
        self._prefill_items(self._prefix_cache, list(items[common:]))
        self._held = list(items)
        return self._prefix_cache

    def _question_embeds(self, question: str) -> torch.Tensor:
        """``(1, n, D)``: the question and the assistant header, each tokenised alone."""
        return torch.cat([self._embed_text(question), self._embed_text(POST_TEXT)], dim=1)

    @torch.no_grad()
    def score(self, num_frames: int, depth: float, needle_index: int, answer: str | None = None) -> dict:
        """The V-NIAH cell's outcome (from the store when already computed); see :meth:`score_items`.

        Cells scored in :func:`~longva_plugins.vniah.grid.cell_order_key` order (insertion index,
        needle, frames) grow the prefix monotonically, so every haystack frame is prefilled once
        per grid into the prefix, and cells that differ only in their frame count extend the
        previous cell's tail (the ``longva`` adapter sorts V-NIAH requests by
        :func:`~longva_plugins.vniah.cells.order_key`, which shares prefixes as well).
        """
        needle = self.needles[needle_index]
        answer = needle.answer if answer is None else answer
        key = self.cell_key(num_frames, depth, needle_index)
        key["answer"] = answer
        fields = {"frames": num_frames, "depth": depth, "needle": needle.id}
        return self.score_items(needle_cell(num_frames, depth, needle_index), needle.question, answer, key, fields)

    @torch.no_grad()
    def score_items(self, items: list[Item], question: str, answer: str, key: dict | None = None,
                    fields: dict | None = None) -> dict:
        """The outcome of the cell ``[prefix | items | question | header | answer]`` (from the store
        when already computed): correct iff the argmax at every answer position is the answer token.

        With :attr:`reuse_prefix` (default) it runs on the one shared KV cache (:meth:`_cache_for`):
        the question and the answer are appended and scored, and the cache is cropped back to before
        the question in place -- no copy. ``key`` names the cell in the store (default
        :meth:`items_key`); ``fields`` are copied into the record.
        """
        key = key or self.items_key(items, question, answer)
        cached = self.store.get(**key)
        if not _everyone_has(cached is not None, self.model):  # ranks sharing a KV cache decide together
            cached = None
        if cached is not None:
            return cached
        answer_ids = self.processor.tokenize(answer)
        if self.reuse_prefix:
            cache = self._cache_for(items)
            length = cache.get_seq_length()
            try:
                result = self.model.score_continuation(self._question_embeds(question), answer_ids,
                                                       chunk_size=self.prefill_chunk_size, past_key_values=cache)
            finally:
                crop_to(cache, length)
        else:
            prompt = self.prompt_embeds(self.items_block(items), question)
            result = self.model.score_continuation(prompt, answer_ids, chunk_size=self.prefill_chunk_size)
        record = {
            **(fields or {}), "answer": answer,
            "correct": int(result.greedy_match), "nll_mean": result.nll_mean,
            "pred_ids": result.argmax_ids.tolist(), "answer_ids": answer_ids.tolist(),
        }
        self.store.put(record, **key)
        self.scored += 1
        return record

    def release(self) -> None:
        """Drop the shared KV cache (the grid is done)."""
        self._prefix_cache, self._held = None, []


_SCORERS: dict = {}
_LOCK = threading.Lock()


def get_scorer(model, processor, haystack_spec: str, needles_spec: str, cache_dir=None,
               distractors_spec: str | None = None, **kwargs) -> VNIAHScorer:
    """One scorer per (model object, haystack, needle set, distractor set, cache) in this process."""
    from longva_plugins.vniah.haystack import resolve_haystack
    from longva_plugins.vniah.needles import resolve_distractors, resolve_needles

    key = (id(model), haystack_spec, needles_spec, distractors_spec, str(cache_dir), tuple(sorted(kwargs.items())))
    with _LOCK:
        if key not in _SCORERS:
            needle_set_id, needles = resolve_needles(needles_spec)
            distractor_set_id, distractors = (resolve_distractors(distractors_spec, needles) if distractors_spec
                                              else (None, None))
            cache = EmbeddingCache(cache_dir)
            _SCORERS[key] = VNIAHScorer(model, processor, resolve_haystack(haystack_spec), needles, needle_set_id,
                                        cache=cache, distractors=distractors, distractor_set_id=distractor_set_id,
                                        **kwargs)
        return _SCORERS[key]


__all__ = ["POST_TEXT", "PRE_TEXT", "VNIAHScorer", "get_scorer"]
