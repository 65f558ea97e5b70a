"""``wsol finegrained``: Zhou et al. 2016 §4.1 — fine-grained recognition on full images vs. CAM crops.

Reads the train and test splits with a registered dataset reader (:func:`wsol.data.records.build_index`,
e.g. ``--dataset cub``), extracts GAP features of the whole images with ``--checkpoint``, fits a linear
classifier (Zhou's linear SVM by default), finds the CAM box of every image (Zhou's 20% threshold, largest
component), re-extracts features from the crops, retrains and reports both test accuracies, plus the
ground-truth-box crop accuracy and the CAM boxes' IoU ≥ 0.5 rate when the dataset has boxes
(:func:`wsol.experiments.finegrained.run_finegrained`).

Outputs in ``--out``: ``finegrained.json`` (accuracies, settings, skipped images, one entry per test
image), ``finegrained.md`` (the paper's Table 4 next to ours), ``linear_head_full.pt`` (usable with
``wsol localize --linear-head``) and ``linear_head_crop.pt`` (the classifier of crop features).

Exit codes: 0 every listed image used; 1 some image was skipped (bad dataset lines / annotations reported
by the reader, or undecodable images; each reported on stderr, the results cover the others); 2 unusable
arguments or data (unknown dataset or model, missing folder, unwritable output, no usable image, a class
without a usable training image).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROG = "wsol finegrained"


def register(subparsers: argparse._SubParsersAction) -> None:
    from wsol.io import DEFAULT_MAX_PIXELS

    parser = subparsers.add_parser(
        "finegrained",
        help="fine-grained recognition on full images vs. CAM crops (Zhou et al. 2016 §4.1, Table 4)",
        description="Fits a linear classifier on GAP features of whole images, crops every image to its CAM box "
        "(Zhou's rule), re-extracts features, retrains, and reports both test accuracies (and the ground-truth "
        "box crop accuracy and CAM box IoU when the dataset has boxes).",
    )
    parser.add_argument(
        "--checkpoint", required=True, help="model checkpoint (save_model_checkpoint) or pretrained name"
    )
    parser.add_argument("--dataset", default="cub", help="dataset reader name (default cub)")
    parser.add_argument("--root", required=True, help="dataset folder")
    parser.add_argument("--train-split", default="train", help="split to fit the classifiers on (default train)")
    parser.add_argument("--test-split", default="test", help="split to score them on (default test)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--cam-source",
        choices=("linear", "model"),
        default="linear",
        help="CAM of the full-image linear classifier (Zhou §4, default) or of the model's own head",
    )
    parser.add_argument("--threshold", type=float, default=0.2, help="Zhou box threshold, fraction of the CAM max")
    parser.add_argument("--classifier", choices=("svm", "logreg"), default="svm", help="linear SVM (Zhou) or logreg")
    parser.add_argument("--C", type=float, default=1.0, dest="C", help="inverse regularization strength (default 1)")
    parser.add_argument("--no-gt-boxes", action="store_true", help="skip the ground-truth box crop and IoU")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    parser.add_argument("--input-size", type=int, nargs="+", metavar="N", help="network input: N or H W")
    parser.add_argument(
        "--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="refuse larger images (0 = no limit)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def _check_args(args: argparse.Namespace) -> str | None:
    if args.batch_size <= 0 or args.max_pixels < 0:
        return "--batch-size must be positive and --max-pixels >= 0"
    if args.input_size is not None and (len(args.input_size) not in (1, 2) or min(args.input_size) <= 0):
        return f"--input-size takes one or two positive integers (N or H W), got {args.input_size}"
    if not 0.0 <= args.threshold <= 1.0:
        return f"--threshold must be in [0, 1], got {args.threshold}"
    if not args.C > 0:
        return f"--C must be positive, got {args.C}"
    return None


def _progress(stage: str, done: int, total: int) -> None:
    print(f"{PROG}: {stage}: {done}/{total} images", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from wsol.atomic import atomic_write_text
    from wsol.commands import output_dir_problem
    from wsol.commands.localize import dumps
    from wsol.data.records import build_index
    from wsol.experiments.finegrained import run_finegrained

    problem = _check_args(args)
    if problem:
        return _fail(problem)
    out = Path(args.out)
    problem = output_dir_problem(out)
    if problem:
        return _fail(problem)
    try:
        train = build_index(args.dataset, args.root, args.train_split)
        test = build_index(args.dataset, args.root, args.test_split)
    except ValueError as err:
        return _fail(str(err))
    for idx in (train, test):
        idx.report(limit=50)
    input_size = None if args.input_size is None else tuple(args.input_size) * (3 - len(args.input_size))
    try:
        result = run_finegrained(
            args.checkpoint,
            train,
            test,
            cam_source=args.cam_source,
            threshold=args.threshold,
            classifier=args.classifier,
            C=args.C,
            input_size=input_size,
            device=args.device,
            batch_size=args.batch_size,
            max_pixels=args.max_pixels or None,
            use_gt_boxes=not args.no_gt_boxes,
            progress=None if args.quiet else _progress,
        )
    except ValueError as err:
        return _fail(str(err))
    for p in result.problems:
        print(f"{PROG}: skipped {p}", file=sys.stderr)
    doc = result.to_dict()
    doc["dataset"] = {"name": args.dataset, "root": str(args.root), "train_split": args.train_split,
                      "test_split": args.test_split,
                      "problems": [str(p) for p in (*train.problems, *test.problems)]}  # fmt: skip
    try:
        atomic_write_text(out / "finegrained.json", dumps(doc) + "\n")
        atomic_write_text(out / "finegrained.md", result.to_markdown())
        result.heads["full"].save(out / "linear_head_full.pt")
        result.heads["crop"].save(out / "linear_head_crop.pt")
    except OSError as err:
        return _fail(f"cannot write the results in {out}: {err.strerror or err}")
    bbox = "" if result.accuracy_bbox is None else f", ground-truth box crop {100 * result.accuracy_bbox:.1f}%"
    print(
        f"{PROG}: test accuracy full image {100 * result.accuracy_full:.1f}%, CAM crop "
        f"{100 * result.accuracy_crop:.1f}%{bbox}; results in {out}",
        file=sys.stderr,
    )
    skipped = len(result.problems) + len(train.problems) + len(test.problems)
    return 1 if skipped else 0
