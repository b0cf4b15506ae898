"""Atomic file writes: the one helper every cache, plot, lock and result file goes through.

A file is written to a uniquely named temporary file in the same folder (so concurrent processes
never share a temporary name) and moved into place with ``os.replace``: readers see either the
old file or the complete new one, never a half-written file, and a crash leaves no partial file.
A write that fails for lack of room or rights (disk full, read-only file system, no permission,
file size limit) raises :class:`~longva_plugins.errors.StorageError` naming the final path; the
old file, if any, is untouched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Iterator


def default_cache_dir() -> Path:
    """Where the package keeps its caches: ``$LONGVA_PLUGINS_CACHE`` or ``~/.cache/longva_plugins``."""
    return Path(os.environ.get("LONGVA_PLUGINS_CACHE", Path.home() / ".cache" / "longva_plugins"))


#: errno values of a write that failed for lack of room or rights (not a bug of the writer).
STORAGE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EDQUOT}


@contextlib.contextmanager
def storage_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn an ``OSError`` of :data:`STORAGE_ERRNOS` raised inside into a :class:`StorageError` naming ``path``."""
    from longva_plugins.errors import StorageError

    try:
        yield
    except StorageError:
        raise
    except OSError as exc:
        if exc.errno in STORAGE_ERRNOS:
            raise StorageError(path, exc) from exc
        raise


def check_writable(folder: str | os.PathLike) -> None:
    """Create ``folder`` if needed and write (then remove) a probe file there: a
    :class:`StorageError` now rather than after hours of work."""
    folder = Path(folder)
    with storage_errors(folder):
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".longva-write-probe.", dir=folder)
        try:
            os.write(fd, b"probe")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, so writers that pick a format by the
    extension work); on success it replaces ``path``, on any error it is removed."""
    path = Path(path)
    with storage_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
        os.close(fd)
    try:
        with storage_errors(path):
            yield Path(tmp)
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a uniquely named empty folder beside ``path``; on success it replaces ``path`` (an old
    folder there is removed first), on any error it is removed: no half-written checkpoint folder."""
    import shutil

    path = Path(path)
    with storage_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        with storage_errors(path):
            yield tmp
            shutil.rmtree(path, ignore_errors=True)
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (flushed to disk before the rename)."""
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


__all__ = ["STORAGE_ERRNOS", "atomic_output", "atomic_write_bytes", "atomic_write_text", "check_writable",
           "default_cache_dir", "storage_errors"]
