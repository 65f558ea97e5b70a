"""The MNIST128 pooling study of Gudi et al. 2017 (§4.1, Table 1), on every pooling of the library.

One FC-less LeNet-5 CAM network per pooling is trained on "digit 3 vs rest" canvases (one CAM, the
pooling, then Gudi's per-class output layer ``logit = a·s + d`` — a two-way softmax on one score — with a
sigmoid cross-entropy), then evaluated on unseen digits with three average precisions, each over the test
set ranked by the model's confidence ``sigmoid(logit)``:

* **classification**: TP = a positive canvas;
* **pin-pointing**: TP = a positive canvas whose CAM maximum, mapped to the centre of its receptive
  field in the input, lies inside the GT box;
* **extent**: TP = a positive canvas whose best box from the paper's extraction (peaks above the
  output layer's threshold ``−d/a``, flood fill of each peak's mountain down to a floor, fast
  backprojection with ratio ``r``, one box per mountain) has IoU ≥ 0.5 with the GT (ink) box. ``r`` and
  the floor (a fraction of the map's peak, or 0) are tuned per pooling on a validation split whose digits
  the network never trained on, as the paper tunes ``r`` on a separate set.

The recall denominator is the number of positive canvases, so positives that are missed count.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wsol.atomic import atomic_write_text
from wsol.data.mnist128 import MNIST128
from wsol.localize import ReceptiveField, gudi_detect, receptive_field_chain
from wsol.metrics.boxes import box_iou
from wsol.metrics.classification import average_precision
from wsol.models import CAMNet, create_model
from wsol.trainer import TrainConfig, Trainer

__all__ = [
    "PAPER_TABLE1",
    "SETUPS",
    "Setup",
    "StudyConfig",
    "build_model",
    "evaluate",
    "predict",
    "run_study",
]

#: Gudi et al. 2017 Table 1 (mAP %): classification, pin-pointing, extent.
PAPER_TABLE1: dict[str, tuple[float, float, float]] = {
    "gmp": (99.8, 98.9, 69.5),
    "gap": (99.4, 82.3, 79.1),
    "spam": (99.9, 95.8, 95.8),
}

TASKS = ("classification", "pinpointing", "extent")


@dataclass(frozen=True)
class Setup:
    """One row of the study: a head + pooling (+ regularizer) on the LeNet-5 backbone."""

    key: str
    label: str
    head: str
    pooling: str | None = None
    head_kwargs: dict[str, Any] = field(default_factory=dict)
    regularizer: str = "none"
    reg_weight: float = 0.0


SETUPS: tuple[Setup, ...] = (
    Setup("gmp", "GMP", "cam", "gmp"),
    Setup("gap", "GAP", "cam", "gap"),
    Setup("spam", "SPAM", "cam", "spam"),
    Setup("gwap", "GWAP (class-specific)", "gwap_cs"),
    Setup("lse", "LSE (r=5)", "cam", "lse", {"r": 5.0}),
    Setup("wildcat", "WILDCAT (k=5%, a=0.7)", "cam", "wildcat", {"kmax": 0.05, "alpha": 0.7}),
    Setup("gap5", "GAP-m (m=5)", "gapm", None, {"m": 5}),
    Setup("gap_l1", "GAP + L1 (a=1e-5)", "cam", "gap", {}, "l1", 1e-5),
)


@dataclass
class StudyConfig:
    """Sizes and training recipe of the study (defaults: the `make demo` run, ≤ 10 min on 2 cores)."""

    setups: tuple[str, ...] = tuple(s.key for s in SETUPS)
    train_size: int = 6500
    val_size: int = 300
    test_size: int = 1000
    epochs: int = 1
    batch_size: int = 32
    lr: float = 2e-3
    optimizer: str = "adam"
    lr_step_epochs: int = 1
    lr_gamma: float = 0.3
    seed: int = 0
    ratios: tuple[float, ...] = (0.0, 0.5, 0.75, 1.0)
    floors: tuple[float | None, ...] = (None, 0.1, 0.25, 0.4, 0.6, 0.75)
    mnist_dir: str | None = None
    num_overlays: int = 4
    resume: bool = False

    @classmethod
    def quick(cls) -> StudyConfig:
        """A smoke-test configuration (well under a minute)."""
        return cls(
            setups=("gmp", "gap", "spam"),
            train_size=256,
            val_size=64,
            test_size=128,
            epochs=1,
            ratios=(0.0, 0.5),
            floors=(None, 0.4),
        )


def setup_by_key(key: str) -> Setup:
    for s in SETUPS:
        if s.key == key:
            return s
    raise ValueError(f"unknown setup {key!r}; valid: {', '.join(s.key for s in SETUPS)}")


def build_model(setup: Setup) -> CAMNet:
    """FC-less LeNet-5 + one CAM + ``setup``'s pooling + Gudi's per-class output layer."""
    return create_model(
        "lenet5",
        head=setup.head,
        pooling=setup.pooling,
        num_classes=1,
        in_chans=1,
        output_affine=True,
        **setup.head_kwargs,
    )


@torch.no_grad()
def predict(model: CAMNet, dataset: MNIST128, batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Confidences ``sigmoid(logit)`` ``(N,)`` and raw CAMs ``(N, h, w)`` of the positive class."""
    model.eval()
    scores, cams = [], []
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    model = model.to(memory_format=torch.channels_last)
    for images, _ in loader:
        logits, maps = model(images.contiguous(memory_format=torch.channels_last))
        scores.append(torch.sigmoid(logits[:, 0].float()))
        cams.append(maps[:, 0].float())
    return torch.cat(scores).numpy(), torch.cat(cams).numpy()


