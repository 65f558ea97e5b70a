"""``wsol list``: the registered poolings, heads and models."""

from __future__ import annotations

import argparse

from wsol.heads import list_heads
from wsol.models import list_models
from wsol.pooling import list_poolings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("list", help="list the registered poolings, heads and models")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print("poolings:", ", ".join(list_poolings()))
    print("heads:   ", ", ".join(list_heads()))
    print("models:  ", ", ".join(list_models()))
    return 0
