"""``longva-plugins make-tiny-checkpoint DIR``: a random tiny LongVA in the real on-disk layout."""

from __future__ import annotations


def _run(args) -> int:
    from rich.console import Console

    from longva_plugins.testing import make_tiny_checkpoint

    path = make_tiny_checkpoint(args.directory, seed=args.seed, num_shards=args.shards)
    files = sorted(p.name for p in path.iterdir())
    Console().print(f"tiny LongVA checkpoint written to [bold]{path}[/] ({', '.join(files)})")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("make-tiny-checkpoint", help="write a random tiny LongVA checkpoint (tests, demos)")
    parser.add_argument("directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shards", type=int, default=2, help="number of safetensors shards (1 = single file)")
    parser.set_defaults(func=_run)