def _peak_centres(cams: np.ndarray, rf: ReceptiveField) -> tuple[np.ndarray, np.ndarray]:
    """Input-pixel centre of the receptive field of each CAM's maximum (first in row-major order)."""
    flat = cams.reshape(len(cams), -1).argmax(axis=1)
    ys, xs = np.unravel_index(flat, cams.shape[1:])
    x0, y0, x1, y1 = rf.project(xs, ys)
    return (x0 + x1) / 2.0, (y0 + y1) / 2.0


def evaluate(
    scores: np.ndarray,
    cams: np.ndarray,
    dataset: MNIST128,
    rf: ReceptiveField,
    cam_threshold: float,
    ratio: float,
    floor_fraction: float | None = None,
) -> dict[str, Any]:
    """Classification, pin-pointing and extent AP (%) of one model on ``dataset`` (see module docstring).

    ``floor_fraction=None`` floods mountains down to 0 (every activated pixel); a number floods down to
    that fraction of each map's peak (:func:`wsol.localize.gudi_detect`'s ``relative_floor``).
    """
    n = len(dataset)
    size = dataset.config.canvas_size
    anns = [dataset.annotation(i) for i in range(n)]
    positive = np.array([int(a.labels[0]) == dataset.config.positive_digit for a in anns])
    gt = [a.boxes() for a in anns]
    px, py = _peak_centres(cams, rf)
    point_hit = np.array(
        [
            bool(p) and bool(((g[:, 0] <= x) & (x <= g[:, 2]) & (g[:, 1] <= y) & (y <= g[:, 3])).any())
            for p, g, x, y in zip(positive, gt, px, py, strict=True)
        ]
    )
    detections = gudi_detect(
        cams, cam_threshold, rf=rf, image_size=(size, size), ratio=ratio, relative_floor=floor_fraction
    )
    best_boxes = [d.boxes[0] if len(d.boxes) else None for d in detections]
    extent_hit = np.array(
        [
            bool(p) and b is not None and float(box_iou(b[None], g).max()) >= 0.5
            for p, b, g in zip(positive, best_boxes, gt, strict=True)
        ]
    )
    n_pos = int(positive.sum())
    return {
        "classification": 100 * average_precision(scores, positive),
        "pinpointing": 100 * average_precision(scores, point_hit, num_positives=n_pos),
        "extent": 100 * average_precision(scores, extent_hit, num_positives=n_pos),
        "accuracy": 100 * float(((scores > 0.5) == positive).mean()),
        "no_box_positives": int(sum(b is None for b, p in zip(best_boxes, positive, strict=True) if p)),
        "best_boxes": best_boxes,
        "positive": positive,
    }


def _datasets(cfg: StudyConfig) -> dict[str, MNIST128]:
    kw: dict[str, Any] = {"variant": "binary", "seed": cfg.seed, "mnist_dir": cfg.mnist_dir}
    return {
        "train": MNIST128("train", cfg.train_size, **kw),
        "val": MNIST128("val", cfg.val_size, **kw),
        "test": MNIST128("test", cfg.test_size, **kw),
    }


