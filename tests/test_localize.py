"""Maps → boxes: post-processing, the threshold strategies, the registry, Zhou's ILSVRC heuristic, multi-scale maps.

Gudi's pipeline and the receptive-field geometry are tested in ``test_backprojection.py``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch import nn

from wsol.heads import CAMOutput
from wsol.localize import (
    ZHOU_ILSVRC_KINDS,
    DegenerateMapWarning,
    MapStats,
    available_box_strategies,
    build_box_strategy,
    contour_boxes,
    extract_boxes,
    moreaux_boxes,
    multi_contour_boxes,
    multiscale_cams,
    normalize_map,
    otsu_boxes,
    otsu_mask,
    otsu_threshold,
    threshold_mask,
    upsample_cams,
    upsample_map,
    zhou_boxes,
    zhou_ilsvrc_boxes,
)


def two_blobs() -> np.ndarray:
    """20×30 map: small bright blob (1.0 at x 3..5, y 2..4) and large dimmer blob (0.8 at x 12..24, y 10..17)."""
    m = np.zeros((20, 30))
    m[2:5, 3:6] = 1.0
    m[10:18, 12:25] = 0.8
    return m


# Contour boxes follow the reference convention [x, y, x + w, y + h] (one past the last pixel).
SMALL_CONTOUR_BOX = [3, 2, 6, 5]
LARGE_CONTOUR_BOX = [12, 10, 25, 18]


# ---------------------------------------------------------------------------------------------
# normalize_map / upsample_map
# ---------------------------------------------------------------------------------------------


def test_normalize_map_min_max_values() -> None:
    out = normalize_map(np.array([[1.0, 3.0], [5.0, 9.0]]))
    np.testing.assert_allclose(out, [[0.0, 0.25], [0.5, 1.0]])
    assert out.dtype == np.float64
    assert normalize_map(np.array([[1, 3], [5, 9]], dtype=np.int32)).dtype == np.float32


def test_normalize_map_relu_gives_fraction_of_max() -> None:
    m = np.array([[-4.0, 2.0], [0.0, 4.0]])
    np.testing.assert_allclose(normalize_map(m, relu=True), [[0.0, 0.5], [0.0, 1.0]])
    np.testing.assert_allclose(normalize_map(m), [[0.0, 0.75], [0.5, 1.0]])


def test_normalize_map_huge_range_does_not_overflow() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = normalize_map(np.array([[-1e308, 0.0, 1e308]]))
    np.testing.assert_allclose(out, [[0.0, 0.5, 1.0]])


def test_normalize_map_degenerate_maps_are_zeros_and_counted() -> None:
    stats = MapStats()
    batch = np.stack([np.full((3, 4), 7.0), np.arange(12.0).reshape(3, 4), np.arange(12.0).reshape(3, 4)])
    batch[2, 1, 1] = np.nan
    out = normalize_map(batch, stats=stats)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out[0], 0.0)
    np.testing.assert_array_equal(out[2], 0.0)
    np.testing.assert_allclose(out[1], np.arange(12.0).reshape(3, 4) / 11.0)
    assert (stats.constant, stats.nonfinite, stats.n_maps) == ([0], [2], 3)
    # indices are positions in the stream of maps seen by the counter
    normalize_map(np.array([[np.inf, 1.0]]), stats=stats)
    assert stats.nonfinite == [2, 3]
    assert stats.n_degenerate == 3
    assert "3 of 4 maps degenerate" in stats.summary()


def test_normalize_map_warns_without_counter() -> None:
    with pytest.warns(DegenerateMapWarning, match="non-finite"):
        out = normalize_map(np.full((2, 2), np.nan))
    np.testing.assert_array_equal(out, 0.0)
    with pytest.warns(DegenerateMapWarning, match="1 constant"):
        normalize_map(np.ones((2, 2)))
    relu_constant = np.array([[-1.0, -2.0]])
    with pytest.warns(DegenerateMapWarning):
        np.testing.assert_array_equal(normalize_map(relu_constant, relu=True), 0.0)


def test_normalize_map_accepts_torch_and_rejects_bad_ndim() -> None:
    m = np.random.default_rng(0).random((2, 5, 6)).astype(np.float32)
    np.testing.assert_allclose(normalize_map(torch.from_numpy(m)), normalize_map(m))
    with pytest.raises(ValueError, match="score_map"):
        normalize_map(np.zeros((1, 2, 3, 4)))
    with pytest.raises(ValueError, match="score_map"):
        normalize_map(np.zeros(5))
    with pytest.raises(ValueError, match="empty"):
        normalize_map(np.zeros((0, 4)))


def test_upsample_map_bilinear_matches_torch_and_size_is_height_width() -> None:
    m = np.random.default_rng(1).random((5, 7))
    out = upsample_map(m, (13, 17))
    assert out.shape == (13, 17)
    ref = F.interpolate(torch.from_numpy(m)[None, None], size=(13, 17), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(out, ref[0, 0].numpy(), atol=1e-12)
    cubic = upsample_map(m, (13, 17), "bicubic")
    ref = F.interpolate(torch.from_numpy(m)[None, None], size=(13, 17), mode="bicubic", align_corners=False)
    np.testing.assert_allclose(cubic, ref[0, 0].numpy(), atol=1e-5)
    assert not np.allclose(cubic, out)


def test_upsample_batch_equals_loop_and_torch_version() -> None:
    maps = np.random.default_rng(2).random((3, 4, 6)).astype(np.float32)
    batch = upsample_map(maps, (8, 9))
    assert batch.dtype == np.float32
    for i in range(3):
        np.testing.assert_array_equal(batch[i], upsample_map(maps[i], (8, 9)))
    cams = torch.from_numpy(maps)[None]  # (1, 3, 4, 6)
    np.testing.assert_allclose(upsample_cams(cams, (8, 9))[0].numpy(), batch, atol=1e-6)
    np.testing.assert_allclose(upsample_cams(cams[0], (8, 9)).numpy(), batch, atol=1e-6)


def test_upsample_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="interpolation"):
        upsample_map(np.zeros((2, 2)), (4, 4), "lanczos")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="size"):
        upsample_map(np.zeros((2, 2)), (4, 0))
    with pytest.raises(ValueError, match="cams"):
        upsample_cams(torch.zeros(2, 2), (4, 4))


# ---------------------------------------------------------------------------------------------
# Strategies on hand-built maps
# ---------------------------------------------------------------------------------------------


def test_zhou_picks_largest_component() -> None:
    np.testing.assert_array_equal(zhou_boxes(two_blobs()), [LARGE_CONTOUR_BOX])
    # above 0.8 of the max only the small bright blob survives (strict ">")
    np.testing.assert_array_equal(zhou_boxes(two_blobs(), threshold=0.8), [SMALL_CONTOUR_BOX])


def test_zhou_threshold_is_strict() -> None:
    m = np.zeros((10, 10))
    m[1:9, 1:6] = 0.2  # large region exactly at 20% of the max
    m[2:4, 7:9] = 1.0  # small region at the max
    np.testing.assert_array_equal(zhou_boxes(m, 0.2), [[7, 2, 9, 4]])
    np.testing.assert_array_equal(zhou_boxes(m, 0.19), [[1, 1, 6, 9]])


def test_moreaux_spans_both_blobs_tightly() -> None:
    np.testing.assert_array_equal(moreaux_boxes(two_blobs()), [[3, 2, 24, 17]])
    np.testing.assert_array_equal(moreaux_boxes(two_blobs(), threshold=0.9), [[3, 2, 5, 4]])


def test_multi_contour_gives_one_box_per_blob() -> None:
    boxes = multi_contour_boxes(two_blobs())
    assert sorted(map(tuple, boxes.tolist())) == sorted([tuple(SMALL_CONTOUR_BOX), tuple(LARGE_CONTOUR_BOX)])


def test_empty_mask_gives_reference_zero_box() -> None:
    for fn in (zhou_boxes, moreaux_boxes, multi_contour_boxes):
        np.testing.assert_array_equal(fn(two_blobs(), threshold=1.0), [[0, 0, 0, 0]])


def bimodal_map() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    m = rng.normal(0.2, 0.03, size=(24, 32))
    obj = np.zeros_like(m, dtype=bool)
    obj[5:15, 8:26] = True
    m[obj] = rng.normal(0.8, 0.03, size=obj.sum())
    return m, obj


def reference_otsu_uint8(u8: np.ndarray) -> int:
    """Straightforward Otsu: the t maximizing the between-class variance of {<= t} vs {> t}."""
    hist = np.bincount(u8.ravel(), minlength=256).astype(np.float64)
    levels = np.arange(256)
    best, best_t = -1.0, 0
    for t in range(256):
        w0, w1 = hist[: t + 1].sum(), hist[t + 1 :].sum()
        if w0 == 0 or w1 == 0:
            continue
        mu0 = (hist[: t + 1] * levels[: t + 1]).sum() / w0
        mu1 = (hist[t + 1 :] * levels[t + 1 :]).sum() / w1
        var = w0 * w1 * (mu0 - mu1) ** 2
        if var > best:
            best, best_t = var, t
    return best_t


def test_otsu_separates_bimodal_map() -> None:
    m, obj = bimodal_map()
    np.testing.assert_array_equal(otsu_mask(m), obj)
    np.testing.assert_array_equal(otsu_boxes(m), [[8, 5, 26, 15]])
    t = otsu_threshold(m)
    norm = normalize_map(m)
    u8 = np.clip(np.rint(norm * 255), 0, 255).astype(np.uint8)
    assert t == pytest.approx(reference_otsu_uint8(u8) / 255.0, abs=1.5 / 255)
    assert u8[~obj].max() <= round(t * 255) < u8[obj].min()


def test_otsu_on_constant_and_nan_maps_is_empty() -> None:
    stats = MapStats()
    assert not otsu_mask(np.full((4, 4), 3.0), stats=stats).any()
    np.testing.assert_array_equal(otsu_boxes(np.full((4, 4), np.nan), stats=stats), [[0, 0, 0, 0]])
    assert (stats.n_constant, stats.n_nonfinite) == (1, 1)


def test_nan_map_never_crashes_strategies() -> None:
    m = two_blobs()
    m[0, 0] = np.nan
    for name in ("zhou", "moreaux", "otsu", "multi_contour"):
        stats = MapStats()
        np.testing.assert_array_equal(extract_boxes(m, name, stats=stats), [[0, 0, 0, 0]])
        assert stats.nonfinite == [0]


def test_threshold_mask_and_relu_is_zhou_rule() -> None:
    m = np.array([[-5.0, 1.0, 2.0, 10.0]])
    # relu: fraction of the max exactly (values > 0.2 * 10)
    np.testing.assert_array_equal(threshold_mask(m, 0.2, relu=True), [[False, False, False, True]])
    # min-max: (v + 5) / 15 > 0.2 ⇔ v > -2
    np.testing.assert_array_equal(threshold_mask(m, 0.2), [[False, True, True, True]])


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "0.2", True, None])
def test_invalid_threshold_raises(bad: object) -> None:
    for fn in (zhou_boxes, moreaux_boxes, multi_contour_boxes, threshold_mask):
        with pytest.raises(ValueError, match="threshold"):
            fn(two_blobs(), bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threshold"):
        build_box_strategy("zhou", threshold=bad)


@pytest.mark.parametrize("name", ["zhou", "moreaux", "otsu", "multi_contour"])
def test_batch_equals_per_map_loop(name: str) -> None:
    rng = np.random.default_rng(4)
    maps = ndimage_blur(rng.random((5, 16, 20)))
    maps[3] = 0.0  # a constant map inside the batch
    stats = MapStats()
    batch = extract_boxes(maps, name, stats=stats)
    assert isinstance(batch, list) and len(batch) == 5
    for i in range(5):
        np.testing.assert_array_equal(batch[i], extract_boxes(maps[i], name, stats=MapStats()))
    assert stats.constant == [3]
    torch_batch = extract_boxes(torch.from_numpy(maps), name, stats=MapStats())
    for a, b in zip(batch, torch_batch, strict=True):
        np.testing.assert_array_equal(a, b)


def ndimage_blur(x: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.gaussian_filter(x, sigma=(0, 2, 2))


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------


def test_registry_matches_functions_and_validates() -> None:
    assert set(available_box_strategies()) == {"zhou", "moreaux", "otsu", "multi_contour", "gudi"}
    m = two_blobs()
    np.testing.assert_array_equal(extract_boxes(m, "zhou", threshold=0.8), zhou_boxes(m, 0.8))
    np.testing.assert_array_equal(extract_boxes(m, "moreaux"), moreaux_boxes(m))
    fn = build_box_strategy("multi_contour", threshold=0.5)
    np.testing.assert_array_equal(fn(m), multi_contour_boxes(m, 0.5))
    with pytest.raises(ValueError, match=r"unknown box strategy 'nope'.*zhou"):
        build_box_strategy("nope")
    with pytest.raises(ValueError, match=r"unknown argument.*ratio"):
        build_box_strategy("zhou", ratio=0.5)
    with pytest.raises(ValueError, match=r"requires.*threshold"):
        build_box_strategy("gudi")
    with pytest.raises(ValueError, match="ratio"):
        build_box_strategy("gudi", threshold=0.5, ratio=2.0)
    with pytest.raises(ValueError, match="floor"):
        build_box_strategy("gudi", threshold=0.5, floor=0.6)


# ---------------------------------------------------------------------------------------------
# Property tests
# ---------------------------------------------------------------------------------------------

maps_2d = hnp.arrays(
    np.float64,
    st.tuples(st.integers(1, 12), st.integers(1, 12)),
    elements=st.floats(-10.0, 10.0, allow_nan=False, width=32),
)


@settings(max_examples=50, deadline=None)
@given(m=maps_2d, t=st.floats(0.0, 1.0))
def test_boxes_lie_inside_image_and_are_ordered(m: np.ndarray, t: float) -> None:
    h, w = m.shape
    stats = MapStats()
    for name, kw in (
        ("zhou", {"threshold": t}),
        ("moreaux", {"threshold": t}),
        ("otsu", {}),
        ("multi_contour", {"threshold": t}),
    ):
        boxes = extract_boxes(m, name, stats=stats, **kw)
        assert boxes.dtype == np.int64 and boxes.ndim == 2 and boxes.shape[1] == 4 and len(boxes) >= 1
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
        assert (boxes[:, 2] <= w - 1).all() and (boxes[:, 3] <= h - 1).all()
        assert (boxes[:, 0] <= boxes[:, 2]).all() and (boxes[:, 1] <= boxes[:, 3]).all()


@settings(max_examples=50, deadline=None)
@given(m=maps_2d, t=st.floats(0.0, 1.0))
def test_moreaux_box_contains_every_pixel_and_is_tight(m: np.ndarray, t: float) -> None:
    mask = normalize_map(m, stats=MapStats()) > t
    (box,) = moreaux_boxes(m, t, stats=MapStats())
    if not mask.any():
        np.testing.assert_array_equal(box, [0, 0, 0, 0])
        return
    x0, y0, x1, y1 = box
    ys, xs = np.nonzero(mask)
    assert (xs >= x0).all() and (xs <= x1).all() and (ys >= y0).all() and (ys <= y1).all()
    # tight: every side of the box touches a foreground pixel
    assert mask[:, x0].any() and mask[:, x1].any() and mask[y0, :].any() and mask[y1, :].any()


@settings(max_examples=50, deadline=None)
@given(m=maps_2d, t=st.floats(0.0, 1.0))
def test_multi_contour_boxes_cover_every_pixel_and_contain_zhou_box(m: np.ndarray, t: float) -> None:
    mask = normalize_map(m, stats=MapStats()) > t
    boxes = multi_contour_boxes(m, t, stats=MapStats())
    ys, xs = np.nonzero(mask)
    covered = (
        (xs[:, None] >= boxes[None, :, 0])
        & (xs[:, None] <= boxes[None, :, 2])
        & (ys[:, None] >= boxes[None, :, 1])
        & (ys[:, None] <= boxes[None, :, 3])
    ).any(axis=1)
    assert covered.all()
    zhou = zhou_boxes(m, t, stats=MapStats())
    assert any((zhou[0] == b).all() for b in boxes)


@settings(max_examples=25, deadline=None)
@given(
    maps=hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 4), st.integers(1, 8), st.integers(1, 8)),
        elements=st.floats(0.0, 1.0, width=32),
    ),
    t=st.floats(0.0, 1.0),
)
def test_property_batch_equals_loop(maps: np.ndarray, t: float) -> None:
    for name in ("zhou", "moreaux", "multi_contour"):
        batch = extract_boxes(maps, name, threshold=t, stats=MapStats())
        for i, boxes in enumerate(batch):
            np.testing.assert_array_equal(boxes, extract_boxes(maps[i], name, threshold=t, stats=MapStats()))


# ---------------------------------------------------------------------------------------------
# Zhou's ILSVRC heuristic
# ---------------------------------------------------------------------------------------------


def ilsvrc_cams() -> np.ndarray:
    cams = np.zeros((4, 20, 20))
    for c, (y, x) in enumerate([(2, 2), (8, 3), (4, 10), (12, 12)]):
        cams[c, y : y + 6, x : x + 6] = 0.3  # halo: kept by the loose (0.2) threshold only
        cams[c, y + 2 : y + 4, x + 2 : x + 4] = 1.0  # core: kept by the tight (100/255) threshold
    return cams


def test_zhou_ilsvrc_boxes_tight_and_loose_for_top_classes() -> None:
    scores = np.array([0.1, 0.5, 0.9, 0.3])  # top-1 = 2, top-2 = 1, top-3 = 3
    out = zhou_ilsvrc_boxes(ilsvrc_cams(), scores)
    np.testing.assert_array_equal(out.labels, [2, 2, 1, 1, 3])
    assert out.kinds == ZHOU_ILSVRC_KINDS == ("tight", "loose", "tight", "loose", "loose")
    expected = [
        [12, 6, 14, 8],  # class 2 core  (x 12..13, y 6..7)
        [10, 4, 16, 10],  # class 2 halo (x 10..15, y 4..9)
        [5, 10, 7, 12],  # class 1 core
        [3, 8, 9, 14],  # class 1 halo
        [12, 12, 18, 18],  # class 3 halo
    ]
    np.testing.assert_array_equal(out.boxes, expected)


def test_zhou_ilsvrc_boxes_batch_and_validation() -> None:
    cams = np.stack([ilsvrc_cams(), ilsvrc_cams()[::-1]])
    scores = np.array([[0.1, 0.5, 0.9, 0.3], [0.4, 0.4, 0.1, 0.0]])  # tie → lower index first
    batch = zhou_ilsvrc_boxes(torch.from_numpy(cams), torch.from_numpy(scores))
    assert batch.boxes.shape == (2, 5, 4)
    for i in range(2):
        single = zhou_ilsvrc_boxes(cams[i], scores[i])
        np.testing.assert_array_equal(batch.boxes[i], single.boxes)
        np.testing.assert_array_equal(batch.labels[i], single.labels)
    np.testing.assert_array_equal(batch.labels[1], [0, 0, 1, 1, 2])
    with pytest.raises(ValueError, match="tight_threshold"):
        zhou_ilsvrc_boxes(cams[0], scores[0], tight_threshold=0.1, loose_threshold=0.2)
    with pytest.raises(ValueError, match="3 classes"):
        zhou_ilsvrc_boxes(cams[0, :2], scores[0, :2])
    with pytest.raises(ValueError, match="scores"):
        zhou_ilsvrc_boxes(cams[0], scores[0, :3])
    with pytest.raises(ValueError, match="scores"):
        zhou_ilsvrc_boxes(cams[0], np.array([0.1, np.nan, 0.2, 0.3]))


# ---------------------------------------------------------------------------------------------
# Multi-scale maps
# ---------------------------------------------------------------------------------------------


class PoolCAM(nn.Module):
    """Deterministic 'model': cams = 4×4 average pooling of the image channels (2 classes)."""

    def forward(self, x: torch.Tensor) -> CAMOutput:
        cams = F.avg_pool2d(torch.cat([x[:, :1], x[:, 1:2] ** 2], dim=1), 4)
        return CAMOutput(cams.mean((2, 3)), cams, {"alpha": cams.softmax(dim=1)})


def test_multiscale_cams_average_of_resized_maps() -> None:
    torch.manual_seed(0)
    images = torch.rand(2, 2, 16, 24)
    model = PoolCAM()
    single = multiscale_cams(model, images, scales=(1.0,), normalize=False)
    torch.testing.assert_close(single, upsample_cams(model(images).cams, (16, 24)))

    def manual(s: float) -> torch.Tensor:
        x = F.interpolate(images, size=(round(16 * s), round(24 * s)), mode="bilinear", align_corners=False)
        maps = upsample_cams(model(x).cams, (8, 12))
        lo = maps.amin(dim=(2, 3), keepdim=True)
        return (maps - lo) / (maps.amax(dim=(2, 3), keepdim=True) - lo)

    out = multiscale_cams(model, images, scales=(1.0, 2.0, 0.5), out_size=(8, 12))
    torch.testing.assert_close(out, (manual(1.0) + manual(2.0) + manual(0.5)) / 3)
    alpha = multiscale_cams(model, images, scales=(1.0,), select=lambda o: o.extras["alpha"], normalize=False)
    torch.testing.assert_close(alpha, upsample_cams(model(images).extras["alpha"], (16, 24)))


def test_multiscale_cams_counts_degenerate_maps_and_validates() -> None:
    images = torch.zeros(1, 2, 8, 8)  # constant image → constant maps
    stats = MapStats()
    out = multiscale_cams(PoolCAM(), images, scales=(1.0, 2.0), stats=stats)
    assert torch.equal(out, torch.zeros_like(out))
    assert stats.n_constant == 4 and stats.n_maps == 4
    with pytest.raises(ValueError, match="scales"):
        multiscale_cams(PoolCAM(), images, scales=(1.0, -2.0))
    with pytest.raises(ValueError, match="images"):
        multiscale_cams(PoolCAM(), torch.zeros(2, 8, 8))
    with pytest.raises(ValueError, match="out_size"):
        multiscale_cams(PoolCAM(), images, out_size=(0, 4))


def test_contour_boxes_unchanged_reference_behaviour() -> None:
    mask = np.zeros((6, 8), dtype=bool)
    mask[1:3, 2:5] = True
    np.testing.assert_array_equal(contour_boxes(mask), [[2, 1, 5, 3]])
    np.testing.assert_array_equal(contour_boxes(np.zeros((3, 3))), [[0, 0, 0, 0]])
