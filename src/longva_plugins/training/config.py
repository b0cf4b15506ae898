"""Training configuration: LongVA's fields beside every ``transformers.TrainingArguments`` field.

A config file (YAML or JSON) is flat, as LLaVA-NeXT's ``train.py`` command line is: the keys of
:class:`LongVATrainingConfig` and of ``TrainingArguments`` side by side. Command-line overrides
(``--learning_rate 1e-4 --bf16 true``, or ``--set KEY=VALUE``) are parsed as ``HfArgumentParser``
parses them. Where the user sets a key nowhere, LLaVA's defaults apply (:func:`llava_defaults`:
cosine schedule, warmup of 3% of the steps, weight decay 0, bf16 where the device supports it, checkpoints
every 500 steps). An unknown key is refused with the closest valid name.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from longva_plugins.errors import SettingError

STAGES = ("projector", "full", "lora")
BAD_SAMPLE_POLICIES = ("skip", "error")
#: PEFT ``target_modules`` default: the language model's linear layers only (a regex over full
#: module names, so the CLIP tower's q/k/v projections are not matched).
DEFAULT_LORA_TARGETS = r".*model\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|o_proj)|mlp\.(gate_proj|up_proj|down_proj))"
#: LLaVA-NeXT's learning rates per stage (projector pretraining, LoRA, full fine-tune)
STAGE_LEARNING_RATES = {"projector": 1e-3, "lora": 2e-4, "full": 1e-5}


@dataclass
class LongVATrainingConfig:
    """What to train (LongVA's knobs; how to train is ``TrainingArguments``)."""

    model_name_or_path: str | None = field(default=None, metadata={"help": "LongVA checkpoint folder or hub id"})
    data_path: str | None = field(default=None, metadata={"help": "LLaVA-format conversation JSON / JSON lines"})
    media_root: str | None = field(default=None, metadata={"help": "folder media paths are relative to (default: the data file's)"})
    stage: str = field(default="lora", metadata={"help": "projector (pretrain the projector), full, or lora"})
    mm_projector_lr: float | None = field(default=None, metadata={"help": "separate projector lr (None: learning_rate)"})
    mm_vision_tower_lr: float | None = field(default=2e-6, metadata={"help": "vision tower lr when it is trained"})
    tune_vision_tower: bool = field(default=False, metadata={"help": "train the CLIP tower too (frozen by default; any stage)"})
    lora_r: int = field(default=64, metadata={"help": "LoRA rank (LLaVA: 64)"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha (LLaVA: 16)"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout (LLaVA: 0.05)"})
    lora_target_modules: str = field(default=DEFAULT_LORA_TARGETS, metadata={"help": "PEFT target_modules (a regex, or names joined by commas)"})
    load_in_4bit: bool = field(default=False, metadata={
        "help": "QLoRA: the frozen base quantised to 4-bit NF4 (bitsandbytes, CUDA only; stage lora)"})
    max_frames: int = field(default=8, metadata={"help": "frames sampled per training video"})
    model_max_length: int | None = field(default=None, metadata={
        "help": "longest sample in tokens, visual tokens included (default: the checkpoint's max_position_embeddings); "
                "a longer sample is skipped by id or stops the run (on_bad_sample), never truncated"})
    sequence_parallel: int = field(default=1, metadata={
        "help": "ranks that share one sample: its sequence (visual tokens and text) is zigzag-sharded over them "
                "with the ring attention kernels; every group of this many consecutive ranks is one data-parallel "
                "replica (1: off)"})
    group_by_modality_length: bool = field(default=True, metadata={"help": "LLaVA's modality-length-grouped sampler"})
    packing: bool = field(default=False, metadata={
        "help": "first-fit packing of each batch into rows of model_max_length tokens, attention kept inside "
                "each sample (position ids restart per sample; no padding compute)"})
    on_bad_sample: str = field(default="skip", metadata={"help": "skip (log and count) or error on bad samples"})

    def __post_init__(self):
        if self.stage not in STAGES:
            raise SettingError(f"stage={self.stage!r} is not allowed; use one of {', '.join(STAGES)}")
        if self.stage == "lora" and (self.lora_r <= 0 or self.lora_alpha <= 0):
            raise SettingError(f"LoRA needs lora_r > 0 and lora_alpha > 0; got lora_r={self.lora_r}, lora_alpha={self.lora_alpha}")
        if not 0 <= self.lora_dropout < 1:
            raise SettingError(f"lora_dropout={self.lora_dropout} is not allowed; use a value in [0, 1)")
        if self.max_frames < 1:
            raise SettingError(f"max_frames={self.max_frames} is not allowed; use 1 or more")
        if self.model_max_length is not None and self.model_max_length < 1:
            raise SettingError(f"model_max_length={self.model_max_length} is not allowed; use 1 or more (or leave it unset)")
        if self.on_bad_sample not in BAD_SAMPLE_POLICIES:
            raise SettingError(f"on_bad_sample={self.on_bad_sample!r} is not allowed; use one of {', '.join(BAD_SAMPLE_POLICIES)}")
        if self.load_in_4bit and self.stage != "lora":
            raise SettingError(f"load_in_4bit=true quantises a frozen base: stage={self.stage!r} is not allowed; use lora")
        if self.sequence_parallel < 1:
            raise SettingError(f"sequence_parallel={self.sequence_parallel} is not allowed; use 1 (off) or more ranks")
        if self.sequence_parallel > 1 and self.packing:
            raise SettingError("packing with sequence_parallel > 1 is not supported: the ring kernels split one "
                               "sample's sequence; set packing: false")
        for name in ("mm_projector_lr", "mm_vision_tower_lr"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise SettingError(f"{name}={value} is not allowed; use a positive learning rate (or leave it unset)")

    def check_complete(self) -> None:
        """The fields a run needs and a config may leave to the command line."""
        for name in ("model_name_or_path", "data_path"):
            if not getattr(self, name):
                raise SettingError(f"{name} is not set; give it in the config file or as --{name} VALUE")

    def to_dict(self) -> dict:
        return asdict(self)


def _bf16_supported() -> bool:
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def llava_defaults(stage: str = "lora") -> dict:
    """``TrainingArguments`` values of LLaVA-NeXT's scripts, for the keys a user sets nowhere."""
    import torch

    return {
        "output_dir": "outputs/train",
        "per_device_train_batch_size": 1,  # one long video per device (transformers' default is 8)
        "learning_rate": STAGE_LEARNING_RATES.get(stage, STAGE_LEARNING_RATES["lora"]),
        "lr_scheduler_type": "cosine",
        "warmup_steps": 0.03,  # transformers 5: a float below 1 is a ratio of the total steps (LLaVA's warmup_ratio)
        "weight_decay": 0.0,
        "bf16": _bf16_supported(),
        "save_strategy": "steps",
        "save_steps": 500,
        "save_total_limit": 1,
        "logging_steps": 1,
        "report_to": "none",
        "remove_unused_columns": False,  # pixel inputs reach the model's forward
        "use_cpu": not torch.cuda.is_available(),
        "activation_checkpointing_kwargs": {"use_reentrant": False},  # frozen embeddings under LoRA need no input grads
        "seed": 0,
        "include_num_input_tokens_seen": True,  # tokens/s in the progress line (padding included)
    }


def _field_names() -> tuple[set[str], set[str]]:
    from transformers import TrainingArguments

    return {f.name for f in fields(LongVATrainingConfig)}, {f.name for f in fields(TrainingArguments) if f.init}


def _refuse_unknown(keys, where: str) -> None:
    ours, theirs = _field_names()
    known = sorted(ours | theirs)
    for key in keys:
        if key not in ours and key not in theirs:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else " (LongVATrainingConfig and TrainingArguments fields)"
            raise SettingError(f"{where}: unknown key {key!r}{hint}")


def read_config_file(path: str | Path) -> dict:
    """The flat mapping of a YAML or JSON config file (its keys are checked by
    :func:`parse_training_config`)."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SettingError(f"config file {path}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (yaml.YAMLError, ValueError) as exc:
        raise SettingError(f"config file {path} does not parse: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SettingError(f"config file {path} must hold a mapping of keys to values; got {type(data).__name__}")
    return data


ZERO_STAGES = (0, 1, 2, 3)


def check_deepspeed_config(value, require_package: bool = True) -> dict | None:
    """The DeepSpeed config ``deepspeed:`` names (a JSON file or a mapping), checked before the run:
    it parses, names a ZeRO stage transformers' integration runs (0-3), and, with
    ``require_package``, the ``deepspeed`` package is importable. ``None`` when unset."""
    if not value:
        return None
    if isinstance(value, dict):
        conf = value
    else:
        path = Path(str(value))
        try:
            conf = json.loads(path.read_text())
        except OSError as exc:
            raise SettingError(f"deepspeed={value}: cannot read it ({exc.strerror or exc}); see examples/deepspeed/") from exc
        except ValueError as exc:
            raise SettingError(f"deepspeed={value} is not valid JSON: {exc}") from exc
    stage = (conf.get("zero_optimization") or {}).get("stage", 0) if isinstance(conf, dict) else None
    if stage not in ZERO_STAGES:
        raise SettingError(f"deepspeed={value}: zero_optimization.stage={stage!r} is not allowed; use one of "
                           f"{', '.join(map(str, ZERO_STAGES))}")
    if require_package:
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            raise SettingError(f"deepspeed={value}: the deepspeed package is not installed (pip install deepspeed; "
                               "it runs on CUDA devices)")
    return conf


def _parser(defaults: dict):
    from transformers import HfArgumentParser, TrainingArguments

    parser = HfArgumentParser((LongVATrainingConfig, TrainingArguments))
    parser.set_defaults(**defaults)
    for action in parser._actions:  # a value from the config file satisfies a required option
        if action.dest in defaults:
            action.required = False
    return parser


def parse_training_config(data: dict | None = None, argv: list[str] | None = None, where: str = "config"):
    """``(LongVATrainingConfig, TrainingArguments)`` from a flat mapping (a config file's) and
    command-line overrides (``--key value``, ``HfArgumentParser`` semantics), over LLaVA's defaults.

    A wrong setting raises :class:`SettingError` naming it (unknown keys with the closest name;
    values TrainingArguments rejects with its message).
    """
    data = dict(data or {})
    _refuse_unknown(data, where)
    argv = list(argv or [])
    overrides = {}  # --key value / --key=value on the command line (the last one wins, as argparse's)
    for i, arg in enumerate(argv):
        if arg.startswith("--"):
            key, sep, value = arg[2:].partition("=")
            overrides[key.replace("-", "_")] = value if sep else (argv[i + 1] if i + 1 < len(argv) else "")
    _refuse_unknown([key.removeprefix("no_") for key in overrides], "command line")
    stage = overrides.get("stage", data.get("stage", "lora"))
    merged = {**llava_defaults(stage), **data}
    for key in ("activation_checkpointing_kwargs", "gradient_checkpointing_kwargs", "fsdp_config", "lr_scheduler_kwargs",
                "accelerator_config"):
        if isinstance(merged.get(key), dict):  # a mapping in the file: argparse takes it as JSON text
            merged[key] = json.dumps(merged[key])
    if "gradient_checkpointing_kwargs" in data:  # transformers' older name of the same setting
        merged.pop("activation_checkpointing_kwargs", None)
    check_deepspeed_config(merged.get("deepspeed"))
    parser = _parser(merged)

    def refuse(message):  # argparse's own refusal (a value of the wrong type): a setting error, not an exit
        raise SettingError(f"command line: {message}")

    parser.error = refuse
    try:
        *parsed, rest = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
        config, args = parsed[:2]
    except SettingError:
        raise
    except (ValueError, TypeError) as exc:
        raise SettingError(f"{where}: {exc}") from exc
    if rest:
        raise SettingError(f"command line: unexpected arguments {' '.join(rest)}")
    return config, args


def set_overrides(pairs: list[str]) -> list[str]:
    """``--set KEY=VALUE`` pairs as ``--KEY VALUE`` arguments."""
    argv = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SettingError(f"--set {pair!r} is not KEY=VALUE")
        argv += [f"--{key}", value]
    return argv


__all__ = ["DEFAULT_LORA_TARGETS", "LongVATrainingConfig", "check_deepspeed_config", "STAGES", "STAGE_LEARNING_RATES", "llava_defaults",
           "parse_training_config", "read_config_file", "set_overrides"]
