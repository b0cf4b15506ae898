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
import tempfile
from pathlib import Path

import torch

from longva_plugins.models.longva.tiny import default_cache_dir


def _key(*parts) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def model_fingerprint(model) -> str:
    """Identifies the weights that produce visual embeddings and scores (cheap: a few tensors)."""
    h = hashlib.sha256()
    h.update(str(getattr(model.config, "_name_or_path", "")).encode())
    h.update(json.dumps({k: str(v) for k, v in sorted(model.config.to_dict().items())}, sort_keys=True).encode())
    for tensor in (next(model.model.mm_projector.parameters()), model.lm_head.weight, model.model.embed_tokens.weight):
        flat = tensor.detach().float().flatten()
        h.update(flat[:4096].cpu().numpy().tobytes())
        h.update(str(float(flat.sum())).encode())
    h.update(str(model.dtype).encode())
    return h.hexdigest()[:24]


class EmbeddingCache:
    """Per-frame visual embeddings ``(T, D)`` under ``root/embeddings/``."""

    def __init__(self, root: str | os.PathLike | None = None, memory_entries: int = 8192):
        self.root = Path(root) if root else default_cache_dir() / "vniah"
        self.hits = 0
        self.misses = 0
        # Entries already read in this process (the grid revisits the same frames for every
        # depth and needle); bounded, oldest dropped first.
        self._memory: dict[Path, torch.Tensor] = {}
        self._memory_entries = memory_entries

    def _remember(self, path: Path, tensor: torch.Tensor) -> None:
        if len(self._memory) >= self._memory_entries:
            self._memory.pop(next(iter(self._memory)))
        self._memory[path] = tensor

    def path(self, fingerprint: str, preprocessing: str, source: str, index) -> Path:
        key = _key(fingerprint, preprocessing, source, index)
        return self.root / "embeddings" / key[:2] / f"{key}.pt"

    def get_or_compute(self, fingerprint: str, preprocessing: str, source: str, indices: list, compute) -> torch.Tensor:
        """Embeddings ``(len(indices), T, D)``; ``compute(missing_indices) -> (m, T, D)`` fills gaps."""
        paths = [self.path(fingerprint, preprocessing, source, i) for i in indices]
        found: dict[int, torch.Tensor] = {}
        for pos, path in enumerate(paths):
            if path in self._memory:
                found[pos] = self._memory[path]
            elif path.is_file():
                try:
                    found[pos] = torch.load(path, map_location="cpu", weights_only=True)
                    self._remember(path, found[pos])
                except Exception:  # unreadable entry (e.g. foreign file): recompute it
                    pass
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
        self.root = Path(root) if root else default_cache_dir() / "vniah"

    def path(self, **key) -> Path:
        digest = _key(*(f"{k}={key[k]}" for k in sorted(key)))
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


__all__ = ["CellStore", "EmbeddingCache", "atomic_write_bytes", "model_fingerprint"]
