"""Tests of wsol.metrics.detection (PASCAL VOC detection AP)."""

from __future__ import annotations

import numpy as np
import pytest

from wsol.metrics.detection import evaluate_detections, voc_ap

# ----------------------------------------------------------------------------- voc_ap


def test_voc_ap_all_point_envelope_by_hand() -> None:
    # rec [.5, .5, .5, 1], prec [1, 1, .5, 2/3]; sentinels → envelope 1 on (0, .5], 2/3 on (.5, 1]
    rec = np.array([0.5, 0.5, 0.5, 1.0])
    prec = np.array([1.0, 1.0, 0.5, 2 / 3])
    assert voc_ap(rec, prec, use_07_metric=False) == pytest.approx(0.5 + 0.5 * 2 / 3)
    # 11-point: t ∈ {0,…,.5} (6 levels) → 1, t ∈ {.6,…,1} (5 levels) → 2/3
    assert voc_ap(rec, prec, use_07_metric=True) == pytest.approx((6 + 5 * 2 / 3) / 11)


def test_voc_ap_eleven_point_levels_are_exact_decimals() -> None:
    # recall exactly 3/10 reaches the 0.3 level (levels 0, .1, .2, .3 → 4/11). py-faster-rcnn's
    # np.arange(0, 1.1, 0.1) has 0.30000000000000004 and would give 3/11.
    assert voc_ap(np.array([3 / 10]), np.array([1.0]), use_07_metric=True) == pytest.approx(4 / 11)


def test_voc_ap_empty_and_bad_curves() -> None:
    assert voc_ap(np.array([]), np.array([]), use_07_metric=True) == 0.0
    assert voc_ap(np.array([]), np.array([]), use_07_metric=False) == 0.0
    with pytest.raises(ValueError, match="same length"):
        voc_ap(np.array([0.5]), np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="non-decreasing"):
        voc_ap(np.array([0.5, 0.2]), np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="finite"):
        voc_ap(np.array([np.nan]), np.array([1.0]))


# ----------------------------------------------------------------------------- hand example

A = [0, 0, 9, 9]  # 10 x 10 box, area 100
DIFF = [20, 20, 29, 29]


def _hand_example(difficult: bool) -> tuple[list, list]:
    ground_truth = [
        (np.array([A, DIFF]), np.array([0, 0]), np.array([False, difficult])),  # image 0
        (np.array([A]), np.array([0])),  # image 1, no difficult flags given
    ]
    detections = [
        (
            # d2 on the difficult box, d3 a duplicate of A (IoU 81/100), d1 exact; given out of order
            np.array([DIFF, [1, 1, 9, 9], A]),
            np.array([0.8, 0.7, 0.9]),
            np.array([0, 0, 0]),
        ),
        # d4 exact on image 1's box; plus a class-1 detection, a class without any GT
        (np.array([A, A]), np.array([0.6, 0.95]), np.array([0, 1])),
    ]
    return detections, ground_truth


