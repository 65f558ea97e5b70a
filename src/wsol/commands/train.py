"""``wsol train``: train a CAM model from a YAML run config (a file or a shipped paper recipe)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a CAM model from a YAML config (shipped configs reproduce Zhou, Moreaux, Qiu, Gudi)",
        description="Trains the model of a run config (sections task, model, data, train, log; see "
        "wsol.recipes) and writes last.pt / best.pt (with the full run config for `wsol evaluate`), "
        "metrics.csv / metrics.json, run_config.yaml and TensorBoard logs to train.out_dir. "
        "Overrides look like section.key=value, e.g. data.root=/data/CUB_200_2011 train.lr=0.001. "
        "Distributed: torchrun --nproc_per_node N -m wsol train --config ...",
    )
    _add_options(parser)
    # REMAINDER: overrides may come before, between or after the options; run() sorts them out.
    parser.add_argument(
        "overrides", nargs=argparse.REMAINDER, metavar="KEY=VALUE", help="overrides, e.g. data.root=/data/cub"
    )
    parser.set_defaults(func=run)


def _add_options(parser: argparse.ArgumentParser, default: object = None) -> None:
    parser.add_argument("--config", default=default, help="a YAML file or a shipped config's name (--list-configs)")
    parser.add_argument("--out", default=default, help="output folder (= train.out_dir=...)")
    for flag, text in (
        ("--resume", "continue from <out>/last.pt"),
        ("--print-config", "print the checked config and exit"),
        ("--list-configs", "list the shipped configs and exit"),
    ):
        parser.add_argument(flag, action="store_true", default=default if default is not None else False, help=text)


def _split_remainder(args: argparse.Namespace) -> str | None:
    """Parse the options that argparse left among the overrides (``a=b --out X c=d``); return an error or None."""
    rest = list(args.overrides or [])
    if not any(item.startswith("-") for item in rest):
        return None
    parser = argparse.ArgumentParser(prog="wsol train", add_help=False)
    _add_options(parser, default=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*")
    try:
        found, unknown = parser.parse_known_intermixed_args(rest)
    except SystemExit:
        return f"cannot parse {' '.join(rest)!r}"
    if unknown:
        return f"unrecognized arguments: {' '.join(unknown)}"
    for key, value in vars(found).items():
        setattr(args, key, value)
    return None


def _list_configs() -> int:
    from wsol.recipes import list_shipped_configs

    configs = list_shipped_configs()
    width = max((len(n) for n in configs), default=0)
    for name, description in configs.items():
        print(f"{name:<{width}}  {description}")
    print("\nRun one with: wsol train --config NAME data.root=/path/to/dataset [model.weights=FILE] [key=value ...]")
    return 0


def _detection(raw: dict[str, Any], args: argparse.Namespace) -> int:
    if args.out:
        raw.setdefault("train", {})["out_dir"] = str(args.out)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(raw, sort_keys=False), end="")
        return 0
    try:
        from wsol.detection.config import train_from_config as detection_train
    except ImportError as err:
        if err.name not in ("wsol.detection", "wsol.detection.config"):
            raise
        print("wsol train: task 'detection' needs wsol.detection.config, which is not available", file=sys.stderr)
        return 2
    result = detection_train(raw, resume=args.resume)
    if isinstance(result, dict) and os.environ.get("RANK", "0") == "0":
        print(f"outputs in {result.get('out_dir')}")
    return 0


def run(args: argparse.Namespace) -> int:
    from wsol.config import ConfigError

    problem = _split_remainder(args)
    if problem:
        print(f"wsol train: {problem}", file=sys.stderr)
        return 2
    if args.list_configs:
        return _list_configs()
    if not args.config:
        print("wsol train: give --config FILE_OR_NAME (or --list-configs to see the shipped ones)", file=sys.stderr)
        return 2
    try:
        return _run(args)
    except (ConfigError, ValueError) as err:
        print(f"wsol train: {err}", file=sys.stderr)
        return 2
    except FloatingPointError as err:
        print(f"wsol train: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("wsol train: interrupted; run the same command with --resume to continue", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    import yaml

    from wsol.config import dataclass_to_dict
    from wsol.recipes import load_raw_config, load_run_config, train_from_config

    raw = load_raw_config(args.config, args.overrides)
    if raw.get("task") == "detection":
        return _detection(raw, args)
    cfg = load_run_config(raw)
    if args.out:
        cfg.train.out_dir = str(args.out)
    if args.print_config:
        print(yaml.safe_dump(dataclass_to_dict(cfg), sort_keys=False), end="")
        return 0
    out = Path(cfg.train.out_dir)  # created (and checked writable) by the trainer once the data are read
    history = train_from_config(cfg, resume=args.resume)
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return 0
    if history:
        last = history[-1]
        shown = "  ".join(f"{k}={v:.4g}" for k, v in last.items() if isinstance(v, float) and k != "time_s")
        print(f"epoch {last['epoch']}: {shown}")
    print(f"checkpoints {out / 'last.pt'} and {out / 'best.pt'}; metrics {out / 'metrics.csv'}")
    return 0
