"""The one in-memory form every dataset reader produces, the reader registry, and the torch ``Dataset`` on top.

Every reader of :mod:`wsol.data` (standard metadata layout, CUB-200-2011, ILSVRC, PASCAL VOC, Stanford 40
Actions, folder-per-class) turns a local dataset folder into a :class:`DatasetIndex`: a list of
:class:`ImageRecord` (image path, class label(s), ground-truth boxes with their class and ``difficult`` flag,
image size, masks) plus the problems met while reading (:class:`wsol.data.metadata.MetadataProblem`: file,
line, image id, reason). Bad records are reported and left out, never kept half-parsed.

:class:`RecordDataset` serves an index to a ``DataLoader``: ``(image, target)`` or ``(image, target, index)``.
An image that cannot be decoded is reported once (warning naming the file) and *skipped*: ``__getitem__``
returns ``None`` and :func:`collate_skip_bad` drops it from the batch (``None`` for a batch with no good item).
"""

from __future__ import annotations

import difflib
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from wsol.data.metadata import MetadataProblem

__all__ = [
    "BoxTransform",
    "DataProblem",
    "DatasetIndex",
    "ImageRecord",
    "RecordDataset",
    "UnreadableImageWarning",
    "build_index",
    "collate_skip_bad",
    "empty_boxes",
    "list_datasets",
    "register_dataset",
]

#: A problem met while reading a dataset (file, 1-based line or None, image id or None, message).
DataProblem = MetadataProblem

#: ``transform(image (H, W, 3) uint8 RGB, boxes (K, 4) float64) -> (image tensor (3, h, w), boxes (K, 4))``:
#: boxes follow every geometric change of the image (resize, crop, flip).
BoxTransform = Callable[[np.ndarray, np.ndarray], tuple[torch.Tensor, np.ndarray]]


def empty_boxes() -> np.ndarray:
    """A ``(0, 4)`` float64 box array."""
    return np.zeros((0, 4), dtype=np.float64)


@dataclass(frozen=True)
class ImageRecord:
    """One image of a dataset split.

    Attributes:
        image_id: stable id, relative to the image root with ``/`` separators (the standard layout's id,
            e.g. ``"001.Black_footed_Albatross/x_0046_18.jpg"``).
        path: the image file.
        labels: class ids present in the image (one for single-label datasets; several for VOC). Empty for an
            unlabeled image (e.g. a test image of an unlabeled split).
        boxes: ``(K, 4)`` float64 ground-truth boxes ``[x0, y0, x1, y1]`` in original pixels, inclusive corners.
        box_labels: ``(K,)`` int64 class of each box (the image label for single-label datasets).
        difficult: ``(K,)`` bool VOC ``difficult`` flags (all False where the dataset has none).
        size: ``(width, height)`` of the image when the annotation gives it, else None.
        mask_paths: instance mask PNGs (OpenImages30k in the standard layout), empty if none.
        ignore_path: the image's ignore-region PNG, if any.
    """

    image_id: str
    path: Path
    labels: tuple[int, ...] = ()
    boxes: np.ndarray = field(default_factory=empty_boxes)
    box_labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=np.int64))
    difficult: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=bool))
    size: tuple[int, int] | None = None
    mask_paths: tuple[Path, ...] = ()
    ignore_path: Path | None = None

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        k = boxes.shape[0]
        box_labels = np.asarray(self.box_labels, dtype=np.int64).reshape(-1)
        difficult = np.asarray(self.difficult, dtype=bool).reshape(-1)
        if box_labels.size == 0 and k:
            box_labels = np.full(k, self.labels[0] if len(self.labels) == 1 else -1, dtype=np.int64)
        if difficult.size == 0 and k:
            difficult = np.zeros(k, dtype=bool)
        if box_labels.shape != (k,) or difficult.shape != (k,):
            raise ValueError(
                f"{self.image_id}: {k} boxes but {box_labels.size} box labels and {difficult.size} difficult flags"
            )
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "box_labels", box_labels)
        object.__setattr__(self, "difficult", difficult)
        object.__setattr__(self, "path", Path(self.path))
        object.__setattr__(self, "labels", tuple(int(c) for c in self.labels))

    @property
    def label(self) -> int:
        """The single class label (``ValueError`` if the image has zero or several)."""
        if len(self.labels) != 1:
            raise ValueError(f"{self.image_id} has {len(self.labels)} labels {self.labels}, not exactly one")
        return self.labels[0]


