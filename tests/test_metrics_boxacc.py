"""MaxBoxAcc / MaxBoxAccV2 (Choe et al. 2020): hand-computed cases and fast == reference."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from wsol.localize import DegenerateMapWarning
from wsol.metrics import boxacc
from wsol.metrics.boxacc import (
    BoxAccEvaluator,
    cam_thresholds,
    compute_boxacc,
    normalize_scoremap,
    prepare_scoremap,
    quantize_scoremap,
    rescale_boxes,
    scoremap_ious,
)

T = cam_thresholds(0.001)


def _rect_map(boxes_values: list[tuple[int, int, int, int, float]], size: int = 224) -> np.ndarray:
    """Map with value ``v`` on the inclusive rows y0..y1, cols x0..x1 of each ``(x0, y0, x1, y1, v)``."""
    m = np.zeros((size, size))
    for x0, y0, x1, y1, v in boxes_values:
        m[y0 : y1 + 1, x0 : x1 + 1] = v
    return m


def _blob_map(seed: int, ring: bool = False, low: int = 14) -> np.ndarray:
    """CAM-like map: Gaussian blobs (+ a ring) and noise on a ``low × low`` grid, bicubic-upsampled to 224."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:low, 0:low] * (224 / low)
    m = np.zeros((low, low))
    for _ in range(rng.integers(1, 4)):
        cx, cy, sx, sy = rng.uniform(0, 224), rng.uniform(0, 224), rng.uniform(10, 60), rng.uniform(10, 60)
        m += rng.uniform(0.3, 1) * np.exp(-((xx - cx) ** 2) / (2 * sx**2) - (yy - cy) ** 2 / (2 * sy**2))
    if ring:
        d = np.hypot(xx - rng.uniform(60, 160), yy - rng.uniform(60, 160))
        m += np.exp(-((d - rng.uniform(30, 60)) ** 2) / (2 * 12**2))
    m += 0.05 * rng.standard_normal((low, low))
    return cv2.resize(m, (224, 224), interpolation=cv2.INTER_CUBIC)


def _assert_same(scoremap: np.ndarray, gt: np.ndarray, thresholds: np.ndarray = T) -> None:
    s, _ = normalize_scoremap(scoremap)
    ref = scoremap_ious(s, gt, thresholds, method="reference")
    fast = scoremap_ious(s, gt, thresholds, method="fast")
    np.testing.assert_array_equal(fast.largest, ref.largest)
    np.testing.assert_array_equal(fast.multi, ref.multi)


# ------------------------------------------------------------------------------- building blocks
def test_cam_thresholds_are_the_reference_arange() -> None:
    np.testing.assert_array_equal(cam_thresholds(0.001), np.arange(0, 1, 0.001))
    assert len(cam_thresholds(0.001)) == 1000 and cam_thresholds(0.25).tolist() == [0, 0.25, 0.5, 0.75]
    for bad in (0, 1, -0.1, float("nan"), "0.1", True):
        with pytest.raises(ValueError, match="cam_curve_interval"):
            cam_thresholds(bad)  # type: ignore[arg-type]


def test_rescale_boxes_truncates_like_reference() -> None:
    # int(10*224/100)=22, int(20*224/200)=22, int(99*224/100)=int(221.76)=221, int(199*224/200)=int(222.88)=222
    out = rescale_boxes([[10, 20, 99, 199]], (100, 200))
    assert out.tolist() == [[22, 22, 221, 222]] and out.dtype == np.int64
    assert rescale_boxes([3, 4, 5, 6], None).tolist() == [[3, 4, 5, 6]]
    with pytest.raises(ValueError, match="x0 <= x1"):
        rescale_boxes([[5, 0, 4, 3]], (10, 10))
    with pytest.raises(ValueError, match="non-negative"):
        rescale_boxes([[-1, 0, 4, 3]], (10, 10))
    with pytest.raises(ValueError, match="image_size"):
        rescale_boxes([[0, 0, 4, 3]], (0, 10))
    with pytest.raises(ValueError, match=r"\(K, 4\)"):
        rescale_boxes(np.zeros((0, 4)), (10, 10))


