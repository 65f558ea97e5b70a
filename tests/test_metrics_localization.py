"""Tests of wsol.metrics.localization and property tests of wsol.metrics.boxes.box_iou."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsol.metrics.boxes import box_iou
from wsol.metrics.localization import (
    boxes_to_mask,
    center_of_mass,
    center_of_mass_accuracy,
    corloc,
    f_measure,
    localization_accuracy,
    localization_accuracy_vs_threshold,
    pinpointing_average_precision,
    point_in_boxes,
    pointing_game,
)

# ----------------------------------------------------------------------------- box_iou properties

coord = st.integers(min_value=0, max_value=60)
size = st.integers(min_value=0, max_value=30)


@st.composite
def boxes(draw: st.DrawFn) -> np.ndarray:
    x0, y0, w, h = draw(coord), draw(coord), draw(size), draw(size)
    return np.array([x0, y0, x0 + w, y0 + h], dtype=float)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(box_iou(a[None], b[None])[0, 0])


@settings(max_examples=50, deadline=None)
@given(boxes(), boxes())
def test_iou_symmetric_and_bounded(a: np.ndarray, b: np.ndarray) -> None:
    assert _iou(a, b) == pytest.approx(_iou(b, a))
    assert 0.0 <= _iou(a, b) <= 1.0


@settings(max_examples=50, deadline=None)
@given(boxes())
def test_iou_with_itself_is_one(a: np.ndarray) -> None:
    assert _iou(a, a) == 1.0


@settings(max_examples=50, deadline=None)
@given(boxes(), boxes(), st.integers(min_value=1, max_value=5))
def test_iou_disjoint_is_zero(a: np.ndarray, b: np.ndarray, gap: int) -> None:
    # shift b so that its left edge lies `gap` pixels right of a's (inclusive) right edge
    shifted = b + np.array([1, 0, 1, 0]) * (a[2] + gap - b[0])
    assert _iou(a, shifted) == 0.0


@settings(max_examples=50, deadline=None)
@given(boxes(), st.data())
def test_iou_monotone_under_growing_intersection(a: np.ndarray, data: st.DataObject) -> None:
    # B ⊆ B' ⊆ A: the intersection with A grows (B → B') while the union stays A → IoU grows
    x0, y0, x1, y1 = (int(v) for v in a)
    bx0 = data.draw(st.integers(x0, x1))
    bx1 = data.draw(st.integers(bx0, x1))
    by0 = data.draw(st.integers(y0, y1))
    by1 = data.draw(st.integers(by0, y1))
    b = np.array([bx0, by0, bx1, by1], dtype=float)
    grown = np.array(
        [
            data.draw(st.integers(x0, bx0)),
            data.draw(st.integers(y0, by0)),
            data.draw(st.integers(bx1, x1)),
            data.draw(st.integers(by1, y1)),
        ],
        dtype=float,
    )
    assert _iou(a, b) <= _iou(a, grown) + 1e-12


def test_iou_inclusive_convention_by_hand() -> None:
    # [0,0,9,9] (area 100) vs [5,0,14,9] (area 100): intersection 5 x 10 = 50 → 50 / 150
    assert _iou(np.array([0, 0, 9, 9.0]), np.array([5, 0, 14, 9.0])) == pytest.approx(1 / 3)


# ----------------------------------------------------------------------------- boxes_to_mask / F-measure


def test_boxes_to_mask_union_inclusive_and_clipped() -> None:
    mask = boxes_to_mask(np.array([[0, 0, 1, 1], [3, 2, 10, 10]]), (4, 5))
    expected = np.zeros((4, 5), dtype=bool)
    expected[0:2, 0:2] = True  # 2 x 2
    expected[2:4, 3:5] = True  # clipped to the 5 x 4 image: cols 3-4, rows 2-3
    np.testing.assert_array_equal(mask, expected)
    assert not boxes_to_mask(np.zeros((0, 4)), (3, 3)).any()


def _block(shape: tuple[int, int], rows: slice, cols: slice, value: float = 1.0) -> np.ndarray:
    m = np.zeros(shape)
    m[rows, cols] = value
    return m


def test_f_measure_known_mask_pairs_all_aggregations() -> None:
    shape = (4, 4)
    maps = np.stack([_block(shape, slice(0, 2), slice(0, 2)), _block(shape, slice(0, 2), slice(0, 4))])
    gts = np.stack([_block(shape, slice(0, 2), slice(0, 4)), _block(shape, slice(0, 4), slice(0, 1))])
    # image 0: M = 4 px top-left, G = 8 px → |M∩G| 4, P 1, R 1/2, F = 1.3 · .5 / (.3 + .5) = 0.8125
    # image 1: M = 8 px top rows, G = 4 px column 0 → |M∩G| 2, P 1/4, R 1/2,
    #          F = 1.3 · .125 / (.075 + .5) = 0.2826…
    f1 = 1.3 * 0.125 / 0.575
    res = f_measure(maps, gts)
    np.testing.assert_allclose(res.per_image_precision, [1.0, 0.25])
    np.testing.assert_allclose(res.per_image_recall, [0.5, 0.5])
    np.testing.assert_allclose(res.per_image_f, [0.8125, f1])
    assert res.f_measure == pytest.approx((0.8125 + f1) / 2)
    # F of mean P (.625) and mean R (.5): 1.3 · .3125 / (.1875 + .5)
    assert f_measure(maps, gts, aggregate="mean_pr").f_measure == pytest.approx(1.3 * 0.3125 / 0.6875)
    # pooled: Σ|M∩G| 6, Σ|M| 12, Σ|G| 12 → P = R = .5 → F = .5
    pooled = f_measure(maps, gts, aggregate="pixel")
    assert (pooled.precision, pooled.recall, pooled.f_measure) == pytest.approx((0.5, 0.5, 0.5))


def test_f_measure_uses_otsu_on_graded_maps() -> None:
    # background ≈ -5, object ≈ -4.7 with one peak pixel at -4: after min-max normalization the object is
    # at ≈ 0.3 and a 0.5·max threshold would keep only the peak; Otsu separates object from background.
    rng = np.random.default_rng(0)
    m = rng.uniform(-5.0, -4.98, size=(12, 12))
    m[3:7, 2:9] = rng.uniform(-4.71, -4.69, size=(4, 7))
    m[4, 4] = -4.0
    gt = boxes_to_mask(np.array([2, 3, 8, 6]), (12, 12))
    res = f_measure(m, gt)
    assert res.f_measure == pytest.approx(1.0)
    # beta2 matters when P != R: M = the object only, G = twice the object
    gt_big = boxes_to_mask(np.array([2, 3, 8, 10]), (12, 12))
    assert f_measure(m, gt_big, beta2=0.3).f_measure == pytest.approx(1.3 * 0.5 / 0.8)
    assert f_measure(m, gt_big, beta2=1.0).f_measure == pytest.approx(2 * 0.5 / 1.5)


def test_f_measure_constant_map_gives_empty_mask_and_zero() -> None:
    res = f_measure(np.full((5, 5), 0.7), boxes_to_mask(np.array([0, 0, 2, 2]), (5, 5)))
    assert res.f_measure == 0.0 and res.precision == 0.0 and res.recall == 0.0


def test_f_measure_custom_binarize() -> None:
    m = np.arange(16, dtype=float).reshape(4, 4)
    gt = m >= 8
    assert f_measure(m, gt, binarize=lambda s: s >= 8).f_measure == pytest.approx(1.0)


def test_f_measure_bad_input() -> None:
    good = np.ones((3, 3))
    with pytest.raises(ValueError, match=r"maps\[1\] contains NaN"):
        f_measure(np.stack([good, np.full((3, 3), np.nan)]), np.stack([good, good]))
    with pytest.raises(ValueError, match=r"gt_masks\[0\] is empty"):
        f_measure(good, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="2 images but gt_masks has 1"):
        f_measure(np.stack([good, good]), good)
    with pytest.raises(ValueError, match=r"maps\[0\] has shape \(3, 3\) but gt_masks\[0\]"):
        f_measure(good, np.ones((3, 4)))
    with pytest.raises(ValueError, match="maps is empty"):
        f_measure([], [])
    with pytest.raises(ValueError, match="beta2"):
        f_measure(good, good, beta2=0.0)


# ----------------------------------------------------------------------------- pointing game


def _peak_map(x: int, y: int, shape: tuple[int, int] = (5, 5)) -> np.ndarray:
    m = np.zeros(shape)
    m[y, x] = 1.0
    return m


def test_pointing_game_inside_inclusive_box() -> None:
    maps = np.stack([_peak_map(3, 1), _peak_map(3, 1), _peak_map(2, 4)])
    gt = [np.array([[2, 0, 4, 2]]), np.array([[0, 0, 2, 4]]), np.array([[0, 0, 1, 1], [2, 4, 2, 4]])]
    # (3,1) ∈ [2,0,4,2]; (3,1) ∉ [0,0,2,4] (x = 3 > 2); (2,4) on the 1-pixel second box
    res = pointing_game(maps, gt)
    np.testing.assert_array_equal(res.hits, [True, False, True])
    assert res.accuracy == pytest.approx(2 / 3)


def test_pointing_game_tolerance_is_euclidean_distance() -> None:
    # (3, 1) to [0,0,2,4]: distance 1;  to [0,3,1,4]: hypot(2, 2) = 2.83
    maps = _peak_map(3, 1)
    assert not pointing_game(maps, np.array([[0, 0, 2, 4]]), tolerance=0.99).hits[0]
    assert pointing_game(maps, np.array([[0, 0, 2, 4]]), tolerance=1.0).hits[0]
    assert not pointing_game(maps, np.array([[0, 3, 1, 4]]), tolerance=2.8).hits[0]
    assert pointing_game(maps, np.array([[0, 3, 1, 4]]), tolerance=2.9).hits[0]
    assert point_in_boxes(17.0, 0.0, np.array([0, 0, 2, 2]), tolerance=15)


def test_pointing_game_tie_handling() -> None:
    m = np.zeros((5, 5))
    m[0, 0] = m[4, 4] = 2.0  # two maxima; row-major first is (0, 0)
    box = np.array([[3, 3, 4, 4]])
    assert not pointing_game(m, box, ties="first").hits[0]
    assert pointing_game(m, box, ties="any").hits[0]


def test_pointing_game_class_mean() -> None:
    maps = np.stack([_peak_map(0, 0)] * 3)
    gt = np.array([[0, 0, 1, 1], [3, 3, 4, 4], [0, 0, 0, 0]])  # one box per image as an (N, 4) array
    res = pointing_game(maps, gt, labels=np.array([7, 7, 9]))
    # class 7: 1 of 2, class 9: 1 of 1 → mean over classes .75, over images 2/3
    assert res.class_accuracy == {7: 0.5, 9: 1.0}
    assert res.mean_class_accuracy == pytest.approx(0.75)
    assert res.accuracy == pytest.approx(2 / 3)


def test_pinpointing_average_precision_by_hand() -> None:
    maps = np.stack([_peak_map(1, 1)] * 4)
    gt = [np.array([[0, 0, 2, 2]]), np.zeros((0, 4)), np.array([[3, 3, 4, 4]]), np.array([[1, 1, 1, 1]])]
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    # ranked: hit, negative image (FP), positive image but miss (FP), hit; N_pos = 3 positive images
    # AP = (1/1 + 2/4) / 3 = 0.5
    assert pinpointing_average_precision(maps, gt, scores=scores) == pytest.approx(0.5)
    # default confidence = map maximum (all equal here → one tied group: P = 2/4 at R = 2/3)
    assert pinpointing_average_precision(maps, gt) == pytest.approx(2 / 3 * 0.5)


def test_pointing_bad_input() -> None:
    with pytest.raises(ValueError, match=r"maps\[0\] contains NaN"):
        pointing_game(np.full((1, 3, 3), np.nan), np.array([[0, 0, 1, 1]]))
    with pytest.raises(ValueError, match=r"gt_boxes\[1\]\[0\].*x1 < x0"):
        pointing_game(np.zeros((2, 3, 3)), [np.array([[0, 0, 1, 1]]), np.array([[2, 0, 1, 1]])])
    with pytest.raises(ValueError, match="gt_boxes has 1 entries but there are 2 images"):
        pointing_game(np.zeros((2, 3, 3)), [np.array([[0, 0, 1, 1]])])
    with pytest.raises(ValueError, match=r"gt_boxes\[0\] has no box"):
        pointing_game(np.zeros((3, 3)), [np.zeros((0, 4))])
    with pytest.raises(ValueError, match="tolerance"):
        pointing_game(np.zeros((3, 3)), np.array([[0, 0, 1, 1]]), tolerance=-1)
    with pytest.raises(ValueError, match="ties"):
        pointing_game(np.zeros((3, 3)), np.array([[0, 0, 1, 1]]), ties="last")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- centre of mass


def test_center_of_mass_two_pixel_map() -> None:
    # weights 1 at x=0 and 3 at x=4 (a 1 x 5 map) → x̄ = (0·1 + 4·3) / 4 = 3, ȳ = 0
    m = np.array([[1.0, 0.0, 0.0, 0.0, 3.0]])
    assert center_of_mass(m) == pytest.approx((3.0, 0.0))
    # negative values carry no mass
    assert center_of_mass(np.array([[1.0, -5.0, 0.0, 0.0, 3.0]])) == pytest.approx((3.0, 0.0))
    # 2-D: equal weights at (0, 0) and (2, 2) → (1, 1)
    m2 = np.zeros((3, 3))
    m2[0, 0] = m2[2, 2] = 2.0
    assert center_of_mass(m2) == pytest.approx((1.0, 1.0))
    assert center_of_mass(np.zeros((2, 2))) is None


def test_center_of_mass_accuracy_pixel_extent_rule() -> None:
    # 1 x 6 map, weights 1 at x=0 and 3 at x=5 → x̄ = 15/4 = 3.75: pixel 4 (covers [3.5, 4.5])
    m = np.array([[1.0, 0, 0, 0, 0, 3.0]])
    maps = np.stack([m, m, np.zeros_like(m)])
    gt = [np.array([[0, 0, 3, 0]]), np.array([[4, 0, 5, 0]]), np.array([[0, 0, 5, 0]])]
    res = center_of_mass_accuracy(maps, gt)
    # 3.75 > 3 + ½ → miss; 3.75 ≥ 4 − ½ → hit; no positive mass → miss
    np.testing.assert_array_equal(res.hits, [False, True, False])
    assert res.accuracy == pytest.approx(1 / 3)
    # "based on the prediction only": the class must be right too
    res_pred = center_of_mass_accuracy(maps, gt, class_correct=np.array([True, False, True]))
    np.testing.assert_array_equal(res_pred.hits, [False, False, False])


# ----------------------------------------------------------------------------- ILSVRC top-k localization


def test_localization_accuracy_hand_example() -> None:
    gt_boxes = [np.array([[0, 0, 9, 9]]), np.array([[0, 0, 9, 9]]), np.array([[10, 10, 19, 19]])]
    gt_labels = np.array([1, 2, 0])
    labels_topk = np.array([[1, 0], [0, 2], [0, 1]])
    pred = [
        [np.array([0, 0, 9, 9]), np.array([0, 0, 1, 1])],  # rank 0 right class, IoU 1 → top-1 hit
        [np.array([0, 0, 9, 9]), np.array([0, 0, 9, 4])],  # rank 0 wrong class; rank 1 right, IoU .5
        [np.array([15, 10, 24, 19]), np.array([10, 10, 19, 19])],  # rank 0 right class, IoU 50/150
    ]
    known = [np.array([0, 0, 9, 9]), np.array([0, 0, 9, 4]), np.array([15, 10, 24, 19])]
    res = localization_accuracy(pred, gt_boxes, labels_topk, gt_labels, ks=(1, 2), gt_known_boxes=known)
    assert res.topk == pytest.approx({1: 1 / 3, 2: 2 / 3})
    assert res.topk_error == pytest.approx({1: 2 / 3, 2: 1 / 3})
    assert res.gt_known == pytest.approx(2 / 3)  # IoUs 1, .5, 1/3
    np.testing.assert_allclose(res.best_iou[:, 0], [1.0, 1.0, 1 / 3])
    np.testing.assert_array_equal(res.correct, [[True, False], [False, True], [False, False]])
    # several boxes per class (Zhou et al. §4): image 2 rank 0 gets a second, exact box → top-1 hit
    pred[2][0] = np.array([[15, 10, 24, 19], [10, 10, 19, 19]])
    res2 = localization_accuracy(pred, gt_boxes, labels_topk, gt_labels, ks=(1,))
    assert res2.topk == pytest.approx({1: 2 / 3}) and res2.gt_known is None


def test_localization_accuracy_array_input_and_errors() -> None:
    pred = np.array([[[0, 0, 9, 9]]])  # (N=1, K=1, 4)
    gt = np.array([[0, 0, 9, 9]])
    assert localization_accuracy(pred, gt, np.array([[3]]), np.array([3]), ks=(1,)).topk[1] == 1.0
    with pytest.raises(ValueError, match="k=5"):
        localization_accuracy(pred, gt, np.array([[3]]), np.array([3]))
    with pytest.raises(ValueError, match=r"pred_boxes\[0\]\[0\]\[0\].*x1 < x0"):
        localization_accuracy([[np.array([9, 0, 0, 9])]], gt, np.array([[3]]), np.array([3]), ks=(1,))
    with pytest.raises(ValueError, match="gt_labels has 2 entries"):
        localization_accuracy(pred, gt, np.array([[3]]), np.array([3, 1]), ks=(1,))
    with pytest.raises(ValueError, match=r"pred_boxes\[0\] has 1 ranks but pred_labels_topk has K=2"):
        localization_accuracy(pred, gt, np.array([[3, 1]]), np.array([3]), ks=(1,))


# ----------------------------------------------------------------------------- accuracy vs threshold


def _tight_box(score_map: np.ndarray, t: float) -> np.ndarray:
    """Moreaux et al.'s box: smallest rectangle around the pixels >= t · max."""
    ys, xs = np.nonzero(score_map >= t * score_map.max())
    return np.array([[xs.min(), ys.min(), xs.max(), ys.max()]])