def test_evaluate_detections_hand_example_with_difficult_box() -> None:
    detections, ground_truth = _hand_example(difficult=True)
    # class 0, N_pos = 2 (the difficult box does not count); ranked:
    #   d1 .9 → TP (A of image 0)   d2 .8 → difficult: ignored   d3 .7 → A already matched: FP
    #   d4 .6 → TP (image 1)
    # cumTP [1, 1, 1, 2], cumFP [0, 0, 1, 1] → rec [.5, .5, .5, 1], prec [1, 1, .5, 2/3]
    # 11-point: 6 levels (0….5) at 1 + 5 levels (.6…1) at 2/3 = 28/33
    # all-point: .5 · 1 + .5 · 2/3 = 5/6
    res07 = evaluate_detections(detections, ground_truth, num_classes=2, use_07_metric=True)
    np.testing.assert_allclose(res07.recall[0], [0.5, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(res07.precision[0], [1.0, 1.0, 0.5, 2 / 3])
    assert res07.ap[0] == pytest.approx(28 / 33)
    assert res07.num_positives.tolist() == [2, 0]
    # class 1 has no GT: AP NaN, excluded from the mean
    assert np.isnan(res07.ap[1]) and res07.skipped == (1,)
    assert res07.mean_ap == pytest.approx(28 / 33)
    res = evaluate_detections(detections, ground_truth, num_classes=2, use_07_metric=False)
    assert res.ap[0] == pytest.approx(5 / 6)
    assert res.mean_ap == pytest.approx(5 / 6)


def test_evaluate_detections_same_example_without_difficult_flag() -> None:
    detections, ground_truth = _hand_example(difficult=False)
    # N_pos = 3; d1 TP, d2 TP (now a real box), d3 FP (duplicate), d4 TP
    # rec [1/3, 2/3, 2/3, 1], prec [1, 1, 2/3, 3/4]
    # all-point: 2/3 · 1 + 1/3 · 3/4 = 11/12;  11-point: levels 0….6 (7) → 1, .7…1 (4) → 3/4 → 10/11
    res = evaluate_detections(detections, ground_truth, num_classes=2, use_07_metric=False)
    assert res.ap[0] == pytest.approx(11 / 12)
    res07 = evaluate_detections(detections, ground_truth, num_classes=2, use_07_metric=True)
    assert res07.ap[0] == pytest.approx(10 / 11)


def test_best_overlap_already_matched_is_false_positive_like_devkit() -> None:
    # G1 = A, G2 = [0,0,9,11] (IoU(A, G2) = 100/120). Two detections equal to A: both pick G1 as
    # argmax; the second is a duplicate (FP) although G2 is unmatched with IoU .83 ≥ .5.
    gt = [(np.array([A, [0, 0, 9, 11]]), np.array([0, 0]))]
    det = [(np.array([A, A]), np.array([0.9, 0.8]), np.array([0, 0]))]
    res = evaluate_detections(det, gt, num_classes=1, use_07_metric=False)
    np.testing.assert_allclose(res.recall[0], [0.5, 0.5])
    np.testing.assert_allclose(res.precision[0], [1.0, 0.5])
    assert res.ap[0] == pytest.approx(0.5)


def test_iou_threshold_is_inclusive_at_half() -> None:
    # det [0,0,9,4] vs A: inclusive IoU 50/100 = 0.5 exactly → TP with ">= 0.5" (devkit)
    gt = [(np.array([A]), np.array([0]))]
    det = [(np.array([[0, 0, 9, 4]]), np.array([1.0]), np.array([0]))]
    assert evaluate_detections(det, gt, num_classes=1).ap[0] == pytest.approx(1.0)
    assert evaluate_detections(det, gt, num_classes=1, iou=0.51).ap[0] == 0.0


def test_class_with_gt_but_no_detection_has_zero_ap() -> None:
    gt = [(np.array([A, A]), np.array([0, 1]))]
    det = [(np.array([A]), np.array([1.0]), np.array([0]))]
    res = evaluate_detections(det, gt, num_classes=2, use_07_metric=False)
    np.testing.assert_allclose(res.ap, [1.0, 0.0])
    assert res.mean_ap == pytest.approx(0.5)


# ----------------------------------------------------------------------------- reference comparison


def _reference_voc_eval(dets: list, gts: list, cls: int, thr: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """A literal transcription of py-faster-rcnn ``voc_eval`` (with the devkit's ``>=``)."""
    recs = {}
    npos = 0
    for i, g in enumerate(gts):
        keep = g[1] == cls
        diff = g[2][keep]
        recs[i] = {"bbox": g[0][keep].astype(float), "difficult": diff, "det": [False] * int(keep.sum())}
        npos += int((~diff).sum())
    image_ids, confidence, bb = [], [], []
    for i, d in enumerate(dets):
        for box, score, lab in zip(d[0], d[1], d[2], strict=True):
            if lab == cls:
                image_ids.append(i)
                confidence.append(score)
                bb.append(box)
    order = np.argsort(-np.array(confidence), kind="stable")
    tp = np.zeros(len(order))
    fp = np.zeros(len(order))
    for d, k in enumerate(order):
        r = recs[image_ids[k]]
        b = np.asarray(bb[k], dtype=float)
        bbgt = r["bbox"]
        ovmax = -np.inf
        if bbgt.size > 0:
            ixmin = np.maximum(bbgt[:, 0], b[0])
            iymin = np.maximum(bbgt[:, 1], b[1])
            ixmax = np.minimum(bbgt[:, 2], b[2])
            iymax = np.minimum(bbgt[:, 3], b[3])
            iw = np.maximum(ixmax - ixmin + 1.0, 0.0)
            ih = np.maximum(iymax - iymin + 1.0, 0.0)
            inters = iw * ih
            uni = (
                (b[2] - b[0] + 1.0) * (b[3] - b[1] + 1.0)
                + (bbgt[:, 2] - bbgt[:, 0] + 1.0) * (bbgt[:, 3] - bbgt[:, 1] + 1.0)
                - inters
            )
            overlaps = inters / uni
            ovmax = np.max(overlaps)
            jmax = np.argmax(overlaps)
        if ovmax >= thr:
            if not r["difficult"][jmax]:
                if not r["det"][jmax]:
                    tp[d] = 1.0
                    r["det"][jmax] = True
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    return tp / float(npos), tp / np.maximum(tp + fp, np.finfo(np.float64).eps)


def _random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    xy = rng.integers(0, 40, size=(n, 2))
    wh = rng.integers(4, 25, size=(n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


def test_matches_reference_voc_eval_on_random_scenes() -> None:
    rng = np.random.default_rng(3)
    num_classes = 3
    gts, dets = [], []
    for _ in range(15):
        g = int(rng.integers(0, 4))
        gb = _random_boxes(rng, g)
        gts.append((gb, rng.integers(0, num_classes, size=g), rng.random(g) < 0.2))
        # detections: jittered copies of GT boxes (TP candidates, duplicates) plus random ones
        jitter = gb + rng.integers(-3, 4, size=gb.shape) if g else np.zeros((0, 4), dtype=int)
        jitter[:, 2:] = np.maximum(jitter[:, 2:], jitter[:, :2])
        db = np.concatenate([jitter, jitter, _random_boxes(rng, int(rng.integers(0, 4)))])
        labels = np.concatenate([gts[-1][1], rng.integers(0, num_classes, size=len(db) - g)])
        dets.append((db, rng.random(len(db)), labels))
    for use07 in (True, False):
        res = evaluate_detections(dets, gts, num_classes, use_07_metric=use07)
        for c in range(num_classes):
            rec, prec = _reference_voc_eval(dets, gts, c)
            np.testing.assert_allclose(res.recall[c], rec)
            np.testing.assert_allclose(res.precision[c], prec)
            assert res.ap[c] == pytest.approx(voc_ap(rec, prec, use_07_metric=use07))
    assert np.isfinite(res.ap).all()  # this seed has GT for every class


# ----------------------------------------------------------------------------- bad input


def test_bad_inputs_raise_clear_errors() -> None:
    gt = [(np.array([A]), np.array([0]))]
    det = [(np.array([A]), np.array([1.0]), np.array([0]))]
    with pytest.raises(ValueError, match="1 images but ground_truth has 2"):
        evaluate_detections(det, gt * 2, num_classes=1)
    with pytest.raises(ValueError, match="empty"):
        evaluate_detections([], [], num_classes=1)
    with pytest.raises(ValueError, match=r"detections\[0\].boxes\[0\].*x1 < x0"):
        evaluate_detections([(np.array([[5, 0, 1, 9]]), np.array([1.0]), np.array([0]))], gt, num_classes=1)
    with pytest.raises(ValueError, match=r"ground_truth\[0\].boxes\[1\]"):
        evaluate_detections(det, [(np.array([A, [0, 9, 9, 0]]), np.array([0, 0]))], num_classes=1)
    with pytest.raises(ValueError, match=r"detections\[0\].scores contains NaN"):
        evaluate_detections([(np.array([A]), np.array([np.nan]), np.array([0]))], gt, num_classes=1)
    with pytest.raises(ValueError, match=r"detections\[0\]: 2 scores for 1 boxes"):
        evaluate_detections([(np.array([A]), np.array([1.0, 2.0]), np.array([0]))], gt, num_classes=1)
    with pytest.raises(ValueError, match=r"ground_truth\[0\].labels\[0\] = 3"):
        evaluate_detections(det, [(np.array([A]), np.array([3]))], num_classes=2)
    with pytest.raises(ValueError, match=r"ground_truth\[0\].difficult"):
        evaluate_detections(det, [(np.array([A]), np.array([0]), np.array([0, 1]))], num_classes=1)
    with pytest.raises(ValueError, match="iou"):
        evaluate_detections(det, gt, num_classes=1, iou=0.0)
