"""Tests of wsol.metrics.classification: hand-computed examples, sklearn parity, error cases."""

from __future__ import annotations

import numpy as np
import pytest

from wsol.metrics.classification import (
    accuracy,
    average_precision,
    mean_average_precision,
    precision_recall,
    topk_accuracy,
    topk_error,
)

# ----------------------------------------------------------------------------- top-k

# Ranks (stable: ties → lower class index first):
#   row 0: [1, 2, 0, 3], label 2 → rank 2 (top-2 hit)
#   row 1: [0, 1, 2, 3], label 0 → rank 1 (top-1 hit)
#   row 2: [3, 0, 1, 2] (0 and 1 tie at 0.2, class 0 first), label 1 → rank 3
TOPK_SCORES = np.array(
    [
        [0.1, 0.5, 0.3, 0.1],
        [0.9, 0.05, 0.03, 0.02],
        [0.2, 0.2, 0.1, 0.5],
    ]
)
TOPK_LABELS = np.array([2, 0, 1])


def test_topk_accuracy_hand_example() -> None:
    acc = topk_accuracy(TOPK_SCORES, TOPK_LABELS, ks=(1, 2, 3, 4))
    assert acc == pytest.approx({1: 1 / 3, 2: 2 / 3, 3: 1.0, 4: 1.0})


def test_topk_error_is_one_minus_accuracy() -> None:
    err = topk_error(TOPK_SCORES, TOPK_LABELS, ks=(1, 2))
    assert err == pytest.approx({1: 2 / 3, 2: 1 / 3})


def test_accuracy_is_argmax_match() -> None:
    assert accuracy(TOPK_SCORES, TOPK_LABELS) == pytest.approx(1 / 3)
    # argmax tie at 0.2/0.2 resolved to class 0
    assert accuracy(np.array([[0.2, 0.2]]), np.array([0])) == 1.0


def test_topk_matches_bruteforce_reference() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(200, 10))
    labels = rng.integers(0, 10, size=200)
    # reference: label's rank = number of classes with strictly larger score (no ties in random floats)
    rank = (scores > scores[np.arange(200), labels][:, None]).sum(axis=1)
    acc = topk_accuracy(scores, labels, ks=(1, 3, 5))
    for k in (1, 3, 5):
        assert acc[k] == pytest.approx(float(np.mean(rank < k)))


@pytest.mark.parametrize(
    ("scores", "labels", "ks", "match"),
    [
        (TOPK_SCORES, TOPK_LABELS, (5,), "k=5"),
        (TOPK_SCORES, TOPK_LABELS, (0,), "k=0"),
        (TOPK_SCORES, np.array([2, 0]), (1,), "labels must have shape"),
        (TOPK_SCORES, np.array([2, 0, 4]), (1,), r"labels\[2\] = 4"),
        (TOPK_SCORES, np.array([2, 0, -1]), (1,), r"labels\[2\] = -1"),
        (np.where(np.eye(3, 4) > 0, np.nan, 0.0), TOPK_LABELS, (1,), "NaN"),
        (np.zeros((0, 4)), np.zeros(0, dtype=int), (1,), "empty"),
        (np.zeros(4), np.zeros(4, dtype=int), (1,), r"shape \(N, C\)"),
    ],
)
def test_topk_bad_input(scores: np.ndarray, labels: np.ndarray, ks: tuple[int, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        topk_accuracy(scores, labels, ks=ks)


# ----------------------------------------------------------------------------- precision / recall


def test_precision_recall_multilabel_hand_example() -> None:
    probs = np.array([[0.9, 0.2], [0.6, 0.7], [0.4, 0.5], [0.5, 0.8]])
    targets = np.array([[1, 0], [0, 1], [1, 1], [1, 0]])
    # predicted (> 0.5, strictly: 0.5 is negative):
    #   class 0: [T, T, F, F] vs truth [1, 0, 1, 1] → TP 1, FP 1, FN 2 → P 1/2, R 1/3
    #   class 1: [F, T, F, T] vs truth [0, 1, 1, 0] → TP 1, FP 1, FN 1 → P 1/2, R 1/2
    pr = precision_recall(probs, targets)
    np.testing.assert_allclose(pr.precision, [0.5, 0.5])
    np.testing.assert_allclose(pr.recall, [1 / 3, 0.5])
    np.testing.assert_array_equal(pr.tp, [1, 1])
    np.testing.assert_array_equal(pr.fp, [1, 1])
    np.testing.assert_array_equal(pr.fn, [2, 1])
    assert pr.macro_precision == pytest.approx(0.5)
    assert pr.macro_recall == pytest.approx(5 / 12)
    assert pr.micro_precision == pytest.approx(2 / 4)
    assert pr.micro_recall == pytest.approx(2 / 5)


def test_precision_recall_binary_layout() -> None:
    # pred [T, F, T] vs truth [1, 1, 0]: TP 1, FP 1, FN 1
    pr = precision_recall(np.array([0.7, 0.2, 0.6]), np.array([1, 1, 0]))
    np.testing.assert_allclose(pr.precision, [0.5])
    np.testing.assert_allclose(pr.recall, [0.5])


def test_precision_recall_single_label_layout_uses_one_hot() -> None:
    probs = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    # class 0: pred [T, F, T], truth [T, F, F] → P 1/2, R 1; class 1: pred [F, T, F], truth [F, T, T] → P 1, R 1/2
    pr = precision_recall(probs, np.array([0, 1, 1]))
    np.testing.assert_allclose(pr.precision, [0.5, 1.0])
    np.testing.assert_allclose(pr.recall, [1.0, 0.5])


def test_precision_undefined_class_is_nan_and_skipped_in_macro() -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.3]])  # class 1 never predicted
    targets = np.array([[1, 0], [0, 1]])
    pr = precision_recall(probs, targets)
    assert pr.precision[0] == 1.0 and np.isnan(pr.precision[1])
    assert pr.macro_precision == 1.0  # only class 0 is defined
    pr0 = precision_recall(probs, targets, zero_division=0.0)
    assert pr0.precision[1] == 0.0 and pr0.macro_precision == 0.5