def test_prepare_resizes_bicubic_then_normalizes_like_reference() -> None:
    rng = np.random.default_rng(0)
    cam = rng.standard_normal((14, 14)).astype(np.float32)
    out, reason = prepare_scoremap(cam)
    expected = cv2.resize(cam.astype(np.float64), (224, 224), interpolation=cv2.INTER_CUBIC)
    expected -= expected.min()
    expected /= expected.max()
    assert reason is None and out.shape == (224, 224)
    np.testing.assert_array_equal(out, expected)  # bit-identical, not just close
    assert out.min() == 0.0 and out.max() == 1.0


def test_degenerate_maps_become_zeros_with_a_reason() -> None:
    for m, why in ((np.full((7, 7), 3.0), "constant"), (np.array([[0.0, np.nan]]), "non-finite")):
        out, reason = prepare_scoremap(m)
        assert reason == why and out.shape == (224, 224) and not out.any()
    with pytest.raises(ValueError, match="2-D"):
        prepare_scoremap(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        prepare_scoremap(np.full((224, 224), 2.0), normalize=False)


def test_quantization_truncates() -> None:
    assert quantize_scoremap(np.array([[0.0, 0.5, 0.999, 1.0]])).tolist() == [[0, 127, 254, 255]]


# ------------------------------------------------------------------------------- hand-computed cases
@pytest.mark.parametrize("method", ["fast", "reference"])
def test_rectangle_gives_its_box_plus_one_at_every_threshold(method: str) -> None:
    m = _rect_map([(30, 50, 129, 99, 1.0)])  # 100 x 50 pixels
    ious = scoremap_ious(m, np.array([[30, 50, 129, 99]]), T, method)  # type: ignore[arg-type]
    # boundingRect (30, 50, 100, 50) -> [30, 50, 130, 100] (reference x + w): 101*51 = 5151 pixels.
    np.testing.assert_array_equal(ious.largest, np.full(1000, 5000 / 5151))
    np.testing.assert_array_equal(ious.multi, np.full(1000, 5000 / 5151))
    far = scoremap_ious(m, np.array([[150, 150, 200, 200]]), T, method)  # type: ignore[arg-type]
    assert not far.multi.any() and not far.largest.any()


@pytest.mark.parametrize("method", ["fast", "reference"])
def test_nested_plateaus_switch_box_at_known_threshold(method: str) -> None:
    # B (value 0.5 -> q = 127) contains A (value 1 -> q = 255). int(t * 255) >= 127 iff t >= 0.499.
    m = _rect_map([(60, 60, 159, 159, 0.5), (100, 100, 119, 119, 1.0)])
    gt_b, gt_a = np.array([[60, 60, 159, 159]]), np.array([[100, 100, 119, 119]])
    ious_b = scoremap_ious(m, gt_b, T, method)  # type: ignore[arg-type]
    ious_a = scoremap_ious(m, gt_a, T, method)  # type: ignore[arg-type]
    low, high = T < 0.4985, T > 0.4985
    assert low.sum() == 499
    np.testing.assert_array_equal(ious_b.largest[low], 10000 / 10201)  # box [60, 60, 160, 160]
    np.testing.assert_array_equal(ious_b.largest[high], 441 / 10000)  # box [100, 100, 120, 120]
    np.testing.assert_array_equal(ious_a.largest[low], 400 / 10201)
    np.testing.assert_array_equal(ious_a.largest[high], 400 / 441)

    # Data-set level: one image wants the low thresholds, the other the high ones -> 50 %, best t = 0.
    ev = BoxAccEvaluator(method=method)  # type: ignore[arg-type]
    ev.accumulate(m, gt_b, None)
    ev.accumulate(m, gt_a, None)
    rep = ev.compute()
    np.testing.assert_array_equal(rep.largest.accuracy[50], np.full(1000, 50.0))
    assert rep.maxboxacc == 50.0 and rep.largest.best_threshold[50] == 0.0
    # delta = 30: image B correct below 0.499 only (0.0441 < 0.3), image A above only -> 50 % too.
    assert rep.multi.max_accuracy[30] == 50.0 and rep.maxboxacc_v2 == 50.0


def test_accuracy_curve_counts_and_best_threshold() -> None:
    # Image 1: box of B correct only for t < 0.499; image 2 has GT = B as well -> 100 % there, 0 above.
    m = _rect_map([(60, 60, 159, 159, 0.5), (100, 100, 119, 119, 1.0)])
    rep = compute_boxacc([m, m], [[[60, 60, 159, 159]]] * 2, iou_thresholds=(50,))
    acc = rep.largest.accuracy[50]
    assert acc[:499].tolist() == [100.0] * 499 and acc[499:].tolist() == [0.0] * 501
    assert rep.largest.best_threshold[50] == 0.0 and rep.maxboxacc == 100.0
    assert rep.to_dict()["MaxBoxAcc"]["per_iou"]["50"] == {"max_accuracy": 100.0, "best_cam_threshold": 0.0}


@pytest.mark.parametrize("method", ["fast", "reference"])
def test_largest_contour_versus_all_contours(method: str) -> None:
    # Two equal-valued blobs: the big one wins V1, the small one matches the GT -> only V2 finds it.
    m = _rect_map([(10, 10, 109, 109, 1.0), (150, 150, 169, 169, 1.0)])
    ious = scoremap_ious(m, np.array([[150, 150, 170, 170]]), T, method)  # type: ignore[arg-type]
    np.testing.assert_array_equal(ious.multi, np.full(1000, 1.0))  # box [150, 150, 170, 170]
    np.testing.assert_array_equal(ious.largest, np.zeros(1000))


@pytest.mark.parametrize("method", ["fast", "reference"])
def test_hole_contour_box_counts_in_v2(method: str) -> None:
    # Square ring: outer rows/cols 40..180, hole 80..140. RETR_TREE also returns the hole's contour, traced
    # on the ring pixels 79..141 around it: boundingRect (79, 79, 63, 63) -> box [79, 79, 142, 142].
    m = _rect_map([(40, 40, 180, 180, 1.0), (80, 80, 140, 140, 0.0)])
    ious = scoremap_ious(m, np.array([[79, 79, 141, 141]]), T, method)  # type: ignore[arg-type]
    np.testing.assert_array_equal(ious.multi, np.full(1000, 63 * 63 / (64 * 64)))
    np.testing.assert_array_equal(ious.largest, np.full(1000, 63 * 63 / (142 * 142)))  # outer box [40..181]


def test_several_gt_boxes_take_the_best_match() -> None:
    m = _rect_map([(30, 50, 129, 99, 1.0)])
    gts = np.array([[0, 0, 5, 5], [30, 50, 129, 99], [100, 0, 223, 30]])
    ious = scoremap_ious(m, gts, T)
    np.testing.assert_array_equal(ious.largest, np.full(1000, 5000 / 5151))


def test_empty_mask_box_is_origin_pixel() -> None:
    # A constant map is zeroed: every mask is empty and the reference box [0, 0, 0, 0] is scored.
    with pytest.warns(DegenerateMapWarning, match="constant"):
        rep = compute_boxacc([np.ones((10, 10))], [[[0, 0, 0, 0]]], iou_thresholds=(50,))
    assert rep.maxboxacc == 100.0 and rep.degenerate == (("#0", "constant"),)
    with pytest.warns(DegenerateMapWarning, match="non-finite"):
        rep = compute_boxacc([np.full((10, 10), np.nan)], [[[5, 5, 9, 9]]], iou_thresholds=(50,))
    assert rep.maxboxacc == 0.0


def test_top1_counts_only_correct_classes() -> None:
    m = _rect_map([(30, 50, 129, 99, 1.0)])
    gt = [[[30, 50, 129, 99]]] * 4
    rep = compute_boxacc([m] * 4, gt, correct_classes=[True, False, True, True])
    assert rep.maxboxacc == 100.0 and rep.maxboxacc_v2 == 100.0
    assert rep.top1_maxboxacc == 75.0 and rep.top1_maxboxacc_v2 == 75.0
    assert rep.to_dict()["top1"]["MaxBoxAcc"]["value"] == 75.0
    assert compute_boxacc([m], gt[:1]).top1_maxboxacc is None


def test_gt_boxes_are_rescaled_from_the_image_size() -> None:
    # 448 x 112 image: x scale 0.5, y scale 2. GT [60, 25, 259, 74] -> [30, 50, 129, 148].
    m = _rect_map([(30, 50, 129, 148, 1.0)])
    rep = compute_boxacc([m], [[[60, 25, 259, 74]]], image_sizes=[(448, 112)], iou_thresholds=(50,))
    expected = 100 * 99 / (101 * 100)  # GT 100 x 99, predicted [30, 50, 130, 149] is 101 x 100
    assert rep.largest.max_accuracy[50] == 100.0
    ious = scoremap_ious(m, rescale_boxes([[60, 25, 259, 74]], (448, 112)), T)
    assert ious.largest[0] == expected


def test_evaluator_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="iou_thresholds"):
        BoxAccEvaluator(iou_thresholds=(0, 50))
    with pytest.raises(ValueError, match="method"):
        BoxAccEvaluator(method="slow")  # type: ignore[arg-type]
    ev = BoxAccEvaluator()
    with pytest.raises(ValueError, match="no image"):
        ev.compute()
    with pytest.raises(ValueError, match=r"image cat\.jpg: .*x0 <= x1"):
        ev.accumulate(np.zeros((5, 5)), [[5, 5, 1, 1]], (10, 10), image_id="cat.jpg")
    ev.accumulate(np.eye(5), [[0, 0, 4, 4]], (5, 5), correct_class=True)
    with pytest.raises(ValueError, match="correct_class given for some images"):
        ev.accumulate(np.eye(5), [[0, 0, 4, 4]], (5, 5))
    with pytest.raises(ValueError, match="gt_boxes has 2 entries"):
        compute_boxacc([np.eye(3)], [[[0, 0, 1, 1]], [[0, 0, 1, 1]]])


