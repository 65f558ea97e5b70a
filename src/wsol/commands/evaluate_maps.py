"""``wsol evaluate-maps``: MaxBoxAcc, MaxBoxAccV2, PxAP (and top-1 variants) of saved score maps.

Score maps are ``<scoremaps>/<image_id>.npy`` (the id keeps its extension: ``a/b.jpg`` →
``a/b.jpg.npy``), float ``(h, w)`` arrays of any size; they go through the protocol of Choe et al.
(CVPR 2020): bicubic resize to 224, min-max normalization, 1000 CAM thresholds
(:mod:`wsol.metrics.boxacc`, :mod:`wsol.metrics.pxap`). Metadata is the ``wsolevaluation`` layout
(:mod:`wsol.data.metadata`). Box metadata gives MaxBoxAcc/MaxBoxAccV2, mask metadata (with
``--mask-root``) gives PxAP; ``--predictions`` (``<image_id>,<class>`` lines) adds the top-1 variant.

Exit codes: 0 all items evaluated; 1 some item was rejected (each one is reported on stderr with its
id and the reason) or nothing could be evaluated; 2 unusable arguments (missing/empty metadata
folder, missing score-map folder, bad ``--interval``/``--iou``, masks without ``--mask-root``, ...).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

PROG = "wsol evaluate-maps"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate-maps",
        help="MaxBoxAcc / MaxBoxAccV2 / PxAP of saved score maps (Choe et al. 2020 protocol)",
        description="Evaluates <scoremaps>/<image_id>.npy against wsolevaluation-style metadata "
        "(image_ids.txt, class_labels.txt, image_sizes.txt, localization.txt). Prints a JSON report "
        "(or writes it to --out); bad items are reported on stderr and skipped (exit code 1).",
    )
    parser.add_argument("--metadata", required=True, help="metadata folder of one split")
    parser.add_argument("--scoremaps", required=True, help="folder with <image_id>.npy score maps")
    parser.add_argument("--mask-root", help="root of the mask PNGs (mask metadata, PxAP)")
    parser.add_argument("--predictions", help="file of '<image_id>,<predicted class>' lines (top-1 variant)")
    parser.add_argument("--interval", type=float, default=0.001, help="CAM threshold spacing (default 0.001)")
    parser.add_argument("--iou", type=int, nargs="+", default=[30, 50, 70], help="IoU thresholds in %% for MaxBoxAccV2")
    parser.add_argument(
        "--method", choices=("fast", "reference"), default="fast", help="box evaluation method (same results)"
    )
    parser.add_argument("--curves", action="store_true", help="include the accuracy curves in the JSON")
    parser.add_argument("--out", help="write the JSON report here instead of stdout")
    parser.add_argument("--plot", help="save a plot of accuracy vs CAM threshold (PNG) here")
    parser.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def _load_scoremap(path: Path) -> tuple[np.ndarray | None, str | None]:
    """The map, or ``None`` and why it cannot be used."""
    if not path.is_file():
        return None, f"missing score map {path}"
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # np.load raises many types (ValueError, OSError, EOFError, ...)
        return None, f"unreadable score map {path}: {type(exc).__name__}: {exc}"
    if not isinstance(arr, np.ndarray):
        return None, f"score map {path} is not a single array"
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) or np.iscomplexobj(arr):
        return None, f"score map {path} has non-numeric dtype {arr.dtype}"
    if arr.ndim != 2:
        return None, f"score map {path} must be 2-D (H, W), got shape {arr.shape}"
    if arr.size == 0:
        return None, f"score map {path} is empty, shape {arr.shape}"
    if not np.isfinite(arr).all():
        return None, f"score map {path} contains NaN or inf values"
    return arr, None


def _check_args(args: argparse.Namespace) -> str | None:
    if not (isinstance(args.interval, float) and math.isfinite(args.interval) and 0.0 < args.interval < 1.0):
        return f"--interval must be in (0, 1), got {args.interval}"
    if any(not 0 < d <= 100 for d in args.iou) or len(set(args.iou)) != len(args.iou):
        return f"--iou must be distinct integers in (0, 100], got {args.iou}"
    if not Path(args.scoremaps).is_dir():
        return f"score map folder {args.scoremaps!r} does not exist"
    if args.mask_root is not None and not Path(args.mask_root).is_dir():
        return f"mask root {args.mask_root!r} does not exist"
    if args.predictions is not None and not Path(args.predictions).is_file():
        return f"predictions file {args.predictions!r} does not exist"
    return None


def _plot(path: Path, box_report: Any, pxap_result: Any) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = int(box_report is not None) + int(pxap_result is not None)
    fig = Figure(figsize=(6 * panels, 4.5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    k = 0
    if box_report is not None:
        ax = axes[k]
        k += 1
        t = box_report.largest.cam_thresholds
        ax.plot(t, box_report.largest.accuracy[50], "k-", label=f"V1 largest, δ=50: {box_report.maxboxacc:.2f}")
        for d in box_report.iou_thresholds:
            best = box_report.multi.max_accuracy[d]
            ax.plot(t, box_report.multi.accuracy[d], label=f"V2 all contours, δ={d}: {best:.2f}")
        if box_report.top1_largest is not None:
            top1 = box_report.top1_maxboxacc
            ax.plot(t, box_report.top1_largest.accuracy[50], "k--", label=f"top-1 V1, δ=50: {top1:.2f}")
        ax.set_xlabel("CAM threshold")
        ax.set_ylabel("box accuracy (%)")
        ax.set_title(f"MaxBoxAcc {box_report.maxboxacc:.2f}, MaxBoxAccV2 {box_report.maxboxacc_v2:.2f}")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if pxap_result is not None:
        ax = axes[k]
        ax.plot(pxap_result.recall, pxap_result.precision, "b-")
        ax.set_xlabel("pixel recall")
        ax.set_ylabel("pixel precision")
        ax.set_title(f"PxAP {pxap_result.pxap:.2f}")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def run(args: argparse.Namespace) -> int:
    from wsol.data.metadata import MetadataError, read_metadata, read_predictions
    from wsol.localize import DegenerateMapWarning
    from wsol.metrics.boxacc import BoxAccEvaluator
    from wsol.metrics.pxap import PxAPEvaluator, load_gt_mask

    problem = _check_args(args)
    if problem:
        return _fail(problem)
    try:
        meta, problems = read_metadata(args.metadata)
    except MetadataError as exc:
        return _fail(str(exc))
    if meta.localization is None:
        return _fail(f"{args.metadata}: no usable localization.txt (boxes or masks) to evaluate against")
    if meta.localization == "masks" and args.mask_root is None:
        return _fail("mask metadata needs --mask-root (the folder the mask paths are relative to)")
    if args.predictions is not None and "class_labels.txt" not in meta.files:
        return _fail("--predictions needs class_labels.txt in the metadata folder")
    predictions: dict[str, int] | None = None
    if args.predictions is not None:
        try:
            predictions, pred_problems = read_predictions(args.predictions)
        except MetadataError as exc:
            return _fail(str(exc))
        problems += pred_problems
        if meta.localization == "masks":
            print(
                f"{PROG}: warning: --predictions is ignored for mask metadata (PxAP has no top-1 variant)",
                file=sys.stderr,
            )

    rejected: list[dict[str, str]] = []

    def reject(image_id: str, reason: str) -> None:
        rejected.append({"image_id": image_id, "reason": reason})
        print(f"{PROG}: rejected {image_id}: {reason}", file=sys.stderr)

    for p in problems:  # lines that do not belong to an item of image_ids.txt
        if p.image_id is None or p.image_id not in meta.rejected:
            print(f"{PROG}: warning: {p}", file=sys.stderr)
    for image_id, reasons in meta.rejected.items():
        reject(image_id, "; ".join(reasons))

    boxes = meta.localization == "boxes"
    box_eval = BoxAccEvaluator(cam_curve_interval=args.interval, iou_thresholds=args.iou, method=args.method)
    pxap_eval = PxAPEvaluator(cam_curve_interval=args.interval)
    root = Path(args.scoremaps)
    evaluated = 0
    for image_id in meta.image_ids:
        scoremap, why = _load_scoremap(root / f"{image_id}.npy")
        if scoremap is None:
            reject(image_id, why or "unusable score map")
            continue
        correct: bool | None = None
        if predictions is not None and boxes:
            if image_id not in predictions:
                reject(image_id, f"no prediction in {args.predictions}")
                continue
            correct = predictions[image_id] == meta.class_labels[image_id]
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", DegenerateMapWarning)
                if boxes:
                    box_eval.accumulate(
                        scoremap, meta.boxes[image_id], meta.image_sizes[image_id], correct, image_id=image_id
                    )
                else:
                    mask = load_gt_mask(args.mask_root, meta.mask_paths[image_id], meta.ignore_paths[image_id])
                    pxap_eval.accumulate(scoremap, mask, image_id=image_id)
        except ValueError as exc:
            reject(image_id, str(exc))
            continue
        for w in caught:
            print(f"{PROG}: warning: {w.message}", file=sys.stderr)
        evaluated += 1

    if evaluated == 0:
        print(f"{PROG}: error: no item could be evaluated", file=sys.stderr)
        return 1
    report: dict[str, Any] = {
        "metadata": str(args.metadata),
        "scoremaps": str(args.scoremaps),
        "protocol": {"resize": 224, "cam_curve_interval": args.interval, "method": args.method},
        "num_items": evaluated + len(rejected),
        "num_evaluated": evaluated,
        "num_rejected": len(rejected),
        "rejected": rejected,
    }
    box_report = pxap_result = None
    if boxes:
        box_report = box_eval.compute()
        report.update(box_report.to_dict(include_curves=args.curves))
    else:
        try:
            pxap_result = pxap_eval.compute()
        except ValueError as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 1
        report["PxAP"] = pxap_result.to_dict(include_curve=args.curves)
        report["num_degenerate_maps"] = len(pxap_eval.degenerate)
    text = json.dumps(report, indent=2)
    try:
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(text + "\n", encoding="utf-8")
        else:
            print(text)
        if args.plot:
            Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
            _plot(Path(args.plot), box_report, pxap_result)
    except OSError as exc:
        return _fail(f"cannot write output: {exc}")
    return 1 if rejected or problems else 0
