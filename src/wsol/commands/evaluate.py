"""``wsol evaluate``: every metric that applies, for a trained checkpoint on a dataset split, in one report.

The model comes from the checkpoint (``last.pt`` / ``best.pt`` of ``wsol train`` or any checkpoint with a
``model_spec``; :func:`wsol.models.loading.load_model`); the data pipeline from the run config that
``wsol train`` stored in the checkpoint (``extras["run_config"]``: reader, root, evaluation resize, mean/std),
unless ``--config`` gives another one. ``--dataset`` / ``--root`` / ``--split`` and ``key.path=value``
overrides change it (``data.box_scaling=choe`` reproduces Choe et al.'s box rescaling). The metrics and the
protocol are those of :func:`wsol.evaluation.evaluate_model`.

Outputs in ``--out``: ``report.json`` (strict JSON, percentages), ``report.md``, ``per_image.jsonl`` (one
object per image: status, labels, top-5, IoU, hits) and the plots ``iou_curve.png``, ``boxacc_curve.png``,
``pxap_pr.png`` (those that apply); with ``--export-maps DIR`` the evaluated score maps as
``DIR/<image_id>.npy`` (the layout ``wsol evaluate-maps`` reads).

Exit codes: 0 every item evaluated; 1 some item was skipped (unreadable image, NaN/inf model output,
unreadable mask, bad annotation line — each one reported on stderr and in the report) or nothing could be
evaluated; 2 unusable arguments (missing checkpoint, bad config key, unknown dataset, wrong number of
classes, unwritable output folder, ...).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

__all__ = ["register", "run"]

PROG = "wsol evaluate"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a checkpoint: classification, localization, MaxBoxAcc, PxAP (JSON + Markdown + plots)",
        description="Evaluates a trained checkpoint on a dataset split with every metric that applies "
        "(top-1/top-5 accuracy or mAP; top-1/top-5/GT-known localization, MaxBoxAcc/MaxBoxAccV2, PxAP, "
        "pointing game, centre of mass, accuracy vs IoU threshold). The data pipeline is rebuilt from the "
        "run config stored in the checkpoint unless --config is given.",
    )
    parser.add_argument("--checkpoint", required=True, help="last.pt / best.pt of wsol train, or a model checkpoint")
    parser.add_argument("--config", help="run config (file or shipped name) instead of the checkpoint's own")
    parser.add_argument("--dataset", help="dataset reader name (overrides data.dataset)")
    parser.add_argument("--root", help="dataset folder (overrides data.root)")
    parser.add_argument("--split", help="split to evaluate (default: data.test_split of the config)")
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="config overrides, e.g. data.image_size=[448,448]"
    )
    parser.add_argument("--multiscale", help="comma-separated scales averaged per map, e.g. 0.5,1,1.5 (Qiu §V)")
    parser.add_argument("--export-maps", help="also write each evaluated score map as <dir>/<image_id>.npy")
    parser.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes (default 0)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    parser.add_argument("--cam-threshold", type=float, default=0.2, help="Zhou's box threshold (default 0.2)")
    parser.add_argument("--iou", type=int, nargs="+", default=[30, 50, 70], help="MaxBoxAccV2 IoU thresholds in %%")
    parser.add_argument("--interval", type=float, default=0.001, help="MaxBoxAcc/PxAP CAM threshold spacing")
    parser.add_argument("--pointing-tolerance", type=float, default=0.0, help="pointing game tolerance in pixels")
    parser.add_argument("--curves", action="store_true", help="include the 1000-point MaxBoxAcc/PxAP curves in JSON")
    parser.add_argument(
        "--detection", choices=("auto", "off"), default="auto",
        help="auto: VOC detection AP from CAM detections (Gudi) on multi-label data with boxes (default)",
    )
    parser.add_argument("--det-ratio", type=float, default=0.0, help="fast-backprojection ratio r (default 0)")
    parser.add_argument(
        "--det-floor", type=float, default=0.5, help="mountain floor as a fraction of the map maximum (default 0.5)"
    )
    parser.add_argument("--det-nms", type=float, default=0.5, help="per-class NMS IoU of CAM detections (default 0.5)")
    parser.add_argument("--out", required=True, help="output folder for report.json, report.md and the plots")
    parser.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def _parse_scales(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        scales = tuple(float(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ValueError(f"--multiscale must be comma-separated numbers, got {text!r}") from None
    if not scales or not all(math.isfinite(s) and s > 0 for s in scales):
        raise ValueError(f"--multiscale must be positive numbers, got {text!r}")
    return scales


def _check_args(args: argparse.Namespace) -> str | None:
    if args.batch_size < 1:
        return f"--batch-size must be >= 1, got {args.batch_size}"
    if args.num_workers < 0:
        return f"--num-workers must be >= 0, got {args.num_workers}"
    if not 0.0 <= args.cam_threshold <= 1.0:
        return f"--cam-threshold must lie in [0, 1], got {args.cam_threshold}"
    if not (math.isfinite(args.interval) and 0.0 < args.interval < 1.0):
        return f"--interval must be in (0, 1), got {args.interval}"
    if any(not 0 < d <= 100 for d in args.iou) or len(set(args.iou)) != len(args.iou):
        return f"--iou must be distinct integers in (0, 100], got {args.iou}"
    if not (math.isfinite(args.pointing_tolerance) and args.pointing_tolerance >= 0):
        return f"--pointing-tolerance must be >= 0, got {args.pointing_tolerance}"
    if not 0.0 <= args.det_ratio <= 1.0:
        return f"--det-ratio must lie in [0, 1], got {args.det_ratio}"
    if not 0.0 <= args.det_floor < 1.0:
        return f"--det-floor must lie in [0, 1), got {args.det_floor}"
    if not 0.0 < args.det_nms <= 1.0:
        return f"--det-nms must lie in (0, 1], got {args.det_nms}"
    if not Path(args.checkpoint).is_file():
        return f"checkpoint {args.checkpoint!r} does not exist"
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        return f"overrides must be key.path=value, got {bad[0]!r}"
    return None


def _read_checkpoint(path: str) -> dict[str, Any]:
    """The checkpoint mapping (read with ``weights_only=True``)."""
    from wsol.models.loading import read_weights_file

    obj = read_weights_file(path)
    if not isinstance(obj, dict) or not isinstance(obj.get("model"), dict):
        raise ValueError(f"{path} is not a wsol checkpoint (no 'model' state dict)")
    return obj


def _run_config(args: argparse.Namespace, extras: dict[str, Any]) -> Any:
    """The :class:`wsol.recipes.RunConfig` of the evaluation: --config or the checkpoint's, then the overrides."""
    from wsol.config import ConfigError, apply_overrides
    from wsol.recipes import load_raw_config, load_run_config

    if args.config is not None:
        raw = load_raw_config(args.config, args.overrides)
    elif isinstance(extras.get("run_config"), dict):
        raw = apply_overrides(extras["run_config"], args.overrides)
    elif args.dataset is not None and args.root is not None:
        raw = apply_overrides({}, args.overrides)
    else:
        raise ConfigError(
            "the checkpoint holds no run config (not written by wsol train): give --config FILE, or --dataset "
            "NAME and --root DIR"
        )
    raw = dict(raw)
    data = dict(raw.get("data") or {})
    if args.dataset is not None:
        data["dataset"] = args.dataset
    if args.root is not None:
        data["root"] = args.root
    raw["data"] = data
    raw.pop("task", None)  # the checkpoint's task was checked already
    return load_run_config(raw)


