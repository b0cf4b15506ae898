"""``longva-plugins make-mini-bench DIR``: a mini Video-MME and MLVU of synthetic videos, in the real
data layouts, that LongVA-nano can answer (see :mod:`longva_plugins.lmms_eval_plugin.minibench`)."""

from __future__ import annotations


def _run(args) -> int:
    from rich.console import Console

    from longva_plugins.errors import SettingError
    from longva_plugins.lmms_eval_plugin.minibench import make_mini_bench

    if args.videos < 1:
        raise SettingError(f"--videos must be at least 1; got {args.videos}")
    summary = make_mini_bench(args.directory, videos_per_duration=args.videos, seed=args.seed,
                              canonical=args.canonical_options)
    console = Console()
    console.print(f"mini bench in [bold]{args.directory}[/]: {summary['videomme']} Video-MME questions, "
                  f"{summary['mlvu']} MLVU questions")
    console.print("run it with:")
    exports = " ".join(f"{k}={v}" for k, v in summary["env"].items())
    console.print(f"  {exports} \\\n  lmms-eval eval --model longva --model_args pretrained=CHECKPOINT,{summary['model_args']} "
                  "--tasks longva_videomme,longva_videomme_paper,longva_videomme_w_subtitle,longva_mlvu_dev",
                  highlight=False, soft_wrap=True)
    return 0


def register(subparsers) -> None:
    from longva_plugins.lmms_eval_plugin.minibench import BENCH_SEED

    parser = subparsers.add_parser("make-mini-bench",
                                   help="write a mini Video-MME + MLVU of synthetic videos (real layouts) into DIR")
    parser.add_argument("directory")
    parser.add_argument("--videos", type=int, default=8, help="videos per duration (short 64, medium 128, long 256 frames)")
    parser.add_argument("--seed", type=int, default=BENCH_SEED, help=f"seed (default {BENCH_SEED}; training clips use < 1000)")
    parser.add_argument("--canonical-options", action="store_true",
                        help="every colour question lists red, green, blue, yellow in that order (the letter is a "
                             "function of the colour seen: what longva-nano-mc was trained on)")
    parser.set_defaults(func=_run)