def _machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def run_setup(
    setup: Setup, data: dict[str, MNIST128], cfg: StudyConfig, out_dir: Path, progress: bool = False
) -> tuple[dict[str, Any], CAMNet, np.ndarray, np.ndarray, ReceptiveField]:
    """Train one pooling, tune ``r`` on the validation split, evaluate on the test split."""
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    model = build_model(setup)
    train_cfg = TrainConfig(
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        optimizer=cfg.optimizer,
        lr=cfg.lr,
        lr_step_epochs=cfg.lr_step_epochs,
        lr_gamma=cfg.lr_gamma,
        loss="bce",
        regularizer=setup.regularizer,
        reg_weight=setup.reg_weight,
        seed=cfg.seed,
        device="cpu",
        out_dir=str(out_dir / "runs" / setup.key),
        progress=progress,
        channels_last=True,
    )
    # --resume: a pooling whose training finished is not trained again; an interrupted one continues from its
    # last complete epoch (the trainer's atomic last.pt), which gives the same weights as an uninterrupted run
    history = Trainer(model, data["train"], data["val"], train_cfg).fit(resume=cfg.resume)
    train_s = time.perf_counter() - start
    size = data["test"].config.canvas_size
    rf = receptive_field_chain(model, (size, size), in_channels=1)
    threshold = float(model.head.cam_thresholds()[0])
    val_scores, val_cams = predict(model, data["val"])
    val_extent = {
        (r, f): evaluate(val_scores, val_cams, data["val"], rf, threshold, r, f)["extent"]
        for r in cfg.ratios
        for f in cfg.floors
    }
    ratio, floor = max(val_extent, key=lambda k: (val_extent[k], -k[0], -(k[1] or 0.0)))
    scores, cams = predict(model, data["test"])
    result = evaluate(scores, cams, data["test"], rf, threshold, ratio, floor)
    row = {
        "key": setup.key,
        "label": setup.label,
        "head": setup.head,
        "pooling": setup.pooling,
        "head_kwargs": setup.head_kwargs,
        "regularizer": setup.regularizer,
        "reg_weight": setup.reg_weight,
        **{t: round(result[t], 2) for t in TASKS},
        "accuracy": round(result["accuracy"], 2),
        "paper": dict(zip(TASKS, PAPER_TABLE1[setup.key], strict=True)) if setup.key in PAPER_TABLE1 else None,
        "ratio": ratio,
        "floor_fraction": floor,
        "val_extent": {f"r={r},floor={f}": round(v, 2) for (r, f), v in val_extent.items()},
        "cam_threshold": threshold,
        "no_box_positives": result["no_box_positives"],
        "final_train_loss": history[-1].get("train_loss"),
        "final_val_loss": history[-1].get("val_loss"),
        "train_seconds": round(train_s, 1),
        "total_seconds": round(time.perf_counter() - start, 1),
    }
    return row, model, scores, cams, rf


def run_study(
    cfg: StudyConfig, out_dir: str | os.PathLike[str], json_path: str | os.PathLike[str] | None = None,
    progress: bool = False, log: Any = print,
) -> dict[str, Any]:
    """Run every setup of ``cfg``; write ``results.json``, ``table.md``, the bar chart and overlays."""
    from wsol.experiments.report import format_table, save_bar_chart, save_overlays

    out = Path(out_dir)
    setups = [setup_by_key(k) for k in cfg.setups]
    start = time.perf_counter()
    data = _datasets(cfg)
    rows = []
    for setup in setups:
        log(f"[{setup.key}] training {setup.label} on {cfg.train_size} canvases for {cfg.epochs} epoch(s)...")
        row, _model, scores, cams, rf = run_setup(setup, data, cfg, out, progress)
        rows.append(row)
        log(
            f"[{setup.key}] classification {row['classification']:.1f}  pin-pointing {row['pinpointing']:.1f}  "
            f"extent {row['extent']:.1f}  (r={row['ratio']}, {row['total_seconds']:.0f} s)"
        )
        save_overlays(out / "overlays" / f"{setup.key}.png", data["test"], cams, scores, rf, row, cfg.num_overlays)
    report = {
        "study": "MNIST128 two-class (digit 3 vs rest), Gudi et al. 2017 Table 1",
        "config": asdict(cfg),
        "machine": _machine(),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "results": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2, default=float)
    for path in {out / "results.json", Path(json_path) if json_path else out / "results.json"}:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text + "\n")
    atomic_write_text(out / "table.md", format_table(rows) + "\n")
    save_bar_chart(out / "mnist128_bars.png", rows)
    return report