def test_localization_accuracy_vs_threshold_by_hand() -> None:
    m = np.full((10, 10), 0.3)
    m[2:8, 2:8] = 1.0  # object block 6 x 6 = [2, 2, 7, 7]
    gt = [np.array([[2, 2, 7, 7]]), np.array([[2, 2, 7, 9]])]  # second GT: 6 x 8 = 48 px
    curve = localization_accuracy_vs_threshold(np.stack([m, m]), gt, [0.2, 0.5, 1.0], _tight_box)
    # t = .2: whole image [0,0,9,9] → IoU 36/100, 48/100;  t ≥ .5: the block → IoU 1, 36/48
    np.testing.assert_allclose(curve.best_iou, [[0.36, 1.0, 1.0], [0.48, 0.75, 0.75]])
    np.testing.assert_allclose(curve.accuracy, [0.0, 1.0, 1.0])
    np.testing.assert_allclose(curve.mean_iou, [0.42, 0.875, 0.875])
    assert curve.best_threshold == 0.5


def test_localization_accuracy_vs_threshold_errors() -> None:
    m = np.ones((4, 4))
    with pytest.raises(ValueError, match=r"box_fn\(maps\[0\], threshold=0.5\)\[0\].*x1 < x0"):
        localization_accuracy_vs_threshold(m, np.array([[0, 0, 1, 1]]), [0.5], lambda s, t: [3, 0, 1, 1])
    with pytest.raises(ValueError, match="thresholds"):
        localization_accuracy_vs_threshold(m, np.array([[0, 0, 1, 1]]), [], _tight_box)
    with pytest.raises(ValueError, match=r"maps\[0\] contains NaN"):
        localization_accuracy_vs_threshold(np.full((4, 4), np.nan), np.array([[0, 0, 1, 1]]), [0.5], _tight_box)


