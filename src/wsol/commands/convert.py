"""``wsol convert``: read a dataset with any registered reader and write it in the standard metadata layout.

    wsol convert --dataset cub --root CUB_200_2011 --split test --out metadata/CUB/test
    wsol convert --dataset folder --root my_photos --split val --out meta/val --option read_sizes=true

``--option key=value`` (repeatable) passes keyword arguments to the reader; ``true`` / ``false`` become
booleans and ``none`` becomes ``None``, everything else stays a string (paths, names).

Exit codes: 0 every item written; 1 some item was reported (on stderr, one line each, naming the file, line
and image id) — the others are written — or nothing could be written; 2 unusable arguments (unknown dataset,
missing folder or file, bad option).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

PROG = "wsol convert"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="write a dataset (CUB, ILSVRC, folders, ...) in the standard metadata layout (Choe et al. 2020)",
        description="Reads split SPLIT of the dataset at ROOT with reader DATASET and writes image_ids.txt, "
        "class_labels.txt, image_sizes.txt, localization.txt and class_names.txt to OUT. Bad items are reported "
        "on stderr and left out (exit code 1).",
    )
    parser.add_argument("--dataset", required=True, help="reader name (cub, ilsvrc, folder, standard, ...)")
    parser.add_argument("--root", required=True, help="dataset folder")
    parser.add_argument("--split", required=True, help="split to read (e.g. train, val, test, all)")
    parser.add_argument("--out", required=True, help="output folder: the split's metadata folder")
    parser.add_argument(
        "--option", "-o", action="append", default=[], metavar="KEY=VALUE", help="reader keyword argument (repeat)"
    )
    parser.add_argument("--mask-root", help="write mask paths relative to this folder (default: the dataset root)")
    parser.add_argument(
        "--no-image-sizes", action="store_true", help="do not write image_sizes.txt (not allowed with boxes)"
    )
    parser.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def parse_options(items: list[str]) -> dict[str, Any]:
    """``["a=1", "flag=true"]`` → ``{"a": "1", "flag": True}`` (``-`` in keys becomes ``_``).

    Raises:
        ValueError: an item without ``=`` or with an empty or repeated key.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key.isidentifier():
            raise ValueError(f"--option {item!r} must look like key=value")
        if key in out:
            raise ValueError(f"--option {key} given twice")
        lowered = raw.strip().lower()
        out[key] = {"true": True, "false": False, "none": None}.get(lowered, raw) if lowered else raw
    return out


def run(args: argparse.Namespace) -> int:
    import wsol.data.cub
    import wsol.data.folder
    import wsol.data.ilsvrc
    import wsol.data.standard  # noqa: F401  (the imports register the readers)
    from wsol.commands import output_dir_problem
    from wsol.data.convert import write_metadata
    from wsol.data.records import build_index

    try:
        options = parse_options(args.option)
    except ValueError as err:
        return _fail(str(err))
    if not Path(args.root).is_dir():
        return _fail(f"dataset folder {args.root!r} does not exist")
    out = Path(args.out)
    problem = output_dir_problem(out)
    if problem is not None:
        return _fail(problem)
    try:
        index = build_index(args.dataset, args.root, args.split, **options)
    except TypeError as err:  # an option the reader does not take
        return _fail(f"{args.dataset}: {err}")
    except ValueError as err:
        return _fail(str(err))
    try:
        written = write_metadata(index, out, image_sizes=not args.no_image_sizes, mask_root=args.mask_root)
    except ValueError as err:
        return _fail(str(err))
    problems = [*index.problems, *written]
    for p in problems:
        print(f"{PROG}: {args.dataset}: {p}", file=sys.stderr)
    count = sum(1 for line in (out / "image_ids.txt").read_text(encoding="utf-8").splitlines() if line)
    print(f"{args.dataset} {args.split}: wrote {count} images ({index.num_classes} classes) to {out}; "
          f"{len(problems)} problem(s)")  # fmt: skip
    if count == 0:
        print(f"{PROG}: nothing was written: no valid image", file=sys.stderr)
        return 1
    return 1 if problems else 0
