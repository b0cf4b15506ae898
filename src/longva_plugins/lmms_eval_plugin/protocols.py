"""The contract between the ``longva`` adapter and visuals that encode or score themselves.

lmms-eval hands the adapter whatever a task's ``doc_to_visual`` returns. Besides paths, images and
frame arrays, a visual may carry its own methods (V-NIAH's cells do: their haystack embeddings are
cached and their cells share one KV cache); the adapter checks these protocols with ``isinstance``
(``runtime_checkable``: the methods must be there), and a task's visual class declares them by
subclassing (static type checkers then hold it to the signatures).
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import torch


@runtime_checkable
class EmbedsItself(Protocol):
    """A visual that computes its own embedding block (one ``<image>`` placeholder)."""

    def longva_embed(self, model, processor, **options: Any) -> torch.Tensor:
        """``(n, D)`` visual tokens in the model's width; ``options``: the adapter's
        ``prefill_chunk_size`` / ``encode_chunk_size`` (``None``: the visual's defaults)."""
        ...


@runtime_checkable
class ScoresItself(EmbedsItself, Protocol):
    """A visual that scores a continuation itself (``loglikelihood`` requests), planned and ordered
    by the adapter: ``longva_plan`` of its class is called once with every such visual of a run
    before the first is scored, and requests run sorted by ``longva_sort_key``."""

    def longva_loglikelihood(self, model, processor, continuation: str, **options: Any) -> tuple[float, bool]:
        """``(mean negative log-likelihood, continuation is the greedy argmax)``."""
        ...

    def longva_sort_key(self) -> tuple:
        """Requests sorted by this key share work best (V-NIAH: insertion index first)."""
        ...

    @staticmethod
    def longva_plan(model, processor, visuals: Sequence["ScoresItself"], **options: Any) -> None:
        """Prepare for ``visuals`` (V-NIAH sizes its KV cache for the longest cell)."""
        ...


__all__ = ["EmbedsItself", "ScoresItself"]
