r"""Fine-grained recognition with CAM crops (Zhou et al. 2016 §4.1, Table 4).

The paper's pipeline on CUB-200-2011, with "generic localizable deep features":

1. **Full image.** GAP features of every train and test image (:meth:`wsol.localizer.Localizer.features`:
   the whole image resized to the network input, backbone, spatial mean of the last feature maps); a linear
   classifier is fitted on the train features (Zhou: "a linear SVM on the output of the GAP layer";
   :func:`wsol.localizer.fit_linear_head`, ``classifier="svm"`` by default) and scored on the test features.
   Paper: 63.0% with GoogLeNet-GAP.
2. **CAM crop.** "Use a similar approach as Sec. 3.2 (i.e., thresholding) to first identify bird bounding
   boxes in both the train and test sets": the CAM of the top-1 class, bilinearly upsampled to the input,
   min-max normalized, thresholded at 20% of its maximum, the box around the largest connected component
   (``box_strategy="zhou"``, :func:`wsol.localize.zhou_boxes`), mapped back to original pixels. The CAM is
   that of the full-image linear classifier (``cam_source="linear"``: :math:`M_c = \sum_k w_k^c f_k` with
   the fitted weights, the paper's generic-feature setting; class = its top-1 prediction, on train images
   too — the paper does not use labels to localize) or the network's own head (``cam_source="model"``, e.g.
   a checkpoint trained on CUB). "We then use GoogLeNet-GAP to extract features again from the crops inside
   the bounding box, for training and testing", and retrain the linear classifier. Paper: 67.8%.
3. **Ground-truth box crop** (when every record has a box): the same on the annotated box (for several
   boxes, the box around those of the image's class; corners rounded outward, clipped to the decoded image).
   Paper: 70.5%.
4. **Localization**: the fraction of test images whose CAM box has IoU ≥ 0.5 (inclusive ``+1`` convention,
   :func:`wsol.metrics.boxes.box_iou`) with a ground-truth box of the image. Paper: 41.0%.

The paper combines nothing (no full + crop fusion), so neither do we. An image whose CAM is degenerate
(constant / non-finite: no box) is cropped to the whole image and counted in ``n_fallback``. An image that
cannot be decoded is reported (:class:`~wsol.data.metadata.MetadataProblem`) and left out of every number.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from torch import nn

from wsol.data.metadata import MetadataProblem
from wsol.data.records import DatasetIndex, ImageRecord
from wsol.io import DEFAULT_MAX_PIXELS, ImageLoadError, load_image
from wsol.localizer import LinearHead, Localizer, fit_linear_head
from wsol.metrics.boxes import box_iou
from wsol.metrics.classification import accuracy

__all__ = ["PAPER_TABLE4", "FineGrainedResult", "SplitFeatures", "crop", "gt_crop_box", "run_finegrained"]

#: Zhou et al. 2016 Table 4 (GoogLeNet-GAP on CUB-200-2011, %) and §4.1's localization rate.
PAPER_TABLE4: dict[str, float] = {"full": 63.0, "crop": 67.8, "bbox": 70.5, "cam_box_iou50": 41.0}

CamSource = Literal["linear", "model"]
#: ``progress(stage, done, total)``: called after each batch (stage e.g. ``"train: full image"``).
Progress = Callable[[str, int, int], None]


@dataclass
class SplitFeatures:
    """Everything extracted from one split.

    Attributes:
        records: the records whose image could be decoded (in index order).
        labels: ``(N,)`` int64 class of each.
        full: ``(N, K)`` GAP features of the whole images.
        crop: ``(N, K)`` GAP features of the CAM crops (empty until computed).
        bbox: ``(N, K)`` GAP features of the ground-truth box crops, or None.
        cam_boxes: ``(N, 4)`` int64 CAM boxes in original pixels (inclusive corners).
        fallback: ``(N,)`` bool, the CAM gave no box and the crop is the whole image.
        problems: images that could not be decoded.
    """

    records: list[ImageRecord] = field(default_factory=list)
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    full: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    crop: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    bbox: np.ndarray | None = None
    cam_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64))
    fallback: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    problems: list[MetadataProblem] = field(default_factory=list)


@dataclass
class FineGrainedResult:
    """Accuracies of Zhou et al. 2016 Table 4 (fractions in ``[0, 1]``) and what they came from.

    Attributes:
        accuracy_full: test accuracy of the classifier on whole-image features.
        accuracy_crop: test accuracy of the classifier retrained on CAM-crop features.
        accuracy_bbox: the same on ground-truth box crops (None when some record has no box).
        cam_box_iou50: fraction of test images whose CAM box has IoU ≥ 0.5 with a ground-truth box (None
            without boxes).
        train_accuracy: training accuracy of each classifier (``"full"``, ``"crop"``, ``"bbox"``).
        heads: the fitted classifiers (``"full"`` can be used with ``wsol localize --linear-head``).
        class_names: class names.
        settings: the run's parameters (JSON-ready).
        train, test: the per-split features, boxes and problems.
    """

    accuracy_full: float
    accuracy_crop: float
    accuracy_bbox: float | None
    cam_box_iou50: float | None
    train_accuracy: dict[str, float]
    heads: dict[str, LinearHead]
    class_names: list[str]
    settings: dict[str, Any]
    train: SplitFeatures
    test: SplitFeatures
    test_predictions: dict[str, np.ndarray] = field(default_factory=dict)
    test_ious: np.ndarray | None = None

    @property
    def problems(self) -> list[MetadataProblem]:
        """Images of both splits that were skipped."""
        return self.train.problems + self.test.problems

    def summary(self) -> dict[str, Any]:
        """Accuracies, counts and settings (JSON-ready, no per-image data)."""
        return {
            "accuracy": {"full": self.accuracy_full, "crop": self.accuracy_crop, "bbox": self.accuracy_bbox},
            "cam_box_iou50": self.cam_box_iou50,
            "train_accuracy": dict(self.train_accuracy),
            "paper_zhou2016_table4_percent": dict(PAPER_TABLE4),
            "n_train": len(self.train.records),
            "n_test": len(self.test.records),
            "num_classes": len(self.class_names),
            "n_fallback": {"train": int(self.train.fallback.sum()), "test": int(self.test.fallback.sum())},
            "settings": dict(self.settings),
            "skipped": [str(p) for p in self.problems],
        }

    def to_dict(self) -> dict[str, Any]:
        """:meth:`summary` plus one entry per test image (id, label, predictions, CAM box, IoU)."""
        images = []
        for i, r in enumerate(self.test.records):
            entry: dict[str, Any] = {"image_id": r.image_id, "label": int(self.test.labels[i])}
            for kind, pred in self.test_predictions.items():
                entry[f"pred_{kind}"] = int(pred[i])
            entry["cam_box"] = [int(v) for v in self.test.cam_boxes[i]]
            entry["cam_box_fallback"] = bool(self.test.fallback[i])
            if self.test_ious is not None:
                entry["iou"] = round(float(self.test_ious[i]), 6)
            images.append(entry)
        return {**self.summary(), "test_images": images}

    def to_markdown(self) -> str:
        """Zhou et al. 2016 Table 4 next to ours (percent)."""

        def pct(v: float | None) -> str:
            return "–" if v is None else f"{100 * v:.1f}"

        s = self.settings
        rows = [
            ("full image", "n/a", self.accuracy_full, PAPER_TABLE4["full"]),
            (f"CAM crop ({s.get('cam_source')} CAM, threshold {s.get('threshold')})", "n/a", self.accuracy_crop,
             PAPER_TABLE4["crop"]),
            ("ground-truth box crop", "BBox", self.accuracy_bbox, PAPER_TABLE4["bbox"]),
        ]  # fmt: skip
        lines = [
            "## Fine-grained recognition (Zhou et al. 2016 §4.1)",
            "",
            f"{len(self.train.records)} train / {len(self.test.records)} test images, {len(self.class_names)} "
            f"classes; model `{s.get('model')}`, classifier `{s.get('classifier')}` (C={s.get('C')}) on GAP features.",
            "",
            "| features | train/test annotation | accuracy (%) | Zhou et al. 2016 Table 4, GoogLeNet-GAP on CUB (%) |",
            "|---|---|---|---|",
            *[f"| {name} | {anno} | {pct(v)} | {paper:.1f} |" for name, anno, v, paper in rows],
            "",
            f"CAM boxes with IoU ≥ 0.5 on the test images: {pct(self.cam_box_iou50)}% (paper: "
            f"{PAPER_TABLE4['cam_box_iou50']:.1f}%). CAMs without a box (crop = whole image): "
            f"{int(self.train.fallback.sum())} train, {int(self.test.fallback.sum())} test.",
        ]
        if self.problems:
            lines += ["", f"Skipped images: {len(self.problems)} (listed in the JSON)."]
        return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------
def crop(image: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """``image[y0 : y1 + 1, x0 : x1 + 1]`` for an inclusive integer box clipped to the image (at least 1 px)."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in box)
    x0, x1 = min(max(x0, 0), w - 1), min(max(x1, 0), w - 1)
    y0, y1 = min(max(y0, 0), h - 1), min(max(y1, 0), h - 1)
    return np.ascontiguousarray(image[y0 : max(y0, y1) + 1, x0 : max(x0, x1) + 1])


