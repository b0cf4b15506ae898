"""``longva-plugins train CONFIG``: a LongVA training run (projector / full / LoRA) from YAML or JSON."""

from __future__ import annotations


def _run(args) -> int:
    from rich.console import Console

    from longva_plugins.training.config import LongVATrainingConfig
    from longva_plugins.training.run import train

    config = LongVATrainingConfig.from_file(args.config)
    for override in args.set or []:
        key, _, value = override.partition("=")
        if key not in LongVATrainingConfig.__dataclass_fields__:
            from longva_plugins.errors import SettingError

            raise SettingError(f"--set {override!r}: unknown field {key!r}")
        current = getattr(config, key)
        setattr(config, key, type(current)(value) if current is not None and not isinstance(current, bool)
                else value.lower() in ("1", "true", "yes") if isinstance(current, bool) else value)
    config.__post_init__()
    console = Console()
    console.print(f"[bold]training[/] stage={config.stage} model={config.model_name_or_path} data={config.data_path}")
    train(config)
    console.print(f"saved to [bold green]{config.output_dir}[/]")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train LongVA (projector, full or LoRA) from a YAML/JSON config")
    parser.add_argument("config", help="YAML or JSON with LongVATrainingConfig fields")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field")
    parser.set_defaults(func=_run)