# ------------------------------------------------------------------------------- fast == reference
@pytest.mark.parametrize("seed", range(4))
def test_fast_equals_reference_on_blob_and_ring_maps(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    m = _blob_map(seed, ring=seed % 2 == 0, low=14 if seed < 2 else 28)
    gt = np.sort(rng.integers(0, 224, (3, 2, 2)), axis=1).transpose(0, 2, 1).reshape(3, 4)[:, [0, 2, 1, 3]]
    _assert_same(m, gt)


def test_fast_equals_reference_on_noise_multiple_components_and_ties() -> None:
    rng = np.random.default_rng(7)
    noisy = cv2.resize(rng.random((40, 40)), (224, 224), interpolation=cv2.INTER_NEAREST)  # many plateaus
    twins = _rect_map([(20, 20, 59, 59, 1.0), (120, 120, 159, 159, 1.0), (100, 10, 110, 30, 0.7)])
    nested = [(10, 10, 200, 200, 0.8), (30, 30, 180, 180, 0.0), (60, 60, 150, 150, 1.0), (90, 90, 120, 120, 0)]
    rings = _rect_map(nested)  # ring, hole, island in the hole, hole in the island
    gts = np.array([[20, 20, 59, 59], [120, 120, 159, 159], [29, 29, 181, 181], [0, 0, 223, 223]])
    t = cam_thresholds(0.01)
    for m in (noisy, twins, rings):
        _assert_same(m, gts, t)


maps = hnp.arrays(
    np.float64,
    st.tuples(st.integers(1, 24), st.integers(1, 24)),
    elements=st.sampled_from([0.0, 0.2, 0.5, 0.5001, 0.9, 1.0]) | st.floats(0, 1),
)


@settings(max_examples=50, deadline=None)
@given(m=maps, box=st.tuples(st.integers(0, 23), st.integers(0, 23), st.integers(0, 23), st.integers(0, 23)))
def test_fast_equals_reference_on_random_small_maps(m: np.ndarray, box: tuple[int, int, int, int]) -> None:
    x0, x1 = sorted(box[::2])
    y0, y1 = sorted(box[1::2])
    _assert_same(m, np.array([[x0, y0, x1, y1], [0, 0, 0, 0]]), cam_thresholds(0.002))


@pytest.mark.filterwarnings("ignore::wsol.localize.DegenerateMapWarning")
@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (3, 1), (2, 2)])
def test_fast_equals_reference_on_tiny_and_constant_maps(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    for m in (rng.random(shape), np.zeros(shape), np.full(shape, 0.7)):
        _assert_same(m, np.array([[0, 0, 0, 0], [0, 0, 1, 0]]), cam_thresholds(0.01))
    # and through the full protocol (bicubic resize of a tiny map to 224)
    cam = rng.random(shape)
    kw = {"cam_curve_interval": 0.01, "image_sizes": [shape[::-1]]}
    rep_f = compute_boxacc([cam], [[[0, 0, 0, 0]]], method="fast", **kw)  # type: ignore[arg-type]
    rep_r = compute_boxacc([cam], [[[0, 0, 0, 0]]], method="reference", **kw)  # type: ignore[arg-type]
    assert rep_f.to_dict(include_curves=True) == rep_r.to_dict(include_curves=True)


def test_constant_map_is_zeroed_before_bicubic_ripples() -> None:
    # cv2.resize(INTER_CUBIC) of a constant 0.3 map is not exactly constant (~1e-16 ripples).
    ripples = cv2.resize(np.full((7, 7), 0.3), (224, 224), interpolation=cv2.INTER_CUBIC)
    assert ripples.min() != ripples.max()
    out, reason = prepare_scoremap(np.full((7, 7), 0.3))
    assert reason == "constant" and not out.any()


def test_evaluator_fast_and_reference_reports_are_identical() -> None:
    rng = np.random.default_rng(3)
    cams = [rng.standard_normal((7, 7)) for _ in range(3)] + [_blob_map(9)]
    gts = [[[10, 20, 300, 200], [0, 0, 50, 50]], [[100, 100, 400, 300]], [[0, 0, 499, 399]], [[50, 60, 150, 170]]]
    sizes = [(500, 400)] * 3 + [(224, 224)]
    kw = {"image_sizes": sizes, "correct_classes": [True, False, True, True], "cam_curve_interval": 0.01}
    fast = compute_boxacc(cams, gts, method="fast", **kw)  # type: ignore[arg-type]
    ref = compute_boxacc(cams, gts, method="reference", **kw)  # type: ignore[arg-type]
    assert fast.to_dict(include_curves=True) == ref.to_dict(include_curves=True)


# ------------------------------------------------------------------------------- numba level sweep
_needs_numba = pytest.mark.skipif(boxacc._sweep_levels is None, reason="numba not installed")


def _sweep_vs_contours(q: np.ndarray, gt: np.ndarray) -> None:
    """Every level of the sweep against findContours on that level (ties are left to findContours)."""
    levels = np.arange(int(q.max()), dtype=np.int64)
    multi, largest, tied = boxacc._sweep_levels(q, levels, gt.astype(np.float64), *boxacc._SWEEP_TABLES)
    ref_largest, ref_multi = boxacc._contour_level_ious(q, gt.astype(np.float64), levels)
    np.testing.assert_array_equal(multi, ref_multi)
    np.testing.assert_array_equal(largest[~tied], ref_largest[~tied])


@_needs_numba
@pytest.mark.parametrize("seed", range(6))
def test_sweep_equals_contours_on_rings_blobs_and_noise(seed: int) -> None:
    # Rings next to blobs of similar area make the largest contour depend on the traced area of a
    # component with holes, and a later level grows that (already traced) component again.
    rng = np.random.default_rng(seed)
    m = _blob_map(seed + 20, ring=True, low=14 + 7 * (seed % 3))
    if seed % 2:
        m = m + 0.01 * rng.standard_normal(m.shape) * np.ptp(m)
    q = quantize_scoremap(normalize_scoremap(m)[0])
    _sweep_vs_contours(q, np.array([[10, 10, 100, 120], [60, 50, 200, 180]]))


@_needs_numba
def test_sweep_traced_area_matches_contour_area() -> None:
    # Each 8-connected component traced from its raster-first pixel vs contourArea of its outer border.
    rng = np.random.default_rng(5)
    mask = cv2.resize((rng.random((12, 12)) > 0.45).astype(np.uint8), (60, 60), interpolation=cv2.INTER_NEAREST)
    mask[20:40, 20:40] = 0
    mask[25:35, 25:35] = 1  # ring around an island
    mask[45:60, :] = 0
    mask[48, 3:9:2] = 1  # isolated dots and a one-pixel-wide line
    mask[55, 2:30] = 1
    h, w = mask.shape
    pw = w + 2
    inside = np.zeros((h + 2, w + 2), dtype=bool)
    inside[1:-1, 1:-1] = mask > 0
    dirs = np.array([1, -pw + 1, -pw, -pw - 1, -1, pw - 1, pw, pw + 1])
    n, labels = cv2.connectedComponents(mask, connectivity=8)
    assert n >= 4
    for k in range(1, n):
        comp = (labels == k).astype(np.uint8)
        (outer,), _ = cv2.findContours(comp, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        ys, xs = np.nonzero(comp)  # raster order: the first one is the top-left-most pixel
        start = (ys[0] + 1) * pw + xs[0] + 1
        assert boxacc._trace_twice_area(inside.ravel(), int(start), pw, dirs) == round(2 * cv2.contourArea(outer))


@_needs_numba
@settings(max_examples=50, deadline=None)
@given(
    m=hnp.arrays(np.uint8, st.tuples(st.integers(1, 30), st.integers(1, 30)), elements=st.sampled_from([0, 9, 180])),
    box=st.tuples(st.integers(0, 29), st.integers(0, 29), st.integers(0, 29), st.integers(0, 29)),
)
def test_sweep_equals_contours_on_random_plateau_maps(m: np.ndarray, box: tuple[int, int, int, int]) -> None:
    x0, x1 = sorted(box[::2])
    y0, y1 = sorted(box[1::2])
    if m.max() > 0:
        _sweep_vs_contours(np.ascontiguousarray(m), np.array([[x0, y0, x1, y1], [0, 0, 2, 2]]))


@_needs_numba
@settings(max_examples=50, deadline=None)
@given(
    m=hnp.arrays(np.uint8, st.tuples(st.integers(1, 24), st.integers(1, 24)), elements=st.integers(0, 7)),
    box=st.tuples(st.integers(0, 23), st.integers(0, 23), st.integers(0, 23), st.integers(0, 23)),
)
def test_sweep_equals_contours_on_random_many_level_maps(m: np.ndarray, box: tuple[int, int, int, int]) -> None:
    # Eight values: components appear, grow, merge and stay unchanged over several levels, holes open
    # and close; the sweep recomputes IoUs only for the components that changed at a level.
    x0, x1 = sorted(box[::2])
    y0, y1 = sorted(box[1::2])
    if m.max() > 0:
        _sweep_vs_contours(np.ascontiguousarray(m), np.array([[x0, y0, x1, y1]]))


@_needs_numba
def test_sweep_keeps_iou_of_components_that_stop_changing() -> None:
    # A: a 6 x 6 square of value 200 whose contour box [5, 5, 11, 11] is the GT (IoU 1 at every level
    # below 200); B: concentric squares around (30, 30), value 100 - 10 k at Chebyshev distance k, one
    # more ring per level, never touching A. A is added at the first level only and must keep IoU 1.
    q = np.zeros((48, 48), dtype=np.uint8)
    q[5:11, 5:11] = 200
    for k in range(10, -1, -1):
        q[30 - k : 31 + k, 30 - k : 31 + k] = 100 - 10 * k
    levels = np.array([0, 5, 15, 35, 55, 75, 95, 150], dtype=np.int64)
    gt = np.array([[5.0, 5.0, 11.0, 11.0]])
    multi, largest, tied = boxacc._sweep_levels(q, levels, gt, *boxacc._SWEEP_TABLES)
    np.testing.assert_array_equal(multi, np.ones(len(levels)))
    assert not tied.any()
    # Largest contour: B's square of the rings with 100 - 10 k > L, side 2 k + 1 (contour area (2 k)^2),
    # against A's 25: B (box disjoint from the GT, IoU 0) for L <= 55 (k >= 4, area >= 64), A (IoU 1)
    # for L = 75 (k <= 2, area 16), 95 (B is one pixel, area 0) and 150 (B is gone).
    np.testing.assert_array_equal(largest, [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
