"""``wsol localize``: classes, boxes and CAM overlays for real photos with a pretrained (or your own) CAM network.

Inputs are files and folders (folders: image extensions only, sorted; ``--recursive`` descends). Each image
is loaded robustly (:func:`wsol.io.load_image`: EXIF orientation, CMYK / 16-bit / transparent images, a
pixel limit), resized whole to the network input, and goes through :class:`wsol.localizer.Localizer`.

Outputs in ``--out``: ``predictions.json`` (``--format json``, default), ``voc/<name>.xml`` (``voc``: one
Pascal VOC file per image) or ``coco_detections.json`` (``coco``), and ``overlays/<name>.png`` (unless
``--no-overlays``). ``<name>`` is the image's file stem, made unique with ``_2``, ``_3``, ... when two inputs
share one.

Exit codes: 0 every image processed; 1 some file was skipped (each reported on stderr as one line
``wsol localize: skipped PATH: REASON``; the others are processed and written); 2 unusable arguments (no
input, unknown model — the valid names are listed —, unsafe or mismatched checkpoint / linear head, bad
strategy arguments, unavailable device, unwritable output folder).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wsol.atomic import atomic_write_text
from wsol.commands import output_dir_problem

PROG = "wsol localize"


def register(subparsers: argparse._SubParsersAction) -> None:
    from wsol.io import DEFAULT_MAX_PIXELS
    from wsol.localize import available_box_strategies

    parser = subparsers.add_parser(
        "localize",
        help="classify and localize objects in real photos with CAMs (default: ImageNet EfficientNet-Lite0)",
        description="Runs a CAM network on images and folders of images and writes the top-k classes with their "
        "boxes (in original image pixels) and CAM overlays. The whole image is resized to the network input (no "
        "crop); boxes are mapped back by W/w_in, H/h_in.",
    )
    parser.add_argument("inputs", nargs="*", metavar="IMAGE_OR_DIR", help="image files and/or folders")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--model",
        default="efficientnet_lite0",
        help="pretrained name or model checkpoint (save_model_checkpoint); default: efficientnet_lite0",
    )
    parser.add_argument("--topk", type=int, default=5, help="classes reported per image (default 5)")
    parser.add_argument(
        "--box-strategy", default="zhou", choices=available_box_strategies(), help="CAM-to-box rule (default zhou)"
    )
    parser.add_argument(
        "--threshold",
        type=float,
        help="box threshold: fraction of the normalized CAM for zhou/moreaux/multi_contour (default 0.2), "
        "raw CAM units for gudi (default 0)",
    )
    parser.add_argument(
        "--box-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra strategy argument, repeatable (e.g. relu=true, ratio=0.9, relative_floor=0.5)",
    )
    parser.add_argument("--format", choices=("json", "voc", "coco"), default="json", help="output format")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    parser.add_argument("--linear-head", help="linear head from 'wsol fit-linear' (replaces the classifier)")
    parser.add_argument("--input-size", type=int, nargs="+", metavar="N", help="network input: N or H W")
    parser.add_argument(
        "--score", choices=("auto", "softmax", "sigmoid"), default="auto", help="class score (auto: sigmoid if 1 class)"
    )
    parser.add_argument("--recursive", action="store_true", help="descend into sub-folders")
    parser.add_argument("--no-overlays", action="store_true", help="do not write overlay PNGs")
    parser.add_argument("--overlay-max-side", type=int, default=None, help="downscale overlays to this longer side")
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=f"refuse images with more pixels (decompression-bomb guard; default {DEFAULT_MAX_PIXELS}; 0 = no limit)",
    )
    parser.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def _skip(path: Any, reason: str) -> None:
    print(f"{PROG}: skipped {path}: {' '.join(str(reason).split())}", file=sys.stderr)


def parse_value(text: str) -> Any:
    """``"true"``/``"false"``/``"none"`` → bool/None, numbers → int/float, anything else stays a string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def strategy_kwargs(box_args: list[str], threshold: float | None) -> dict[str, Any]:
    """``--box-arg KEY=VALUE`` list + ``--threshold`` → keyword arguments of the box strategy.

    Raises:
        ValueError: an item without ``=`` or with an empty key.
    """
    out: dict[str, Any] = {}
    for item in box_args:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--box-arg expects KEY=VALUE, got {item!r}")
        out[key.strip()] = parse_value(value)
    if threshold is not None:
        out["threshold"] = threshold
    return out


