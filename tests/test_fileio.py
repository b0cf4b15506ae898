"""The atomic folder write: readers see the old folder or the whole new one, never a partial one."""

from __future__ import annotations

import pytest

from longva_plugins.fileio import atomic_directory


def test_atomic_directory_replaces_on_success_and_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "ckpt"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_directory(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target and not any(tmp.iterdir())
        (tmp / "new.txt").write_text("new")
        assert (target / "old.txt").is_file(), "the old folder stays until the new one is complete"
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "half.txt").write_text("x")
            raise RuntimeError("crash")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"], "no staging folder left behind"
