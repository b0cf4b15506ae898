"""KV caches for LongVA's long-sequence helpers (:meth:`LongVAForCausalLM.prefill`).

- :class:`GrowingLayer` / :class:`GrowingCache`: K/V in preallocated buffers (appending copies only
  the new tokens, cropping copies nothing), allocated once when the caller knows its longest
  sequence.
- :func:`register_kv_cache`: an attention implementation that needs its own cache (the KV cache
  split over ranks of ``longva_sharded_kv``) registers a factory for its name here, as attention
  functions register in transformers' ``AttentionInterface``; :meth:`LongVAForCausalLM.new_cache`
  looks the model's attention name up. The model package itself knows nothing of ranks.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

#: attention name -> ``factory(config, capacity, chunk) -> Cache``
_KV_CACHES: dict[str, Callable] = {}


def register_kv_cache(attn_implementation: str, factory: Callable) -> None:
    """Make :meth:`LongVAForCausalLM.new_cache` return ``factory(config, capacity, chunk)`` for
    models running ``attn_implementation`` (``capacity``: the longest sequence, ``chunk``: the most
    tokens one forward appends; 0 when unknown)."""
    _KV_CACHES[attn_implementation] = factory


def registered_kv_cache(attn_implementation: str | None) -> Callable | None:
    """The cache factory registered for ``attn_implementation``, or ``None``."""
    return _KV_CACHES.get(attn_implementation) if attn_implementation else None


class GrowingLayer(DynamicLayer):
    """A cache layer whose K/V live in preallocated buffers: appending copies only the new tokens
    (``DynamicLayer`` re-concatenates the whole history every chunk), cropping copies nothing,
    and new tokens can be handed to the attention without being kept, or with only a range of them
    kept (placed after the stored ones, the rest overwritten by the next call) -- what a rank of a
    cache split over ranks needs. ``keys``/``values`` are views of the stored tokens.

    ``capacity``: tokens to allocate at the first write (a caller that knows its longest sequence
    allocates once: no growth, no freed buffers left behind in the heap). Past it the buffers grow
    by a quarter."""

    def __init__(self, capacity: int = 0, **kwargs):
        super().__init__(**kwargs)
        self._buffers: tuple[torch.Tensor, torch.Tensor] | None = None
        self._length = 0
        #: ``(start, count)`` of kept tokens still to move next to the stored ones (see :meth:`put`)
        self._pending: tuple[int, int] | None = None
        self.capacity = capacity

    def _reserve(self, key_states, value_states, needed: int) -> None:
        capacity = 0 if self._buffers is None else self._buffers[0].shape[-2]
        if needed <= capacity:
            return
        if self._buffers is None and self.capacity >= needed:
            capacity = self.capacity
        else:  # at most 25% unused; each token copied ~4 times
            capacity = max(needed, capacity + capacity // 4, 256)
        fresh = tuple(t.new_empty(*t.shape[:-2], capacity, t.shape[-1]) for t in (key_states, value_states))
        if self._length:
            for new, old in zip(fresh, self._buffers):
                new[..., :self._length, :] = old[..., :self._length, :]
        self._buffers = fresh

    def put(self, key_states, value_states, keep: bool | tuple[int, int] = True):
        """Write the new tokens after the stored ones; return the views ``stored + new``.

        ``keep``: ``True`` keeps every new token, ``False`` none, ``(first, stop)`` the new tokens
        ``first .. stop-1`` (what a rank of a split cache stores of a chunk). A kept range that does
        not start at the first new token is moved next to the stored tokens at the layer's next
        write or crop: the attention of this forward still reads the new tokens where they were
        written."""
        self._settle()
        new = key_states.shape[-2]
        first, stop = ((0, new) if keep else (0, 0)) if isinstance(keep, bool) else keep
        if not 0 <= first <= stop <= new:
            raise ValueError(f"keep={keep!r} is not a range of the {new} new tokens")
        end = self._length + new
        self._reserve(key_states, value_states, end)
        keys, values = self._buffers
        keys[..., self._length:end, :] = key_states
        values[..., self._length:end, :] = value_states
        if first == 0:
            self._length += stop
        elif stop > first:
            self._pending = (self._length + first, stop - first)
        self._sync(key_states.device)
        return keys[..., :end, :], values[..., :end, :]

    def _settle(self) -> None:
        """Move a kept range of the last write (see :meth:`put`) next to the stored tokens."""
        if self._pending is None:
            return
        (source, count), self._pending = self._pending, None
        gap = source - self._length
        for buffer in self._buffers:
            moved = buffer[..., source:source + count, :]
            # overlapping ranges (a gap shorter than the range) go through a copy of the range
            buffer[..., self._length:self._length + count, :] = moved if gap >= count else moved.clone()
        self._length += count
        self._sync(self._buffers[0].device)

    def update(self, key_states, value_states, *args, **kwargs):
        return self.put(key_states, value_states, keep=True)

    def keep_first(self, length: int) -> None:
        """Drop the stored tokens from ``length`` on (no copy)."""
        self._settle()
        self._length = max(0, min(self._length, length))
        if self._buffers is not None:
            self._sync(self._buffers[0].device)

    def crop(self, tokens_to_remove: int) -> None:
        """Negative: drop that many tokens (``DynamicLayer``'s convention); otherwise keep that many."""
        self._settle()
        self.keep_first(self._length - abs(tokens_to_remove) if tokens_to_remove < 0 else tokens_to_remove)

    def _sync(self, device) -> None:
        self.device, self.is_initialized = device, True
        self.keys = self._buffers[0][..., :self._length, :]
        self.values = self._buffers[1][..., :self._length, :]

    def get_seq_length(self) -> int:
        self._settle()
        return self._length


class GrowingCache(DynamicCache):
    """A ``DynamicCache`` of :class:`GrowingLayer` layers, each allocated for ``capacity`` tokens
    at its first write (``config`` is accepted for ``DynamicCache``'s signature). For prefill and
    teacher-forced scoring; ``generate`` with beams needs a plain ``DynamicCache``."""

    def __init__(self, capacity: int = 0, config=None):
        super().__init__()
        # DynamicCache.update appends layers made by this (GrowingLayer.update keeps the new tokens)
        self.layer_class_to_replicate = functools.partial(GrowingLayer, capacity=capacity)

    def _layer(self, layer_idx: int) -> GrowingLayer:
        while len(self.layers) <= layer_idx:
            self.layers.append(self.layer_class_to_replicate())
        return self.layers[layer_idx]


__all__ = ["GrowingCache", "GrowingLayer", "register_kv_cache", "registered_kv_cache"]
