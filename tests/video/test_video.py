"""Video decoding: reference sampling, backends, streaming containers and bad files."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from longva_plugins.errors import VideoDecodeError
from longva_plugins.hookspecs import hookimpl
from longva_plugins.plugins import get_plugin_manager
from longva_plugins.video import VideoFrames, read_video, sample_indices

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from e2e_media import write_corrupt_video, write_video  # noqa: E402


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("v") / "v.mp4", num_frames=40, fps=10)


def test_uniform_sampling_is_the_reference_linspace():
    assert sample_indices(40, 8) == np.linspace(0, 39, 8, dtype=int).tolist() == [0, 5, 11, 16, 22, 27, 33, 39]
    assert sample_indices(5, 8) == [0, 0, 1, 1, 2, 2, 3, 4]  # more frames than the video: repeats, as the reference
    assert sample_indices(40, None, fps=10, max_fps=2) == [0, 5, 10, 15, 20, 25, 30, 35]
    assert sample_indices(40, 4, fps=10, max_fps=2) == [0, 13, 26, 39]  # fps-capped set larger than N: uniform


def sequential_decode(path, indices) -> np.ndarray:
    """Independent reference: decode every frame in order with plain PyAV, keep ``indices``."""
    import av

    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return np.stack([frames[i] for i in indices])


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_backends_return_the_frames_of_a_sequential_decode(video, backend):
    pytest.importorskip("av" if backend == "pyav" else "decord")
    result = read_video(video, num_frames=8, backend=backend)
    assert isinstance(result, VideoFrames) and result.backend == backend
    assert result.frames.shape == (8, 48, 64, 3) and result.frames.dtype == np.uint8
    assert result.indices == [0, 5, 11, 16, 22, 27, 33, 39]
    assert result.fps == pytest.approx(10) and result.total_frames == 40
    reference = sequential_decode(video, result.indices)
    # same frames: PyAV exactly; decord converts colour with its own code (a few levels apart)
    tolerance = 0 if backend == "pyav" else 3
    assert np.abs(result.frames.astype(int) - reference.astype(int)).mean() <= tolerance


def test_container_without_frame_count_streams(tmp_path):
    import av

    path = write_video(tmp_path / "v.mkv", num_frames=30, fps=10)
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0, "mkv reports no frame count"
    result = read_video(path, num_frames=6, backend="pyav")
    assert result.total_frames == 30 and len(result.frames) == 6


def test_missing_empty_and_corrupt_files_name_the_file(tmp_path):
    with pytest.raises(VideoDecodeError, match="not found: .*nope.mp4"):
        read_video(tmp_path / "nope.mp4", num_frames=4)
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoDecodeError, match="empty.*empty.mp4"):
        read_video(tmp_path / "empty.mp4", num_frames=4)
    bad = write_corrupt_video(tmp_path / "bad.mp4")
    with pytest.raises(VideoDecodeError, match="bad.mp4"):
        read_video(bad, num_frames=4)


def test_zero_frame_video(tmp_path):
    path = write_video(tmp_path / "zero.mp4", num_frames=0)
    with pytest.raises(VideoDecodeError, match="zero.mp4"):
        read_video(path, num_frames=4)


def test_truncated_mp4_is_reported_by_path(tmp_path, video):
    """PyAV writes the mp4 index (moov) at the end: a cut file cannot be opened at all."""
    data = Path(video).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(VideoDecodeError, match="cut.mp4"):
        read_video(cut, num_frames=4)


def test_truncated_streamable_video_decodes_what_is_there(tmp_path):
    """An mkv cut in half still opens; sampling covers the frames that survived."""
    path = write_video(tmp_path / "v.mkv", num_frames=40, fps=10)
    data = path.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    result = read_video(cut, num_frames=4, backend="pyav")
    assert 0 < result.total_frames < 40 and len(result.frames) == 4
    np.testing.assert_array_equal(result.frames, sequential_decode(cut, result.indices))


def test_unknown_backend_name_is_a_clear_error(video):
    with pytest.raises(VideoDecodeError, match="backend 'nosuch'"):
        read_video(video, num_frames=2, backend="nosuch")


def test_third_party_backend_through_the_hook(video):
    class ConstantBackend:
        @hookimpl
        def longva_read_video(self, path, num_frames, max_fps, backend):
            if backend != "constant":
                return None
            n = num_frames or 1
            return VideoFrames(np.zeros((n, 4, 4, 3), np.uint8), list(range(n)), 1.0, n, "constant")

        @hookimpl
        def longva_video_backends(self):
            return {"constant": True}

    pm = get_plugin_manager()
    plugin = ConstantBackend()
    pm.register(plugin, name="test-constant-backend")
    try:
        result = read_video(video, num_frames=3, backend="constant")
        assert result.backend == "constant" and result.frames.shape == (3, 4, 4, 3)
        assert read_video(video, num_frames=3).backend == "pyav", "built-in default unaffected"
    finally:
        pm.unregister(plugin)
