"""The adapter's model_args: every wrong setting named at once, before the model loads."""

from __future__ import annotations

import pytest

from longva_plugins.lmms_eval_plugin.adapter import MODEL_ARGS
from longva_plugins.lmms_eval_plugin.settings import check_settings, parse_bool, stop_token_ids
from longva_plugins.errors import SampleError, SettingError, VideoDecodeError

GOOD = dict(conv_template="qwen_1_5", batch_size=1, max_frames_num=32, max_fps=None, video_decode_backend=None,
            mm_spatial_pool_stride=None, mm_spatial_pool_mode=None, encode_chunk_size=16, prefill_chunk_size=None,
            dtype=None, device=None, device_map=None, allow_length_extrapolation=False, peft=None,
            sequence_parallel=1, attn_implementation=None)


def _check(unknown=None, **changes):
    return check_settings(unknown or {}, known=MODEL_ARGS, **{**GOOD, **changes})


def test_good_settings_parse():
    parsed = _check(max_frames_num="64", prefill_chunk_size=0, max_fps="0.5", allow_length_extrapolation="true")
    assert parsed["max_frames_num"] == 64 and parsed["prefill_chunk_size"] is None
    assert parsed["max_fps"] == 0.5 and parsed["allow_length_extrapolation"] is True


def test_sequence_parallel_divides_the_processes(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert _check(sequence_parallel="2", attn_implementation="longva_sharded_kv")["sequence_parallel"] == 2
    assert _check(sequence_parallel=4)["sequence_parallel"] == 4 and _check()["sequence_parallel"] == 1


def test_a_typo_is_refused_with_the_closest_name():
    with pytest.raises(SettingError) as info:
        _check({"max_frame_num": 128})
    assert "unknown model_arg max_frame_num=128" in str(info.value)
    assert "did you mean max_frames_num" in str(info.value)


def test_arguments_of_the_builtin_adapter_are_accepted():
    _check({"truncate_context": False, "model_name": "llava_qwen"})


@pytest.mark.parametrize("changes,named", [
    ({"video_decode_backend": "decrod"}, "video_decode_backend='decrod'"),
    ({"max_frames_num": 0}, "max_frames_num=0"),
    ({"max_frames_num": "many"}, "max_frames_num='many'"),
    ({"mm_spatial_pool_mode": "avg"}, "mm_spatial_pool_mode='avg'"),
    ({"mm_spatial_pool_stride": 0}, "mm_spatial_pool_stride=0"),
    ({"max_fps": -1}, "max_fps=-1"),
    ({"encode_chunk_size": 0}, "encode_chunk_size=0"),
    ({"conv_template": "vicuna_v1"}, "conv_template='vicuna_v1'"),
    ({"dtype": "float8"}, "torch_dtype='float8'"),
    ({"device": "cuda:7"}, "device='cuda:7'"),
    ({"allow_length_extrapolation": "maybe"}, "allow_length_extrapolation='maybe'"),
    ({"batch_size": "x"}, "batch_size='x'"),
    ({"sequence_parallel": 0}, "sequence_parallel=0"),
    ({"sequence_parallel": 3}, "sequence_parallel=3"),  # 4 processes (WORLD_SIZE below)
    ({"sequence_parallel": 2, "attn_implementation": "sdpa"}, "attn_implementation='sdpa'"),
    ({"sequence_parallel": 2, "device_map": "auto"}, "device_map='auto'"),
])
def test_each_wrong_setting_is_named_with_what_is_allowed(changes, named, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(SettingError) as info:
        _check(**changes)
    assert named in str(info.value) and "allowed:" in str(info.value)


def test_all_problems_are_listed_not_the_first():
    with pytest.raises(SettingError) as info:
        _check({"max_frame_num": 128}, video_decode_backend="decrod", max_frames_num=0, mm_spatial_pool_mode="avg")
    assert len(info.value.problems) == 4
    assert "4 problems" in str(info.value)


def test_setting_and_sample_errors_are_distinct_types():
    assert not issubclass(SettingError, SampleError) and not issubclass(SampleError, SettingError)
    assert issubclass(VideoDecodeError, SampleError)


def test_parse_bool():
    assert parse_bool("True") is True and parse_bool("0") is False and parse_bool("perhaps") is None


def test_stop_ids_include_every_end_id_of_the_generation_config():
    class Config:
        eos_token_id = [151645, 151643]

    class Model:
        generation_config = Config()

    class Processor:
        eos_token_id = 151645

    assert stop_token_ids(Model(), Processor()) == [151645, 151643]
    Config.eos_token_id = 7
    assert stop_token_ids(Model(), Processor()) == [151645, 7]


def test_vniah_cells_satisfy_the_adapter_protocol():
    """The adapter <-> V-NIAH contract is a typed Protocol: a V-NIAH cell is a visual that scores
    itself; a plain path is neither kind."""
    from longva_plugins.lmms_eval_plugin.protocols import EmbedsItself, ScoresItself
    from longva_plugins.lmms_eval_plugin.task_utils.vniah import VNIAHVisual

    cell = VNIAHVisual({"frames": 4, "depth": 0.5, "needle_index": 0}, "/tmp/cell.mp4")
    assert isinstance(cell, ScoresItself) and isinstance(cell, EmbedsItself)
    assert cell.longva_sort_key() == VNIAHVisual({"frames": 4, "depth": 0.5, "needle_index": 0}, "x").longva_sort_key()
    assert not isinstance("/tmp/video.mp4", EmbedsItself)

    class EmbedsOnly:
        def longva_embed(self, model, processor, **options):
            return None

    assert isinstance(EmbedsOnly(), EmbedsItself) and not isinstance(EmbedsOnly(), ScoresItself)
