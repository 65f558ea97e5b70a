"""``wsol bench detection``: the detection tables of Qiu et al. (Table V) and Gudi et al. 2017 (Table 2) on the CPU."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wsol.commands import output_dir_problem

TARGETS = ("detection",)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="reproduce the papers' detection tables at CPU scale (wsol bench detection)",
        description="detection: (a) R-FCN with few boxed images ± the weakly supervised GWAP/GAP branch (Qiu et al. "
        "Table V) and (b) single-shot SPAM-CAM vs GMP-CAM vs GAP-CAM detectors trained from image labels only "
        "(Gudi et al. 2017 Table 2, mAP and frames per second) on multi-digit MNIST128. Writes "
        "detection_bench.json and detection_bench.md to --out. Full run ≤ 30 min on 2 CPU cores, --quick ≤ 2 min.",
    )
    parser.add_argument("target", choices=TARGETS, help="which bench to run")
    parser.add_argument("--quick", action="store_true", help="smoke run with tiny data (about a minute)")
    parser.add_argument("--out", default=None, help="output folder (default: runs/bench_<target>)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.seed < 0:
        print(f"wsol bench: --seed must be >= 0, got {args.seed}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(f"runs/bench_{args.target}")
    problem = output_dir_problem(out)
    if problem:
        print(f"wsol bench: {problem}", file=sys.stderr)
        return 2
    from wsol.experiments.detection_bench import JSON_NAME, MARKDOWN_NAME, format_markdown, run_detection_bench

    try:
        report = run_detection_bench(out, quick=args.quick, seed=args.seed, log=lambda msg: print(msg, flush=True))
    except ValueError as exc:
        print(f"wsol bench: {exc}", file=sys.stderr)
        return 2
    print()
    print(format_markdown(report))
    print(f"results in {out / JSON_NAME} and {out / MARKDOWN_NAME} ({report['wall_s']:.0f} s)")
    failed = [name for name, t in report["tables"].items() if t.get("status") == "error"]
    if failed:
        print(f"wsol bench: table(s) {', '.join(failed)} failed (see {out / JSON_NAME})", file=sys.stderr)
        return 1
    return 0