def gt_crop_box(record: ImageRecord) -> np.ndarray:
    """The box around the record's ground-truth boxes of its class (all boxes if none has that class),
    corners rounded outward: ``[⌊x0⌋, ⌊y0⌋, ⌈x1⌉, ⌈y1⌉]`` int64."""
    boxes = record.boxes
    own = boxes[record.box_labels == record.label]
    use = own if len(own) else boxes
    return np.array(
        [math.floor(use[:, 0].min()), math.floor(use[:, 1].min()), math.ceil(use[:, 2].max()),
         math.ceil(use[:, 3].max())], dtype=np.int64
    )  # fmt: skip


def _check_indices(train: DatasetIndex, test: DatasetIndex) -> list[str]:
    for name, idx in (("train_index", train), ("test_index", test)):
        if not isinstance(idx, DatasetIndex):
            raise ValueError(f"{name} must be a DatasetIndex, got {type(idx).__name__}")
        if idx.multilabel:
            raise ValueError(f"{name} ({idx.name}) is multi-label; fine-grained recognition needs one label per image")
        if len(idx) == 0:
            raise ValueError(f"{name} ({idx.name}, split {idx.split!r}) has no image")
        for r in idx.records:
            if len(r.labels) != 1:
                raise ValueError(f"{name}: image {r.image_id} has labels {r.labels}, not exactly one")
    if list(train.class_names) != list(test.class_names):
        raise ValueError(
            f"train and test class names differ ({train.num_classes} vs {test.num_classes} classes); "
            "read both splits with the same reader"
        )
    return list(train.class_names)


