"""Localization metrics of the WSOL papers other than MaxBoxAcc / PxAP.

* :func:`localization_accuracy` — ILSVRC top-1 / top-5 and GT-known localization accuracy
  (Zhou et al. 2016, §3–§4, Tables 2–3);
* :func:`pointing_game` — pin-pointing / pointing game: the map maximum lies in a GT box
  (Gudi et al. 2017, §4.1 and Table 1, after Oquab et al. 2015; tolerance as Zhang et al. 2016);
* :func:`pinpointing_average_precision` — the ranked (AP) version of pin-pointing (Gudi et al. Table 1);
* :func:`center_of_mass_accuracy` — the map's centre of mass lies in the GT box (Moreaux et al. 2018,
  §4.4, Table 4);
* :func:`f_measure` — F_β of the Otsu-binarized map against the GT mask (Qiu et al., §IV-B, Table II);
* :func:`localization_accuracy_vs_threshold` — IoU ≥ 0.5 accuracy and mean IoU as a function of the
  box threshold (Moreaux et al. 2018, Fig. 4);
* :func:`corloc` — CorLoc, per-class fraction of positive images correctly localized, then class mean.

Conventions. Maps are numpy float arrays indexed ``map[y, x]`` *in image pixel coordinates* (upsample
CAMs to the image size first). Boxes are ``[x0, y0, x1, y1]`` with inclusive corners and IoU uses the
inclusive ``+1`` convention of :func:`wsol.metrics.boxes.box_iou` (Choe et al. 2020, the VOC devkit).
A pixel ``(x, y)`` is inside a box iff ``x0 <= x <= x1`` and ``y0 <= y <= y1``. Maps containing NaN
or inf raise ``ValueError`` naming the image index; they never yield a number.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from wsol.localize import MapStats, otsu_mask
from wsol.metrics.boxes import box_iou, validate_boxes
from wsol.metrics.classification import average_precision

__all__ = [
    "CorLocResult",
    "FMeasureResult",
    "HitResult",
    "LocalizationAccuracy",
    "ThresholdCurve",
    "boxes_to_mask",
    "center_of_mass",
    "center_of_mass_accuracy",
    "corloc",
    "f_measure",
    "localization_accuracy",
    "localization_accuracy_vs_threshold",
    "pinpointing_average_precision",
    "point_in_boxes",
    "pointing_game",
]

MapsLike = npt.ArrayLike | Sequence[npt.ArrayLike]
BoxesPerImage = Sequence[npt.ArrayLike] | npt.ArrayLike


# ----------------------------------------------------------------------------- input helpers
def _as_maps(maps: MapsLike, name: str = "maps") -> list[np.ndarray]:
    """A single ``(H, W)`` map, an ``(N, H, W)`` batch or a sequence of ``(H_i, W_i)`` maps → list."""
    if isinstance(maps, np.ndarray) and maps.ndim == 2:
        items: Sequence[npt.ArrayLike] = [maps]
    elif isinstance(maps, np.ndarray) and maps.ndim == 3:
        items = list(maps)
    elif isinstance(maps, np.ndarray):
        raise ValueError(f"{name} must be (H, W), (N, H, W) or a sequence of (H, W) maps, got {maps.shape}")
    else:
        items = list(maps)  # type: ignore[arg-type]
    if len(items) == 0:
        raise ValueError(f"{name} is empty")
    out = []
    for i, m in enumerate(items):
        arr = np.asarray(m, dtype=np.float64)
        if arr.ndim != 2 or arr.size == 0:
            raise ValueError(f"{name}[{i}] must be a non-empty 2-D (H, W) map, got shape {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError(f"{name}[{i}] contains NaN or inf values")
        out.append(arr)
    return out


def _as_box_list(boxes: BoxesPerImage, n: int, name: str, allow_empty: bool = False) -> list[np.ndarray]:
    """Per-image boxes: an ``(N, 4)`` array (one box per image) or a length-N sequence of ``(G_i, 4)``."""
    if isinstance(boxes, np.ndarray) and boxes.ndim == 2 and boxes.shape[-1] == 4:
        items: Sequence[npt.ArrayLike] = list(boxes[:, None, :])
    elif isinstance(boxes, np.ndarray) and boxes.ndim == 3:
        items = list(boxes)
    else:
        items = list(boxes)  # type: ignore[arg-type]
    if len(items) != n:
        raise ValueError(f"{name} has {len(items)} entries but there are {n} images")
    out = []
    for i, b in enumerate(items):
        arr = validate_boxes(b, f"{name}[{i}]")
        if arr.shape[0] == 0 and not allow_empty:
            raise ValueError(f"{name}[{i}] has no box")
        out.append(arr)
    return out


def _accuracy(hits: np.ndarray) -> float:
    return float(np.mean(hits)) if hits.size else float("nan")


@dataclass(frozen=True)
class HitResult:
    """Per-image hit/miss of a point-based metric.

    Attributes:
        hits: ``(N,)`` bool, True where the image is correctly localized.
        accuracy: ``hits.mean()``.
        class_accuracy: when labels were given, ``{class: accuracy over its images}``; else None.
        mean_class_accuracy: mean of ``class_accuracy`` (the pointing-game number of Zhang et al.), or None.
    """

    hits: np.ndarray
    accuracy: float
    class_accuracy: dict[int, float] | None = None
    mean_class_accuracy: float | None = None


def _hit_result(hits: np.ndarray, labels: npt.ArrayLike | None) -> HitResult:
    if labels is None:
        return HitResult(hits=hits, accuracy=_accuracy(hits))
    lab = np.asarray(labels).reshape(-1)
    if lab.shape[0] != hits.shape[0]:
        raise ValueError(f"labels has {lab.shape[0]} entries but there are {hits.shape[0]} images")
    per_class = {int(c): _accuracy(hits[lab == c]) for c in np.unique(lab)}
    return HitResult(
        hits=hits,
        accuracy=_accuracy(hits),
        class_accuracy=per_class,
        mean_class_accuracy=float(np.mean(list(per_class.values()))),
    )


# ----------------------------------------------------------------------------- masks / Otsu
def boxes_to_mask(boxes: npt.ArrayLike, shape: tuple[int, int]) -> np.ndarray:
    """Union of inclusive boxes as a boolean mask (Qiu et al. §IV-B: "we aggregate regions of multi
    boxes into one region").

    ``mask[y, x] = ∃ b: x0_b <= x <= x1_b ∧ y0_b <= y <= y1_b``; fractional corners are rounded to the
    nearest pixel and boxes are clipped to the image.

    Args:
        boxes: ``(G, 4)`` or ``(4,)`` boxes ``[x0, y0, x1, y1]``.
        shape: ``(H, W)`` of the mask.

    Returns:
        ``(H, W)`` boolean mask (all False for ``G = 0``).
    """
    if len(shape) != 2 or min(shape) <= 0:
        raise ValueError(f"shape must be a positive (H, W), got {shape}")
    h, w = int(shape[0]), int(shape[1])
    mask = np.zeros((h, w), dtype=bool)
    for x0, y0, x1, y1 in np.rint(validate_boxes(boxes, "boxes")).astype(np.int64):
        mask[max(y0, 0) : min(y1, h - 1) + 1, max(x0, 0) : min(x1, w - 1) + 1] = True
    return mask


# ----------------------------------------------------------------------------- F-measure
@dataclass(frozen=True)
class FMeasureResult:
    """F_β of binarized maps.

    Attributes:
        f_measure: the aggregated F_β (see ``aggregate`` in :func:`f_measure`).
        precision: the aggregated precision.
        recall: the aggregated recall.
        per_image_f: ``(N,)`` per-image F_β.
        per_image_precision: ``(N,)`` per-image ``|M ∩ G| / |M|`` (0 for an empty ``M``).
        per_image_recall: ``(N,)`` per-image ``|M ∩ G| / |G|``.
    """

    f_measure: float
    precision: float
    recall: float
    per_image_f: np.ndarray
    per_image_precision: np.ndarray
    per_image_recall: np.ndarray


def _f_beta(p: np.ndarray | float, r: np.ndarray | float, beta2: float) -> np.ndarray:
    p, r = np.asarray(p, dtype=np.float64), np.asarray(r, dtype=np.float64)
    den = beta2 * p + r
    out = np.zeros(np.broadcast(p, r).shape)
    np.divide((1.0 + beta2) * p * r, den, out=out, where=den > 0)
    return out


def f_measure(
    maps: MapsLike,
    gt_masks: MapsLike,
    beta2: float = 0.3,
    aggregate: Literal["image", "mean_pr", "pixel"] = "image",
    binarize: Callable[[np.ndarray], np.ndarray] | None = None,
) -> FMeasureResult:
    """F-measure of Otsu-binarized maps against ground-truth masks (Qiu et al., §IV-B, Table II).

    Each map ``S`` is min-max normalized and binarized with Otsu's threshold into ``M``; with the GT mask
    ``G`` (from boxes: :func:`boxes_to_mask`), ``P = |M ∩ G| / |M|``, ``R = |M ∩ G| / |G|`` and
    ``F_β = (1 + β²) P R / (β² P + R)`` with ``β² = 0.3`` (Qiu et al., following Borji et al. 2015).
    An empty ``M`` has ``P = 0`` and ``F = 0``; ``P = R = 0`` gives ``F = 0``.

    Qiu et al. do not say how the per-image values are aggregated; ``aggregate`` chooses:

    * ``"image"`` (default): mean over images of the per-image ``F_β`` (and of ``P``, ``R``);
    * ``"mean_pr"``: ``F_β`` of the mean precision and mean recall (Achanta et al. 2009 style adaptive-
      threshold evaluation used by salient-object benchmarks);
    * ``"pixel"``: dataset-pooled counts, ``P = Σ|M∩G| / Σ|M|``, ``R = Σ|M∩G| / Σ|G|``.

    Args:
        maps: ``(H, W)``, ``(N, H, W)`` or a sequence of ``(H_i, W_i)`` score maps.
        gt_masks: masks of the same shapes (non-zero = object); none may be empty.
        beta2: ``β²``.
        aggregate: ``"image"``, ``"mean_pr"`` or ``"pixel"``.
        binarize: optional replacement for the Otsu binarization, ``map → bool mask``.

    Returns:
        A :class:`FMeasureResult`.

    Raises:
        ValueError: NaN/inf maps, mismatched counts or shapes, empty GT mask, ``beta2 <= 0``, unknown
            ``aggregate``.
    """
    if beta2 <= 0:
        raise ValueError(f"beta2 must be > 0, got {beta2}")
    if aggregate not in ("image", "mean_pr", "pixel"):
        raise ValueError(f"aggregate must be 'image', 'mean_pr' or 'pixel', got {aggregate!r}")
    score_maps = _as_maps(maps, "maps")
    masks = _as_maps(gt_masks, "gt_masks")
    if len(masks) != len(score_maps):
        raise ValueError(f"maps has {len(score_maps)} images but gt_masks has {len(masks)}")
    degenerate = MapStats()  # constant maps give an empty Otsu mask (P = F = 0), without a warning
    inter = np.zeros(len(score_maps))
    pred_area = np.zeros(len(score_maps))
    gt_area = np.zeros(len(score_maps))
    for i, (s, g) in enumerate(zip(score_maps, masks, strict=True)):
        if s.shape != g.shape:
            raise ValueError(f"maps[{i}] has shape {s.shape} but gt_masks[{i}] has shape {g.shape}")
        gt = g != 0
        if not gt.any():
            raise ValueError(f"gt_masks[{i}] is empty: recall is undefined for an image without object")
        m = otsu_mask(s, stats=degenerate) if binarize is None else np.asarray(binarize(s), dtype=bool)
        if m.shape != s.shape:
            raise ValueError(f"binarize returned shape {m.shape} for maps[{i}] of shape {s.shape}")
        inter[i], pred_area[i], gt_area[i] = (m & gt).sum(), m.sum(), gt.sum()
    precision = np.divide(inter, pred_area, out=np.zeros_like(inter), where=pred_area > 0)
    recall = inter / gt_area
    per_f = _f_beta(precision, recall, beta2)
    if aggregate == "image":
        agg_p, agg_r, agg_f = precision.mean(), recall.mean(), per_f.mean()
    elif aggregate == "mean_pr":
        agg_p, agg_r = precision.mean(), recall.mean()
        agg_f = _f_beta(agg_p, agg_r, beta2)
    else:
        agg_p = inter.sum() / pred_area.sum() if pred_area.sum() > 0 else 0.0
        agg_r = inter.sum() / gt_area.sum()
        agg_f = _f_beta(agg_p, agg_r, beta2)
    return FMeasureResult(
        f_measure=float(agg_f),
        precision=float(agg_p),
        recall=float(agg_r),
        per_image_f=per_f,
        per_image_precision=precision,
        per_image_recall=recall,
    )


# ----------------------------------------------------------------------------- point-based metrics
def point_in_boxes(x: float, y: float, boxes: npt.ArrayLike, tolerance: float = 0.0) -> bool:
    """Whether the point ``(x, y)`` is within Euclidean distance ``tolerance`` of one of the boxes.

    Distance to an inclusive box: ``d = hypot(max(x0 − x, 0, x − x1), max(y0 − y, 0, y − y1))``; the
    point hits iff ``d <= tolerance`` (``tolerance = 0``: ``x0 <= x <= x1`` and ``y0 <= y <= y1``).
    """
    b = validate_boxes(boxes, "boxes")
    if b.shape[0] == 0:
        return False
    dx = np.maximum(np.maximum(b[:, 0] - x, 0.0), x - b[:, 2])
    dy = np.maximum(np.maximum(b[:, 1] - y, 0.0), y - b[:, 3])
    return bool(np.any(np.hypot(dx, dy) <= tolerance))


def _max_points(score_map: np.ndarray, ties: str) -> np.ndarray:
    """``(K, 2)`` ``(x, y)`` of the maximum: the first in row-major order, or every maximal pixel."""
    if ties == "first":
        y, x = np.unravel_index(int(np.argmax(score_map)), score_map.shape)
        return np.array([[x, y]], dtype=np.float64)
    ys, xs = np.nonzero(score_map == score_map.max())
    return np.stack([xs, ys], axis=1).astype(np.float64)


def _check_tolerance_ties(tolerance: float, ties: str) -> None:
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    if ties not in ("first", "any"):
        raise ValueError(f"ties must be 'first' or 'any', got {ties!r}")


def pointing_game(
    maps: MapsLike,
    gt_boxes: BoxesPerImage,
    tolerance: float = 0.0,
    ties: Literal["first", "any"] = "first",
    labels: npt.ArrayLike | None = None,
) -> HitResult:
    """Pin-pointing / pointing game: does the map's maximum fall inside a GT box?

    Gudi et al. 2017 (§4.1, Table 1) evaluate "pin-pointing: identifying any single point that falls
    within the object bounding box" (Oquab et al. 2015, who allow 18 px); Zhang et al. 2016's pointing
    game uses a 15 px tolerance. A hit is ``d((x*, y*), GT) <= tolerance`` (see :func:`point_in_boxes`)
    with ``(x*, y*) = argmax S``.

    Args:
        maps: ``(H, W)``, ``(N, H, W)`` or a sequence of maps, in image pixel coordinates.
        gt_boxes: per image, ``(G_i, 4)`` GT boxes (or an ``(N, 4)`` array, one box per image).
        tolerance: distance in pixels (default 0: strictly inside the inclusive box).
        ties: ``"first"`` (default) uses ``np.argmax`` (the first maximum in row-major order);
            ``"any"`` counts a hit if any maximal pixel hits.
        labels: optional ``(N,)`` class of each image; then the per-class accuracy and its mean (the
            pointing-game summary of Zhang et al.) are reported too.

    Returns:
        A :class:`HitResult`.

    Raises:
        ValueError: NaN/inf maps, mismatched counts, bad boxes, negative tolerance, unknown ``ties``.
    """
    _check_tolerance_ties(tolerance, ties)
    score_maps = _as_maps(maps)
    boxes = _as_box_list(gt_boxes, len(score_maps), "gt_boxes")
    hits = np.array(
        [
            any(point_in_boxes(x, y, b, tolerance) for x, y in _max_points(s, ties))
            for s, b in zip(score_maps, boxes, strict=True)
        ],
        dtype=bool,
    )
    return _hit_result(hits, labels)


def pinpointing_average_precision(
    maps: MapsLike,
    gt_boxes: BoxesPerImage,
    scores: npt.ArrayLike | None = None,
    tolerance: float = 0.0,
    ties: Literal["first", "any"] = "first",
) -> float:
    """Pin-pointing AP of one class (Gudi et al. 2017, Table 1 "Pin-pointing" mAP; Oquab et al. 2015).

    Every image contributes one point prediction, the map's maximum, with confidence ``scores[i]``
    (default: the map's maximum value). Ranked by confidence, a prediction is a true positive iff the
    image contains the class (``gt_boxes[i]`` non-empty) and the point hits one of its boxes (see
    :func:`pointing_game`); images without the class are false positives. The recall denominator is the
    number of images that contain the class, so positives whose point misses are never recovered:
    ``AP = Σ_n (R_n − R_{n−1}) P_n`` with :func:`wsol.metrics.classification.average_precision`.
    Average over classes for the mAP.

    Args:
        maps: the class's score maps, one per image.
        gt_boxes: per image, ``(G_i, 4)`` boxes of the class (``G_i = 0`` for negative images).
        scores: ``(N,)`` image-level confidences; default ``max S``.
        tolerance: hit tolerance in pixels.
        ties: argmax tie handling, see :func:`pointing_game`.

    Returns:
        The AP; NaN when no image contains the class.
    """
    _check_tolerance_ties(tolerance, ties)
    score_maps = _as_maps(maps)
    boxes = _as_box_list(gt_boxes, len(score_maps), "gt_boxes", allow_empty=True)
    if scores is None:
        conf = np.array([s.max() for s in score_maps])
    else:
        conf = np.asarray(scores, dtype=np.float64).reshape(-1)
        if conf.shape[0] != len(score_maps):
            raise ValueError(f"scores has {conf.shape[0]} entries but there are {len(score_maps)} maps")
    hits = np.array(
        [
            len(b) > 0 and any(point_in_boxes(x, y, b, tolerance) for x, y in _max_points(s, ties))
            for s, b in zip(score_maps, boxes, strict=True)
        ],
        dtype=bool,
    )
    n_pos = sum(len(b) > 0 for b in boxes)
    return average_precision(conf, hits, num_positives=n_pos)


def center_of_mass(score_map: npt.ArrayLike) -> tuple[float, float] | None:
    """Centre of mass ``(x̄, ȳ)`` of the non-negative part of a map (Moreaux et al. 2018, §4.4).

    ``x̄ = Σ_{x,y} x·w(x,y) / Σ w``, ``ȳ = Σ y·w / Σ w`` with ``w = max(S, 0)`` (negative CAM values
    are not mass), computed by ``scipy.ndimage.center_of_mass``.

    Returns:
        ``(x̄, ȳ)`` in pixel index coordinates, or None when ``Σ w = 0`` (no positive mass: undefined).

    Raises:
        ValueError: NaN/inf values or a non-2-D map.
    """
    s = _as_maps([score_map], "score_map")[0]
    w = np.clip(s, 0.0, None)
    if w.sum() <= 0:
        return None
    cy, cx = ndimage.center_of_mass(w)
    return float(cx), float(cy)


def center_of_mass_accuracy(
    maps: MapsLike,
    gt_boxes: BoxesPerImage,
    class_correct: npt.ArrayLike | None = None,
    labels: npt.ArrayLike | None = None,
) -> HitResult:
    """Fraction of images whose map's centre of mass lies in a GT box (Moreaux et al. 2018, Table 4).

    The centre ``(x̄, ȳ)`` (:func:`center_of_mass`) is continuous; pixel ``x`` covers ``[x − ½, x + ½]``,
    so it is inside an inclusive box iff ``x0 − ½ <= x̄ <= x1 + ½`` and ``y0 − ½ <= ȳ <= y1 + ½``. A map
    without positive mass counts as a miss.

    Table 4 has two columns: "based on the ground truth" (pass the GT class's maps) and "based on the
    prediction only" (pass the predicted class's maps and ``class_correct = (pred == gt)``, so that an
    image also needs the right class to count; the paper does not spell this out — without
    ``class_correct`` only the map position is judged).

    Args:
        maps: one map per image, in image pixel coordinates.
        gt_boxes: per image ``(G_i, 4)`` GT boxes (or ``(N, 4)``).
        class_correct: optional ``(N,)`` booleans ANDed with the position test.
        labels: optional ``(N,)`` classes for per-class accuracies.

    Returns:
        A :class:`HitResult`.
    """
    score_maps = _as_maps(maps)
    boxes = _as_box_list(gt_boxes, len(score_maps), "gt_boxes")
    hits = np.zeros(len(score_maps), dtype=bool)
    for i, (s, b) in enumerate(zip(score_maps, boxes, strict=True)):
        com = center_of_mass(s)
        if com is not None:
            x, y = com
            hits[i] = bool(
                np.any((b[:, 0] - 0.5 <= x) & (x <= b[:, 2] + 0.5) & (b[:, 1] - 0.5 <= y) & (y <= b[:, 3] + 0.5))
            )
    if class_correct is not None:
        cc = np.asarray(class_correct).reshape(-1)
        if cc.shape[0] != hits.shape[0]:
            raise ValueError(f"class_correct has {cc.shape[0]} entries but there are {hits.shape[0]} maps")
        hits &= cc.astype(bool)
    return _hit_result(hits, labels)


# ----------------------------------------------------------------------------- box-based metrics
@dataclass(frozen=True)
class LocalizationAccuracy:
    """ILSVRC localization accuracy.

    Attributes:
        topk: ``{k: accuracy}``, top-k localization accuracy.
        gt_known: GT-known localization accuracy, or None when ``gt_known_boxes`` was not given.
        correct: ``(N, K)`` bool, rank ``j`` is right: class correct and a box with ``IoU >= iou``.
        best_iou: ``(N, K)`` best IoU of the rank-``j`` boxes with the image's GT boxes.
    """

    topk: dict[int, float]
    gt_known: float | None
    correct: np.ndarray
    best_iou: np.ndarray

    @property
    def topk_error(self) -> dict[int, float]:
        """``{k: 1 − accuracy}``, the localization error of Zhou et al. 2016, Tables 2–3."""
        return {k: 1.0 - v for k, v in self.topk.items()}


def _best_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    if pred.shape[0] == 0 or gt.shape[0] == 0:
        return 0.0
    return float(box_iou(pred, gt).max())


def localization_accuracy(
    pred_boxes: Sequence[Sequence[npt.ArrayLike]] | npt.ArrayLike,
    gt_boxes: BoxesPerImage,
    pred_labels_topk: npt.ArrayLike,
    gt_labels: npt.ArrayLike,
    iou: float = 0.5,
    ks: Sequence[int] = (1, 5),
    gt_known_boxes: BoxesPerImage | None = None,
) -> LocalizationAccuracy:
    """Top-k and GT-known localization accuracy, the ILSVRC protocol (Zhou et al. 2016, §3–§4).

    Image ``i`` is top-k correct iff for some rank ``j < k``: ``pred_labels_topk[i, j] == gt_labels[i]``
    and one of the boxes predicted for that class has ``IoU >= iou`` with one of the image's GT boxes.
    GT-known accuracy ignores the class: image ``i`` is correct iff a box of ``gt_known_boxes[i]`` (boxes
    from the map of the ground-truth class) has ``IoU >= iou`` with a GT box.
    ``acc = (1/N) Σ_i correct_i``; error = ``1 − acc``.

    Input format: ``pred_boxes[i][j]`` holds the box(es) predicted from the map of the ``j``-th ranked
    class of image ``i`` — a ``(4,)`` box or an ``(m, 4)`` array (Zhou et al. §4 keep several boxes per
    class on the test set). An ``(N, K, 4)`` array (one box per rank) is accepted too.

    Args:
        pred_boxes: per image, per rank, predicted boxes (see above).
        gt_boxes: per image ``(G_i, 4)`` GT boxes (or ``(N, 4)``).
        pred_labels_topk: ``(N, K)`` predicted classes, best first; ``K >= max(ks)``.
        gt_labels: ``(N,)`` ground-truth class.
        iou: IoU threshold (inclusive convention).
        ks: the ``k`` values to report.
        gt_known_boxes: optional per-image boxes from the GT class's map for the GT-known accuracy.

    Returns:
        A :class:`LocalizationAccuracy`.

    Raises:
        ValueError: empty input, mismatched lengths, bad boxes, ``k`` out of ``[1, K]``.
    """
    labels_topk = np.asarray(pred_labels_topk)
    if labels_topk.ndim != 2 or labels_topk.shape[0] == 0:
        raise ValueError(f"pred_labels_topk must have shape (N, K) with N >= 1, got {labels_topk.shape}")
    n, k_max = labels_topk.shape
    gt_lab = np.asarray(gt_labels).reshape(-1)
    if gt_lab.shape[0] != n:
        raise ValueError(f"gt_labels has {gt_lab.shape[0]} entries but pred_labels_topk has {n} rows")
    if not 0.0 < iou <= 1.0:
        raise ValueError(f"iou must lie in (0, 1], got {iou}")
    for k in ks:
        if not 1 <= int(k) <= k_max:
            raise ValueError(f"ks contains k={k}, which must lie in [1, K={k_max}]")
    gts = _as_box_list(gt_boxes, n, "gt_boxes")
    preds = list(pred_boxes)  # type: ignore[arg-type]
    if len(preds) != n:
        raise ValueError(f"pred_boxes has {len(preds)} images but pred_labels_topk has {n} rows")
    best = np.zeros((n, k_max))
    for i, per_rank in enumerate(preds):
        per_rank = list(per_rank)
        if len(per_rank) != k_max:
            raise ValueError(f"pred_boxes[{i}] has {len(per_rank)} ranks but pred_labels_topk has K={k_max}")
        for j, b in enumerate(per_rank):
            best[i, j] = _best_iou(validate_boxes(b, f"pred_boxes[{i}][{j}]"), gts[i])
    correct = (labels_topk == gt_lab[:, None]) & (best >= iou)
    topk = {int(k): float(correct[:, : int(k)].any(axis=1).mean()) for k in ks}
    gt_known = None
    if gt_known_boxes is not None:
        known = _as_box_list(gt_known_boxes, n, "gt_known_boxes")
        gt_known = float(np.mean([_best_iou(p, g) >= iou for p, g in zip(known, gts, strict=True)]))
    return LocalizationAccuracy(topk=topk, gt_known=gt_known, correct=correct, best_iou=best)


@dataclass(frozen=True)
class ThresholdCurve:
    """Localization quality as a function of the box threshold (Moreaux et al. 2018, Fig. 4).

    Attributes:
        thresholds: ``(T,)`` thresholds.
        accuracy: ``(T,)`` fraction of images with ``best IoU >= iou``.
        mean_iou: ``(T,)`` mean over images of the best IoU.
        best_iou: ``(N, T)`` best IoU per image and threshold.
        best_threshold: threshold of maximal accuracy (first one on ties).
    """

    thresholds: np.ndarray
    accuracy: np.ndarray
    mean_iou: np.ndarray
    best_iou: np.ndarray
    best_threshold: float


def localization_accuracy_vs_threshold(
    maps: MapsLike,
    gt_boxes: BoxesPerImage,
    thresholds: npt.ArrayLike,
    box_fn: Callable[[np.ndarray, float], npt.ArrayLike],
    iou: float = 0.5,
) -> ThresholdCurve:
    """Localization accuracy and mean IoU versus the box threshold (Moreaux et al. 2018, §4.4, Fig. 4).

    For each threshold ``t`` and image ``i`` the boxes ``B_i(t) = box_fn(S_i, t)`` are compared with the
    GT boxes: ``IoU_i(t) = max_{b ∈ B_i(t), g ∈ G_i} IoU(b, g)``;
    ``acc(t) = (1/N) Σ_i 1[IoU_i(t) >= iou]`` and ``mIoU(t) = (1/N) Σ_i IoU_i(t)``. Moreaux et al.
    threshold the CAM at a percentage of its maximum and take the smallest rectangle around the
    surviving pixels; plug that (or any :mod:`wsol.localize` strategy) in as ``box_fn``.

    Args:
        maps: one map per image.
        gt_boxes: per image ``(G_i, 4)`` GT boxes (or ``(N, 4)``).
        thresholds: ``(T,)`` thresholds passed to ``box_fn``.
        box_fn: ``(map, threshold) → (K, 4)`` boxes; ``K = 0`` counts as IoU 0.
        iou: IoU threshold for a correct localization.

    Returns:
        A :class:`ThresholdCurve`.

    Raises:
        ValueError: NaN maps, empty thresholds, mismatched counts, bad boxes (from the input or returned
            by ``box_fn``, naming image and threshold).
    """
    score_maps = _as_maps(maps)
    gts = _as_box_list(gt_boxes, len(score_maps), "gt_boxes")
    ts = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if ts.size == 0 or not np.isfinite(ts).all():
        raise ValueError("thresholds must be a non-empty array of finite values")
    if not 0.0 < iou <= 1.0:
        raise ValueError(f"iou must lie in (0, 1], got {iou}")
    best = np.zeros((len(score_maps), ts.size))
    for i, (s, g) in enumerate(zip(score_maps, gts, strict=True)):
        for j, t in enumerate(ts):
            pred = validate_boxes(box_fn(s, float(t)), f"box_fn(maps[{i}], threshold={t:g})")
            best[i, j] = _best_iou(pred, g)
    acc = (best >= iou).mean(axis=0)
    return ThresholdCurve(
        thresholds=ts,
        accuracy=acc,
        mean_iou=best.mean(axis=0),
        best_iou=best,
        best_threshold=float(ts[int(np.argmax(acc))]),
    )


@dataclass(frozen=True)
class CorLocResult:
    """CorLoc per class and its mean.

    Attributes:
        per_class: ``{class: fraction of its positive images correctly localized}``.
        mean: mean of ``per_class`` over the classes present in the ground truth.
        num_images: ``{class: number of positive images}``.
    """

    per_class: dict[int, float]
    mean: float
    num_images: dict[int, int]


def corloc(
    pred_boxes_per_image: Sequence[Mapping[int, npt.ArrayLike]],
    gt_boxes_per_image: Sequence[Mapping[int, npt.ArrayLike]],
    iou: float = 0.5,
) -> CorLocResult:
    """Correct localization (CorLoc): per class, the fraction of images containing the class whose
    top-scoring box for that class has ``IoU >= iou`` with a GT box of the class; then the mean over
    classes. ``CorLoc_c = |{i ∈ I_c : max_g IoU(b_ic, g) >= iou}| / |I_c|``, ``CorLoc = mean_c CorLoc_c``,
    ``I_c`` the images whose GT has class ``c``.

    Args:
        pred_boxes_per_image: per image, ``{class: box}`` with the top-scoring box of each class — a
            ``(4,)`` box or a ``(K, 4)`` array sorted by score (only row 0 is used). A positive image
            without a prediction for its class is a miss; predictions for absent classes are ignored.
        gt_boxes_per_image: per image, ``{class: (G, 4) GT boxes}``; classes with no box are absent.
        iou: IoU threshold (inclusive convention).

    Returns:
        A :class:`CorLocResult`.

    Raises:
        ValueError: empty input, mismatched lengths, bad boxes, no class in the ground truth.
    """
    if len(pred_boxes_per_image) != len(gt_boxes_per_image):
        raise ValueError(
            f"pred_boxes_per_image has {len(pred_boxes_per_image)} images but gt_boxes_per_image has "
            f"{len(gt_boxes_per_image)}"
        )
    if len(gt_boxes_per_image) == 0:
        raise ValueError("pred_boxes_per_image and gt_boxes_per_image are empty")
    if not 0.0 < iou <= 1.0:
        raise ValueError(f"iou must lie in (0, 1], got {iou}")
    hits: dict[int, int] = {}
    counts: dict[int, int] = {}
    for i, (pred, gt) in enumerate(zip(pred_boxes_per_image, gt_boxes_per_image, strict=True)):
        for c, g in gt.items():
            gb = validate_boxes(g, f"gt_boxes_per_image[{i}][{c}]")
            if gb.shape[0] == 0:
                continue
            counts[int(c)] = counts.get(int(c), 0) + 1
            hit = False
            if c in pred:
                pb = validate_boxes(pred[c], f"pred_boxes_per_image[{i}][{c}]")
                hit = pb.shape[0] > 0 and float(box_iou(pb[:1], gb).max()) >= iou
            hits[int(c)] = hits.get(int(c), 0) + int(hit)
    if not counts:
        raise ValueError("gt_boxes_per_image contains no GT box: CorLoc is undefined")
    per_class = {c: hits[c] / counts[c] for c in sorted(counts)}
    return CorLocResult(per_class=per_class, mean=float(np.mean(list(per_class.values()))), num_images=counts)
