"""Benchmark: our one-pass CAMs vs the same maps from torchcam (``CAM``) and pytorch-grad-cam (``GradCAM``).

Same network (EfficientNet-Lite0, ImageNet weights: our CAMNet and timm's ``tf_efficientnet_lite0`` hold the
same tensors; their logits are identical), same batch (32 real-photo crops at 224, see
``bench_cam_overhead.py``), CPU, the top-1 class of each image. The libraries are used the way their
documentation shows, on the plain timm classifier (target layer ``bn2`` = the last feature maps, FC
``classifier``).

What is compared (and must agree):

* **torchcam ``CAM``**, ``normalized=False``: ``Σ_k w_k^c A_k(x, y)`` with ``A`` = hooked ``bn2`` output and
  ``w`` the classifier weights — by definition our CAM (Zhou et al. 2016 eq. 2) at feature resolution
  (7 × 7). Checked: max |torchcam − ours| relative to max |ours|.
* **pytorch-grad-cam ``GradCAM``** (no plain CAM there): weights ``α_k = mean_{x,y} ∂S_c/∂A_k(x, y)``; for a
  GAP → FC head ``∂S_c/∂A_k(x, y) = w_k^c / (HW)``, so ``Σ_k α_k A_k = CAM_c / (HW)``. The library then takes
  ``ReLU``, min-max scales the 7 × 7 map (``(m − min) / (1e-7 + max)``), resizes it to 224 × 224 with
  ``cv2.resize`` (bilinear), and applies ``ReLU`` + the same scaling again. ``ours_gradcam_equiv`` applies
  exactly these steps to our CAM (``/HW``, ReLU, scaling, bilinear ``F.interpolate`` with
  ``align_corners=False`` = ``cv2.INTER_LINEAR``, ReLU, scaling). Checked: max |GradCAM − ours| on the
  [0, 1] maps.

Every variant gets the same ``channels_last`` input tensor (the faster layout for these CPU convolutions,
see ``bench_cam_overhead.py``). Timed (interleaved rounds, medians; wall and CPU): ``ours_cam`` (forward
giving logits + all 1000 CAMs, top-1 selected), ``ours_cam_shortcut`` (top-1 CAM from the features and one FC row,
:class:`wsol.video.StreamingCAMNet`), ``torchcam_cam`` (timm forward with torchcam's hook + its CAM),
``ours_gradcam_equiv`` and ``gradcam`` (forward + backward through the whole network, as the library does).

Needs the benchmark-only packages ``grad-cam`` and ``torchcam`` (``pip install grad-cam==1.5.7 torchcam==0.5.0``).

Usage: ``python benchmarks/bench_cam_libraries.py [--rounds 5] [--batch 32] [--threads 1] [--out ...]``
"""

from __future__ import annotations

import argparse
import json
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from bench_cam_overhead import RESULTS, machine_info, sample_images, summarize, time_interleaved
from torch import Tensor


def gradcam_scale(maps: Tensor) -> Tensor:
    """pytorch-grad-cam's ``scale_cam_image`` without resize: per map ``(m − min) / (1e-7 + max(m − min))``."""
    m = maps - maps.amin(dim=(-2, -1), keepdim=True)
    return m / (1e-7 + m.amax(dim=(-2, -1), keepdim=True))


