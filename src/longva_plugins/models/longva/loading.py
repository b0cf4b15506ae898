"""Loading released LongVA checkpoints (``lmms-lab/LongVA-7B`` layout) strictly.

transformers' ``from_pretrained`` does the heavy lifting (sharded safetensors and their index,
dtype, ``device_map``); this module adds what the reference lacks: safetensors only (no pickle),
a dtype default that avoids the fp16 "!!!!" overflow, and a hard failure listing the offending
keys when the checkpoint does not match the model, instead of silently random weights.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import PreTrainedModel

from longva_plugins.errors import CheckpointError
from longva_plugins.models.longva.configuration_longva import LongVAConfig

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


def _check_local_files(path: Path) -> None:
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path} has no config.json: is it a LongVA checkpoint folder?")
    has_safetensors = (path / "model.safetensors").is_file() or (path / "model.safetensors.index.json").is_file()
    if not has_safetensors:
        pickles = sorted(p.name for p in path.glob("*.bin"))
        hint = (f" It holds pickle files ({', '.join(pickles)}), which are not loaded for safety: convert them "
                "with `safetensors` (torch.load + safetensors.torch.save_file) first.") if pickles else ""
        raise CheckpointError(f"{path} has no model.safetensors or model.safetensors.index.json.{hint}")


def load_pretrained(cls, pretrained_model_name_or_path, *args, config=None, torch_dtype=None, dtype=None,
                    device_map=None, attn_implementation=None, **kwargs):
    """Load ``cls`` (a :class:`LongVAForCausalLM`) from a local folder or a hub id."""
    source = os.fspath(pretrained_model_name_or_path)
    local = Path(source)
    if local.exists():
        _check_local_files(local)
    if config is None:
        config = LongVAConfig.from_pretrained(source, **{k: kwargs[k] for k in ("revision", "token", "cache_dir") if k in kwargs})
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
    return model


__all__ = ["default_dtype", "load_pretrained", "resolve_dtype"]