def _model(args: argparse.Namespace, ckpt: dict[str, Any], cfg: Any, device: Any) -> Any:
    """``load_model`` for checkpoints with a ``model_spec``; otherwise the run config's model + the weights."""
    from wsol.models.loading import load_model, load_weights
    from wsol.recipes import build_model

    if isinstance(ckpt.get("model_spec"), dict):
        return load_model(args.checkpoint, device=device)
    import dataclasses

    bare = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, weights=None))
    model = build_model(bare, cfg.model.num_classes, verbose=False)
    load_weights(model, ckpt, strict=True)
    return model.to(device).eval()


def _summary(report: Any) -> str:
    parts = []
    c, loc, b = report.classification, report.localization, report.boxacc
    if c is not None:
        parts += [f"top-1 acc {c['top1_accuracy']:.2f}"] if "top1_accuracy" in c else [f"mAP {c['mAP']:.2f}"]
    if loc is not None:
        if "top1_loc" in loc:
            parts.append(f"top-1 loc {loc['top1_loc']:.2f}")
        parts.append(f"GT-known loc {loc['gt_known_loc']:.2f}")
    if b is not None:
        parts.append(f"MaxBoxAccV2 {b.maxboxacc_v2:.2f}")
    if report.pxap is not None:
        parts.append(f"PxAP {report.pxap.pxap:.2f}")
    return " | ".join(parts) or "no metric applies"


