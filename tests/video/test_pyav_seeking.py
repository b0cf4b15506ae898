"""The seeking PyAV reader returns exactly the frames of a full sequential decode.

Videos of several codecs and structures are written in the test (h264 with and without B-frames,
long and short GOPs, mpeg4, vp9 in webm, mjpeg in avi, variable frame rate with a first timestamp
that is not 0, an mkv without frame count, a rotated stream). The reference is an independent
sequential decode with plain PyAV; decord, where installed, must give the same indices.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from longva_plugins.errors import VideoDecodeError
from longva_plugins.video import read_video, sample_indices
from longva_plugins.video.pyav_reader import read_pyav

sys.path.insert(0, str(Path(__file__).parent))
from video_factory import KINDS, write_kind  # noqa: E402

N_FRAMES = 90


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("codecs")
    return {kind: write_kind(folder, kind, num_frames=N_FRAMES) for kind in KINDS}


def sequential(path, indices) -> np.ndarray:
    """Independent reference: every frame decoded in order with plain PyAV."""
    import av

    with av.open(str(path)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(frames) == N_FRAMES
    return np.stack([frames[i] for i in indices])


INDEX_SETS = {
    "uniform8": sample_indices(N_FRAMES, 8),
    "uniform32": sample_indices(N_FRAMES, 32),
    "sparse": [0, 1, 11, 12, 13, 40, 64, 89],
    "unsorted_repeats": [88, 3, 3, 60, 0, 47],
    "one_fps": list(range(0, N_FRAMES, 24)),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("which", sorted(INDEX_SETS))
def test_seeking_reader_equals_a_sequential_decode(videos, kind, which):
    indices = INDEX_SETS[which]
    result = read_pyav(str(videos[kind]), None, None, indices=indices)
    assert result.indices == indices and result.total_frames == N_FRAMES
    assert result.extra["mode"] == "seek", "seeking must not silently fall back on these streams"
    np.testing.assert_array_equal(result.frames, sequential(videos[kind], indices))


@pytest.mark.parametrize("kind", ["h264_gop250", "mpeg4_gop12", "h264_bframes"])
def test_sparse_sampling_skips_decoding(videos, kind):
    """Few frames far apart decode fewer frames than the video has (short GOPs: far fewer)."""
    result = read_pyav(str(videos[kind]), 3, None)
    assert result.indices == [0, 44, 89]
    if KINDS[kind][2]["g"] == "12":
        assert result.extra["seeks"] >= 2 and result.extra["decoded"] < N_FRAMES / 2
    else:  # one keyframe: decoding forward is all there is, and never more than a sequential pass
        assert result.extra["decoded"] <= N_FRAMES


def test_uniform_and_fps_sampling_rules_are_unchanged(videos):
    path = str(videos["h264_bframes"])
    assert read_video(path, num_frames=8).indices == np.linspace(0, N_FRAMES - 1, 8).astype(int).tolist()
    assert read_video(path, max_fps=2).indices == sample_indices(N_FRAMES, None, fps=24, max_fps=2)


@pytest.mark.parametrize("kind", ["h264_bframes", "mpeg4_gop12", "mkv_no_count", "vp9_webm"])
def test_same_indices_as_decord(videos, kind):
    pytest.importorskip("decord")
    ours = read_video(videos[kind], num_frames=16, backend="pyav")
    theirs = read_video(videos[kind], num_frames=16, backend="decord")
    assert ours.indices == theirs.indices and ours.total_frames == theirs.total_frames
    assert np.abs(ours.frames.astype(int) - theirs.frames.astype(int)).mean() <= 3


def test_bad_files_still_name_the_path(tmp_path, videos):
    data = Path(videos["h264_bframes"]).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(VideoDecodeError, match="cut.mp4"):
        read_pyav(str(cut), 4, None)
    junk = tmp_path / "junk.webm"
    junk.write_bytes(b"\x1aE\xdf\xa3" + b"\x00" * 500)
    with pytest.raises(VideoDecodeError, match="junk.webm"):
        read_pyav(str(junk), 4, None)


@pytest.mark.parametrize("kind,skips", [("h264_bframes", True), ("h264_gop250", True), ("h264_no_bframes", False)])
def test_frames_nothing_refers_to_are_not_decoded_unless_wanted(videos, kind, skips):
    """Between a keyframe and a sample, non-reference frames (B-frames) are skipped
    (``skip_frame = NONREF``): fewer frames decoded than every frame up to each sample, and the
    samples -- B-frames among them -- still equal a sequential decode. Without B-frames little can
    be skipped, and never more than everything is decoded."""
    indices = [10, 23, 45, 70, 89]  # presentation order; several are B-frames in a B-frame stream
    result = read_pyav(str(videos[kind]), None, None, indices=indices)
    np.testing.assert_array_equal(result.frames, sequential(videos[kind], indices))
    gop = int(KINDS[kind][2]["g"])
    # an exact decoder that decodes everything on its way: from each sample's keyframe (or from the
    # previous sample, when it lies in the same GOP) up to the sample
    everything, position = 0, -1
    for i in indices:
        start = max(i // gop * gop, position + 1)
        everything += i - start + 1
        position = i
    if skips:
        assert result.extra["decoded"] < 0.9 * everything
    else:
        assert result.extra["decoded"] <= everything
