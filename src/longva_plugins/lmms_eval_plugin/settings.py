"""The ``longva`` adapter's model_args: checked together, before the model loads.

A wrong setting stops the run with one :class:`~longva_plugins.errors.SettingError` that names every
bad setting, its value and what is allowed (see :mod:`longva_plugins.errors`). Unknown model_args
are refused with the closest known names: a typo such as ``max_frame_num=128`` would otherwise run
silently with the default frame count.
"""

from __future__ import annotations

import difflib

import torch

from longva_plugins.errors import SettingProblems

#: Prompt templates that are LongVA's (ChatML); any other template is refused.
CHATML_TEMPLATES = ("qwen_1_5", "qwen_2", "chatml")
#: model_args of lmms-eval's built-in LongVA adapter that have no effect here, accepted for drop-in use.
ACCEPTED_NOOP_ARGS = ("truncation", "truncate_context", "model_name", "use_cache", "customized_config", "token_strategy")
POOL_MODES = ("average", "max", "bilinear")
DTYPES = ("float32", "fp32", "float", "bfloat16", "bf16", "float16", "fp16", "half", "auto")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def parse_bool(value) -> bool | None:
    """``True``/``False`` for the usual spellings, ``None`` for anything else."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return True if text in _TRUE else False if text in _FALSE else None


def _int_at_least(problems: SettingProblems, name: str, value, minimum: int, optional: bool = False):
    if value is None and optional:
        return None
    try:
        number = int(value)
        if isinstance(value, float) and not value.is_integer():
            raise ValueError
    except (TypeError, ValueError):
        number = None
    if number is None or number < minimum:
        problems.add(name, value, f"an integer >= {minimum}" + (" (or leave it unset)" if optional else ""))
        return None
    return number


def _video_backends() -> dict[str, bool]:
    from longva_plugins.video import available_backends

    return available_backends()


def _check_device(problems: SettingProblems, name: str, value) -> None:
    if value is None or value == "auto":
        return
    try:
        device = torch.device(str(value))
    except (RuntimeError, ValueError):
        problems.add(name, value, "cpu, cuda, cuda:N (or auto for device_map)")
        return
    if device.type == "cuda" and not torch.cuda.is_available():
        problems.add(name, value, "cpu: this machine has no CUDA device")
    elif device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        problems.add(name, value, f"cuda:0..cuda:{torch.cuda.device_count() - 1}")


def check_settings(unknown: dict, known: tuple[str, ...], **values) -> dict:
    """Check the adapter's settings; return the parsed values or raise one ``SettingError``.

    :param unknown: model_args the adapter's signature did not take.
    :param known: the adapter's model_arg names (for "did you mean" suggestions).
    :param values: the named model_args as lmms-eval passed them.
    """
    problems = SettingProblems("--model longva --model_args")
    for name, value in unknown.items():
        if name in ACCEPTED_NOOP_ARGS:
            continue
        close = difflib.get_close_matches(name, known, n=2, cutoff=0.6)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        problems.add_message(f"unknown model_arg {name}={value!r}; {hint}known model_args: {', '.join(known)}")
    parsed: dict = {}
    if values["conv_template"] not in CHATML_TEMPLATES:
        problems.add("conv_template", values["conv_template"],
                     f"{', '.join(CHATML_TEMPLATES)} (LongVA-7B was trained with qwen_1_5, ChatML)")
    batch = values["batch_size"]
    parsed["batch_size"] = 1 if str(batch) == "auto" else _int_at_least(problems, "batch_size", batch, 1)
    parsed["max_frames_num"] = _int_at_least(problems, "max_frames_num", values["max_frames_num"], 1)
    parsed["encode_chunk_size"] = _int_at_least(problems, "encode_chunk_size", values["encode_chunk_size"], 1)
    chunk = values["prefill_chunk_size"]
    parsed["prefill_chunk_size"] = None if chunk in (None, 0, "0", "") else _int_at_least(
        problems, "prefill_chunk_size", chunk, 1)
    parsed["mm_spatial_pool_stride"] = _int_at_least(
        problems, "mm_spatial_pool_stride", values["mm_spatial_pool_stride"], 1, optional=True)
    fps = values["max_fps"]
    parsed["max_fps"] = None
    if fps is not None:
        try:
            parsed["max_fps"] = float(fps)
        except (TypeError, ValueError):
            parsed["max_fps"] = -1.0
        if not parsed["max_fps"] > 0:
            problems.add("max_fps", fps, "a number > 0 (or leave it unset for no cap)")
    mode = values["mm_spatial_pool_mode"]
    if mode is not None and mode not in POOL_MODES:
        problems.add("mm_spatial_pool_mode", mode, ", ".join(POOL_MODES))
    dtype = values["dtype"]
    if dtype is not None and not isinstance(dtype, torch.dtype) and str(dtype).replace("torch.", "") not in DTYPES:
        problems.add("torch_dtype", dtype, "float32, bfloat16, float16 (or auto)")
    _check_device(problems, "device", values["device"])
    _check_device(problems, "device_map", values["device_map"])
    backend = values["video_decode_backend"]
    if backend is not None:
        backends = _video_backends()
        if backend not in backends:
            problems.add("video_decode_backend", backend, ", ".join(backends) or "none installed (pip install av)")
        elif not backends[backend]:
            installed = [name for name, ok in backends.items() if ok]
            problems.add("video_decode_backend", backend,
                         f"an installed backend ({', '.join(installed) or 'none'}); "
                         f"{backend} is not installed (pip install 'longva-plugins[{backend}]')")
    parsed["sequence_parallel"] = _check_sequence_parallel(problems, values)
    flag = parse_bool(values["allow_length_extrapolation"])
    if flag is None:
        problems.add("allow_length_extrapolation", values["allow_length_extrapolation"], "true or false")
    parsed["allow_length_extrapolation"] = bool(flag)
    problems.raise_if_any()
    return parsed


def _check_sequence_parallel(problems, values) -> int:
    """``sequence_parallel``: ranks that share one KV cache; it must divide the world size."""
    import os

    sp = _int_at_least(problems, "sequence_parallel", values["sequence_parallel"], 1)
    if sp is None or sp == 1:
        return 1
    from longva_plugins.attention.sharded_kv import SHARDED_KV

    world = int(os.environ.get("WORLD_SIZE", 1))
    if world % sp:
        problems.add("sequence_parallel", values["sequence_parallel"],
                     f"a divisor of the number of processes ({world}; launch with torchrun --nproc_per_node)")
    if values.get("attn_implementation") not in (None, SHARDED_KV):
        problems.add("attn_implementation", values["attn_implementation"],
                     f"{SHARDED_KV} or unset with sequence_parallel={sp} (the KV cache is split over the ranks)")
    if values["device_map"] == "auto":
        problems.add("device_map", "auto", "unset with sequence_parallel > 1 (each rank holds the whole model)")
    return sp


def stop_token_ids(model, processor) -> list[int]:
    """``<|im_end|>`` and every end id of the checkpoint's generation_config, in that order.

    Qwen2-Instruct's generation_config lists ``<|im_end|>`` and ``<|endoftext|>``; passing only one
    to ``generate`` would override the config and let the other run on.
    """
    ids = [processor.eos_token_id]
    config_ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if config_ids is not None:
        ids += list(config_ids) if isinstance(config_ids, (list, tuple)) else [config_ids]
    return list(dict.fromkeys(int(i) for i in ids if i is not None))


__all__ = ["ACCEPTED_NOOP_ARGS", "CHATML_TEMPLATES", "POOL_MODES", "check_settings", "parse_bool", "stop_token_ids"]
