"""``longva-plugins vniah plot RESULTS``: redraw the V-NIAH heatmap from a results folder or file."""

from __future__ import annotations

from pathlib import Path


def _plot(args) -> int:
    from rich.console import Console

    from longva_plugins.vniah.plot import plot_heatmap
    from longva_plugins.vniah.results import find_results_file, load_scores

    source = find_results_file(args.results)
    scores = load_scores(source)
    out = Path(args.output) if args.output else source.parent / "heatmap.png"
    path = plot_heatmap(scores, out, title=args.title, train_frames=args.train_frames)
    average = sum(s["Score"] for s in scores) / len(scores) if scores else 0.0
    Console().print(f"V-NIAH: {len(scores)} cells, average [bold]{average:.3f}[/]; heatmap: {path}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("vniah", help="V-NIAH utilities")
    sub = parser.add_subparsers(dest="vniah_command", metavar="SUBCOMMAND", required=True)
    plot = sub.add_parser("plot", help="redraw the heatmap from all_accuracies.json (or a folder holding one)")
    plot.add_argument("results", help="an lmms-eval --output_path folder, a V-NIAH output folder or all_accuracies.json")
    plot.add_argument("-o", "--output", help="PNG path (default: heatmap.png next to the results)")
    plot.add_argument("--title", default="V-NIAH")
    plot.add_argument("--train-frames", type=float, default=None,
                      help="draw the dotted line at the LM training length in frames (LongVA-7B: 224000/144 = 1555)")
    plot.set_defaults(func=_plot)
