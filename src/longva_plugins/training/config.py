"""Training configuration (PEFT-style dataclasses: every field documented, checked together)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from longva_plugins.errors import SettingError

STAGES = ("projector", "full", "lora")
#: PEFT ``target_modules`` default: the language model's linear layers only (a regex over full
#: module names, so the CLIP tower's q/k/v projections are not matched).
DEFAULT_LORA_TARGETS = r".*model\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|o_proj)|mlp\.(gate_proj|up_proj|down_proj))"


@dataclass
class LongVATrainingConfig:
    """What to train and how (the LLaVA-NeXT trainer's knobs)."""

    model_name_or_path: str = field(metadata={"help": "LongVA checkpoint folder or hub id"})
    data_path: str = field(metadata={"help": "LLaVA-format conversation JSON / JSON lines"})
    output_dir: str = field(default="outputs/train", metadata={"help": "where checkpoints and the adapter go"})
    media_root: str | None = field(default=None, metadata={"help": "folder media paths are relative to (default: the data file's)"})
    stage: str = field(default="lora", metadata={"help": "projector (pretrain the projector), full, or lora"})
    learning_rate: float | None = field(default=None, metadata={"help": "base lr (default: 1e-3 projector stage, 2e-4 lora, 1e-5 full)"})
    mm_projector_lr: float | None = field(default=None, metadata={"help": "separate projector lr (None: base lr)"})
    mm_vision_tower_lr: float | None = field(default=2e-6, metadata={"help": "vision tower lr when it is trained"})
    tune_vision_tower: bool = field(default=False, metadata={"help": "train the CLIP tower too (frozen by default; any stage)"})
    lora_r: int = field(default=64, metadata={"help": "LoRA rank (LLaVA: 64)"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha (LLaVA: 16)"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout (LLaVA: 0.05)"})
    lora_target_modules: str | list[str] = field(default=DEFAULT_LORA_TARGETS, metadata={"help": "PEFT target_modules"})
    num_train_epochs: float = field(default=1.0, metadata={"help": "epochs"})
    max_steps: int = field(default=-1, metadata={"help": "stop after this many steps (-1: epochs decide)"})
    per_device_train_batch_size: int = field(default=1, metadata={"help": "batch size"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "accumulation steps"})
    max_frames: int = field(default=8, metadata={"help": "frames sampled per training video"})
    dataloader_num_workers: int = field(default=0, metadata={"help": "processes decoding and preprocessing samples (0: in the trainer's)"})
    group_by_modality_length: bool = field(default=True, metadata={"help": "LLaVA's modality-length-grouped sampler"})
    on_bad_sample: str = field(default="skip", metadata={"help": "skip (and log) or error on bad samples"})
    seed: int = field(default=0, metadata={"help": "random seed"})
    logging_steps: int = field(default=1, metadata={"help": "log every N steps"})

    def __post_init__(self):
        if self.stage not in STAGES:
            raise SettingError(f"stage must be one of {', '.join(STAGES)}; got {self.stage!r}")
        if self.learning_rate is None:
            self.learning_rate = {"projector": 1e-3, "lora": 2e-4, "full": 1e-5}[self.stage]
        if self.learning_rate <= 0:
            raise SettingError(f"learning_rate must be positive; got {self.learning_rate}")
        if self.stage == "lora" and (self.lora_r <= 0 or self.lora_alpha <= 0):
            raise SettingError(f"LoRA needs lora_r > 0 and lora_alpha > 0; got r={self.lora_r}, alpha={self.lora_alpha}")
        if not 0 <= self.lora_dropout < 1:
            raise SettingError(f"lora_dropout must be in [0, 1); got {self.lora_dropout}")
        if self.dataloader_num_workers < 0:
            raise SettingError(f"dataloader_num_workers must be 0 or more; got {self.dataloader_num_workers}")
        if self.on_bad_sample not in ("skip", "error"):
            raise SettingError(f"on_bad_sample must be 'skip' or 'error'; got {self.on_bad_sample!r}")

    @classmethod
    def from_file(cls, path: str) -> "LongVATrainingConfig":
        import json
        from pathlib import Path

        import yaml

        text = Path(path).read_text()
        data = yaml.safe_load(text) if str(path).endswith((".yaml", ".yml")) else json.loads(text)
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise SettingError(f"{path}: unknown keys {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)


__all__ = ["DEFAULT_LORA_TARGETS", "LongVATrainingConfig", "STAGES"]