def _write_outputs(out: Path, report: Any, curves: bool) -> None:
    from wsol.atomic import atomic_write_text

    atomic_write_text(out / "report.json", report.to_json(include_curves=curves))
    atomic_write_text(out / "report.md", report.to_markdown())
    lines = [json.dumps(p, allow_nan=False) for p in report.to_dict(include_per_image=True)["per_image"]]
    atomic_write_text(out / "per_image.jsonl", "".join(line + "\n" for line in lines))
    report.plots(out)


def _cam_detector(args: argparse.Namespace, model: Any, index: Any) -> Any:
    """Gudi et al.'s single-shot CAM detector for multi-label data with boxes (VOC), else None."""
    if args.detection == "off" or not index.multilabel or not any(len(r.boxes) for r in index.records):
        return None
    from wsol.detection.cam_detector import CAMDetector

    kwargs = {"ratio": args.det_ratio, "relative_floor": args.det_floor, "nms_iou": args.det_nms}
    try:
        detector = CAMDetector(model, **kwargs)
    except ValueError:  # a head without Gudi's output layer: peaks of positive CAM values
        print(f"{PROG}: note: the model's head has no per-class output layer; CAM peaks above 0 are detections",
              file=sys.stderr)
        detector = CAMDetector(model, thresholds=0.0, **kwargs)
    return detector.detect_from_cams


def _evaluate_detection(args: argparse.Namespace) -> int:
    """R-FCN detection checkpoints (Qiu §III-D): VOC07 / area AP per class, mAP and CorLoc."""
    from wsol.detection.config import evaluate_checkpoint

    try:
        result = evaluate_checkpoint(args.checkpoint, root=args.root, split=args.split, device=args.device,
                                     out_dir=args.out)
    except ValueError as exc:
        return _fail(str(exc))
    print(f"detection: mAP (VOC07 11-point) {100 * result['map']:.2f} | area mAP {100 * result['map_area']:.2f}")
    print(f"report: {Path(args.out) / 'detection_eval.json'}")
    return 0


def run(args: argparse.Namespace) -> int:
    from wsol.commands import output_dir_problem
    from wsol.config import ConfigError
    from wsol.evaluation import evaluate_model
    from wsol.recipes import build_dataset, read_split
    from wsol.trainer import resolve_device

    problem = _check_args(args)
    if problem:
        return _fail(problem)
    try:
        scales = _parse_scales(args.multiscale)
        device = resolve_device(args.device)
        ckpt = _read_checkpoint(args.checkpoint)
    except ValueError as exc:
        return _fail(str(exc))
    extras = dict(ckpt.get("extras") or {})
    if extras.get("task", "classification") == "detection":
        return _evaluate_detection(args)
    if extras.get("task", "classification") != "classification":
        return _fail(f"{args.checkpoint} is a {extras['task']!r} checkpoint, which wsol evaluate does not know")
    try:
        cfg = _run_config(args, extras)
        split = args.split or cfg.data.test_split or cfg.data.val_split
        if not split:
            raise ConfigError("no split to evaluate: give --split (the config has no data.test_split)")
        model = _model(args, ckpt, cfg, device)
        index = read_split(cfg, split, which="test_split" if args.split is None else "split")
        dataset = build_dataset(cfg, split, False, model=model, index=index)
    except ValueError as exc:  # ConfigError is a ValueError
        return _fail(str(exc))
    names = extras.get("class_names")
    if names and list(names) != list(index.class_names) and len(names) == index.num_classes:
        print(
            f"{PROG}: warning: the dataset's class names differ from the checkpoint's; classes are matched by index",
            file=sys.stderr,
        )
    out = Path(args.out)
    problem = output_dir_problem(out)
    if problem:
        return _fail(problem)
    try:
        detector = _cam_detector(args, model, index)
        report = evaluate_model(
            model,
            dataset,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            multiscale=scales,
            export_maps_dir=args.export_maps,
            cam_threshold=args.cam_threshold,
            iou_thresholds=args.iou,
            cam_curve_interval=args.interval,
            pointing_tolerance=args.pointing_tolerance,
            detector=detector,
            progress=sys.stderr.isatty(),
            verbose=True,
        )
    except ValueError as exc:
        return _fail(str(exc))
    report.source = {
        "checkpoint": str(args.checkpoint),
        "epoch": ckpt.get("epoch"),
        "config": args.config,
        "overrides": list(args.overrides),
        "reader_problems": len(index.problems),
    }
    try:
        _write_outputs(out, report, args.curves)
    except OSError as exc:
        return _fail(f"cannot write the report: {exc}")
    print(_summary(report))
    print(f"report: {out / 'report.md'}")
    if report.counts["evaluated"] == 0:
        print(f"{PROG}: error: no item could be evaluated", file=sys.stderr)
        return 1
    return 1 if report.has_skipped or index.problems else 0
