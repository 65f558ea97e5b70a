"""Benchmark: end-to-end ``wsol video`` frames per second with boxes (EfficientNet-Lite0 at 224, CPU).

Input: a 640 × 480, 30 fps clip made from a real photo — a diagonal camera pan across matplotlib's
``grace_hopper.jpg`` (written with ``cv2.VideoWriter``, nothing downloaded). Every variant runs the full
:func:`wsol.video.process_video` loop on it — decode → preprocess (BGR → RGB, whole-frame resize to 224,
normalize) → forward → top-1 class, map, Zhou box in frame pixels → draw (box, label, fps) → encode (mp4v) —
and the loop's own stage timer splits the time. Variants (repeated in rotated order, medians reported):

* ``b1`` — the CLI default: one frame per forward pass, top-k shortcut (:class:`wsol.video.StreamingCAMNet`).
* ``b1_all_cams`` — the same with the model's full output (CAMs of all 1000 classes every frame).
* ``b4`` — four frames per forward pass (3 frames of latency).
* ``b1_compiled`` / ``b4_compiled`` — the network through ``torch.compile`` (inductor, C++ on the CPU); the
  compilation (tens of seconds on a cold cache) is done before timing and reported separately.

``cpu_fps`` is frames per second of process CPU time: with one torch thread it is what the pipeline would
reach on one idle core, independent of the other jobs sharing the machine.

Usage: ``python benchmarks/bench_video.py [--frames 90] [--repeats 3] [--threads 1] [--out ...]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import torch
from bench_cam_overhead import RESULTS, machine_info

from wsol.video import STAGES, VideoLocalizer, process_video, write_synthetic_video


def make_clip(path: Path, frames: int) -> None:
    """A 640×480 30 fps pan across grace_hopper.jpg (the moving 1-pixel square of the helper is invisible)."""
    import matplotlib.cbook as cbook

    photo = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    write_synthetic_video(path, n_frames=frames, frame_size=(480, 640), square=1, fps=30.0, background=photo)


def run_once(clip: Path, out: Path, loc: VideoLocalizer) -> dict[str, Any]:
    c = time.process_time()
    stats = process_video(clip, out, loc)
    cpu = time.process_time() - c
    return {
        "fps": stats.fps,
        "model_fps": stats.model_fps,
        "cpu_fps": stats.frames / cpu,
        "ms_per_frame": stats.ms_per_frame(),
        "frames": stats.frames,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=90)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: fastest on a shared machine)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    parser.add_argument("--out", default=str(RESULTS / "video.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from wsol.models import load_model

    model = load_model("efficientnet_lite0").eval()
    configs: dict[str, dict[str, Any]] = {
        "b1": {"batch_size": 1},
        "b1_all_cams": {"batch_size": 1, "fast": False},
        "b4": {"batch_size": 4},
    }
    if not args.no_compile:
        configs["b1_compiled"] = {"batch_size": 1, "compile": True}
        configs["b4_compiled"] = {"batch_size": 4, "compile": True}

    tmp = Path(tempfile.mkdtemp(prefix="wsol_bench_video_"))
    clip = tmp / "pan.mp4"
    make_clip(clip, args.frames)
    warm = tmp / "warm.mp4"
    make_clip(warm, 8)
    locs: dict[str, VideoLocalizer] = {}
    setup_s: dict[str, float] = {}
    for name, kw in configs.items():
        t = time.perf_counter()
        locs[name] = VideoLocalizer(model, topk=1, size=224, **kw)
        process_video(warm, None, locs[name])  # warm-up (and the compilation for the compiled variants)
        setup_s[name] = time.perf_counter() - t

    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in configs}
    names = list(configs)
    t0 = time.perf_counter()
    for r in range(args.repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            runs[name].append(run_once(clip, tmp / f"{name}.mp4", locs[name]))
    summary: dict[str, Any] = {}
    for name, rs in runs.items():
        summary[name] = {
            "fps": statistics.median(x["fps"] for x in rs),
            "model_fps": statistics.median(x["model_fps"] for x in rs),
            "cpu_fps": statistics.median(x["cpu_fps"] for x in rs),
            "ms_per_frame": {k: statistics.median(x["ms_per_frame"][k] for x in rs) for k in (*STAGES, "total")},
            "setup_and_warmup_s": setup_s[name],
            "runs": rs,
        }
    result = {
        "benchmark": "video",
        "clip": f"{args.frames} frames 640x480 30 fps, pan across grace_hopper.jpg",
        "model": "efficientnet_lite0, input 224x224, top-1, Zhou boxes (t = 0.2), box + label + fps drawn, mp4v",
        "device": "cpu (no GPU in this task)",
        "repeats": args.repeats,
        "machine": machine_info(),
        "seconds": time.perf_counter() - t0,
        "variants": summary,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wsol video, {result['clip']}, CPU, {args.threads} torch thread(s), {args.repeats} repeats (medians)")
    head = " | ".join(f"{s} ms" for s in STAGES)
    print(f"| variant | fps (wall) | fps (CPU time) | model-only fps | {head} |")
    print("|---|---:|---:|---:|" + "---:|" * len(STAGES))
    for name, s in summary.items():
        split = " | ".join(f"{s['ms_per_frame'][k]:.1f}" for k in STAGES)
        print(f"| {name} | {s['fps']:.1f} | {s['cpu_fps']:.1f} | {s['model_fps']:.1f} | {split} |")
    print(f"\nsetup + warm-up s: { {k: round(v, 1) for k, v in setup_s.items()} }")
    print(f"load average at start {result['machine']['loadavg_at_start']}; wrote {args.out}")


if __name__ == "__main__":
    main()
