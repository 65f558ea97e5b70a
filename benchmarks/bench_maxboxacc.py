"""Benchmark: fast vs reference MaxBoxAcc/MaxBoxAccV2 evaluation of realistic 224 × 224 CAMs.

Maps imitate CAMs: 1–3 Gaussian blobs plus noise on a 14 × 14 or 28 × 28 feature grid, bicubic-upsampled
to 224 (what the protocol does to real CAMs), every fourth with a ring, some with mild pixel noise.
Both methods evaluate the same maps at 1000 CAM thresholds; the script checks that the per-image IoU
curves and the accuracy curves are identical and reports the time per image.

Two reference timings are reported: ``reference`` is :func:`wsol.metrics.boxacc.scoremap_ious` with
``method="reference"`` (both V1 and V2, i.e. the two per-threshold passes of the reference protocol),
``reference_single_pass`` is one ``threshold + findContours`` per threshold (V2 boxes only), the
loop of one reference ``BoxEvaluator`` run.

Usage: ``python benchmarks/bench_maxboxacc.py [--n 50] [--seed 0] [--out benchmarks/results/maxboxacc.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import cv2
import numpy as np

from wsol.localize import contour_boxes
from wsol.metrics.boxacc import (
    BoxAccEvaluator,
    cam_thresholds,
    prepare_scoremap,
    quantize_scoremap,
    scoremap_ious,
)
from wsol.metrics.boxes import box_iou


def make_cam(rng: np.random.Generator, index: int) -> tuple[np.ndarray, np.ndarray]:
    """A CAM-like map at feature resolution and 1–2 GT boxes (224 frame) around its main blobs."""
    low = 14 if index % 3 else 28
    yy, xx = np.mgrid[0:low, 0:low] * (224 / low)
    cam = np.zeros((low, low))
    boxes = []
    for _ in range(rng.integers(1, 4)):
        cx, cy = rng.uniform(30, 194, size=2)
        sx, sy = rng.uniform(10, 50, size=2)
        cam += rng.uniform(0.4, 1.0) * np.exp(-((xx - cx) ** 2) / (2 * sx**2) - (yy - cy) ** 2 / (2 * sy**2))
        boxes.append([max(0, cx - 1.5 * sx), max(0, cy - 1.5 * sy), min(223, cx + 1.5 * sx), min(223, cy + 1.5 * sy)])
    if index % 4 == 0:
        cx, cy, r = rng.uniform(70, 154), rng.uniform(70, 154), rng.uniform(30, 60)
        cam += 0.8 * np.exp(-((np.hypot(xx - cx, yy - cy) - r) ** 2) / (2 * 12.0**2))
    cam += 0.05 * rng.standard_normal(cam.shape)
    cam = cv2.resize(cam, (224, 224), interpolation=cv2.INTER_CUBIC)
    if index % 5 == 0:
        cam += 0.01 * rng.standard_normal(cam.shape)
    return cam, np.floor(np.asarray(boxes[:2]))


def single_pass_reference(q: np.ndarray, gt: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """One threshold + findContours per CAM threshold (one reference BoxEvaluator pass, V2 boxes)."""
    qmax = np.max(q)
    out = np.empty(len(thresholds))
    for i, t in enumerate(thresholds):
        _, mask = cv2.threshold(q, int(t * qmax), 255, cv2.THRESH_BINARY)
        out[i] = box_iou(contour_boxes(mask), gt).max()
    return out


def _time_interleaved(methods: dict, items: list) -> tuple[dict[str, list[float]], dict[str, list]]:  # type: ignore[type-arg]
    """Per-image wall time (ms) of each method, the methods run one after the other on each image.

    Interleaving keeps the comparison fair when the machine's load changes during the run. Each method
    is called once on the first item before timing (one-time costs such as numba's JIT compilation or
    cache loading are not per-image costs); that warm-up time is returned under ``"<name>_warmup"``.
    """
    times: dict[str, list[float]] = {k: [] for k in methods}
    for name, fn in methods.items():
        t0 = time.perf_counter()
        fn(*items[0])
        times[f"{name}_warmup"] = [(time.perf_counter() - t0) * 1e3]
    results: dict[str, list] = {k: [] for k in methods}  # type: ignore[type-arg]
    for item in items:
        for name, fn in methods.items():
            t0 = time.perf_counter()
            out = fn(*item)
            times[name].append((time.perf_counter() - t0) * 1e3)
            results[name].append(out)
    return times, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50, help="number of maps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--interval", type=float, default=0.001)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "maxboxacc.json"))
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    thresholds = cam_thresholds(args.interval)
    cams, gts = zip(*(make_cam(rng, i) for i in range(args.n)), strict=True)
    prepared = [prepare_scoremap(c)[0] for c in cams]
    items = [(s, g, thresholds) for s, g in zip(prepared, gts, strict=True)]

    methods = {
        "fast": lambda s, g, t: scoremap_ious(s, g, t, "fast"),
        "reference": lambda s, g, t: scoremap_ious(s, g, t, "reference"),
        "single": lambda s, g, t: single_pass_reference(quantize_scoremap(s), g, t),
    }
    times, outs = _time_interleaved(methods, items)
    fast_ms, ref_ms, single_ms = times["fast"], times["reference"], times["single"]
    fast, ref, single = outs["fast"], outs["reference"], outs["single"]

    identical_ious = all(
        np.array_equal(a.largest, b.largest) and np.array_equal(a.multi, b.multi)
        for a, b in zip(fast, ref, strict=True)
    )
    identical_single = all(np.array_equal(a.multi, b) for a, b in zip(fast, single, strict=True))
    reports = {}
    for method in ("fast", "reference"):
        ev = BoxAccEvaluator(cam_curve_interval=args.interval, method=method)  # type: ignore[arg-type]
        for cam, gt in zip(cams, gts, strict=True):
            ev.accumulate(cam, gt, None)
        reports[method] = ev.compute()
    curves = {m: (r.largest.accuracy, r.multi.accuracy) for m, r in reports.items()}
    max_diff = max(
        float(np.abs(curves["fast"][k][d] - curves["reference"][k][d]).max()) for k in (0, 1) for d in curves["fast"][k]
    )
    rep = reports["fast"]
    result = {
        "n_maps": args.n,
        "map_size": [224, 224],
        "n_cam_thresholds": len(thresholds),
        "seed": args.seed,
        "ms_per_image": {
            "fast": {"mean": float(np.mean(fast_ms)), "median": float(np.median(fast_ms))},
            "reference": {"mean": float(np.mean(ref_ms)), "median": float(np.median(ref_ms))},
            "reference_single_pass": {"mean": float(np.mean(single_ms)), "median": float(np.median(single_ms))},
        },
        "warmup_ms_fast": times["fast_warmup"][0],
        "speedup": {
            "vs_reference": float(np.sum(ref_ms) / np.sum(fast_ms)),
            "vs_reference_single_pass": float(np.sum(single_ms) / np.sum(fast_ms)),
        },
        "identical_per_image_ious": bool(identical_ious and identical_single),
        "max_abs_accuracy_curve_difference": max_diff,
        "metrics": {"MaxBoxAcc": rep.maxboxacc, "MaxBoxAccV2": rep.maxboxacc_v2},
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "numpy": np.__version__,
            "opencv": cv2.__version__,
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")

    ms = result["ms_per_image"]
    print(f"MaxBoxAcc evaluation, {args.n} CAM-like 224x224 maps, {len(thresholds)} CAM thresholds")
    print()
    print("| method | ms / image (mean) | ms / image (median) | speed-up of fast |")
    print("|---|---:|---:|---:|")
    rows = [
        ("reference, V1 + V2 (2 findContours / threshold)", "reference", "vs_reference"),
        ("reference, single pass (1 findContours / threshold)", "reference_single_pass", "vs_reference_single_pass"),
    ]
    for label, key, speed in rows:
        r = ms[key]
        print(f"| {label} | {r['mean']:.1f} | {r['median']:.1f} | {result['speedup'][speed]:.1f}x |")
    print(f"| fast (V1 + V2) | {ms['fast']['mean']:.2f} | {ms['fast']['median']:.2f} | 1.0x |")
    print()
    print(f"identical per-image IoU curves: {result['identical_per_image_ious']}; "
          f"max |accuracy curve difference|: {max_diff}")  # fmt: skip
    print(f"machine: {result['machine']['platform']}, {result['machine']['cpu_count']} CPUs, "
          f"OpenCV {cv2.__version__}, NumPy {np.__version__}")  # fmt: skip
    print(f"written to {out}")


if __name__ == "__main__":
    main()