@dataclass
class DatasetIndex:
    """All valid records of one split, the class names and the problems met while reading.

    Attributes:
        name: reader name (``"cub"``, ``"voc"``, …).
        root: the dataset folder read.
        split: split name as the reader understood it.
        class_names: one name per class id (``len == num_classes``).
        records: valid records, in the dataset's own order.
        multilabel: True when an image may carry several labels (VOC); targets are then multi-hot.
        problems: every bad line / file met, with its location; those items are not in ``records``, except
            repairs that keep the item and say so (a box sticking out of the image is clipped: "image kept").
    """

    name: str
    root: Path
    split: str
    class_names: list[str]
    records: list[ImageRecord]
    multilabel: bool = False
    problems: list[MetadataProblem] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def report(self, file: IO[str] | None = None, limit: int = 20) -> None:
        """Print the problems (at most ``limit``, then a count) to ``file`` (stderr)."""
        out = file if file is not None else sys.stderr
        for p in self.problems[:limit]:
            print(f"{self.name}: {p}", file=out)
        if len(self.problems) > limit:
            print(f"{self.name}: … and {len(self.problems) - limit} more problems", file=out)

    def subset(self, keep: Iterable[int], split: str | None = None) -> DatasetIndex:
        """A new index with the records at positions ``keep`` (problems are not copied)."""
        return replace(self, records=[self.records[i] for i in keep], split=split or self.split, problems=[])

    def target(self, i: int) -> torch.Tensor:
        """Training target of record ``i``: int64 class (single-label) or float32 multi-hot (multi-label)."""
        labels = self.records[i].labels
        if self.multilabel:
            t = torch.zeros(self.num_classes, dtype=torch.float32)
            if labels:
                t[list(labels)] = 1.0
            return t
        if len(labels) != 1:
            raise ValueError(f"{self.records[i].image_id}: single-label dataset item has labels {labels}")
        return torch.tensor(labels[0], dtype=torch.int64)


# ----------------------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------------------
Reader = Callable[..., DatasetIndex]
_READERS: dict[str, Reader] = {}


def register_dataset(name: str) -> Callable[[Reader], Reader]:
    """Decorator registering a reader ``fn(root, split, **kwargs) -> DatasetIndex`` under ``name``."""

    def wrap(fn: Reader) -> Reader:
        if name in _READERS:
            raise ValueError(f"dataset reader {name!r} is already registered")
        _READERS[name] = fn
        return fn

    return wrap


def _load_readers() -> None:
    # Importing the package registers every built-in reader (each module decorates its reader).
    import wsol.data  # noqa: F401


def list_datasets() -> list[str]:
    """Names accepted by :func:`build_index`."""
    _load_readers()
    return sorted(_READERS)


def build_index(name: str, root: str | os.PathLike[str], split: str, **kwargs: Any) -> DatasetIndex:
    """Read split ``split`` of the dataset at ``root`` with the reader registered as ``name``.

    Raises:
        ValueError: unknown reader name (the closest valid names are suggested), or whatever the reader
            raises for an unusable folder (missing folder or file, named in the message).
    """
    _load_readers()
    if name not in _READERS:
        close = difflib.get_close_matches(name, list(_READERS), n=3)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"unknown dataset {name!r}{hint} (valid: {', '.join(sorted(_READERS))})")
    return _READERS[name](Path(root), split, **kwargs)


# ----------------------------------------------------------------------------------------------------------
# torch Dataset
# ----------------------------------------------------------------------------------------------------------
def collate_skip_bad(batch: Sequence[Any]) -> Any:
    """``default_collate`` of the items that are not ``None``; ``None`` when no item is left."""
    good = [item for item in batch if item is not None]
    return default_collate(good) if good else None


class UnreadableImageWarning(UserWarning):
    """An image listed by a dataset could not be decoded; the item is skipped."""


def _default_transform(image: np.ndarray, boxes: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0), boxes


class RecordDataset(Dataset):
    """A :class:`DatasetIndex` as a ``torch.utils.data.Dataset``.

    Items are ``(image, target)`` (``(image, target, index)`` with ``return_index=True``), where ``image`` is
    what ``transform`` makes of the decoded RGB uint8 array and the record's boxes (default: float32 tensor in
    [0, 1], no resizing) and ``target`` is :meth:`DatasetIndex.target`. An undecodable image gives ``None``
    (with one :class:`UnreadableImageWarning` naming the file); use :func:`collate_skip_bad` as the loader's
    ``collate_fn`` (it is also available as ``dataset.collate_fn``).

    Args:
        index: the records.
        transform: a :data:`BoxTransform` (see :mod:`wsol.data.transforms` for the papers' recipes).
        return_index: also return the record position (to look up boxes, ids and sizes afterwards).
    """

    collate_fn = staticmethod(collate_skip_bad)

    def __init__(self, index: DatasetIndex, transform: BoxTransform | None = None, return_index: bool = False) -> None:
        self.index = index
        self.transform = transform if transform is not None else _default_transform
        self.return_index = bool(return_index)
        self.bad_ids: set[str] = set()

    def __len__(self) -> int:
        return len(self.index)

    @property
    def num_classes(self) -> int:
        return self.index.num_classes

    def load(self, i: int) -> np.ndarray:
        """Decoded RGB uint8 ``(H, W, 3)`` array of record ``i`` (raises ``wsol.io.ImageLoadError``)."""
        from wsol.io import load_image

        return np.array(load_image(self.index.records[i].path))  # a writable copy

    def __getitem__(self, i: int) -> tuple[Any, ...] | None:
        from wsol.io import ImageLoadError

        record = self.index.records[i]
        try:
            array = self.load(i)
        except ImageLoadError as err:
            if record.image_id not in self.bad_ids:
                self.bad_ids.add(record.image_id)
                warnings.warn(f"skipping {record.image_id}: {err}", UnreadableImageWarning, stacklevel=2)
            return None
        image, _ = self.transform(array, record.boxes)
        target = self.index.target(i)
        return (image, target, i) if self.return_index else (image, target)
