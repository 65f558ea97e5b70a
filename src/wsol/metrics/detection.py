"""PASCAL VOC detection average precision, as the VOC devkit / py-faster-rcnn ``voc_eval``.

Used for the detection results of Gudi et al. 2017 (Table 2, VOC 2007/2012 mAP) and Qiu et al. (§IV-D,
VOC 2007 test mAP). Protocol, per class:

1. all detections of the class over the whole set are sorted by decreasing score (stable sort, so
   ties keep their input order — py-faster-rcnn's ``np.argsort`` leaves that order unspecified);
2. each detection is compared with the ground-truth boxes of its image and class; ``j* = argmax IoU``
   over *all* of them (matched or not, difficult or not), IoU in the inclusive ``+1`` convention
   (:func:`wsol.metrics.boxes.box_iou`);
3. if ``IoU_{j*} >= iou`` (the devkit's ``>=``; py-faster-rcnn writes ``>``): a difficult ``j*`` makes
   the detection *ignored* (neither TP nor FP); otherwise it is a TP if ``j*`` is not yet matched
   (``j*`` becomes matched), and an FP (duplicate) if it is. Below the threshold it is an FP;
4. ``recall = cumTP / N_pos`` with ``N_pos`` the number of non-difficult GT boxes;
   ``precision = cumTP / (cumTP + cumFP)``;
5. AP from :func:`voc_ap`, 11-point (VOC 2007) or all-point (VOC 2010+).

Note that, exactly as in the devkit, a detection whose best-overlapping GT is already matched is a
false positive even if another, unmatched GT box also overlaps it by ``>= iou``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from wsol.metrics.boxes import box_iou, validate_boxes

__all__ = ["DetectionResult", "evaluate_detections", "voc_ap"]

# 11 recall levels 0, 0.1, …, 1 computed as k/10 so that each is the double nearest to the decimal
# value (py-faster-rcnn's np.arange(0., 1.1, 0.1) gives 0.30000000000000004 etc., so a recall of
# exactly 3/10 would miss the 0.3 level there).
_VOC07_RECALL_LEVELS = np.arange(11) / 10.0


def voc_ap(recall: npt.ArrayLike, precision: npt.ArrayLike, use_07_metric: bool = False) -> float:
    """Average precision of a precision/recall curve, as py-faster-rcnn's ``voc_ap``.

    * ``use_07_metric=True`` (VOC 2007, 11-point):
      ``AP = (1/11) Σ_{t ∈ {0, 0.1, …, 1}} max{P_n : R_n >= t}`` (0 when no ``R_n >= t``).
    * ``use_07_metric=False`` (VOC 2010+, all-point): with sentinels ``R = [0, R…, 1]`` and
      ``P = [0, P…, 0]``, the envelope ``P̂_n = max_{m >= n} P_m`` and
      ``AP = Σ_{n : R_{n+1} ≠ R_n} (R_{n+1} − R_n) P̂_{n+1}``.

    Args:
        recall: ``(K,)`` recall after each ranked item (non-decreasing).
        precision: ``(K,)`` precision after each ranked item.
        use_07_metric: choose the 11-point VOC 2007 variant.

    Returns:
        AP in ``[0, 1]``; 0 for empty curves (no detection at all).

    Raises:
        ValueError: mismatched shapes, NaN, or decreasing recall.
    """
    rec = np.asarray(recall, dtype=np.float64).reshape(-1)
    prec = np.asarray(precision, dtype=np.float64).reshape(-1)
    if rec.shape != prec.shape:
        raise ValueError(f"recall {rec.shape} and precision {prec.shape} must have the same length")
    if not (np.isfinite(rec).all() and np.isfinite(prec).all()):
        raise ValueError("recall and precision must be finite (no NaN/inf)")
    if rec.size and np.any(np.diff(rec) < 0):
        raise ValueError("recall must be non-decreasing along the ranked list")
    if use_07_metric:
        ap = 0.0
        for t in _VOC07_RECALL_LEVELS:
            reached = rec >= t
            ap += (float(prec[reached].max()) if reached.any() else 0.0) / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope, the devkit's backward max loop
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


@dataclass(frozen=True)
class DetectionResult:
    """Per-class VOC detection AP.

    Attributes:
        ap: ``(num_classes,)`` AP per class; NaN for classes without non-difficult GT boxes.
        mean_ap: mean of the defined entries of ``ap`` (NaN classes are excluded).
        precision: per class, the precision after each ranked detection (ignored detections included,
            as in py-faster-rcnn).
        recall: per class, the recall after each ranked detection.
        num_positives: ``(num_classes,)`` number of non-difficult GT boxes per class.
        skipped: classes excluded from ``mean_ap`` because they have no non-difficult GT box.
    """

    ap: np.ndarray
    mean_ap: float
    precision: list[np.ndarray] = field(repr=False)
    recall: list[np.ndarray] = field(repr=False)
    num_positives: np.ndarray
    skipped: tuple[int, ...]


def _labels(x: npt.ArrayLike, n: int, num_classes: int, name: str) -> np.ndarray:
    arr = np.asarray(x).reshape(-1) if np.asarray(x).size else np.zeros(0, dtype=np.int64)
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries but there are {n} boxes")
    if n and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    bad = (arr < 0) | (arr >= num_classes)
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{j}] = {int(arr[j])} is outside [0, num_classes={num_classes})")
    return arr


def _parse_detections(
    detections: Sequence[tuple[npt.ArrayLike, npt.ArrayLike, npt.ArrayLike]], num_classes: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    out = []
    for i, det in enumerate(detections):
        if len(det) != 3:
            raise ValueError(f"detections[{i}] must be a (boxes, scores, labels) tuple, got {len(det)} items")
        boxes = validate_boxes(det[0], f"detections[{i}].boxes")
        scores = np.asarray(det[1], dtype=np.float64).reshape(-1)
        if scores.shape[0] != boxes.shape[0]:
            raise ValueError(f"detections[{i}]: {scores.shape[0]} scores for {boxes.shape[0]} boxes")
        if not np.isfinite(scores).all():
            raise ValueError(f"detections[{i}].scores contains NaN or inf")
        labels = _labels(det[2], boxes.shape[0], num_classes, f"detections[{i}].labels")
        out.append((boxes, scores, labels))
    return out


def _parse_ground_truth(
    ground_truth: Sequence[tuple[npt.ArrayLike, ...]], num_classes: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    out = []
    for i, gt in enumerate(ground_truth):
        if len(gt) not in (2, 3):
            raise ValueError(
                f"ground_truth[{i}] must be a (boxes, labels) or (boxes, labels, difficult) tuple, "
                f"got {len(gt)} items"
            )
        boxes = validate_boxes(gt[0], f"ground_truth[{i}].boxes")
        labels = _labels(gt[1], boxes.shape[0], num_classes, f"ground_truth[{i}].labels")
        if len(gt) == 3 and np.asarray(gt[2]).size:
            difficult = np.asarray(gt[2]).reshape(-1)
            if difficult.shape[0] != boxes.shape[0] or not np.isin(difficult, (0, 1)).all():
                raise ValueError(
                    f"ground_truth[{i}].difficult must be {boxes.shape[0]} booleans, got {difficult!r}"
                )
            difficult = difficult.astype(bool)
        else:
            difficult = np.zeros(boxes.shape[0], dtype=bool)
        out.append((boxes, labels, difficult))
    return out


def _evaluate_class(
    dets: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    gts: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    cls: int,
    iou: float,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Ranked TP/FP of one class → (recall, precision, N_pos), following ``voc_eval``."""
    gt_boxes = [b[lab == cls] for b, lab, _ in gts]
    gt_diff = [d[lab == cls] for _, lab, d in gts]
    n_pos = int(sum((~d).sum() for d in gt_diff))
    img = np.concatenate([np.full(int((lab == cls).sum()), i) for i, (_, _, lab) in enumerate(dets)])
    scores = np.concatenate([s[lab == cls] for _, s, lab in dets])
    boxes = np.concatenate([b[lab == cls] for b, _, lab in dets]).reshape(-1, 4)
    order = np.argsort(-scores, kind="stable")
    matched = [np.zeros(len(g), dtype=bool) for g in gt_boxes]
    tp = np.zeros(order.size)
    fp = np.zeros(order.size)
    for d, k in enumerate(order):
        i = int(img[k])
        if len(gt_boxes[i]) == 0:
            fp[d] = 1.0
            continue
        overlaps = box_iou(boxes[k], gt_boxes[i])[0]
        j = int(np.argmax(overlaps))
        if overlaps[j] >= iou:
            if gt_diff[i][j]:
                continue  # matched a difficult box: neither TP nor FP
            if not matched[i][j]:
                tp[d] = 1.0
                matched[i][j] = True
            else:
                fp[d] = 1.0  # duplicate detection
        else:
            fp[d] = 1.0
    ctp, cfp = np.cumsum(tp), np.cumsum(fp)
    recall = ctp / n_pos if n_pos > 0 else np.full(ctp.shape, np.nan)
    precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
    return recall, precision, n_pos


