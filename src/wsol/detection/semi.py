"""Semi-supervised multi-task detection (Qiu §III-D, §VI, Table V): data mixing, losses, training, detection, mAP.

Some training images have boxes and labels, the others labels only (a proportion ``boxed_fraction`` of
boxed images, :func:`select_boxed`). Every image trains the branches its annotation allows:

* the **detection** loss (R-FCN: RPN + position-sensitive head, :meth:`RFCN.detection_losses`) only on boxed
  images;
* the **weak** loss on all images: the multi-label sigmoid cross-entropy of each weak head's image logits
  (:func:`weak_classification_loss`), plus, on boxed images, Qiu's local object-region regularization of the
  class-specific score map (:func:`region_regularization`).

``loss = loss_det + λ · loss_weak``, ``λ = 0.1`` (Qiu §III-D). A :class:`MixingBatchSampler` fixes how many
boxed images each mini-batch holds, so that with 1 % boxed images the detection branch still sees boxes at
every step; the plain R-FCN baseline draws boxed images only (it cannot use the others).

Boxes at the API (:func:`detect`, sources, evaluation) are *inclusive* pixel corners ``[x0, y0, x1, y1]`` in
the original image (:mod:`wsol.metrics.boxes`); inside the model they are continuous input-pixel boxes
(``[x0, y0, x1 + 1, y1 + 1]`` times the resize factor).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import random
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from wsol.atomic import atomic_write_text
from wsol.detection.rfcn import RFCN
from wsol.trainer import atomic_torch_save, derive_seed, resolve_device

__all__ = [
    "DetectionSource",
    "MNIST128Detection",
    "MixingBatchSampler",
    "RecordDetection",
    "SemiSupervisedDataset",
    "SemiTrainConfig",
    "collate_detection",
    "detect",
    "evaluate_detector",
    "region_regularization",
    "sanitize_annotation",
    "select_boxed",
    "semi_supervised_losses",
    "train_semi",
    "weak_classification_loss",
]

CHECKPOINT_FORMAT_VERSION = 1  # same number as wsol.trainer's, so wsol.trainer.load_checkpoint reads these too


class AnnotationWarning(UserWarning):
    """A training annotation was repaired or an image demoted to label-only (the message names the image)."""


# ----------------------------------------------------------------------------------------------------------
# Sources: images + annotations in original pixels
# ----------------------------------------------------------------------------------------------------------
class DetectionSource(Protocol):
    """What the semi-supervised pipeline needs from a dataset (see :class:`MNIST128Detection`)."""

    class_names: list[str]
    in_chans: int

    def __len__(self) -> int: ...

    def image_id(self, i: int) -> str: ...

    def image_labels(self, i: int) -> tuple[int, ...]:
        """Classes present in image ``i`` (no image decoding)."""
        ...

    def ground_truth(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(boxes (K, 4) inclusive original pixels, box_labels (K,), difficult (K,))`` without decoding."""
        ...

    def load(self, i: int) -> tuple[Tensor, float, tuple[int, int]] | None:
        """``(image (C, H, W) float in [0, 1], scale = input size / original size, original (height, width))``;
        None if the image cannot be decoded."""
        ...