def _batches(
    records: list[ImageRecord], batch_size: int, max_pixels: int | None, problems: list[MetadataProblem] | None
) -> Iterator[tuple[int, list[int], list[np.ndarray]]]:
    """``(end, positions, decoded RGB arrays)``, ``batch_size`` records at a time; undecodable images are
    reported (into ``problems`` when given) and left out."""
    for start in range(0, len(records), batch_size):
        end = min(start + batch_size, len(records))
        keep, frames = [], []
        for i in range(start, end):
            try:
                frames.append(np.asarray(load_image(records[i].path, max_pixels=max_pixels)))
                keep.append(i)
            except ImageLoadError as err:
                if problems is not None:
                    reason = " ".join(str(err.reason).split())
                    problems.append(MetadataProblem(str(records[i].path), None, records[i].image_id, reason))
        yield end, keep, frames


def _cam_boxes(localizer: Localizer, frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Top-1 CAM box per frame (whole image when the CAM gives none) and the fallback flags."""
    boxes = np.zeros((len(frames), 4), dtype=np.int64)
    fallback = np.zeros(len(frames), dtype=bool)
    for j, (frame, pred) in enumerate(zip(frames, localizer.predict_arrays(frames), strict=True)):
        b = pred.top1.boxes
        if len(b):
            boxes[j] = b[0]
        else:
            boxes[j] = [0, 0, frame.shape[1] - 1, frame.shape[0] - 1]
            fallback[j] = True
    return boxes, fallback


def _extract(
    localizer: Localizer,
    index: DatasetIndex,
    *,
    box_localizer: Localizer | None,
    with_bbox: bool,
    batch_size: int,
    max_pixels: int | None,
    progress: Progress | None,
    stage: str,
    reference: SplitFeatures | None = None,
) -> SplitFeatures:
    """One pass over ``index``: full-image features (unless ``reference`` holds them), ground-truth crop
    features and, with ``box_localizer``, CAM boxes and crop features."""
    records = index.records if reference is None else reference.records
    out = SplitFeatures(records=[], problems=[] if reference is None else reference.problems)
    full, bbox, crops, boxes, fallback = [], [], [], [], []
    for end, keep, frames in _batches(records, batch_size, max_pixels, out.problems if reference is None else None):
        if reference is not None and len(keep) != len(frames):  # pragma: no cover - file changed between passes
            raise ValueError(f"{stage}: an image that decoded in the first pass no longer does")
        out.records.extend(records[i] for i in keep)
        if frames and reference is None:
            full.append(localizer.features(frames))
            if with_bbox:
                gt = [crop(f, gt_crop_box(records[i])) for i, f in zip(keep, frames, strict=True)]
                bbox.append(localizer.features(gt))
        if frames and box_localizer is not None:
            b, fb = _cam_boxes(box_localizer, frames)
            boxes.append(b)
            fallback.append(fb)
            crops.append(localizer.features([crop(f, bx) for f, bx in zip(frames, b, strict=True)]))
        if progress is not None:
            progress(stage, end, len(records))
    if reference is not None:
        out.full, out.bbox = reference.full, reference.bbox
    else:
        out.full = np.concatenate(full) if full else np.zeros((0, 0), np.float32)
        out.bbox = (np.concatenate(bbox) if bbox else None) if with_bbox else None
    out.labels = np.array([r.label for r in out.records], dtype=np.int64)
    if box_localizer is not None and boxes:
        out.cam_boxes, out.fallback = np.concatenate(boxes), np.concatenate(fallback)
        out.crop = np.concatenate(crops)
    return out


def _scores(head: LinearHead, features: np.ndarray) -> np.ndarray:
    return features.astype(np.float64) @ head.weight.T.astype(np.float64) + head.bias


def _iou50(split: SplitFeatures) -> tuple[float, np.ndarray]:
    ious = np.zeros(len(split.records))
    for i, r in enumerate(split.records):
        own = r.boxes[r.box_labels == r.label]
        gt = own if len(own) else r.boxes
        ious[i] = float(box_iou(split.cam_boxes[i : i + 1].astype(np.float64), gt).max())
    return float(np.mean(ious >= 0.5)), ious


# ----------------------------------------------------------------------------------------------------------
# the experiment
# ----------------------------------------------------------------------------------------------------------
def run_finegrained(
    model: str | os.PathLike[str] | nn.Module,
    train_index: DatasetIndex,
    test_index: DatasetIndex,
    *,
    cam_source: CamSource = "linear",
    threshold: float = 0.2,
    classifier: Literal["svm", "logreg"] = "svm",
    C: float = 1.0,
    input_size: int | tuple[int, int] | None = None,
    device: str = "cpu",
    batch_size: int = 32,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    use_gt_boxes: bool = True,
    progress: Progress | None = None,
) -> FineGrainedResult:
    """Zhou et al. 2016 §4.1: accuracy on full images, on CAM crops and on ground-truth crops (module docstring).

    Args:
        model: a CAM network (:class:`~wsol.models.base.CAMNet`), a model checkpoint or a pretrained name.
        train_index, test_index: single-label splits with the same classes (e.g. ``build_index("cub", …)``).
        cam_source: ``"linear"`` (CAM of the full-image linear classifier, the paper's generic features) or
            ``"model"`` (the network's own top-1 CAM).
        threshold: Zhou's box threshold, a fraction of the CAM maximum (paper: 0.2).
        classifier: ``"svm"`` (Zhou's linear SVM) or ``"logreg"``; ``C`` its inverse regularization.
        input_size: network input ``(h, w)`` or one int (default: the model's ``pretrained_cfg``).
        device: torch device.
        batch_size: images per forward pass.
        max_pixels: decompression-bomb guard of :func:`wsol.io.load_image` (None = no limit).
        use_gt_boxes: also report the ground-truth box crop accuracy and the CAM boxes' IoU (needs a box on
            every record; silently off otherwise).
        progress: optional ``progress(stage, done, total)`` callback.

    Raises:
        ValueError: multi-label or empty splits, differing class names, an image without exactly one label,
            bad options, a class with no decodable training image, unknown model.
    """
    if cam_source not in ("linear", "model"):
        raise ValueError(f"cam_source must be 'linear' or 'model', got {cam_source!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    names = _check_indices(train_index, test_index)
    common = {"device": device, "batch_size": batch_size, "input_size": input_size, "topk": 1,
              "box_strategy": "zhou", "strategy_kwargs": {"threshold": threshold}}  # fmt: skip
    localizer = Localizer(model, **common)
    net = localizer.model
    with_bbox = bool(use_gt_boxes) and all(len(r.boxes) for r in (*train_index.records, *test_index.records))
    own = localizer if cam_source == "model" else None
    kw = {"with_bbox": with_bbox, "batch_size": batch_size, "max_pixels": max_pixels, "progress": progress}
    train = _extract(localizer, train_index, box_localizer=own, stage="train", **kw)
    test = _extract(localizer, test_index, box_localizer=own, stage="test", **kw)
    if not len(train.records) or not len(test.records):
        raise ValueError("no decodable image left in the train or the test split")
    heads = {"full": fit_linear_head(train.full, train.labels, names, classifier, C)}
    if cam_source == "linear":
        box_localizer = Localizer(net, linear_head=heads["full"], **common)
        train = _extract(localizer, train_index, box_localizer=box_localizer, stage="train", reference=train, **kw)
        test = _extract(localizer, test_index, box_localizer=box_localizer, stage="test", reference=test, **kw)
    heads["crop"] = fit_linear_head(train.crop, train.labels, names, classifier, C)
    if with_bbox:
        heads["bbox"] = fit_linear_head(train.bbox, train.labels, names, classifier, C)
    test_feats = {"full": test.full, "crop": test.crop, "bbox": test.bbox}
    predictions = {k: np.argmax(_scores(h, test_feats[k]), axis=1) for k, h in heads.items()}
    acc = {k: accuracy(_scores(h, test_feats[k]), test.labels) for k, h in heads.items()}
    model_name = str(model) if isinstance(model, str | os.PathLike) else localizer.model_name
    backbone = (getattr(net, "model_spec", None) or {}).get("name")
    for h in heads.values():
        h.model, h.backbone, h.input_size = model_name, backbone, localizer.input_size
    iou50, ious = _iou50(test) if with_bbox else (None, None)
    settings = {
        "model": model_name,
        "cam_source": cam_source,
        "box_strategy": "zhou",
        "threshold": threshold,
        "classifier": classifier,
        "C": C,
        "input_size": list(localizer.input_size),
        "features": "GAP of the backbone's last feature maps (whole image / crop resized to input_size)",
        "train_split": f"{train_index.name}:{train_index.split}",
        "test_split": f"{test_index.name}:{test_index.split}",
    }
    return FineGrainedResult(
        accuracy_full=acc["full"],
        accuracy_crop=acc["crop"],
        accuracy_bbox=acc.get("bbox"),
        cam_box_iou50=iou50,
        train_accuracy={k: h.train_accuracy for k, h in heads.items()},
        heads=heads,
        class_names=names,
        settings=settings,
        train=train,
        test=test,
        test_predictions=predictions,
        test_ious=ious,
    )
