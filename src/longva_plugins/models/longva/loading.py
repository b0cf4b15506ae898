"""Loading released LongVA checkpoints (``lmms-lab/LongVA-7B`` layout) strictly.

transformers' ``from_pretrained`` does the heavy lifting (sharded safetensors and their index,
dtype, ``device_map``); this module adds what the reference lacks: safetensors only (no pickle),
a dtype default that avoids the fp16 "!!!!" overflow, and a hard failure listing the offending
keys when the checkpoint does not match the model, instead of silently random weights.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from transformers import PreTrainedModel
from transformers.utils import logging

from longva_plugins.errors import CheckpointError
from longva_plugins.models.longva.configuration_longva import VISION_CONFIG_NAME, LongVAConfig

logger = logging.get_logger(__name__)

#: Keys the reference may carry that UniRes never uses.
IGNORED_UNEXPECTED = ("model.image_newline",)


def default_dtype(device_map=None) -> torch.dtype:
    """bfloat16 when the model goes to a CUDA device, float32 otherwise (fp16 overflows in Qwen2)."""
    if not torch.cuda.is_available():
        return torch.float32
    if device_map is None or device_map == "cpu" or (isinstance(device_map, str) and device_map.startswith("cpu")):
        return torch.float32
    return torch.bfloat16


def resolve_dtype(dtype, device_map=None) -> torch.dtype:
    if dtype is None or dtype == "auto_longva":
        return default_dtype(device_map)
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16, "half": torch.float16, "float": torch.float32}
    if dtype == "auto":
        return default_dtype(device_map)
    if isinstance(dtype, str) and dtype.replace("torch.", "") in names:
        return names[dtype.replace("torch.", "")]
    raise CheckpointError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16")


#: JSON files of a checkpoint folder read before the weights (checked when present).
CHECKPOINT_JSON = ("config.json", "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json",
                   "generation_config.json", "vision_tower_config.json", "preprocessor_config.json")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{path} is not JSON text ({exc}); re-download or rewrite it") from exc
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}): "
                              "the file is cut or corrupt; re-download or rewrite it") from exc


def check_checkpoint_json(path: Path) -> None:
    """Every JSON file of :data:`CHECKPOINT_JSON` the folder holds parses (else the error names it)."""
    for name in CHECKPOINT_JSON:
        if (path / name).is_file():
            _read_json(path / name)


def _check_safetensors(path: Path) -> None:
    """Read ``path``'s header and check the file covers every tensor it declares (cheap: no data read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt"):
            pass
    except Exception as exc:  # safetensors' own error types: truncated, bad header, not safetensors
        size = path.stat().st_size
        raise CheckpointError(f"{path} ({size:,} bytes) is truncated or not a safetensors file ({exc}); "
                              "re-download or rewrite it") from exc


def check_checkpoint_files(path: Path) -> None:
    """Everything a local checkpoint folder must hold, checked before anything is loaded, each
    problem naming its file: config.json, readable JSON files, the weights (single file, or every
    shard the index lists), each weight file complete."""
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path} has no config.json: is it a LongVA checkpoint folder?")
    check_checkpoint_json(path)
    single, index = path / "model.safetensors", path / "model.safetensors.index.json"
    if single.is_file():
        files = [single]
    elif index.is_file():
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{index} has no weight_map: the index is corrupt; re-download or rewrite it")
        names = sorted(set(weight_map.values()))
        absent = [n for n in names if not (path / n).is_file()]
        if absent:
            raise CheckpointError(f"{index} lists {len(names)} shards; missing from {path}: {', '.join(absent)} "
                                  "(an interrupted download?)")
        files = [path / n for n in names]
    else:
        pickles = sorted(p.name for p in path.glob("*.bin"))
        hint = (f" It holds pickle files ({', '.join(pickles)}), which are not loaded for safety: convert them "
                "with `safetensors` (torch.load + safetensors.torch.save_file) first.") if pickles else ""
        raise CheckpointError(f"{path} has no model.safetensors or model.safetensors.index.json.{hint}")
    for file in files:
        _check_safetensors(file)


