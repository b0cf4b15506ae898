"""LongVA's long-video inference paths, beside the standard forward of :mod:`.modeling_longva`.

A one-hour video at 144 tokens a frame is a sequence transformers' ``generate(**inputs)`` cannot
hold at once. These helpers work on ``inputs_embeds`` and keep memory bounded (the reference's
traps are listed in docs/longva-numerics.md §1, §3):

- :meth:`~LongVideoMixin.embed_multimodal` splices visual blocks at ``IMAGE_TOKEN_INDEX`` (-200)
  placeholders (the adapter encodes frames in chunks with ``encode_frames``);
- :meth:`~LongVideoMixin.prefill` runs the language model in chunks over a KV cache and computes
  logits only at the positions asked for;
- :meth:`~LongVideoMixin.score_continuation` scores an answer span (V-NIAH, lmms-eval's
  loglikelihood);
- :meth:`~LongVideoMixin.new_cache` gives the KV cache the attention registered (split over the
  sequence-parallel ranks for ``longva_sharded_kv``), or a preallocated/dynamic one;
- :meth:`~LongVideoMixin.generate_from_embeds` prefills a long prompt in chunks, then generates.

:class:`~.modeling_longva.LongVAForConditionalGeneration` inherits them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache

from longva_plugins.constants import IMAGE_TOKEN_INDEX
from longva_plugins.errors import InputMismatchError


@dataclass
class PrefillOutput:
    """Result of :meth:`LongVAForConditionalGeneration.prefill`.

    Attributes:
        past_key_values: the KV cache after the whole sequence.
        logits: float32 ``(len(positions), V)`` at the requested positions.
        positions: the positions the logits rows belong to.
    """

    past_key_values: DynamicCache
    logits: torch.Tensor
    positions: list[int]


@dataclass
class ScoreOutput:
    """Teacher-forced scoring of a continuation (see :meth:`LongVAForConditionalGeneration.score_continuation`).

    Attributes:
        span_logits: float32 ``(n, V)``: row ``i`` predicts continuation token ``i``.
        token_logprobs: ``(n,)`` log-probabilities of the continuation tokens.
        argmax_ids: ``(n,)`` greedy predictions (restricted to the valid vocabulary).
        nll_sum / nll_mean: negative log-likelihood of the continuation.
        greedy_match: every continuation token is the greedy argmax (V-NIAH's criterion).
    """

    span_logits: torch.Tensor
    token_logprobs: torch.Tensor
    argmax_ids: torch.Tensor
    nll_sum: float
    nll_mean: float
    greedy_match: bool


class LongVideoMixin:
    """Long-video inference on ``inputs_embeds`` (mixed into the LongVA model class)."""

    # ------------------------------------------------------------------ sequence assembly
    def embed_multimodal(self, input_ids: torch.Tensor, visual_features: list[torch.Tensor]) -> torch.Tensor:
        """Replace each ``IMAGE_TOKEN_INDEX`` in ``input_ids`` by the next visual block.

        Args:
            input_ids: ``(L,)`` or ``(1, L)`` ids with ``-200`` placeholders.
            visual_features: one ``(n_i, D)`` block per placeholder, in order.

        Returns:
            ``(1, L - k + sum n_i, D)`` input embeddings.
        """
        ids = input_ids.reshape(-1)
        positions = (ids == IMAGE_TOKEN_INDEX).nonzero().flatten().tolist()
        if len(positions) != len(visual_features):
            raise InputMismatchError(
                f"visual placeholders: {len(positions)}, visual inputs: {len(visual_features)}; "
                "put one <image> in the prompt per image or video"
            )
        embed = self.get_input_embeddings()
        pieces: list[torch.Tensor] = []
        start = 0
        for pos, block in zip(positions + [len(ids)], list(visual_features) + [None]):
            text = ids[start:pos]
            if text.numel():
                pieces.append(embed(text.to(embed.weight.device)))
            if block is not None:
                pieces.append(block.to(embed.weight.device, embed.weight.dtype))
            start = pos + 1
        return torch.cat(pieces, dim=0).unsqueeze(0)  # (1, L', D)

    # ------------------------------------------------------------------ long-sequence forward
    def check_length(self, length: int) -> None:
        """Raise :class:`ContextLengthError` when ``length`` exceeds the model's positions."""
        from longva_plugins.errors import ContextLengthError

        limit = getattr(self.config, "max_position_embeddings", None)
        if getattr(self, "allow_length_extrapolation", False) or limit is None:
            return
        if length > limit:
            raise ContextLengthError(
                f"sequence of {length} tokens exceeds max_position_embeddings={limit} of this model; "
                f"lower max_frames_num (each frame costs {self.config.tokens_per_frame} tokens) or set "
                "allow_length_extrapolation=True to run past it deliberately"
            )

    def uses_sharded_kv(self) -> bool:
        """Whether the model's attention keeps its own KV cache (one registered with
        :func:`~.cache_longva.register_kv_cache`: ``longva_sharded_kv``, the cache split over ranks)."""
        from longva_plugins.models.longva.cache_longva import registered_kv_cache

        return registered_kv_cache(getattr(self.config, "_attn_implementation", None)) is not None

    def new_cache(self, capacity: int = 0, chunk: int = 0) -> DynamicCache:
        """An empty KV cache for :meth:`prefill`: the one the model's attention registered
        (``longva_sharded_kv``: a ``ShardedKVCache`` over the sequence-parallel group, each rank
        storing its share), else a ``DynamicCache``.

        ``capacity``: the longest sequence the cache will hold, when the caller knows it (the
        V-NIAH grid's longest cell): every layer is then allocated once at that length
        (:class:`~.cache_longva.GrowingCache`), so growing and cropping the cache never reallocates it.
        ``chunk``: the most tokens one forward appends (the prefill chunk); a cache split over ranks
        sizes each rank's buffers for its share plus one chunk with it."""
        from longva_plugins.models.longva.cache_longva import GrowingCache, registered_kv_cache

        factory = registered_kv_cache(getattr(self.config, "_attn_implementation", None))
        if factory is not None:
            return factory(self.config, capacity, chunk)
        if capacity > 0:
            return GrowingCache(capacity=capacity, config=self.config)
        return DynamicCache(config=self.config)

    @torch.no_grad()
    def prefill(self, inputs_embeds: torch.Tensor, chunk_size: int | None = None,
                logits_positions: list[int] | None = None,
                past_key_values: DynamicCache | None = None) -> PrefillOutput:
        """Run the LM over ``inputs_embeds`` (1, L, D) in chunks, filling a KV cache.

        Logits (float32) are computed only at ``logits_positions`` (default: the last position),
        so memory is O(L * D) rather than O(L * V).
        """
        if inputs_embeds.dim() != 3 or inputs_embeds.shape[0] != 1:
            raise InputMismatchError(f"inputs_embeds must be (1, L, D); got {tuple(inputs_embeds.shape)}")
        length = inputs_embeds.shape[1]
        cache = past_key_values if past_key_values is not None else self.new_cache()
        offset = cache.get_seq_length()
        self.check_length(offset + length)
        positions = list(logits_positions) if logits_positions is not None else [length - 1]
        for p in positions:
            if not 0 <= p < length:
                raise InputMismatchError(f"logits position {p} outside the sequence of length {length}")
        chunk = chunk_size or max(length, 1)
        wanted = torch.tensor(positions, dtype=torch.long)
        rows: list[torch.Tensor] = []
        order: list[torch.Tensor] = []
        for start in range(0, length, chunk):
            end = min(start + chunk, length)
            piece = inputs_embeds[:, start:end].to(self.model.embed_tokens.weight.device)
            cache_position = torch.arange(offset + start, offset + end, device=piece.device)
            hidden = self.model(
                inputs_embeds=piece,
                past_key_values=cache,
                use_cache=True,
                cache_position=cache_position,
                position_ids=cache_position.unsqueeze(0),
            ).last_hidden_state  # (1, end-start, D)
            in_chunk = ((wanted >= start) & (wanted < end)).nonzero().flatten()
            if in_chunk.numel():
                local = (wanted[in_chunk] - start).to(hidden.device)
                rows.append(self.lm_head(hidden[0, local]).float())  # (k, V)
                order.append(in_chunk)
        logits = torch.cat(rows)[torch.argsort(torch.cat(order))] if rows else torch.empty(0, self.config.vocab_size)
        return PrefillOutput(past_key_values=cache, logits=logits, positions=positions)

    @torch.no_grad()
    def score_continuation(self, prefix_embeds: torch.Tensor, continuation_ids: torch.Tensor,
                           chunk_size: int | None = None, past_key_values: DynamicCache | None = None) -> ScoreOutput:
        """Teacher-forced scoring of ``continuation_ids`` after ``prefix_embeds`` (1, P, D).

        One forward pass over prefix + continuation; logits only at positions P-1 .. P+n-2
        (the rows that predict the continuation). This is the V-NIAH "perplexity based" check
        and lmms-eval's loglikelihood. ``past_key_values`` holds an earlier part of the sequence
        already run (``prefix_embeds`` then continues it); it is extended in place.
        """
        cont = continuation_ids.reshape(-1)
        if cont.numel() == 0:
            raise InputMismatchError("continuation is empty: nothing to score")
        cont_embeds = self.get_input_embeddings()(cont.to(self.model.embed_tokens.weight.device)).unsqueeze(0)
        full = torch.cat([prefix_embeds.to(cont_embeds.device, cont_embeds.dtype), cont_embeds], dim=1)
        p = prefix_embeds.shape[1]
        positions = list(range(p - 1, p - 1 + cont.numel()))
        logits = self.prefill(full, chunk_size=chunk_size, logits_positions=positions,
                              past_key_values=past_key_values).logits  # (n, V)
        logprobs = torch.log_softmax(logits, dim=-1)
        target = cont.to(logits.device)
        token_logprobs = logprobs.gather(-1, target[:, None]).squeeze(-1)
        argmax_ids = self.masked_argmax(logits)
        nll_sum = float(-token_logprobs.sum())
        return ScoreOutput(
            span_logits=logits,
            token_logprobs=token_logprobs,
            argmax_ids=argmax_ids,
            nll_sum=nll_sum,
            nll_mean=nll_sum / cont.numel(),
            greedy_match=bool((argmax_ids == target).all()),
        )

    @torch.no_grad()
    def generate_from_embeds(self, inputs_embeds: torch.Tensor, max_new_tokens: int = 128,
                             prefill_chunk_size: int | None = None, **generation_kwargs) -> torch.Tensor:
        """Generate after ``inputs_embeds`` (1, L, D) with transformers' ``generate``.

        With ``prefill_chunk_size``, the prompt except its last position is first prefilled in
        chunks (bounded memory for long videos); ``generate`` then continues from that cache.
        Ids at or above ``valid_vocab_size`` are never produced. Returns the new ids ``(1, n)``.
        """
        processors = self.vocabulary_processors(generation_kwargs.pop("logits_processor", None))
        length = inputs_embeds.shape[1]
        self.check_length(length + max_new_tokens)
        embeds = inputs_embeds.to(self.model.embed_tokens.weight.device, self.dtype)
        attention = torch.ones(1, length, dtype=torch.long, device=embeds.device)
        if (prefill_chunk_size and length > prefill_chunk_size) or (self.uses_sharded_kv() and length > 1):
            # (a KV cache split over ranks must be the one ``generate`` continues: never its own)
            cache = self.prefill(embeds[:, :-1], chunk_size=prefill_chunk_size).past_key_values
            generation_kwargs["past_key_values"] = cache
        return self.generate(
            inputs_embeds=embeds,
            attention_mask=attention,
            max_new_tokens=max_new_tokens,
            logits_processor=processors,
            **generation_kwargs,
        )


__all__ = ["LongVideoMixin", "PrefillOutput", "ScoreOutput"]
