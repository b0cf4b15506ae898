"""Content-keyed, atomically written stores for V-NIAH: frame embeddings and finished cells.

Embeddings of haystack frames and needles are computed once per (model, preprocessing, haystack,
frame index) and reused by every depth and needle of the grid. Cell outcomes are stored per
(model, haystack, needle, frames, depth, mode) so an interrupted grid resumes where it stopped.
Every file is written to a temporary name in the same folder and moved into place with
``os.replace``: a crash never leaves a partial file, and several processes can share a cache
(they may compute the same entry twice, never corrupt it).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from longva_plugins.fileio import atomic_write_bytes, default_cache_dir


def vniah_cache_dir(root: str | os.PathLike | None = None) -> Path:
    """The V-NIAH cache folder: ``root`` (``LONGVA_VNIAH_CACHE``) or ``<package cache>/vniah``."""
    return Path(root) if root else default_cache_dir() / "vniah"


def cache_key(*parts) -> str:
    """The SHA-256 hex digest of ``parts`` joined by a separator (names every cache entry)."""
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()


#: Bumped whenever the V-NIAH protocol changes (haystack sampling, insertion, scoring): every
#: cached embedding and cell of an older protocol then misses instead of being served.
PROTOCOL_VERSION = 2


def weights_digest(model) -> str:
    """A hash of every tensor of ``model`` (names, dtypes, shapes and bytes, in name order).

    Streams one tensor at a time through BLAKE2b (about 1 GB/s: some seconds for LongVA-7B, once
    per scorer), so changing any single weight -- a decoder layer, the vision tower, a merged
    LoRA -- gives a different digest.
    """
    h = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\x1f".encode())
        if t.device.type != "cpu":
            t = t.cpu()
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def model_fingerprint(model, processor=None) -> str:
    """Identifies everything that determines an embedding or a cell: every weight, the config,
    the dtype, the tokenizer and preprocessing (when ``processor`` is given), the protocol version."""
    h = hashlib.sha256()
    h.update(f"vniah-protocol={PROTOCOL_VERSION}\x1f".encode())
    h.update(json.dumps({k: str(v) for k, v in sorted(model.config.to_dict().items())}, sort_keys=True).encode())
    h.update(str(model.dtype).encode())
    h.update(weights_digest(model).encode())
    if processor is not None:  # LongVAProcessor.fingerprint(): tokenizer and image preprocessing
        h.update(processor.fingerprint().encode())
    return h.hexdigest()[:32]


class EmbeddingCache:
    """Per-frame visual embeddings ``(T, D)`` under ``root/embeddings/``."""

    def __init__(self, root: str | os.PathLike | None = None, memory_bytes: int | None = None):
        self.root = vniah_cache_dir(root)
        self.hits = 0
        self.misses = 0
        # Entries already read in this process (the needles and the frames of recent cells), bounded
        # in bytes ($LONGVA_VNIAH_MEMO_MB, default 256 MiB), oldest dropped first: the haystack's
        # embeddings stay on disk and are loaded per cell range, never all held in memory.
        self._memory: dict[Path, torch.Tensor] = {}
        self._memory_bytes = memory_bytes if memory_bytes is not None else int(
            float(os.environ.get("LONGVA_VNIAH_MEMO_MB", "256")) * 2**20)
        self._held = 0

    def _remember(self, path: Path, tensor: torch.Tensor) -> None:
        size = tensor.numel() * tensor.element_size()
        if size > self._memory_bytes or path in self._memory:
            return
        while self._memory and self._held + size > self._memory_bytes:
            old = self._memory.pop(next(iter(self._memory)))
            self._held -= old.numel() * old.element_size()
        self._memory[path] = tensor
        self._held += size

    def path(self, fingerprint: str, preprocessing: str, source: str, index) -> Path:
        key = cache_key(fingerprint, preprocessing, source, index)
        return self.root / "embeddings" / key[:2] / f"{key}.pt"

    def get_or_compute(self, fingerprint: str, preprocessing: str, source: str, indices: list, compute) -> torch.Tensor:
        """Embeddings ``(len(indices), T, D)``; ``compute(missing_indices) -> (m, T, D)`` fills gaps."""
        paths = [self.path(fingerprint, preprocessing, source, i) for i in indices]
        found: dict[int, torch.Tensor] = {}
        loaded: dict[int, torch.Tensor] = {}
        for pos, path in enumerate(paths):
            if path in self._memory:
                found[pos] = self._memory[path]
            elif path.is_file():
                try:
                    loaded[pos] = torch.load(path, map_location="cpu", weights_only=True)
                except Exception:  # unreadable entry (e.g. foreign file): recompute it
                    pass
        if loaded:  # kept as rows of one block: many small long-lived tensors would pin freed heap between them
            for (pos, _), row in zip(loaded.items(), torch.stack(list(loaded.values()))):
                found[pos] = row
                self._remember(paths[pos], row)
        missing = [pos for pos in range(len(indices)) if pos not in found]
        self.hits += len(found)
        self.misses += len(missing)
        if missing:
            computed = compute([indices[pos] for pos in missing]).cpu()
            for pos, tensor in zip(missing, computed):
                buffer = __import__("io").BytesIO()
                torch.save(tensor.clone(), buffer)
                atomic_write_bytes(paths[pos], buffer.getvalue())
                found[pos] = tensor
                self._remember(paths[pos], tensor)
        return torch.stack([found[pos] for pos in range(len(indices))])


class CellStore:
    """Finished V-NIAH cells as small JSON files under ``root/cells/``."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = vniah_cache_dir(root)

    def path(self, **key) -> Path:
        digest = cache_key(*(f"{k}={key[k]}" for k in sorted(key)))
        return self.root / "cells" / digest[:2] / f"{digest}.json"

    def get(self, **key) -> dict | None:
        path = self.path(**key)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def put(self, record: dict, **key) -> None:
        atomic_write_bytes(self.path(**key), json.dumps(record, sort_keys=True).encode())


__all__ = ["PROTOCOL_VERSION", "CellStore", "EmbeddingCache", "cache_key", "model_fingerprint", "vniah_cache_dir",
           "weights_digest"]