def load_pretrained(cls, pretrained_model_name_or_path, *args, config=None, torch_dtype=None, dtype=None,
                    device_map=None, attn_implementation=None, **kwargs):
    """Load ``cls`` (a :class:`LongVAForCausalLM`) from a local folder or a hub id."""
    source = os.fspath(pretrained_model_name_or_path)
    local = Path(source)
    if local.exists():
        check_checkpoint_files(local)
    hub = {k: kwargs[k] for k in ("revision", "token", "cache_dir") if k in kwargs}
    if config is None:
        _say_why_auto_cannot_claim(source)
        config = LongVAConfig.from_pretrained(source, **hub)
    elif getattr(config, "vision_config", "") is None:  # from AutoConfig: config.json alone was read
        config.resolve_vision_config(_checkpoint_folder(source, VISION_CONFIG_NAME, hub))
    if attn_implementation is not None:
        config._attn_implementation = attn_implementation
    resolved = resolve_dtype(torch_dtype if torch_dtype is not None else dtype, device_map)
    kwargs.pop("use_safetensors", None)
    kwargs.pop("output_loading_info", None)
    kwargs.pop("ignore_mismatched_sizes", None)
    try:
        model, info = PreTrainedModel.from_pretrained.__func__(
            cls,
            source,
            *args,
            config=config,
            dtype=resolved,
            device_map=device_map,
            use_safetensors=True,
            output_loading_info=True,
            # Mismatches are collected and reported below with their keys and shapes.
            ignore_mismatched_sizes=True,
            **kwargs,
        )
    except RuntimeError as exc:
        text = str(exc)
        if "size mismatch" in text or "shape" in text or "mismatched_sizes" in text:
            raise CheckpointError(
                f"{source}: tensor shapes do not match config.json (see the load report above for the keys): {exc}"
            ) from exc
        raise
    except OSError as exc:
        raise CheckpointError(f"{source}: could not read the checkpoint ({exc})") from exc
    except Exception as exc:  # safetensors raises its own error type for corrupt files
        if type(exc).__name__ in {"SafetensorError", "HeaderTooLarge", "HeaderTooSmall"}:
            raise CheckpointError(f"{source}: corrupt safetensors file ({exc}); re-download or rewrite it") from exc
        raise
    missing = sorted(info.get("missing_keys", []))
    unexpected = sorted(k for k in info.get("unexpected_keys", []) if not k.startswith(IGNORED_UNEXPECTED))
    mismatched = info.get("mismatched_keys", [])
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:20])}{' ...' if len(unexpected) > 20 else ''}")
    if mismatched:
        shown = ", ".join(f"{k} checkpoint {tuple(a)} vs model {tuple(b)}" for k, a, b in list(mismatched)[:20])
        problems.append(f"shape mismatches ({len(mismatched)}): {shown}")
    if problems:
        raise CheckpointError(f"{source} does not match the LongVA model described by its config.json: " + "; ".join(problems))
    model.eval()
    model.valid_vocab_size = checkpoint_vocabulary_size(source, hub)
    return model


def _say_why_auto_cannot_claim(source: str) -> None:
    """A LongVA checkpoint typed ``qwen2`` (the hub copy of LongVA-7B) loads through this class, but
    transformers' Auto classes map ``qwen2`` to its own Qwen2 (no vision tower): say so, once."""
    path = Path(source) / "config.json"
    if path.is_file() and _read_json(path).get("model_type") == "qwen2":
        logger.warning_once(
            f"{source}: config.json says model_type 'qwen2'. Loaded as LongVA by this class; transformers' Auto "
            "classes (AutoModelForImageTextToText, AutoModelForCausalLM, pipeline) map 'qwen2' to their own Qwen2, "
            "without the vision tower, so load this checkpoint with LongVAForConditionalGeneration.from_pretrained, "
            "or set model_type to 'llava_qwen' in its config.json (as LongVA-7B-DPO has it) for the Auto classes.")


def _checkpoint_folder(source: str, filename: str, hub: dict):
    """The local folder holding ``filename`` of ``source`` (a folder, or a hub id whose file is
    fetched into the cache); ``None`` when it has no such file."""
    if Path(source).is_dir():
        return source if (Path(source) / filename).is_file() else None
    from transformers.utils import cached_file

    path = cached_file(source, filename, _raise_exceptions_for_missing_entries=False, **hub)
    return None if path is None else str(Path(path).parent)


def checkpoint_vocabulary_size(source: str, hub: dict | None = None) -> int | None:
    """``len(tokenizer)`` of the tokenizer shipped with the checkpoint: the ids a model may predict
    (the embedding matrix has padding rows past it); ``None`` when the checkpoint has no tokenizer."""
    hub = hub or {}
    if _checkpoint_folder(source, "tokenizer_config.json", hub) is None:
        return None
    from transformers import AutoTokenizer

    try:
        return len(AutoTokenizer.from_pretrained(source, **hub))
    except (OSError, ValueError) as exc:  # a tokenizer this environment cannot build: no guard
        logger.warning("%s: the tokenizer could not be loaded (%s); every vocabulary id may be predicted", source, exc)
        return None


__all__ = ["CHECKPOINT_JSON", "check_checkpoint_files", "checkpoint_vocabulary_size", "check_checkpoint_json", "default_dtype", "load_pretrained", "resolve_dtype"]
