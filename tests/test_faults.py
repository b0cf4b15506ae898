"""Broken files name themselves; writes that fail for lack of room or rights stop cleanly (issue 22)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from longva_plugins.errors import CheckpointError, DataError, SettingError, StorageError
from longva_plugins.fileio import atomic_output, atomic_write_bytes, atomic_write_text, check_writable


# --------------------------------------------------------------------------- atomic writes
def test_a_failed_write_raises_storage_error_naming_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    target = tmp_path / "result.json"
    atomic_write_text(target, '{"old": 1}')

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(StorageError) as info:
        atomic_write_text(target, '{"new": 2}')
    assert str(target) in str(info.value) and "disk is full" in str(info.value)
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC
    assert json.loads(target.read_text()) == {"old": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"], "no temporary file left"


def test_other_os_errors_are_not_disguised(tmp_path):
    with pytest.raises(IsADirectoryError):
        with atomic_output(tmp_path / "x.bin") as tmp:
            raise IsADirectoryError(errno.EISDIR, "a bug of the writer", str(tmp))


def test_check_writable_names_the_folder(tmp_path):
    check_writable(tmp_path / "new" / "folder")
    assert (tmp_path / "new" / "folder").is_dir() and not list((tmp_path / "new" / "folder").iterdir())
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError):  # a file where a folder should be: not a storage error, a setting one upstream
        check_writable(blocker / "sub")


_WRITER = """
import sys, time
from longva_plugins.fileio import atomic_write_bytes
path, i = sys.argv[1], 0
while True:
    i += 1
    atomic_write_bytes(path, (str(i) * 200_000).encode()[:2_000_000] + b"|end")
