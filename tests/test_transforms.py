"""Box-aware transforms: hand-computed box geometry, white-rectangle properties, normalization, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.transforms import v2

from wsol.data.transforms import BoxAwareTransform, build_transform, list_recipes

PLAIN = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}  # tensor = pixel / 255


def white_rect(h: int, w: int, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    img = np.zeros((h, w, 3), np.uint8)
    img[y0 : y1 + 1, x0 : x1 + 1] = 255
    return img


def white_extent(x: torch.Tensor) -> tuple[int, int, int, int]:
    """Inclusive bounding box of the pixels >= 128/255 in channel 0."""
    ys, xs = np.nonzero(x[0].numpy() >= 127.5 / 255)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def test_recipes_listed() -> None:
    assert list_recipes() == ["gudi", "moreaux", "none", "qiu", "zhou"]


def test_eval_resize_edges_hand_computed() -> None:
    img = white_rect(100, 80, (20, 10, 40, 29))
    box = np.array([[20.0, 10.0, 40.0, 29.0]])
    # downscale by 1/2: x0 -> 10, x1 -> (40 + 1)/2 - 1 = 19.5, y0 -> 5, y1 -> 30/2 - 1 = 14
    x, out = build_transform("none", False, (50, 40), **PLAIN)(img, box)
    assert x.shape == (3, 50, 40) and x.dtype == torch.float32
    np.testing.assert_allclose(out, [[10.0, 5.0, 19.5, 14.0]])
    # upscale by 2: x1 -> 41 * 2 - 1 = 81; the white pixels are exactly columns 40..81, rows 20..59
    x, out = build_transform("moreaux", False, (200, 160), **PLAIN)(img, box)
    np.testing.assert_allclose(out, [[40.0, 20.0, 81.0, 59.0]])
    assert white_extent(x) == (40, 20, 81, 59)


def test_eval_resize_choe_scales_corners_as_points() -> None:
    img = white_rect(100, 80, (20, 10, 40, 29))
    box = np.array([[20.0, 10.0, 40.0, 29.0]])
    _, out = build_transform("zhou", False, (200, 160), box_scaling="choe")(img, box)
    np.testing.assert_allclose(out, [[40.0, 20.0, 80.0, 58.0]])  # x' = x * W'/W on both corners


def test_eval_is_the_same_resize_for_every_recipe() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    box = np.array([[3.0, 4.0, 20.0, 30.0]])
    ref_x, ref_b = build_transform("none", False, (32, 48))(img, box)
    for recipe in list_recipes():
        x, b = build_transform(recipe, False, (32, 48))(img, box)
        assert torch.equal(x, ref_x)
        np.testing.assert_array_equal(b, ref_b)


def test_flip_maps_x_to_w_minus_1_minus_x() -> None:
    img = white_rect(30, 80, (20, 5, 40, 9))
    img[0, 0] = (1, 2, 3)
    box = np.array([[20.0, 5.0, 40.0, 9.0], [0.0, 0.0, 0.0, 0.0]])
    x, out = build_transform("qiu", True, (30, 80), flip_prob=1.0, **PLAIN)(img, box)
    np.testing.assert_allclose(out, [[39.0, 5.0, 59.0, 9.0], [79.0, 0.0, 79.0, 0.0]])
    expected = torch.from_numpy(img[:, ::-1].copy()).permute(2, 0, 1).float() / 255
    assert torch.allclose(x, expected)
    assert white_extent(x) == (39, 5, 59, 9)


def test_flip_prob_zero_is_identity() -> None:
    img = white_rect(30, 80, (20, 5, 40, 9))
    box = np.array([[20.0, 5.0, 40.0, 9.0]])
    x, out = build_transform("qiu", True, (30, 80), flip_prob=0.0, **PLAIN)(img, box)
    np.testing.assert_array_equal(out, box)
    assert white_extent(x) == (20, 5, 40, 9)


def test_normalization_values() -> None:
    img = np.zeros((4, 4, 3), np.uint8)
    img[0, 0] = 255
    x, _ = build_transform("none", False, (4, 4), mean=(0.5, 0.25, 0.0), std=(0.25, 0.5, 2.0))(img, np.zeros((0, 4)))
    assert x[:, 0, 0].tolist() == pytest.approx([2.0, 1.5, 0.5])
    assert x[:, 1, 1].tolist() == pytest.approx([-2.0, -0.5, 0.0])


def test_crop_clips_and_marks_boxes_cut_away_as_nan() -> None:
    img = np.zeros((20, 20, 3), np.uint8)
    boxes = np.array([[0.0, 0.0, 3.0, 3.0], [2.0, 6.0, 9.0, 8.0], [6.0, 6.0, 13.0, 13.0]])
    t = BoxAwareTransform(v2.CenterCrop([10, 10]), **PLAIN)  # crop rows/cols 5..14
    x, out = t(img, boxes)
    assert x.shape == (3, 10, 10)
    assert np.isnan(out[0]).all()  # entirely outside the crop
    np.testing.assert_allclose(out[1], [0.0, 1.0, 4.0, 3.0])  # clipped at the left edge
    np.testing.assert_allclose(out[2], [1.0, 1.0, 8.0, 8.0])  # inside: shifted by -5


def test_zhou_train_shapes_and_seeded_determinism() -> None:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    box = np.array([[10.0, 20.0, 200.0, 250.0]])
    t = build_transform("zhou", True, (224, 224))
    assert "resize 256x256" in repr(t)
    torch.manual_seed(3)
    a = t(img, box)
    torch.manual_seed(3)
    b = t(img, box)
    assert a[0].shape == (3, 224, 224)
    assert torch.equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@settings(max_examples=50, deadline=None)
@given(
    data=st.data(),
    recipe=st.sampled_from(["zhou", "qiu", "moreaux", "gudi", "none"]),
    train=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_box_still_encloses_the_white_rectangle(data: st.DataObject, recipe: str, train: bool, seed: int) -> None:
    h = data.draw(st.integers(16, 60), label="h")
    w = data.draw(st.integers(16, 60), label="w")
    x0 = data.draw(st.integers(0, w - 1), label="x0")
    x1 = data.draw(st.integers(x0, w - 1), label="x1")
    y0 = data.draw(st.integers(0, h - 1), label="y0")
    y1 = data.draw(st.integers(y0, h - 1), label="y1")
    size = (data.draw(st.integers(8, 80), label="out_h"), data.draw(st.integers(8, 80), label="out_w"))
    img = white_rect(h, w, (x0, y0, x1, y1))
    torch.manual_seed(seed)
    x, out = build_transform(recipe, train, size, **PLAIN)(img, np.array([[x0, y0, x1, y1]], float))
    assert x.shape == (3, *size)
    ys, xs = np.nonzero(x[0].numpy() >= 127.5 / 255)
    if np.isnan(out).any():  # the crop removed the whole box: no white pixel may remain
        assert xs.size == 0
        return
    bx0, by0, bx1, by1 = out[0]
    assert 0 <= bx0 <= bx1 <= size[1] - 1 and 0 <= by0 <= by1 <= size[0] - 1
    # A pixel at least half white has its centre inside the continuous box [x0, x1 + 1), i.e. x within 0.5 of the
    # inclusive box, as the resampling filter is symmetric — except in the first / last row and column, where the
    # antialiasing filter (support: one output pixel) is cut by the image border and renormalized: 1 pixel there.
    def tol(v: np.ndarray, n: int) -> np.ndarray:
        return np.where((v == 0) | (v == n - 1), 1.0, 0.5) + 1e-4  # torchvision maps boxes in float32

    assert (xs >= bx0 - tol(xs, size[1])).all() and (xs <= bx1 + tol(xs, size[1])).all()
    assert (ys >= by0 - tol(ys, size[0])).all() and (ys <= by1 + tol(ys, size[0])).all()


@settings(max_examples=40, deadline=None)
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_crop_and_flip_without_resize_are_exact(data: st.DataObject, seed: int) -> None:
    h, w = data.draw(st.integers(20, 50)), data.draw(st.integers(20, 50))
    x0 = data.draw(st.integers(0, w - 1))
    x1 = data.draw(st.integers(x0, w - 1))
    y0 = data.draw(st.integers(0, h - 1))
    y1 = data.draw(st.integers(y0, h - 1))
    crop = (data.draw(st.integers(8, h)), data.draw(st.integers(8, w)))
    img = white_rect(h, w, (x0, y0, x1, y1))
    torch.manual_seed(seed)
    t = build_transform("zhou", True, crop, resize_size=(h, w), **PLAIN)  # resize to the same size: identity
    x, out = t(img, np.array([[x0, y0, x1, y1]], float))
    ys, xs = np.nonzero(x[0].numpy() > 0.5)
    if np.isnan(out).any():
        assert xs.size == 0
    else:
        assert xs.size > 0
        np.testing.assert_array_equal(out[0], [xs.min(), ys.min(), xs.max(), ys.max()])


def test_errors_name_the_problem() -> None:
    t = build_transform("none", False, (8, 8))
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        t(np.zeros((8, 8, 3), np.float32), np.zeros((0, 4)))
    with pytest.raises(ValueError, match=r"\(K, 4\)"):
        t(np.zeros((8, 8, 3), np.uint8), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="x1 < x0"):
        t(np.zeros((8, 8, 3), np.uint8), np.array([[5.0, 0.0, 2.0, 3.0]]))
    with pytest.raises(ValueError, match="NaN"):
        t(np.zeros((8, 8, 3), np.uint8), np.array([[np.nan, 0.0, 2.0, 3.0]]))
    with pytest.raises(ValueError, match="did you mean 'zhou'"):
        build_transform("zhuo", True, (8, 8))
    with pytest.raises(ValueError, match="only defined for evaluation"):
        build_transform("zhou", True, (8, 8), box_scaling="choe")
    with pytest.raises(ValueError, match="at least image_size"):
        build_transform("zhou", True, (224, 224), resize_size=(200, 256))
    with pytest.raises(ValueError, match="image_size"):
        build_transform("none", False, (0, 8))
    with pytest.raises(ValueError, match="flip_prob"):
        build_transform("qiu", True, (8, 8), flip_prob=1.5)
    with pytest.raises(ValueError, match="std must be positive"):
        build_transform("none", False, (8, 8), std=(1.0, 0.0, 1.0))