def test_precision_recall_threshold_parameter() -> None:
    pr = precision_recall(np.array([0.3, 0.45]), np.array([1, 0]), threshold=0.4)
    np.testing.assert_allclose(pr.precision, [0.0])  # only 0.45 (negative) is over 0.4
    np.testing.assert_allclose(pr.recall, [0.0])


def test_precision_recall_bad_input() -> None:
    with pytest.raises(ValueError, match="targets must be binary"):
        precision_recall(np.array([[0.1, 0.2]]), np.array([[2, 0]]))
    with pytest.raises(ValueError, match="targets must have shape"):
        precision_recall(np.array([[0.1, 0.2]]), np.array([[1, 0, 0]]))
    with pytest.raises(ValueError, match="probs contains NaN"):
        precision_recall(np.array([0.1, np.nan]), np.array([1, 0]))


# ----------------------------------------------------------------------------- average precision


def test_average_precision_ranked_list_by_hand() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    positives = np.array([1, 0, 1, 0, 1])
    # hits at ranks 1, 3, 5 → precisions 1/1, 2/3, 3/5; each raises recall by 1/3
    # area: (1 + 2/3 + 3/5) / 3 = 34/45
    assert average_precision(scores, positives) == pytest.approx(34 / 45)
    # all-point VOC: envelope 1 on (0, 1/3], 2/3 on (1/3, 2/3], 3/5 on (2/3, 1] → also 34/45
    assert average_precision(scores, positives, method="voc") == pytest.approx(34 / 45)
    # 11-point: t ∈ {0,.1,.2,.3} → 1 (recall 1/3 ≥ .3); t ∈ {.4,.5,.6} → 2/3; t ∈ {.7,…,1} → 3/5
    assert average_precision(scores, positives, method="voc07") == pytest.approx((4 + 3 * 2 / 3 + 4 * 0.6) / 11)


def test_average_precision_interpolation_differs_from_area() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    positives = np.array([0, 1, 0, 1, 1])
    # hits at ranks 2, 4, 5 → precisions 1/2, 2/4, 3/5 → area = (0.5 + 0.5 + 0.6) / 3
    assert average_precision(scores, positives) == pytest.approx(1.6 / 3)
    # the envelope is 3/5 everywhere → interpolated APs are 0.6
    assert average_precision(scores, positives, method="voc") == pytest.approx(0.6)
    assert average_precision(scores, positives, method="voc07") == pytest.approx(0.6)