class MNIST128Detection:
    """A multi-label (or multiclass) :class:`wsol.data.mnist128.MNIST128` split as a detection source.

    Canvases are rendered once and kept (uint8, ``n × 128 × 128`` bytes). Boxes are the ink boxes by default
    (``box_kind="placement"`` for the 28×28 squares).

    Raises:
        ValueError: a binary-variant dataset (its target is not a class of the digit boxes).
    """

    def __init__(self, dataset: Any, box_kind: Literal["ink", "placement"] = "ink") -> None:
        variant = dataset.config.variant
        if variant == "binary":
            raise ValueError("MNIST128Detection needs variant='multilabel' or 'multiclass' (the digit classes)")
        if box_kind not in ("ink", "placement"):
            raise ValueError(f"box_kind must be 'ink' or 'placement', got {box_kind!r}")
        self.dataset = dataset
        self.box_kind = box_kind
        self.class_names = [str(d) for d in range(10)]
        self.in_chans = 1
        self._canvases: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def image_id(self, i: int) -> str:
        return f"{self.dataset.config.split}/{i}"

    @functools.cache  # noqa: B019 - one source per run, a few thousand tiny entries
    def _annotation(self, i: int) -> Any:
        return self.dataset.annotation(i)

    def image_labels(self, i: int) -> tuple[int, ...]:
        return tuple(sorted({int(c) for c in self._annotation(i).labels}))

    def ground_truth(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ann = self._annotation(i)
        boxes = ann.boxes(self.box_kind).astype(np.float64)
        return boxes, ann.labels.astype(np.int64), np.zeros(len(ann.labels), dtype=bool)

    def load(self, i: int) -> tuple[Tensor, float, tuple[int, int]]:
        if i not in self._canvases:
            self._canvases[i] = self.dataset.canvas_uint8(i)[0]
        canvas = self._canvases[i]
        return torch.from_numpy(canvas).float().div_(255.0).unsqueeze(0), 1.0, canvas.shape[:2]


class RecordDetection:
    """A :class:`wsol.data.records.DatasetIndex` (e.g. the ``"voc"`` reader) as a detection source.

    Images are resized keeping their aspect ratio so that the shorter side is ``min_size`` unless the longer
    side would exceed ``max_size`` (R-FCN / Faster R-CNN: 600 / 1000), bilinear (``cv2.INTER_LINEAR``).
    An undecodable image is reported once (:class:`wsol.data.records.UnreadableImageWarning`) and skipped.
    """

    def __init__(self, index: Any, min_size: int = 600, max_size: int = 1000) -> None:
        if min_size < 1 or max_size < min_size:
            raise ValueError(f"need 1 <= min_size <= max_size, got min_size={min_size}, max_size={max_size}")
        self.index = index
        self.min_size, self.max_size = int(min_size), int(max_size)
        self.class_names = list(index.class_names)
        self.in_chans = 3
        self._bad: set[str] = set()

    def __len__(self) -> int:
        return len(self.index)

    def image_id(self, i: int) -> str:
        return self.index.records[i].image_id

    def image_labels(self, i: int) -> tuple[int, ...]:
        r = self.index.records[i]
        return tuple(sorted({int(c) for c in r.labels} | {int(c) for c in r.box_labels}))

    def ground_truth(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r = self.index.records[i]
        return r.boxes.astype(np.float64), r.box_labels.astype(np.int64), r.difficult.astype(bool)

    def load(self, i: int) -> tuple[Tensor, float, tuple[int, int]] | None:
        import cv2

        from wsol.data.records import UnreadableImageWarning
        from wsol.io import ImageLoadError, load_image

        r = self.index.records[i]
        try:
            array = np.asarray(load_image(r.path))
        except ImageLoadError as err:
            if r.image_id not in self._bad:
                self._bad.add(r.image_id)
                warnings.warn(f"skipping {r.image_id}: {err}", UnreadableImageWarning, stacklevel=2)
            return None
        h, w = array.shape[:2]
        scale = min(self.min_size / min(h, w), self.max_size / max(h, w))
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        if (nh, nw) != (h, w):
            array = cv2.resize(array, (nw, nh), interpolation=cv2.INTER_LINEAR)
        # the exact per-axis factors are nw / w and nh / h; their difference is below one pixel
        image = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float().div_(255.0)
        return image, nw / w, (h, w)


# ----------------------------------------------------------------------------------------------------------
# Annotation checks and the boxed / label-only split
# ----------------------------------------------------------------------------------------------------------
def sanitize_annotation(
    boxes: np.ndarray,
    box_labels: np.ndarray,
    difficult: np.ndarray,
    labels: Sequence[int],
    size: tuple[int, int],
    num_classes: int,
    image_id: str,
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...], bool, list[str]]:
    """Make one image's annotation usable for training; say what was changed.

    Rules, in order:

    1. a box label outside ``[0, num_classes)`` → ``ValueError`` naming the image (a class-list mismatch);
    2. a box with NaN / inf coordinates or ``x1 < x0`` / ``y1 < y0`` (zero or negative inclusive area) is
       dropped;
    3. boxes are clipped to the image ``[0, W − 1] × [0, H − 1]``; a box entirely outside is dropped;
    4. difficult boxes are not trained on (py-faster-rcnn's ``use_diff=False``) but their class stays present;
    5. the image labels become ``labels ∪ box_labels`` (a box proves its class is present);
    6. ``complete`` is False when a labelled class has no box left (not even a difficult one): such an image must
       not train the detector, which would learn its unboxed objects as background.

    Args:
        boxes: (K, 4) inclusive original-pixel boxes.
        box_labels: (K,) class ids.
        difficult: (K,) flags.
        labels: image-level class ids.
        size: ``(height, width)`` of the original image.
        num_classes: ``C``.
        image_id: for messages.

    Returns:
        ``(boxes (G, 4) float64 inclusive, box_labels (G,) int64, labels, complete, messages)``.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    lab = np.asarray(box_labels, dtype=np.int64).reshape(-1)
    diff = np.asarray(difficult, dtype=bool).reshape(-1) if np.asarray(difficult).size else np.zeros(len(b), bool)
    if len(lab) != len(b) or len(diff) != len(b):
        raise ValueError(f"{image_id}: {len(b)} boxes but {len(lab)} box labels and {len(diff)} difficult flags")
    bad = (lab < 0) | (lab >= num_classes)
    if bad.any():
        raise ValueError(f"{image_id}: box label {int(lab[bad][0])} is outside [0, num_classes={num_classes})")
    img_labels = {int(c) for c in labels}
    if any(c < 0 or c >= num_classes for c in img_labels):
        raise ValueError(f"{image_id}: image label outside [0, num_classes={num_classes}): {sorted(img_labels)}")
    img_labels |= {int(c) for c in lab}
    messages = []
    finite = np.isfinite(b).all(axis=1)
    empty = finite & ((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1]))
    for k in np.flatnonzero(~finite):
        messages.append(f"box {k} has non-finite coordinates; dropped")
    for k in np.flatnonzero(empty):
        messages.append(f"box {k} {b[k].tolist()} has zero area (x1 < x0 or y1 < y0); dropped")
    h, w = size
    ok = finite & ~empty
    clipped = b.copy()
    clipped[ok, 0::2] = np.clip(b[ok, 0::2], 0, w - 1)
    clipped[ok, 1::2] = np.clip(b[ok, 1::2], 0, h - 1)
    outside = ok & ((b[:, 0] > w - 1) | (b[:, 1] > h - 1) | (b[:, 2] < 0) | (b[:, 3] < 0))
    for k in np.flatnonzero(outside):
        messages.append(f"box {k} {b[k].tolist()} lies outside the {w}x{h} image; dropped")
    moved = ok & ~outside & (np.abs(clipped - b).max(axis=1) > 0)
    for k in np.flatnonzero(moved):
        messages.append(f"box {k} {b[k].tolist()} crosses the image border; clipped to {clipped[k].tolist()}")
    ok &= ~outside
    covered = {int(c) for c in lab[ok]}
    missing = sorted(img_labels - covered)
    complete = not missing
    if missing:
        messages.append(f"class(es) {missing} are labelled but have no usable box; image used for the weak loss only")
    train = ok & ~diff
    return clipped[train], lab[train], tuple(sorted(img_labels)), complete, messages


def _check_fraction(boxed_fraction: Any) -> float:
    if isinstance(boxed_fraction, bool) or not isinstance(boxed_fraction, int | float | np.floating):
        raise ValueError(f"boxed_fraction must be a number in (0, 1], got {boxed_fraction!r}")
    f = float(boxed_fraction)
    if not (math.isfinite(f) and 0.0 < f <= 1.0):
        raise ValueError(f"boxed_fraction must be in (0, 1], got {boxed_fraction!r}")
    return f


def select_boxed(
    image_labels: Sequence[Sequence[int]], boxed_fraction: float, seed: int = 0, cover_classes: bool = True
) -> np.ndarray:
    """Indices of the images that keep their boxes: ``max(1, round(n · boxed_fraction))`` drawn at random.

    Qiu §VI: "for each category in the training set, some of the images have both the image-level labels and
    the ground truth bounding boxes". With ``cover_classes`` every class present in the set gets at least
    one boxed image: for each uncovered class (rarest first) the first image holding it in the same random
    order is added, so the count may exceed ``round(n · f)`` by at most the number of classes.

    Args:
        image_labels: per image, the classes present.
        boxed_fraction: in ``(0, 1]``.
        seed: the draw is a pure function of ``(seed, n, boxed_fraction)``.
        cover_classes: guarantee one boxed image per present class.

    Returns:
        Sorted int64 indices.

    Raises:
        ValueError: ``boxed_fraction`` outside ``(0, 1]`` (or not a number), no image.
    """
    f = _check_fraction(boxed_fraction)
    n = len(image_labels)
    if n == 0:
        raise ValueError("select_boxed: no training image")
    count = n if f == 1.0 else max(1, round(n * f))
    order = np.random.default_rng([int(seed), 0x5E31]).permutation(n)
    chosen = set(order[:count].tolist())
    if cover_classes:
        freq: dict[int, int] = {}
        for labs in image_labels:
            for c in set(labs):
                freq[int(c)] = freq.get(int(c), 0) + 1
        covered = {int(c) for i in chosen for c in image_labels[i]}
        for c in sorted(freq, key=lambda c: (freq[c], c)):
            if c in covered:
                continue
            first = next(int(i) for i in order if c in image_labels[int(i)])
            chosen.add(first)
            covered |= {int(x) for x in image_labels[first]}
    return np.array(sorted(chosen), dtype=np.int64)


# ----------------------------------------------------------------------------------------------------------
# Dataset, sampler, collate
# ----------------------------------------------------------------------------------------------------------
class SemiSupervisedDataset(Dataset):
    """Training items of a :class:`DetectionSource` where only the images in ``boxed`` keep their boxes.

    Item (a dict; None for an undecodable image, which :func:`collate_detection` drops):
    ``image`` (C, H, W), ``labels`` (C,) multi-hot float, ``boxes`` (G, 4) float32 continuous input pixels,
    ``box_labels`` (G,) int64, ``has_boxes`` bool (boxed and its annotation is complete), ``size`` (H, W),
    ``scale`` float, ``index`` int. Repairs and demotions (:func:`sanitize_annotation`) warn once per image.

    Args:
        source: the images and annotations.
        boxed: indices of the boxed images (:func:`select_boxed`); the others are label-only.
    """

    def __init__(self, source: DetectionSource, boxed: Sequence[int] | np.ndarray) -> None:
        self.source = source
        self.num_classes = len(source.class_names)
        mask = np.zeros(len(source), dtype=bool)
        idx = np.asarray(boxed, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(source)):
            raise ValueError(f"boxed indices must lie in [0, {len(source)}), got min {idx.min()} max {idx.max()}")
        mask[idx] = True
        self.boxed_mask = mask
        self._warned: set[str] = set()

    def __len__(self) -> int:
        return len(self.source)

    @property
    def boxed_indices(self) -> np.ndarray:
        return np.flatnonzero(self.boxed_mask)

    @property
    def unboxed_indices(self) -> np.ndarray:
        return np.flatnonzero(~self.boxed_mask)

    def __getitem__(self, i: int) -> dict[str, Any] | None:
        loaded = self.source.load(int(i))
        if loaded is None:
            return None
        image, scale, orig = loaded
        _, h, w = image.shape
        image_id = self.source.image_id(int(i))
        boxes, box_labels, difficult = self.source.ground_truth(int(i))
        boxes, box_labels, labels, complete, messages = sanitize_annotation(
            boxes, box_labels, difficult, self.source.image_labels(int(i)), orig, self.num_classes, image_id
        )
        has_boxes = bool(self.boxed_mask[i]) and complete
        if self.boxed_mask[i] and messages and image_id not in self._warned:
            self._warned.add(image_id)
            warnings.warn(f"{image_id}: " + "; ".join(messages), AnnotationWarning, stacklevel=2)
        target = torch.zeros(self.num_classes)
        if labels:
            target[list(labels)] = 1.0
        if has_boxes:
            cont = torch.from_numpy(boxes).float()
            cont[:, 2:] += 1.0  # inclusive → continuous
            cont *= scale
        else:
            cont, box_labels = torch.zeros(0, 4), np.zeros(0, dtype=np.int64)
        return {
            "image": image,
            "labels": target,
            "boxes": cont,
            "box_labels": torch.from_numpy(np.asarray(box_labels, dtype=np.int64)),
            "has_boxes": has_boxes,
            "size": (h, w),
            "scale": float(scale),
            "index": int(i),
        }


def collate_detection(items: Sequence[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Batch items of :class:`SemiSupervisedDataset`: images zero-padded at the bottom/right to a common size.

    Returns ``images`` (B, C, H, W), ``labels`` (B, C), ``has_boxes`` (B,) bool and lists ``boxes``,
    ``box_labels``, ``sizes``, ``scales``, ``indices``; None items are dropped (None if none is left).
    """
    good = [it for it in items if it is not None]
    if not good:
        return None
    c = good[0]["image"].shape[0]
    hmax = max(it["image"].shape[1] for it in good)
    wmax = max(it["image"].shape[2] for it in good)
    images = torch.zeros(len(good), c, hmax, wmax)
    for k, it in enumerate(good):
        images[k, :, : it["image"].shape[1], : it["image"].shape[2]] = it["image"]
    return {
        "images": images,
        "labels": torch.stack([it["labels"] for it in good]),
        "has_boxes": torch.tensor([it["has_boxes"] for it in good], dtype=torch.bool),
        "boxes": [it["boxes"] for it in good],
        "box_labels": [it["box_labels"] for it in good],
        "sizes": [tuple(it["size"]) for it in good],
        "scales": [it["scale"] for it in good],
        "indices": [it["index"] for it in good],
    }


class MixingBatchSampler(Sampler[list[int]]):
    """Mini-batches with exactly ``boxed_per_batch`` boxed images and ``batch_size − boxed_per_batch`` label-only.

    Each kind is drawn from its own endless stream: the concatenation of random permutations of its images
    (one per pass, the ``q``-th seeded by ``(seed, kind, q)``), so within each pass every image appears once
    (the few boxed images are revisited often, the many label-only ones rarely). Batch ``k`` takes the next
    items of both streams, hence is a pure function of ``(seed, k)``: resuming at step ``k`` continues the
    exact sequence. Without label-only images the whole batch is boxed; ``boxed_per_batch=None`` draws
    uniformly from all images (boxed share = ``boxed_fraction`` on average).

    Args:
        boxed / unboxed: dataset indices of each kind.
        batch_size: images per batch.
        boxed_per_batch: boxed images per batch, in ``[1, batch_size]``, or None.
        num_batches: batches in total (the number of training steps).
        seed: stream seed.
        start: first batch (to resume).
    """

    def __init__(
        self,
        boxed: Sequence[int],
        unboxed: Sequence[int],
        batch_size: int,
        boxed_per_batch: int | None,
        num_batches: int,
        seed: int = 0,
        start: int = 0,
    ) -> None:
        self.boxed = np.asarray(boxed, dtype=np.int64).reshape(-1)
        self.unboxed = np.asarray(unboxed, dtype=np.int64).reshape(-1)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if boxed_per_batch is not None and (
            isinstance(boxed_per_batch, bool) or not isinstance(boxed_per_batch, int)
            or not 1 <= boxed_per_batch <= batch_size
        ):
            raise ValueError(f"boxed_per_batch must be an int in [1, batch_size={batch_size}] or None, "
                             f"got {boxed_per_batch!r}")
        if boxed_per_batch is not None and self.boxed.size == 0:
            raise ValueError("boxed_per_batch is set but there is no boxed image")
        if self.boxed.size + self.unboxed.size == 0:
            raise ValueError("MixingBatchSampler: no image to sample")
        if not 0 <= start <= num_batches:
            raise ValueError(f"start must lie in [0, num_batches={num_batches}], got {start}")
        self.batch_size = batch_size
        self.boxed_per_batch = boxed_per_batch
        self.num_batches = int(num_batches)
        self.seed = int(seed)
        self.start = int(start)
        self._all = np.sort(np.concatenate([self.boxed, self.unboxed]))

    @functools.lru_cache(maxsize=64)  # noqa: B019 - bounded, per-sampler permutations
    def _perm(self, kind: int, cycle: int, n: int) -> np.ndarray:
        return np.random.default_rng([self.seed, kind, cycle]).permutation(n)

    def _take(self, pool: np.ndarray, kind: int, first: int, count: int) -> list[int]:
        n = len(pool)
        return [int(pool[self._perm(kind, p // n, n)[p % n]]) for p in range(first, first + count)]

    def batch(self, k: int) -> list[int]:
        """Indices of batch ``k``."""
        b, m = self.batch_size, self.boxed_per_batch
        if m is None:
            return self._take(self._all, 2, k * b, b)
        if self.unboxed.size == 0:
            return self._take(self.boxed, 0, k * b, b)
        return self._take(self.boxed, 0, k * m, m) + self._take(self.unboxed, 1, k * (b - m), b - m)

    def __iter__(self) -> Iterator[list[int]]:
        for k in range(self.start, self.num_batches):
            yield self.batch(k)

    def __len__(self) -> int:
        return self.num_batches - self.start


# ----------------------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------------------
def weak_classification_loss(logits: Tensor, targets: Tensor) -> Tensor:
    r"""Multi-label sigmoid cross-entropy (Qiu §IV-A, §III-D), summed over classes, averaged over images.

    .. math:: L = -\frac{1}{B} \sum_{b} \sum_{c} y_{bc} \log \sigma(s_{bc}) + (1 - y_{bc}) \log(1 - \sigma(s_{bc}))

    (Caffe's ``SigmoidCrossEntropyLoss`` normalization, the framework of Qiu and of R-FCN.)

    Raises:
        ValueError: shapes differ or targets outside [0, 1].
    """
    if logits.shape != targets.shape or logits.ndim != 2:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} must both be (B, C)")
    if targets.numel() and (targets.min() < 0 or targets.max() > 1):
        raise ValueError("weak targets must be multi-hot values in [0, 1]")
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="sum") / logits.shape[0]


def _cell_masks(boxes: Tensor, h: int, w: int, stride: float, offset: float) -> Tensor:
    """(K, h, w) bool: feature cells whose centre ``(y·S + c0, x·S + c0)`` lies in each continuous box;
    a box containing no centre gets the cell nearest to its own centre."""
    dev = boxes.device
    xs = torch.arange(w, device=dev, dtype=boxes.dtype) * stride + offset
    ys = torch.arange(h, device=dev, dtype=boxes.dtype) * stride + offset
    in_x = (xs[None, :] >= boxes[:, 0:1]) & (xs[None, :] < boxes[:, 2:3])  # (K, w)
    in_y = (ys[None, :] >= boxes[:, 1:2]) & (ys[None, :] < boxes[:, 3:4])  # (K, h)
    masks = in_y[:, :, None] & in_x[:, None, :]
    for k in torch.where(~masks.flatten(1).any(dim=1))[0].tolist():
        cx = float((boxes[k, 0] + boxes[k, 2]) / 2)
        cy = float((boxes[k, 1] + boxes[k, 3]) / 2)
        jx = min(max(round((cx - offset) / stride), 0), w - 1)
        jy = min(max(round((cy - offset) / stride), 0), h - 1)
        masks[k, jy, jx] = True
    return masks


def region_regularization(
    score_maps: Tensor,
    boxes: Sequence[Tensor],
    box_labels: Sequence[Tensor],
    stride: float,
    offset: float,
    margin: float = 1.0,
) -> Tensor:
    r"""Qiu's local object-region regularization of the class-specific score map (§III-D, Fig. 6).

    "With the ground truth bounding boxes, we constrain that the average score of the object region is larger
    than the negative samples." For every GT box ``b`` of class ``c`` in image ``i``, with ``P_b`` the feature
    cells inside ``b`` and ``N_{ic}`` the cells outside every box of class ``c`` (the negative region of the
    class in that image, which includes other classes' objects):

    .. math::
        L = \frac{1}{|\mathcal B|} \sum_{b \in \mathcal B}
            \max\Big(0,\ m - \big(\tfrac{1}{|P_b|} \textstyle\sum_{P_b} S_c
                                 - \tfrac{1}{|N_{ic}|} \sum_{N_{ic}} S_c\big)\Big)

    a hinge with margin ``m`` on the difference of the two averages (the paper gives no formula; a hinge is
    the standard form of "larger than"). A cell belongs to ``P_b`` when its receptive-field centre
    ``(y·S + c0, x·S + c0)`` lies in the box; a box containing no centre uses its nearest cell. Boxes whose
    class covers the whole map (``N`` empty) are skipped; with no usable box the loss is 0 (differentiable).

    Args:
        score_maps: ``S`` (B, C, h, w), the class score maps of the GWAP head (``CAMOutput.cams``).
        boxes: per image, (G, 4) continuous input-pixel boxes.
        box_labels: per image, (G,) class ids.
        stride / offset: ``S`` and ``c0`` of the features.
        margin: ``m`` ≥ 0.
    """
    if score_maps.ndim != 4:
        raise ValueError(f"score_maps must be (B, C, h, w), got {tuple(score_maps.shape)}")
    if len(boxes) != score_maps.shape[0] or len(box_labels) != score_maps.shape[0]:
        raise ValueError(f"got boxes for {len(boxes)} / labels for {len(box_labels)} images, "
                         f"score maps for {score_maps.shape[0]}")
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
    _, c_count, h, w = score_maps.shape
    terms: list[Tensor] = []
    for i, (bx, lb) in enumerate(zip(boxes, box_labels, strict=True)):
        if bx.numel() == 0:
            continue
        lb = lb.to(torch.int64).reshape(-1)
        if (lb < 0).any() or (lb >= c_count).any():
            raise ValueError(f"image {i}: box labels must lie in [0, {c_count})")
        masks = _cell_masks(bx.to(score_maps.dtype).reshape(-1, 4), h, w, stride, offset)
        for c in lb.unique().tolist():
            sel = lb == c
            neg = ~masks[sel].any(dim=0)
            if not neg.any():
                continue
            s = score_maps[i, c]
            neg_mean = s[neg].mean()
            for m in masks[sel]:
                terms.append(F.relu(margin - (s[m].mean() - neg_mean)))
    if not terms:
        return score_maps.sum() * 0.0
    return torch.stack(terms).mean()


def semi_supervised_losses(
    model: RFCN,
    batch: Mapping[str, Any],
    *,
    weak_weight: float = 0.1,
    region_weight: float = 1.0,
    region_margin: float = 1.0,
) -> tuple[Tensor | None, dict[str, Tensor]]:
    """``loss = loss_det + λ · loss_weak`` of one collated batch (Qiu §III-D), and its parts.

    ``loss_det = rpn_cls + rpn_box + det_cls + det_box`` over the boxed images of the batch (absent when there
    is none); ``loss_weak = Σ_heads weak_<head> + region_weight · region`` where ``weak_<head>`` is
    :func:`weak_classification_loss` on every image of the batch and ``region`` is
    :func:`region_regularization` of the GWAP head's score maps on the boxed images.

    Returns:
        ``(total or None when nothing can be trained on this batch, {part name: scalar})``.
    """
    images: Tensor = batch["images"]
    feats = model.features(images)
    boxed = torch.where(batch["has_boxes"])[0].tolist()
    parts: dict[str, Tensor] = {}
    if boxed:
        targets = [{"boxes": batch["boxes"][i].to(images.device), "labels": batch["box_labels"][i].to(images.device)}
                   for i in boxed]
        parts.update(model.detection_losses(images[boxed], feats[boxed], [batch["sizes"][i] for i in boxed], targets))
    weak_terms: list[Tensor] = []
    for name, out in model.weak_outputs(feats).items():
        parts[f"weak_{name}"] = weak_classification_loss(out.logits, batch["labels"].to(out.logits.device))
        weak_terms.append(parts[f"weak_{name}"])
        if name == "gwap" and region_weight > 0 and boxed:
            parts["region"] = region_regularization(
                out.cams[boxed], [batch["boxes"][i].to(images.device) for i in boxed],
                [batch["box_labels"][i] for i in boxed], model.stride, model.offset, region_margin,
            )
            weak_terms.append(region_weight * parts["region"])
    det = [parts[k] for k in ("rpn_cls", "rpn_box", "det_cls", "det_box") if k in parts]
    if not det and not weak_terms:
        return None, parts
    total = sum(det, torch.zeros((), device=images.device))
    if weak_terms:
        total = total + weak_weight * sum(weak_terms)
    return total, parts


# ----------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------
@dataclass
class SemiTrainConfig:
    """Schedule of :func:`train_semi` (the ``train`` section of a detection config).

    Attributes:
        steps: optimizer steps (one mini-batch each).
        batch_size: images per mini-batch.
        boxed_per_batch: boxed images per mini-batch (:class:`MixingBatchSampler`); None = uniform sampling.
            Ignored for plain R-FCN, which draws boxed images only.
        optimizer: ``"sgd"`` (momentum; R-FCN) or ``"adam"``.
        lr / momentum / weight_decay: optimizer settings (R-FCN: 0.001, 0.9, 0.0005).
        lr_milestones / lr_gamma: the learning rate is multiplied by ``lr_gamma`` at each milestone step.
        warmup_steps: linear warm-up from ``lr / 10`` over this many steps.
        weak_weight: ``λ`` of ``loss_det + λ loss_weak`` (Qiu: 0.1).
        region_weight: weight of the region regularizer inside ``loss_weak`` (0 disables it).
        region_margin: ``m`` of :func:`region_regularization`.
        hflip: flip each training image horizontally with probability 0.5 (Qiu §IV-A, R-FCN).
        grad_clip_norm: clip the global gradient norm (None: no clipping).
        seed: master seed (sampler, per-step RNG).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        num_workers: DataLoader workers.
        out_dir: folder for ``last.pt`` / ``metrics.json`` (None: no files).
        checkpoint_every: write ``last.pt`` every this many steps (and at the end); 0 = only at the end.
        log_every: steps per history record (loss means).
    """

    steps: int = 20000
    batch_size: int = 2
    boxed_per_batch: int | None = 1
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_milestones: list[int] = field(default_factory=list)
    lr_gamma: float = 0.1
    warmup_steps: int = 0
    weak_weight: float = 0.1
    region_weight: float = 1.0
    region_margin: float = 1.0
    hflip: bool = True
    grad_clip_norm: float | None = 10.0
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    out_dir: str | None = None
    checkpoint_every: int = 1000
    log_every: int = 100

    def __post_init__(self) -> None:
        for name, minimum in (("steps", 1), ("batch_size", 1), ("warmup_steps", 0), ("seed", 0),
                              ("num_workers", 0), ("checkpoint_every", 0), ("log_every", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
                raise ValueError(f"{name} must be an int >= {minimum}, got {v!r}")
        if self.boxed_per_batch is not None and not 1 <= self.boxed_per_batch <= self.batch_size:
            raise ValueError(f"boxed_per_batch must lie in [1, batch_size={self.batch_size}] or be null, "
                             f"got {self.boxed_per_batch!r}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        for name in ("lr", "momentum", "weight_decay", "weak_weight", "region_weight", "region_margin"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if not (math.isfinite(self.lr_gamma) and self.lr_gamma > 0):
            raise ValueError(f"lr_gamma must be > 0, got {self.lr_gamma!r}")
        if any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in self.lr_milestones):
            raise ValueError(f"lr_milestones must be positive step numbers, got {self.lr_milestones!r}")
        if self.grad_clip_norm is not None and not self.grad_clip_norm > 0:
            raise ValueError(f"grad_clip_norm must be > 0 or null, got {self.grad_clip_norm!r}")

    def lr_at(self, step: int) -> float:
        """Learning rate of step ``step`` (0-based): step decay at the milestones, linear warm-up."""
        lr = self.lr * self.lr_gamma ** sum(step >= m for m in self.lr_milestones)
        if step < self.warmup_steps:
            lr *= 0.1 + 0.9 * step / self.warmup_steps
        return lr


def _hflip(batch: dict[str, Any], gen: torch.Generator) -> None:
    """Flip each image (inside its own size, not the padding) and its boxes with probability 0.5, in place."""
    flips = torch.rand(len(batch["sizes"]), generator=gen) < 0.5
    for k in torch.where(flips)[0].tolist():
        h, w = batch["sizes"][k]
        batch["images"][k, :, :h, :w] = batch["images"][k, :, :h, :w].flip(-1)
        b = batch["boxes"][k]
        if b.numel():
            batch["boxes"][k] = torch.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], dim=1)


def _make_optimizer(model: RFCN, cfg: SemiTrainConfig) -> torch.optim.Optimizer:
    # no weight decay on biases and normalization parameters (py-faster-rcnn: bias decay 0)
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    return torch.optim.Adam(groups, lr=cfg.lr)


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    out = dict(batch)
    out["images"] = batch["images"].to(device)
    out["labels"] = batch["labels"].to(device)
    out["boxes"] = [b.to(device) for b in batch["boxes"]]
    out["box_labels"] = [b.to(device) for b in batch["box_labels"]]
    return out


def _plain(value: Any) -> Any:
    """JSON / ``weights_only``-safe copy (NaN → None)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float | np.floating):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _train_step(
    model: RFCN,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, Any],
    config: SemiTrainConfig,
    step: int,
    lr: float,
    device: torch.device,
) -> dict[str, float] | None:
    """One optimizer step (torch re-seeded from ``(seed, step)``); the loss parts, or None if nothing to train."""
    seed = derive_seed(config.seed, step)
    torch.manual_seed(seed)
    random.seed(seed)
    if config.hflip:
        _hflip(batch, torch.Generator().manual_seed(seed))
    for g in optimizer.param_groups:
        g["lr"] = lr
    batch = _to_device(batch, device)
    total, parts = semi_supervised_losses(
        model, batch, weak_weight=config.weak_weight, region_weight=config.region_weight,
        region_margin=config.region_margin,
    )
    if total is None:
        return None
    if not torch.isfinite(total):
        detail = ", ".join(f"{k}={float(v):.4g}" for k, v in parts.items())
        raise ValueError(f"non-finite training loss at step {step} ({detail}); images {batch['indices']}")
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    if config.grad_clip_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
    optimizer.step()
    return {"loss": float(total.detach()), **{k: float(v.detach()) for k, v in parts.items()}}


def train_semi(
    model: RFCN,
    dataset: SemiSupervisedDataset,
    config: SemiTrainConfig,
    *,
    resume: bool = False,
    extras: Mapping[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train ``model`` on ``dataset`` for ``config.steps`` steps (Qiu §III-D multi-task objective).

    Plain R-FCN (no weak head) draws boxed images only; the multi-task variants mix boxed and label-only
    images with :class:`MixingBatchSampler`. Step ``k`` re-seeds torch from ``(seed, k)`` and its batch is a
    pure function of ``(seed, k)``, so a resumed run reproduces an uninterrupted one on CPU.

    Checkpoints (``out_dir/last.pt``, written atomically, loadable with ``torch.load(weights_only=True)``):
    ``{"format_version": 1, "step", "model", "optimizer", "history", "config", "model_spec": None,
    "extras"}`` with the caller's ``extras`` (``task``, ``run_config``, ``class_names``).

    Args:
        model: an :class:`RFCN`.
        dataset: training items.
        config: schedule.
        resume: continue from ``out_dir/last.pt`` when it exists.
        extras: stored in each checkpoint.
        log: called with one progress line per ``log_every`` steps.

    Returns:
        ``{"history": [...], "steps": int, "train_s": float, "boxed_images": int, "label_only_images": int}``.

    Raises:
        ValueError: no boxed image for plain R-FCN; a non-finite loss (the message names the step and parts).
    """
    device = resolve_device(config.device)
    model.to(device)
    boxed, unboxed = dataset.boxed_indices, dataset.unboxed_indices
    plain = len(model.weak) == 0
    if boxed.size == 0 and plain:
        raise ValueError("plain R-FCN needs at least one boxed image (boxed_fraction > 0)")
    optimizer = _make_optimizer(model, config)
    out_dir = Path(config.out_dir) if config.out_dir else None
    history: list[dict[str, Any]] = []
    step = 0
    if resume and out_dir is not None and (out_dir / "last.pt").is_file():
        ckpt = torch.load(out_dir / "last.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        step = int(ckpt["step"])
        history = [dict(r) for r in ckpt["history"]]
        saved = ckpt.get("config", {})
        current = dataclasses.asdict(config)
        free = {"steps", "device", "num_workers", "out_dir", "checkpoint_every", "log_every"}
        changed = sorted(k for k in current if k not in free and saved.get(k) != current[k])
        if changed:
            warnings.warn(f"resuming {out_dir / 'last.pt'} with a different train config ({', '.join(changed)}); "
                          "the result will differ from an uninterrupted run", stacklevel=2)
        if log:
            log(f"resumed from {out_dir / 'last.pt'} at step {step}")
    if plain:
        sampler = MixingBatchSampler(boxed, [], config.batch_size, config.batch_size, config.steps, config.seed, step)
    else:
        bpb = config.boxed_per_batch if boxed.size else None
        sampler = MixingBatchSampler(boxed, unboxed, config.batch_size, bpb, config.steps, config.seed, step)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_detection, num_workers=config.num_workers)

    def save(path: Path) -> None:
        atomic_torch_save({
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "step": step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "history": _plain(history),
            "config": _plain(dataclasses.asdict(config)),
            "model_spec": None,
            "extras": _plain(dict(extras or {})),
        }, path)

    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    model.train()
    sums: dict[str, float] = {}
    count = 0
    t0 = time.perf_counter()
    window = time.perf_counter()
    for batch in loader:
        lr = config.lr_at(step)
        parts = None if batch is None else _train_step(model, optimizer, batch, config, step, lr, device)
        if parts is not None:
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
        step += 1
        if step % config.log_every == 0 or step == config.steps:
            rec = {"step": step, "lr": lr, **{k: v / max(count, 1) for k, v in sums.items()},
                   "time_s": time.perf_counter() - window}
            history.append(rec)
            if log:
                log("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items()))
            sums, count, window = {}, 0, time.perf_counter()
        if out_dir is not None and (step == config.steps or (config.checkpoint_every and
                                                             step % config.checkpoint_every == 0)):
            save(out_dir / "last.pt")
    train_s = time.perf_counter() - t0
    if out_dir is not None:
        atomic_write_text(out_dir / "metrics.json", json.dumps(_plain(history), indent=1))
    return {"history": history, "steps": step, "train_s": train_s,
            "boxed_images": int(boxed.size), "label_only_images": int(unboxed.size)}


# ----------------------------------------------------------------------------------------------------------
# Detection and evaluation
# ----------------------------------------------------------------------------------------------------------
def detect(
    model: RFCN,
    images: Tensor | Sequence[Tensor],
    *,
    scales: Sequence[float] | None = None,
    original_sizes: Sequence[tuple[int, int]] | None = None,
    score_thresh: float = 0.01,
    nms_iou: float = 0.3,
    max_per_image: int = 100,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Detect objects: per image ``(boxes (K, 4), scores (K,), labels (K,))`` in *original* image pixels.

    Boxes are inclusive ``[x0, y0, x1, y1]`` corners (:mod:`wsol.metrics.boxes`), float64, clipped to the
    original image; scores are the class softmax probabilities; labels int64 in ``[0, C)``. Ready for
    :func:`wsol.metrics.detection.evaluate_detections`.

    Args:
        model: a trained :class:`RFCN`.
        images: (B, C, H, W) in [0, 1] or a list of (C, H_i, W_i) tensors (zero-padded to a batch).
        scales: per image, the factor ``input size / original size`` the image was resized by (default 1).
        original_sizes: per image ``(height, width)`` of the original (default: input size / scale).
        score_thresh / nms_iou / max_per_image: see :meth:`RFCN.predict`.
    """
    if isinstance(images, Tensor):
        if images.ndim != 4:
            raise ValueError(f"images must be (B, C, H, W) or a list of (C, H, W), got {tuple(images.shape)}")
        sizes = [tuple(images.shape[-2:])] * images.shape[0]
        batch = images
    else:
        items = [{"image": im, "labels": torch.zeros(1), "has_boxes": False, "boxes": torch.zeros(0, 4),
                  "box_labels": torch.zeros(0, dtype=torch.int64), "size": tuple(im.shape[-2:]), "scale": 1.0,
                  "index": k} for k, im in enumerate(images)]
        if not items:
            return []
        collated = collate_detection(items)
        assert collated is not None
        batch, sizes = collated["images"], collated["sizes"]
    n = batch.shape[0]
    scales = [1.0] * n if scales is None else [float(s) for s in scales]
    if len(scales) != n or not all(math.isfinite(s) and s > 0 for s in scales):
        raise ValueError(f"scales must be {n} positive numbers, got {scales!r}")
    if original_sizes is None:
        original_sizes = [(max(1, round(h / s)), max(1, round(w / s))) for (h, w), s in zip(sizes, scales, strict=True)]
    if len(original_sizes) != n:
        raise ValueError(f"original_sizes has {len(original_sizes)} entries for {n} images")
    device = next(model.parameters()).device
    raw = model.predict(batch.to(device), sizes, score_thresh=score_thresh, nms_iou=nms_iou,
                        max_per_image=max_per_image)
    out = []
    for (boxes, scores, labels), s, (oh, ow) in zip(raw, scales, original_sizes, strict=True):
        b = boxes.double().cpu() / s
        b[:, 2:] -= 1.0  # continuous → inclusive
        b[:, 0::2] = b[:, 0::2].clamp(0, ow - 1)
        b[:, 1::2] = b[:, 1::2].clamp(0, oh - 1)
        b[:, 2] = torch.maximum(b[:, 2], b[:, 0])
        b[:, 3] = torch.maximum(b[:, 3], b[:, 1])
        out.append((b.numpy(), scores.double().cpu().numpy(), labels.cpu().numpy().astype(np.int64)))
    return out


def evaluate_detector(
    model: RFCN,
    source: DetectionSource,
    *,
    indices: Sequence[int] | None = None,
    batch_size: int = 8,
    score_thresh: float = 0.01,
    nms_iou: float = 0.3,
    max_per_image: int = 100,
    iou: float = 0.5,
) -> dict[str, Any]:
    """VOC detection metrics of ``model`` on ``source``.

    ``map``: VOC 2007 11-point mAP (Qiu Table V's metric); ``map_area``: all-point (area) mAP; per-class
    ``ap`` / ``ap_area`` by class name; ``corloc``: CorLoc of the top-scoring detection of each present class
    (:func:`wsol.metrics.localization.corloc`). ``difficult`` GT boxes are ignored (neither TP nor FP;
    excluded from CorLoc). Undecodable images are skipped and counted.
    """
    from wsol.metrics.detection import evaluate_detections
    from wsol.metrics.localization import corloc

    c = len(source.class_names)
    ids = list(range(len(source))) if indices is None else [int(i) for i in indices]
    if not ids:
        raise ValueError("evaluate_detector: no image to evaluate")
    t0 = time.perf_counter()
    dets: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    gts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    skipped = 0
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        loaded = [(i, source.load(i)) for i in chunk]
        good = [(i, x) for i, x in loaded if x is not None]
        skipped += len(loaded) - len(good)
        if not good:
            continue
        dets.extend(detect(model, [x[0] for _, x in good], scales=[x[1] for _, x in good],
                           original_sizes=[x[2] for _, x in good], score_thresh=score_thresh, nms_iou=nms_iou,
                           max_per_image=max_per_image))
        gts.extend(source.ground_truth(i) for i, _ in good)
    if not dets:
        raise ValueError("evaluate_detector: no image could be loaded")
    r07 = evaluate_detections(dets, gts, c, iou=iou, use_07_metric=True)
    rarea = evaluate_detections(dets, gts, c, iou=iou, use_07_metric=False)
    preds, gt_maps = [], []
    for (boxes, scores, labels), (gb, gl, gd) in zip(dets, gts, strict=True):
        top: dict[int, np.ndarray] = {}
        for k in np.argsort(-scores, kind="stable"):
            top.setdefault(int(labels[k]), boxes[k])
        preds.append(top)
        keep = ~np.asarray(gd, dtype=bool)
        gt_maps.append({int(cl): gb[keep][gl[keep] == cl] for cl in np.unique(gl[keep])})
    try:
        cl = corloc(preds, gt_maps, iou=iou)
        corloc_value: float | None = float(cl.mean)
    except ValueError:
        corloc_value = None
    names = source.class_names
    return {
        "map": float(r07.mean_ap),
        "map_area": float(rarea.mean_ap),
        "ap": {names[k]: float(r07.ap[k]) for k in range(c)},
        "ap_area": {names[k]: float(rarea.ap[k]) for k in range(c)},
        "corloc": corloc_value,
        "num_images": len(dets),
        "skipped_images": skipped,
        "num_detections": int(sum(len(d[1]) for d in dets)),
        "eval_s": time.perf_counter() - t0,
    }
