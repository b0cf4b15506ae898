"""``longva-plugins merge CHECKPOINT TRAINED OUT``: fold a training run's output (a LoRA adapter,
projector-stage weights or a full model) into a checkpoint in the reference layout."""

from __future__ import annotations


def _run(args) -> int:
    from rich.console import Console

    from longva_plugins.training.merge import merge

    out = merge(args.checkpoint, args.trained, args.out)
    Console(stderr=True).print(f"merged checkpoint written to [bold green]{out}[/]", highlight=False)
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("merge", help="fold a LoRA adapter / projector / full training output into a checkpoint")
    parser.add_argument("checkpoint", help="the base checkpoint folder the run trained from")
    parser.add_argument("trained", help="the run's output_dir (adapter_config.json, mm_projector.safetensors or model*.safetensors)")
    parser.add_argument("out", help="the merged checkpoint folder to write (reference layout)")
    parser.set_defaults(func=_run)