"""


def test_sigkill_during_atomic_writes_never_leaves_a_partial_file(tmp_path):
    target = tmp_path / "entry.bin"
    for delay in (0.3, 0.55, 0.8):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)])
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        data = target.read_bytes()
        assert data.endswith(b"|end"), "a reader saw a half-written file"


# --------------------------------------------------------------------------- results file (compat workaround 6)
class _Config:
    model_name_sanitized = "longva"


class _Tracker:
    def __init__(self, out):
        self.output_path = str(out)
        self.general_config_tracker = _Config()


def test_a_results_file_lmms_eval_failed_to_write_is_removed_and_stops_the_run(tmp_path, monkeypatch):
    from longva_plugins.lmms_eval_plugin.compat import results_file

    recorded = []
    monkeypatch.setattr(results_file, "stop_run", recorded.append)
    folder = tmp_path / "longva"
    folder.mkdir()
    (folder / "2026-12-02T10-00-00_results.json").write_text('{"results": {"vniah": ')  # cut by a full disk
    results_file._check_results_file(_Tracker(tmp_path), "2026-12-02T10:00:00")
    assert not (folder / "2026-12-02T10-00-00_results.json").exists()
    assert len(recorded) == 1 and isinstance(recorded[0], StorageError)
    assert "2026-12-02T10-00-00_results.json" in str(recorded[0])
    (folder / "2026-12-02T11-00-00_results.json").write_text('{"results": {}}')
    results_file._check_results_file(_Tracker(tmp_path), "2026-12-02T11:00:00")
    assert len(recorded) == 1, "a complete results file is left alone"


def test_the_results_writer_wrapper_is_installed_once():
    from lmms_eval.loggers.evaluation_tracker import EvaluationTracker

    from longva_plugins.lmms_eval_plugin import compat

    from longva_plugins.lmms_eval_plugin.compat._common import MARK

    compat.patch_results_writer()
    assert getattr(EvaluationTracker.save_results_aggregated, MARK, False)
    assert compat.patch_results_writer() is False


def test_storage_errors_end_a_cli_run_with_status_3_and_the_path_last():
    code = ("import sys; sys.argv = ['lmms-eval']; from longva_plugins.lmms_eval_plugin.compat import stop_run; "
            "from longva_plugins.errors import StorageError; import errno; "
            "stop_run(StorageError('/data/cache/x.pt', OSError(errno.ENOSPC, 'No space left on device')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3
    last = proc.stderr.strip().splitlines()[-1]
    assert "cannot write /data/cache/x.pt" in last and "disk is full" in last and "rerun" in last


def test_the_output_path_is_checked_before_the_first_sample(tmp_path, monkeypatch):
    from longva_plugins.lmms_eval_plugin import compat
    from longva_plugins.lmms_eval_plugin.compat import results_file

    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setattr(results_file, "is_lmms_eval_cli", lambda: True)
    monkeypatch.setattr(sys, "argv", ["lmms-eval", "eval", "--output_path", str(tmp_path / "ok")])
    compat.check_output_path()
    monkeypatch.setattr(sys, "argv", ["lmms-eval", "eval", f"--output_path={tmp_path}/ro"])

    def read_only(folder):
        raise StorageError(folder, OSError(errno.EROFS, "Read-only file system"))

    monkeypatch.setattr("longva_plugins.fileio.check_writable", read_only)
    with pytest.raises(SettingError, match=r"--output_path=.*/ro: cannot write .*read-only"):
        compat.check_output_path()


# --------------------------------------------------------------------------- broken checkpoints
@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    from longva_plugins.testing import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", seed=0, num_shards=2)


def _copy(sharded, tmp_path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(sharded, target)
    return target


@pytest.mark.parametrize("where", ["head", "tail"])
def test_a_truncated_shard_is_named(sharded, tmp_path, where):
    from longva_plugins.models.longva import LongVAForCausalLM

    target = _copy(sharded, tmp_path)
    shards = sorted(target.glob("model-*.safetensors"))
    shard = shards[0] if where == "head" else shards[-1]
    size = shard.stat().st_size
    with open(shard, "r+b") as handle:
        handle.truncate(size // 2 if where == "head" else size - 7)
    with pytest.raises(CheckpointError, match=rf"{shard.name} .*truncated"):
        LongVAForCausalLM.from_pretrained(target)


def test_a_shard_listed_in_the_index_but_missing_is_named(sharded, tmp_path):
    from longva_plugins.models.longva import LongVAForCausalLM

    target = _copy(sharded, tmp_path)
    shard = sorted(target.glob("model-*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(CheckpointError, match=rf"model.safetensors.index.json lists .*missing.*{shard.name}"):
        LongVAForCausalLM.from_pretrained(target)


@pytest.mark.parametrize("name", ["config.json", "model.safetensors.index.json", "tokenizer.json"])
def test_a_json_file_that_is_not_json_is_named(sharded, tmp_path, name):
    from longva_plugins.models.longva import LongVAForCausalLM, LongVAProcessor

    target = _copy(sharded, tmp_path)
    text = (target / name).read_text()
    (target / name).write_text(text[: len(text) // 2])  # cut mid-file
    load = LongVAProcessor.from_pretrained if name == "tokenizer.json" else LongVAForCausalLM.from_pretrained
    with pytest.raises(CheckpointError, match=rf"{name} is not valid JSON .*line \d+, column \d+"):
        load(target)


# --------------------------------------------------------------------------- broken data
def test_a_needle_folder_listing_a_missing_image_is_a_setting_error_naming_it(tmp_path):
    from PIL import Image

    from longva_plugins.vniah.needles import load_needle_folder

    (tmp_path / "images").mkdir()
    Image.new("RGB", (40, 40), "red").save(tmp_path / "images" / "a.png")
    rows = [{"path": "a.png", "prompt": "q?", "answer": "x"}, {"path": "gone.png", "prompt": "q?", "answer": "y"}]
    (tmp_path / "dataset.json").write_text(json.dumps(rows))
    with pytest.raises(DataError, match=r"needle 1: .*'gone.png'.*No such file"):
        load_needle_folder(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps(rows)[:25])
    with pytest.raises(DataError, match=r"dataset.json is not valid JSON"):
        load_needle_folder(tmp_path)


def test_a_videomme_parquet_missing_a_column_is_a_setting_error_naming_it(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from longva_plugins.lmms_eval_plugin.task_utils.videomme import COLUMNS, load_docs

    row = {c: "x" for c in COLUMNS if c != "task_type"}
    row["options"] = ["A. a", "B. b", "C. c", "D. d"]
    pq.write_table(pa.Table.from_pylist([row]), tmp_path / "test.parquet")
    monkeypatch.setenv("LONGVA_VIDEOMME_ANNOTATIONS", str(tmp_path / "test.parquet"))
    with pytest.raises(DataError, match="task_type"):
        load_docs("longva_videomme")