def gradcam_equivalent(cams: Tensor, size: tuple[int, int]) -> Tensor:
    """Our top-1 CAMs ``(B, h, w)`` → what ``GradCAM`` returns for a GAP → FC network (see the module doc)."""
    h, w = cams.shape[-2:]
    m = gradcam_scale(torch.relu(cams / (h * w)))
    m = F.interpolate(m[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return gradcam_scale(torch.relu(m))


def main() -> None:
    import timm
    from pytorch_grad_cam import GradCAM
    from torchcam.methods import CAM

    from wsol.models import load_model
    from wsol.models.pretrained import efficientnet_lite0_state_dict
    from wsol.video import StreamingCAMNet

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadiest on a shared machine)")
    parser.add_argument("--out", default=str(RESULTS / "cam_libraries.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    ours = load_model("efficientnet_lite0").eval()
    fast = StreamingCAMNet(ours, topk=1)
    plain = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    plain.load_state_dict(efficientnet_lite0_state_dict())
    plain.eval()
    images = sample_images(args.batch)
    mean = torch.tensor(ours.pretrained_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(ours.pretrained_cfg["std"]).view(1, 3, 1, 1)
    x = (torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0 - mean) / std
    x = x.contiguous(memory_format=torch.channels_last)  # the faster CPU layout, the same for every variant
    size = (x.shape[-2], x.shape[-1])
    batch_idx = torch.arange(args.batch)

    @torch.inference_mode()
    def ours_cam() -> Tensor:
        logits, cams = ours(x)
        return cams[batch_idx, logits.argmax(1)]

    @torch.inference_mode()
    def ours_cam_shortcut() -> Tensor:
        logits, cams = fast(x)
        return cams[batch_idx, logits.argmax(1)]

    def ours_gradcam_equiv() -> Tensor:
        return gradcam_equivalent(ours_cam(), size)

    torchcam = CAM(plain, target_layer="bn2", fc_layer="classifier")

    def torchcam_cam() -> Tensor:
        with torch.inference_mode():
            scores = plain(x)
        return torchcam(class_idx=scores.argmax(1).tolist(), scores=scores, normalized=False)[0]

    gradcam = GradCAM(model=plain, target_layers=[plain.bn2])

    def gradcam_maps() -> np.ndarray:
        return gradcam(input_tensor=x, targets=None)  # None = the top-1 class of each image

    # agreement
    ref = ours_cam()
    tc = torchcam_cam()
    fc = ours_cam_shortcut()
    gc = torch.from_numpy(gradcam_maps())
    eq = ours_gradcam_equiv()
    with torch.inference_mode():
        same_top1 = bool((ours(x).logits.argmax(1) == plain(x).argmax(1)).all())
    scale = float(ref.abs().max())
    checks = {
        "same_top1_class_ours_vs_timm": same_top1,
        "torchcam_cam_vs_ours": {
            "compared": "raw CAM of the top-1 class at 7x7, sum_k w_k^c A_k (torchcam normalized=False)",
            "max_abs_diff": float((tc - ref).abs().max()),
            "max_abs_ours": scale,
            "max_rel_diff": float((tc - ref).abs().max()) / scale,
        },
        "ours_shortcut_vs_ours": {"max_abs_diff": float((fc - ref).abs().max())},
        "gradcam_vs_ours_equivalent": {
            "compared": "GradCAM output (224x224, [0,1]) vs scale(relu(bilinear(scale(relu(CAM/HW))))) of our CAM",
            "max_abs_diff": float((gc - eq).abs().max()),
            "mean_abs_diff": float((gc - eq).abs().mean()),
        },
    }

    variants = {
        "ours_cam": ours_cam,
        "ours_cam_shortcut": ours_cam_shortcut,
        "torchcam_cam": torchcam_cam,
        "ours_gradcam_equiv": ours_gradcam_equiv,
        "gradcam": gradcam_maps,
    }
    t0 = time.perf_counter()
    times = time_interleaved(variants, args.rounds)
    summary = summarize(times, "ours_cam", args.batch)
    speedups = {}
    for kind in ("wall", "cpu"):
        med = {k: v[kind]["median_ms_per_batch"] for k, v in summary.items()}
        speedups[kind] = {
            "torchcam_cam / ours_cam": med["torchcam_cam"] / med["ours_cam"],
            "torchcam_cam / ours_cam_shortcut": med["torchcam_cam"] / med["ours_cam_shortcut"],
            "gradcam / ours_gradcam_equiv": med["gradcam"] / med["ours_gradcam_equiv"],
        }
    result = {
        "benchmark": "cam_libraries",
        "batch": args.batch,
        "device": "cpu (no GPU in this task)",
        "rounds": args.rounds,
        "versions": {p: version(p) for p in ("grad-cam", "torchcam", "timm", "torch")},
        "machine": machine_info(),
        "seconds": time.perf_counter() - t0,
        "checks": checks,
        "speed_ratio_theirs_over_ours": speedups,
        "variants": summary,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"EfficientNet-Lite0, batch {args.batch} at 224, CPU, {args.threads} torch thread(s), {args.rounds} rounds")
    print("| variant | output | wall ms/batch (median) | CPU ms/batch (median) |")
    print("|---|---|---:|---:|")
    outputs = {
        "ours_cam": "raw top-1 CAM 7x7",
        "ours_cam_shortcut": "raw top-1 CAM 7x7",
        "torchcam_cam": "raw top-1 CAM 7x7",
        "ours_gradcam_equiv": "GradCAM-scaled 224x224",
        "gradcam": "GradCAM-scaled 224x224",
    }
    for name, e in summary.items():
        wall, cpu = e["wall"]["median_ms_per_batch"], e["cpu"]["median_ms_per_batch"]
        print(f"| {name} | {outputs[name]} | {wall:.0f} | {cpu:.0f} |")
    print()
    for k, v in speedups["wall"].items():
        print(f"{k}: {v:.2f}x (wall), {speedups['cpu'][k]:.2f}x (CPU)")
    tcd, gcd = checks["torchcam_cam_vs_ours"], checks["gradcam_vs_ours_equivalent"]
    print(f"torchcam CAM vs ours: max abs diff {tcd['max_abs_diff']:.2e} (max |CAM| {tcd['max_abs_ours']:.1f})")
    print(f"GradCAM vs our CAM through GradCAM's scaling: max abs diff {gcd['max_abs_diff']:.2e} on [0, 1] maps")
    print(f"same top-1 class ours vs timm: {same_top1}; wrote {args.out}")


if __name__ == "__main__":
    main()
