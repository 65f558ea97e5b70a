"""CPU bench shaped like Qiu Table V: R-FCN vs R-FCN + GAP vs R-FCN + GWAP at 1 %, 2 %, 5 %, 10 % boxed images.

Qiu §VI trains on VOC 07+12 with ResNet-50; here the same three models are trained on multi-digit MNIST128
(1–4 digits per 128×128 canvas, 10 classes, ink boxes) with a small timm backbone so that the 12 trainings
fit in minutes on two CPU cores. Every (method, fraction) pair uses the same boxed images, the same
initialization of the shared layers and the same number of steps with the same number of boxed images per
step; the multi-task models add label-only images to each step (``loss_det + 0.1 · loss_weak``). mAP is the
VOC 2007 11-point mAP on MNIST128 *test* canvases (digits from the test pool, never seen in training).

The settings were fixed before any run and checked on the *val* split (``settings={"eval_split": "val"}``),
never tuned on test.

Threads: the bench runs with ``settings["threads"]`` torch threads (default 1, restored afterwards). On the
shared 2-core machine, two intra-op threads made a training step up to 25× slower whenever other processes
kept the cores busy (OpenMP workers spin-waiting for a core), while one thread loses little on these small maps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import torch

from wsol.detection.rfcn import RFCNSpec, build_rfcn
from wsol.detection.semi import (
    MNIST128Detection,
    SemiSupervisedDataset,
    SemiTrainConfig,
    evaluate_detector,
    select_boxed,
    train_semi,
)

__all__ = ["DEFAULT_SETTINGS", "QUICK_SETTINGS", "run_semi_supervised_table"]

#: the full bench (12 trainings)
DEFAULT_SETTINGS: dict[str, Any] = {
    "methods": ["rfcn", "rfcn+gap", "rfcn+gwap"],
    "fractions": [0.01, 0.02, 0.05, 0.1],
    "n_train": 2000,
    "n_test": 500,
    "eval_split": "test",
    "min_digits": 1,
    "max_digits": 4,
    "backbone": "timm:lcnet_100",
    "backbone_kwargs": {"stage": 2},
    "ps_bins": 3,
    "reduce_channels": 64,
    "rpn_channels": 32,
    "anchor_sizes": [16.0, 24.0, 32.0],
    "aspect_ratios": [1.0, 2.0],
    "steps": 600,
    "boxed_per_batch": 4,
    "label_only_per_batch": 12,
    "optimizer": "adam",
    "lr": 3e-3,
    "weak_weight": 0.1,
    "region_weight": 1.0,
    "region_margin": 1.0,
    "hflip": False,
    "threads": 1,
}
#: ``quick=True``: a smoke run of the same pipeline (2 fractions, short training, small sets)
QUICK_SETTINGS: dict[str, Any] = {
    **DEFAULT_SETTINGS,
    "fractions": [0.02, 0.1],
    "n_train": 400,
    "n_test": 100,
    "steps": 60,
    "label_only_per_batch": 4,
}


def _spec(s: Mapping[str, Any], method: str) -> RFCNSpec:
    return RFCNSpec(
        backbone=s["backbone"], backbone_kwargs=dict(s["backbone_kwargs"]), in_chans=1, variant=method,
        ps_bins=s["ps_bins"], reduce_channels=s["reduce_channels"], rpn_channels=s["rpn_channels"],
        anchor_sizes=list(s["anchor_sizes"]), aspect_ratios=list(s["aspect_ratios"]),
        rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=100, rpn_pre_nms_top_n_test=1000,
        rpn_post_nms_top_n_test=50, rpn_batch_size_per_image=128, roi_batch_size_per_image=64, freeze_bn=False,
    )


def run_semi_supervised_table(
    *,
    quick: bool,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train every (method, boxed fraction) pair on MNIST128 and report test mAP (Qiu Table V's shape).

    Args:
        quick: the small smoke configuration (:data:`QUICK_SETTINGS`, about a minute) instead of the full one
            (:data:`DEFAULT_SETTINGS`, 12 trainings).
        seed: seed of the canvases' boxed draw, the initialization and the batch order.
        log: progress lines (one per training).
        settings: overrides of the chosen settings (e.g. ``{"eval_split": "val"}``).

    Returns:
        ``{"rows": [{method, boxed_fraction, boxed_images, map, map_area, corloc, train_s, eval_s, steps,
        final_det_cls, final_weak}], "settings": {...}, "wall_s": float, "torch_threads": int}``; ``map`` is the
        VOC 2007 11-point mAP, ``map_area`` the all-point one.
    """
    s = {**(QUICK_SETTINGS if quick else DEFAULT_SETTINGS), **dict(settings or {})}
    threads = torch.get_num_threads()
    torch.set_num_threads(int(s["threads"]))
    try:
        return _run(s, quick, seed, log)
    finally:
        torch.set_num_threads(threads)


def _run(s: Mapping[str, Any], quick: bool, seed: int, log: Callable[[str], None] | None) -> dict[str, Any]:
    from wsol.data.mnist128 import MNIST128

    t_all = time.perf_counter()
    canvas = {"variant": "multilabel", "min_digits": s["min_digits"], "max_digits": s["max_digits"]}
    train_src = MNIST128Detection(MNIST128("train", s["n_train"], seed=seed, **canvas))
    test_src = MNIST128Detection(MNIST128(s["eval_split"], s["n_test"], seed=seed + 1, **canvas))
    labels = [train_src.image_labels(i) for i in range(len(train_src))]
    rows: list[dict[str, Any]] = []
    for frac in s["fractions"]:
        boxed = select_boxed(labels, frac, seed)
        dataset = SemiSupervisedDataset(train_src, boxed)
        for method in s["methods"]:
            plain = method == "rfcn"
            m = s["boxed_per_batch"]
            cfg = SemiTrainConfig(
                steps=s["steps"], batch_size=m if plain else m + s["label_only_per_batch"], boxed_per_batch=m,
                optimizer=s["optimizer"], lr=s["lr"], weight_decay=0.0, lr_milestones=[int(0.75 * s["steps"])],
                weak_weight=s["weak_weight"], region_weight=s["region_weight"], region_margin=s["region_margin"],
                hflip=s["hflip"], grad_clip_norm=10.0, seed=seed, device="cpu", log_every=max(1, s["steps"]),
            )
            torch.manual_seed(seed)
            model = build_rfcn(_spec(s, method), len(train_src.class_names))
            result = train_semi(model, dataset, cfg)
            metrics = evaluate_detector(model, test_src, batch_size=50)
            last = result["history"][-1] if result["history"] else {}
            weak = [v for k, v in last.items() if k.startswith("weak_")]
            row = {
                "method": method,
                "boxed_fraction": float(frac),
                "boxed_images": len(boxed),
                "map": metrics["map"],
                "map_area": metrics["map_area"],
                "corloc": metrics["corloc"],
                "train_s": result["train_s"],
                "eval_s": metrics["eval_s"],
                "steps": result["steps"],
                "final_det_cls": last.get("det_cls"),
                "final_weak": sum(weak) if weak else None,
            }
            rows.append(row)
            if log:
                log(f"{method:>10} boxed {frac:>5.0%} ({len(boxed):>3} images): mAP {row['map']:.4f} "
                    f"(area {row['map_area']:.4f}), train {row['train_s']:.1f} s")
    return {
        "rows": rows,
        "settings": {**s, "seed": seed, "quick": quick},
        "wall_s": time.perf_counter() - t_all,
        "torch_threads": torch.get_num_threads(),
    }