# ----------------------------------------------------------------------------- CorLoc


def test_corloc_by_hand() -> None:
    gt = [
        {0: np.array([[0, 0, 9, 9]])},
        {0: np.array([[0, 0, 9, 9]]), 1: np.array([[20, 20, 29, 29]])},
        {1: np.array([[0, 0, 4, 4]])},
        {1: np.array([[0, 0, 4, 4]])},
    ]
    pred = [
        {0: np.array([0, 0, 9, 9]), 1: np.array([0, 0, 1, 1])},  # c0 hit; class 1 absent → ignored
        {0: np.array([[50, 50, 60, 60], [0, 0, 9, 9]]), 1: np.array([20, 20, 29, 29])},  # c0: only row 0
        {},  # c1 positive image without prediction → miss
        {1: np.array([0, 0, 4, 4])},  # c1 hit
    ]
    res = corloc(pred, gt)
    # class 0: 1 of 2 images; class 1: 2 of 3 images → mean (1/2 + 2/3) / 2
    assert res.per_class == pytest.approx({0: 0.5, 1: 2 / 3})
    assert res.num_images == {0: 2, 1: 3}
    assert res.mean == pytest.approx(7 / 12)


def test_corloc_errors() -> None:
    with pytest.raises(ValueError, match="1 images but gt_boxes_per_image has 0"):
        corloc([{}], [])
    with pytest.raises(ValueError, match="no GT box"):
        corloc([{}], [{}])
    with pytest.raises(ValueError, match=r"pred_boxes_per_image\[0\]\[0\]\[0\]"):
        corloc([{0: np.array([5, 5, 0, 0])}], [{0: np.array([[0, 0, 4, 4]])}])
