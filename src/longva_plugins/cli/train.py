"""``longva-plugins train CONFIG [--KEY VALUE ...]``: a LongVA training run (projector / full / LoRA).

CONFIG is a flat YAML or JSON of :class:`~longva_plugins.training.config.LongVATrainingConfig` and
``transformers.TrainingArguments`` keys; ``--KEY VALUE`` (or ``--set KEY=VALUE``) overrides one.
Under ``torchrun --nproc_per_node N --no-python longva-plugins train CONFIG`` every rank runs it
(data parallel; ``fsdp`` / ``deepspeed`` keys pick those engines).
"""

from __future__ import annotations


def _run(args) -> int:
    from rich.console import Console

    from longva_plugins.training.config import parse_training_config, read_config_file, set_overrides
    from longva_plugins.training.run import train

    data = read_config_file(args.config)
    argv, tokens = set_overrides(args.set or []), iter(args.overrides)
    for token in tokens:  # --set KEY=VALUE may also come among the overrides: in place, the last one wins
        argv += set_overrides([next(tokens, "")]) if token == "--set" else [token]
    config, training_args = parse_training_config(data, argv, where=str(args.config))
    config.check_complete()
    console = Console(stderr=True)
    if training_args.process_index == 0:
        console.print(f"[bold]training[/] stage={config.stage} model={config.model_name_or_path} data={config.data_path} "
                      f"precision={'bf16' if training_args.bf16 else 'fp16' if training_args.fp16 else 'fp32'} "
                      f"world={training_args.world_size}", highlight=False)
    train(config, training_args)
    if training_args.process_index == 0:
        console.print(f"saved to [bold green]{training_args.output_dir}[/]", highlight=False)
    return 0


def register(subparsers) -> None:
    import argparse

    parser = subparsers.add_parser("train", help="train LongVA (projector, full or LoRA) from a YAML/JSON config",
                                   description=__doc__.split("\n\n")[1] if __doc__ else None)
    parser.add_argument("config", help="YAML or JSON with LongVATrainingConfig and TrainingArguments keys")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    parser.add_argument("overrides", nargs=argparse.REMAINDER,
                        help="--KEY VALUE overrides of any config key (HfArgumentParser semantics)")
    parser.set_defaults(func=_run)