def unique_names(paths: list[Path]) -> list[str]:
    """File stems made unique in order: ``a``, ``a_2``, ``a_3``, ... (case-insensitively)."""
    seen: set[str] = set()
    out = []
    for p in paths:
        stem = p.stem or "image"
        name, n = stem, 1
        while name.lower() in seen:
            n += 1
            name = f"{stem}_{n}"
        seen.add(name.lower())
        out.append(name)
    return out


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _check_args(args: argparse.Namespace) -> str | None:
    for name in ("topk", "batch_size"):
        if getattr(args, name) <= 0:
            return f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}"
    if args.max_pixels < 0:
        return f"--max-pixels must be >= 0 (0 = no limit), got {args.max_pixels}"
    if args.input_size is not None and (len(args.input_size) not in (1, 2) or min(args.input_size) <= 0):
        return f"--input-size takes one or two positive integers (N or H W), got {args.input_size}"
    if args.overlay_max_side is not None and args.overlay_max_side <= 0:
        return f"--overlay-max-side must be a positive integer, got {args.overlay_max_side}"
    if not args.inputs:
        return "no input: give image files and/or folders"
    return None


_NUMBER_LIST = re.compile(r"\[[-+\d.,eE\s]*\]")


def dumps(obj: Any) -> str:
    """Indented JSON with lists of numbers (boxes) kept on one line."""
    text = json.dumps(obj, indent=1, ensure_ascii=False)
    return _NUMBER_LIST.sub(lambda m: "[" + ", ".join(m.group(0)[1:-1].replace(",", " ").split()) + "]", text)


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, dumps(obj) + "\n")


def run(args: argparse.Namespace) -> int:
    from wsol.io import ImageLoadError, iter_images, load_image
    from wsol.localizer import Localizer, draw_overlay

    problem = _check_args(args)
    if problem:
        return _fail(problem)
    try:
        kwargs = strategy_kwargs(args.box_arg, args.threshold)
    except ValueError as err:
        return _fail(str(err))
    notes: list[tuple[Path, str]] = []
    paths = list(iter_images(args.inputs, recursive=args.recursive, on_ignored=lambda p, r: notes.append((p, r))))
    for p, reason in notes:
        print(f"{PROG}: note: {p}: {reason}", file=sys.stderr)
    if not paths:
        return _fail(f"no image found in {', '.join(args.inputs)}")
    out = Path(args.out)
    problem = output_dir_problem(out)
    if problem:
        return _fail(problem)
    input_size = None if args.input_size is None else tuple(args.input_size) * (3 - len(args.input_size))
    try:
        localizer = Localizer(
            args.model,
            device=args.device,
            topk=args.topk,
            box_strategy=args.box_strategy,
            strategy_kwargs=kwargs,
            input_size=input_size,
            batch_size=args.batch_size,
            linear_head=args.linear_head,
            score=args.score,
        )
    except ValueError as err:
        return _fail(str(err))
    max_pixels = args.max_pixels or None
    names = dict(zip(paths, unique_names(paths), strict=True))
    predictions, done_paths, skipped = [], [], []
    for chunk in _chunks(paths, args.batch_size):
        images, ok = [], []
        for p in chunk:
            try:
                images.append(load_image(p, max_pixels=max_pixels))
                ok.append(p)
            except ImageLoadError as err:
                _skip(p, err.reason)
                skipped.append({"path": str(p), "reason": err.reason})
        if not images:
            continue
        try:
            preds = localizer.predict(images)
        except ValueError as err:  # e.g. non-finite logits: the whole batch is unusable
            for p in ok:
                _skip(p, str(err))
                skipped.append({"path": str(p), "reason": str(err)})
            continue
        for p, image, pred in zip(ok, images, preds, strict=True):
            pred.source = str(p)
            if not args.no_overlays:
                overlay = out / "overlays" / f"{names[p]}.png"
                try:
                    draw_overlay(image, pred, overlay, max_side=args.overlay_max_side)
                    pred.extra["overlay"] = str(overlay.relative_to(out))
                except ValueError as err:
                    return _fail(str(err))
            predictions.append(pred)
            done_paths.append(p)
    try:
        _write_outputs(args.format, out, localizer, predictions, done_paths, names, skipped)
    except OSError as err:
        return _fail(f"cannot write the results in {out}: {err.strerror or err}")
    print(f"{PROG}: {len(predictions)} image(s) processed, {len(skipped)} skipped; results in {out}", file=sys.stderr)
    return 1 if skipped else 0


def _write_outputs(
    fmt: str,
    out: Path,
    localizer: Any,
    predictions: list[Any],
    paths: list[Path],
    names: dict[Path, str],
    skipped: list[dict[str, str]],
) -> None:
    from wsol.localizer import coco_detections, predictions_json, voc_xml

    if fmt == "json":
        _write_json(out / "predictions.json", predictions_json(predictions, localizer.describe(), skipped=skipped))
    elif fmt == "voc":
        folder = out / "voc"
        folder.mkdir(parents=True, exist_ok=True)
        for p, pred in zip(paths, predictions, strict=True):
            (folder / f"{names[p]}.xml").write_text(voc_xml(pred, p.name, str(p.parent)), encoding="utf-8")
    else:
        coco = coco_detections(predictions, [str(p) for p in paths], localizer.class_names)
        coco["info"] = {"description": "wsol localize", **localizer.describe()}
        _write_json(out / "coco_detections.json", coco)