def evaluate_detections(
    detections: Sequence[tuple[npt.ArrayLike, npt.ArrayLike, npt.ArrayLike]],
    ground_truth: Sequence[tuple[npt.ArrayLike, ...]],
    num_classes: int,
    iou: float = 0.5,
    use_07_metric: bool = True,
) -> DetectionResult:
    """VOC detection AP per class and mAP (Gudi et al. 2017, Table 2; Qiu et al. §IV-D).

    See the module docstring for the exact matching protocol. ``mAP = (1/|C'|) Σ_{c∈C'} AP_c`` over the
    classes ``C'`` that have at least one non-difficult GT box; the others get AP NaN and are listed in
    ``skipped`` (their AP is undefined: recall has a zero denominator).

    Args:
        detections: one ``(boxes (K, 4), scores (K,), labels (K,))`` tuple per image; ``K`` may be 0.
        ground_truth: one ``(boxes (G, 4), labels (G,))`` or ``(boxes, labels, difficult (G,))`` tuple per
            image, in the same image order; ``difficult`` defaults to all False.
        num_classes: number of classes; labels must lie in ``[0, num_classes)``.
        iou: IoU threshold (inclusive ``+1`` convention), a detection needs ``IoU >= iou``.
        use_07_metric: 11-point VOC 2007 AP (default, the VOC 2007 test protocol) or, if False, the
            all-point VOC 2010+ AP.

    Returns:
        A :class:`DetectionResult`.

    Raises:
        ValueError: different numbers of images, empty input, malformed boxes (``x1 < x0`` …), NaN
            scores, labels out of range, or ``iou`` outside ``(0, 1]``.
    """
    if len(detections) != len(ground_truth):
        raise ValueError(
            f"detections has {len(detections)} images but ground_truth has {len(ground_truth)}"
        )
    if len(detections) == 0:
        raise ValueError("detections and ground_truth are empty")
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if not 0.0 < iou <= 1.0:
        raise ValueError(f"iou must lie in (0, 1], got {iou}")
    dets = _parse_detections(detections, int(num_classes))
    gts = _parse_ground_truth(ground_truth, int(num_classes))
    ap = np.full(int(num_classes), np.nan)
    precisions: list[np.ndarray] = []
    recalls: list[np.ndarray] = []
    n_pos = np.zeros(int(num_classes), dtype=np.int64)
    for c in range(int(num_classes)):
        rec, prec, n_pos[c] = _evaluate_class(dets, gts, c, iou)
        precisions.append(prec)
        recalls.append(rec)
        if n_pos[c] > 0:
            ap[c] = voc_ap(rec, prec, use_07_metric=use_07_metric)
    defined = ~np.isnan(ap)
    mean_ap = float(ap[defined].mean()) if defined.any() else float("nan")
    skipped = tuple(int(c) for c in np.flatnonzero(~defined))
    return DetectionResult(
        ap=ap, mean_ap=mean_ap, precision=precisions, recall=recalls, num_positives=n_pos, skipped=skipped
    )
