"""``wsol fit-linear``: generic localizable features (Zhou et al. 2016 §4) — a linear classifier on GAP features.

``FOLDER`` holds one sub-folder per class (its name is the class name; sorted order gives the class
indices; hidden folders are ignored) with the images of that class (searched recursively). Each image goes
through the backbone of ``--model`` exactly as ``wsol localize`` preprocesses it (whole image resized to
the input size); the GAP of the last feature maps is the feature vector. A linear classifier
(``--classifier logreg``: multinomial logistic regression; ``svm``: Zhou's one-vs-rest linear SVM) is fitted
with scikit-learn on the raw GAP features (:func:`wsol.localizer.fit_linear_head`) and saved with the class
names as tensors + plain python (``torch.load(weights_only=True)`` reads it).
``wsol localize --linear-head FILE`` then uses it as a Zhou CAM head: ``CAM_c = Σ_k w_k^c f_k``.

Exit codes: 0 every image used; 1 some image was skipped (reported on stderr, the head is still written);
2 unusable arguments or data (no such folder, fewer than two classes, a class without a usable image, unknown
model, bad options).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROG = "wsol fit-linear"


def register(subparsers: argparse._SubParsersAction) -> None:
    from wsol.io import DEFAULT_MAX_PIXELS

    parser = subparsers.add_parser(
        "fit-linear",
        help="fit a linear classifier on GAP features (Zhou et al. 2016 §4) for 'wsol localize --linear-head'",
        description="FOLDER has one sub-folder of images per class. Extracts GAP features with --model, fits a "
        "linear classifier (scikit-learn) and saves its weights and class names to --out.",
    )
    parser.add_argument("folder", metavar="FOLDER", help="folder with one sub-folder of images per class")
    parser.add_argument("--out", required=True, help="output file (e.g. head.pt)")
    parser.add_argument("--model", default="efficientnet_lite0", help="pretrained name or model checkpoint")
    parser.add_argument(
        "--classifier", choices=("logreg", "svm"), default="logreg", help="logistic regression or linear SVM"
    )
    parser.add_argument("--C", type=float, default=1.0, dest="C", help="inverse regularization strength (default 1)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    parser.add_argument("--input-size", type=int, nargs="+", metavar="N", help="network input: N or H W")
    parser.add_argument(
        "--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="refuse larger images (0 = no limit)"
    )
    parser.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def _classes(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from wsol.io import ImageLoadError, iter_images, load_image
    from wsol.localizer import Localizer, fit_linear_head

    folder = Path(args.folder)
    if not folder.is_dir():
        return _fail(f"{folder} is not a folder")
    if args.batch_size <= 0 or args.max_pixels < 0:
        return _fail("--batch-size must be positive and --max-pixels >= 0")
    if args.input_size is not None and (len(args.input_size) not in (1, 2) or min(args.input_size) <= 0):
        return _fail(f"--input-size takes one or two positive integers (N or H W), got {args.input_size}")
    classes = _classes(folder)
    if len(classes) < 2:
        return _fail(f"{folder} needs at least two class sub-folders, found {len(classes)}")
    input_size = None if args.input_size is None else tuple(args.input_size) * (3 - len(args.input_size))
    try:
        localizer = Localizer(args.model, device=args.device, batch_size=args.batch_size, input_size=input_size)
    except ValueError as err:
        return _fail(str(err))
    max_pixels = args.max_pixels or None
    features, labels, skipped = [], [], 0
    for label, cls in enumerate(classes):
        frames = []
        for path in iter_images([cls], recursive=True):
            try:
                frames.append(np.asarray(load_image(path, max_pixels=max_pixels)))
            except ImageLoadError as err:
                print(f"{PROG}: skipped {path}: {' '.join(err.reason.split())}", file=sys.stderr)
                skipped += 1
        if not frames:
            return _fail(f"class {cls.name!r} ({cls}) has no usable image")
        features.append(localizer.features(frames))
        labels.extend([label] * len(frames))
    try:
        head = fit_linear_head(
            np.concatenate(features), np.asarray(labels), [c.name for c in classes], args.classifier, args.C
        )
    except ValueError as err:
        return _fail(str(err))
    head.model = str(args.model)
    head.backbone = (localizer.model.model_spec or {}).get("name")
    head.input_size = localizer.input_size
    out = Path(args.out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        head.save(out)
    except OSError as err:
        return _fail(f"cannot write {out}: {err.strerror or err}")
    print(
        f"{PROG}: {len(labels)} images, {len(classes)} classes ({', '.join(c.name for c in classes)}), "
        f"{head.in_features} features, training accuracy {head.train_accuracy:.3f}; saved {out}",
        file=sys.stderr,
    )
    return 1 if skipped else 0
