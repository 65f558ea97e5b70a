"""The ``wsol`` command line: every module in :mod:`wsol.commands` contributes one sub-command."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from wsol import __version__, commands


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with one sub-parser per module of :mod:`wsol.commands`."""
    parser = argparse.ArgumentParser(
        prog="wsol", description="Weakly supervised object localization: CAMs, boxes and metrics."
    )
    parser.add_argument("--version", action="version", version=f"wsol {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("wsol: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