def test_average_precision_ties_enter_together_like_sklearn() -> None:
    # thresholds 0.9 → (P 1, R 1/2); 0.5 (two tied items, one positive) → (P 2/3, R 1)
    # AP = 1/2 · 1 + 1/2 · 2/3 = 5/6 (item by item it would be 1.0)
    assert average_precision(np.array([0.9, 0.5, 0.5, 0.1]), np.array([1, 0, 1, 0])) == pytest.approx(5 / 6)


def test_average_precision_num_positives_scales_recall() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    positives = np.array([1, 0, 1, 0, 1])
    # one unretrieved positive: (1 + 2/3 + 3/5) / 4
    assert average_precision(scores, positives, num_positives=4) == pytest.approx(34 / 60)
    with pytest.raises(ValueError, match="num_positives"):
        average_precision(scores, positives, num_positives=2)


def test_average_precision_extremes() -> None:
    assert average_precision(np.array([3.0, 2.0, 1.0]), np.array([1, 1, 0])) == 1.0
    assert average_precision(np.array([3.0, 2.0, 1.0]), np.array([0, 0, 1])) == pytest.approx(1 / 3)
    assert np.isnan(average_precision(np.array([3.0, 2.0]), np.array([0, 0])))


def test_average_precision_matches_sklearn() -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    for _ in range(20):
        n = int(rng.integers(2, 60))
        y = rng.integers(0, 2, size=n)
        y[0] = 1
        s = np.round(rng.random(n), 1)  # rounding creates ties
        ref = sklearn_metrics.average_precision_score(y, s)
        assert average_precision(s, y) == pytest.approx(ref, abs=1e-12)


def test_average_precision_bad_input() -> None:
    with pytest.raises(ValueError, match="positives must have shape"):
        average_precision(np.array([0.1, 0.2]), np.array([1]))
    with pytest.raises(ValueError, match="scores contains NaN"):
        average_precision(np.array([0.1, np.nan]), np.array([1, 0]))
    with pytest.raises(ValueError, match="scores is empty"):
        average_precision(np.array([]), np.array([]))
    with pytest.raises(ValueError, match="method"):
        average_precision(np.array([0.1, 0.2]), np.array([1, 0]), method="bogus")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- mAP


def test_mean_average_precision_skips_classes_without_positives() -> None:
    scores = np.array([[0.9, 0.1, 0.3], [0.8, 0.7, 0.2], [0.1, 0.9, 0.5], [0.4, 0.2, 0.1]])
    targets = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    res = mean_average_precision(scores, targets)
    # class 0 ranking 0.9(+) 0.8(-) 0.4(-) 0.1(+): (1 + 2/4) / 2 = 0.75
    # class 1 ranking 0.9(+) 0.7(+) 0.2 0.1: 1.0;  class 2: no positive → skipped
    np.testing.assert_allclose(res.ap[:2], [0.75, 1.0])
    assert np.isnan(res.ap[2])
    assert res.skipped == (2,)
    assert res.mean_ap == pytest.approx(0.875)


def test_mean_average_precision_ignore_mask_removes_items() -> None:
    scores = np.array([[0.9], [0.8], [0.1]])
    targets = np.array([[0], [1], [1]])
    # without ignore: 0.9(-) 0.8(+) 0.1(+) → (1/2 + 2/3)/2
    assert mean_average_precision(scores, targets).mean_ap == pytest.approx((0.5 + 2 / 3) / 2)
    # ignoring the "difficult" first item → perfect ranking
    res = mean_average_precision(scores, targets, ignore=np.array([[1], [0], [0]]))
    assert res.mean_ap == 1.0


def test_mean_average_precision_voc07_method() -> None:
    scores = np.array([[0.9], [0.8], [0.7], [0.6], [0.5]])
    targets = np.array([[1], [0], [1], [0], [1]])
    res = mean_average_precision(scores, targets, method="voc07")
    assert res.mean_ap == pytest.approx(8.4 / 11)


def test_mean_average_precision_matches_sklearn_macro() -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(2)
    scores = rng.random((50, 6))
    targets = (rng.random((50, 6)) < 0.3).astype(int)
    targets[0] = 1
    ref = sklearn_metrics.average_precision_score(targets, scores, average="macro")
    assert mean_average_precision(scores, targets).mean_ap == pytest.approx(ref)


def test_mean_average_precision_bad_input() -> None:
    with pytest.raises(ValueError, match="targets must have shape"):
        mean_average_precision(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"scores must have shape \(N, C\)"):
        mean_average_precision(np.zeros(3), np.zeros(3))
