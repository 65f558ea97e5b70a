"""Reader ``"cub"``: CUB-200-2011 in its own distribution format (Wah et al. 2011).

The ``CUB_200_2011/`` folder as extracted from ``CUB_200_2011.tgz``::

    images.txt              <image number> <image path>            e.g. 1 001.Black_footed_Albatross/Black_...jpg
    image_class_labels.txt  <image number> <class number>          classes numbered from 1
    train_test_split.txt    <image number> <1 = train | 0 = test>
    bounding_boxes.txt      <image number> <x> <y> <width> <height>   floats, top-left corner and size
    classes.txt             <class number> <class name>            e.g. 1 001.Black_footed_Albatross
    images/<image path>
    segmentations/<image path with .png>                           optional (separate download), soft masks

Conventions (those of the standard metadata of Choe et al. 2020, so that results are comparable):

* image id = the path of ``images.txt`` (``"001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg"``),
  image file ``images/<id>``;
* class id = class number − 1 (0-based, in ``classes.txt`` order); class name = the ``classes.txt`` name;
* box ``[x0, y0, x1, y1] = [x, y, x + width, y + height]`` — exactly what wsolevaluation's
  ``metadata/CUB/*/localization.txt`` holds (image 1: ``60 27 325 304`` → ``60,27,385,331``), no ``− 1``.
  Boxes are otherwise checked with the shared policy of :func:`wsol.data.standard.check_box` (the image size
  is known only with ``read_sizes=True``).

Every malformed line is reported as ``file:line``; an image with any bad or missing entry (label, split,
box), or whose file is missing, is reported and left out. Problems of images outside the requested split are
not reported (they do not affect it); lines that cannot be tied to an image always are.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

from wsol.data.metadata import MetadataProblem, parse_finite_number
from wsol.data.records import DatasetIndex, ImageRecord, register_dataset
from wsol.data.standard import (
    as_bool,
    as_path,
    check_box,
    derive_class_names,
    read_image_size,
    read_text_lines,
)
from wsol.io import ImageLoadError

__all__ = ["CUB_SPLITS", "cub_box", "read_cub"]

#: splits of :func:`read_cub`: ``train_test_split.txt`` value 1, value 0, and every image.
CUB_SPLITS = ("train", "test", "all")

T = TypeVar("T")


def cub_box(x: float, y: float, width: float, height: float) -> list[float]:
    """CUB's ``x y width height`` → ``[x0, y0, x1, y1] = [x, y, x + width, y + height]`` (Choe et al.'s metadata).

    Example: CUB image 1, ``60.0 27.0 325.0 304.0`` → ``[60, 27, 385, 331]`` as in wsolevaluation.
    """
    return [x, y, x + width, y + height]


def _number(text: str) -> int | None:
    try:
        value = int(text)
    except ValueError:
        return None
    return value if value >= 1 else None



class _Cub:
    """The tables of one CUB folder and the problems met, attributed to image numbers when possible."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.general: list[MetadataProblem] = []  # lines that cannot be tied to a listed image
        self.by_image: dict[int, list[MetadataProblem]] = {}
        self.bad: set[int] = set()  # images left out
        self.paths: dict[int, tuple[str, int]] = {}  # image number -> (image path, line of images.txt)

    def problem(self, file: str, line: int | None, number: int | None, message: str, skip: bool = True) -> None:
        """Record a problem; one about a listed image leaves that image out unless ``skip`` is False."""
        entry = self.paths.get(number) if number is not None else None
        if number is None or entry is None:
            self.general.append(MetadataProblem(file, line, None, message))
            return
        self.by_image.setdefault(number, []).append(MetadataProblem(file, line, entry[0], message))
        if skip:
            self.bad.add(number)

    def read_images(self) -> None:
        file = "images.txt"
        for lineno, line in read_text_lines(self.root / file):
            parts = line.split(maxsplit=1)
            number = _number(parts[0])
            if len(parts) != 2 or number is None:
                self.problem(file, lineno, None, f"expected '<image number> <image path>', got {line!r}")
            elif number in self.paths:
                self.problem(file, lineno, None, f"image number {number} listed again (first on line "
                             f"{self.paths[number][1]}); ignored")  # fmt: skip
            else:
                self.paths[number] = (parts[1].strip().replace("\\", "/"), lineno)

    def table(self, file: str, what: str, parse: Callable[[list[str]], T | None]) -> dict[int, list[tuple[int, T]]]:
        """``image number -> [(line, parsed value), ...]`` of a ``<image number> <fields...>`` file.

        ``parse`` gets the fields after the number and returns ``None`` when they are malformed (wrong count,
        not numbers); the line is then a problem naming ``file:line`` and the image is left out.
        """
        out: dict[int, list[tuple[int, T]]] = {}
        for lineno, line in read_text_lines(self.root / file):
            parts = line.split()
            number = _number(parts[0])
            if number is None:
                self.problem(file, lineno, None, f"bad image number {parts[0]!r} (expected '<image number> {what}')")
            elif number not in self.paths:
                self.problem(file, lineno, None, f"image number {number} is not listed in images.txt")
            else:
                value = parse(parts[1:])
                if value is None:
                    self.problem(file, lineno, number, f"expected '<image number> {what}', got {line!r}")
                else:
                    out.setdefault(number, []).append((lineno, value))
        return out

    def single(self, table: dict[int, list[tuple[int, T]]], file: str) -> dict[int, T]:
        """One value per image; an image with several lines is a problem (left out)."""
        out: dict[int, T] = {}
        for number, values in table.items():
            if len(values) == 1:
                out[number] = values[0][1]
            else:
                lines = ", ".join(str(line) for line, _ in values)
                self.problem(file, values[1][0], number, f"image {number} has {len(values)} lines ({lines})")
        return out

    def classes(self) -> dict[int, str] | None:
        """``classes.txt`` as ``class number -> name`` (``None`` when the file is absent)."""
        file = "classes.txt"
        if not (self.root / file).is_file():
            return None
        out: dict[int, str] = {}
        for lineno, line in read_text_lines(self.root / file):
            parts = line.split(maxsplit=1)
            number = _number(parts[0])
            if len(parts) != 2 or number is None:
                self.problem(file, lineno, None, f"expected '<class number> <class name>', got {line!r}")
            elif number in out:
                self.problem(file, lineno, None, f"class {number} listed again; ignored")
            else:
                out[number] = parts[1].strip()
        return out


def _parse_label(fields: list[str]) -> int | None:
    return _number(fields[0]) if len(fields) == 1 else None


def _parse_split(fields: list[str]) -> int | None:
    return int(fields[0]) if len(fields) == 1 and fields[0] in ("0", "1") else None


def _parse_box(fields: list[str]) -> list[float] | None:
    values = [parse_finite_number(t) for t in fields]
    if len(values) != 4 or any(v is None for v in values):
        return None
    x, y, w, h = (float(v) for v in values if v is not None)
    return cub_box(x, y, w, h)


def _class_names(cub: _Cub, labels: dict[int, int]) -> tuple[list[str], bool]:
    """``(names, known)`` from ``classes.txt``, else the image folders, else ``class_<k>``."""
    classes = cub.classes()
    if classes:
        n = max(classes)
        for k in range(1, n + 1):
            if k not in classes:
                cub.problem("classes.txt", None, None, f"no name for class {k}; called class_{k - 1}")
        return [classes.get(k, f"class_{k - 1}") for k in range(1, n + 1)], True
    ids = [(cub.paths[i][0], c - 1) for i, c in labels.items()]
    return derive_class_names(ids, max((c for _, c in ids), default=-1) + 1), False


@register_dataset("cub")
def read_cub(
    root: Path,
    split: str,
    *,
    boxes: bool = True,
    segmentation_root: str | os.PathLike[str] | None = None,
    read_sizes: bool = False,
    check_files: bool = True,
) -> DatasetIndex:
    """Read CUB-200-2011 from its own files (see the module docstring for the layout and conventions).

    Args:
        root: the ``CUB_200_2011`` folder.
        split: ``"train"`` (5,994 images), ``"test"`` (5,794) or ``"all"`` (11,788).
        boxes: read ``bounding_boxes.txt`` (required then; an image without a box is left out).
        segmentation_root: folder of the segmentation PNGs (``<image path>.png``); default ``root/segmentations``
            when it exists. An image's mask, when present, goes to ``ImageRecord.mask_paths`` (CUB masks are
            soft: 0–255 annotator agreement).
        read_sizes: read every image header for ``ImageRecord.size`` and check the boxes against it (an
            unreadable image is then reported and left out).
        check_files: report (and leave out) images missing from ``images/``.

    Raises:
        ValueError: missing folder or required file (named), unknown split.
    """
    root = as_path(root, "root")
    if split not in CUB_SPLITS:
        raise ValueError(f"unknown CUB split {split!r}; valid: {', '.join(CUB_SPLITS)}")
    boxes, read_sizes = as_bool(boxes, "boxes"), as_bool(read_sizes, "read_sizes")
    check_files = as_bool(check_files, "check_files")
    if not root.is_dir():
        raise ValueError(f"CUB folder {str(root)!r} does not exist or is not a folder")
    required = ["images.txt", "image_class_labels.txt"]
    required += ["train_test_split.txt"] if split != "all" else []
    required += ["bounding_boxes.txt"] if boxes else []
    for name in required:
        if not (root / name).is_file():
            raise ValueError(f"CUB file {str(root / name)!r} is missing")
    seg_root = as_path(segmentation_root, "segmentation_root") if segmentation_root is not None else None
    if seg_root is not None and not seg_root.is_dir():
        raise ValueError(f"segmentation folder {str(seg_root)!r} does not exist")
    if seg_root is None and (root / "segmentations").is_dir():
        seg_root = root / "segmentations"

    cub = _Cub(root)
    cub.read_images()
    labels = cub.single(cub.table("image_class_labels.txt", "<class number>", _parse_label), "image_class_labels.txt")
    in_split: dict[int, int] | None = None
    if split != "all":
        table = cub.table("train_test_split.txt", "<1 = train | 0 = test>", _parse_split)
        in_split = cub.single(table, "train_test_split.txt")
    box_table = cub.table("bounding_boxes.txt", "<x> <y> <width> <height>", _parse_box) if boxes else {}
    names, known = _class_names(cub, labels)
    want = int(split == "train")
    members = [n for n in cub.paths if in_split is None or in_split.get(n, want) == want]
    records: list[ImageRecord] = []
    for number in members:  # images.txt order (dicts keep insertion order)
        if in_split is not None and number not in in_split and number not in cub.bad:
            cub.problem("train_test_split.txt", None, number, f"image {number} has no train/test entry")
        record = _record(cub, number, labels, box_table if boxes else None, names if known else None, seg_root,
                         read_sizes, check_files)  # fmt: skip
        if record is not None:
            records.append(record)
    problems = cub.general + [p for n in members for p in cub.by_image.get(n, [])]
    return DatasetIndex("cub", root, split, names, records, problems=problems)


def _record(
    cub: _Cub,
    number: int,
    labels: dict[int, int],
    box_table: dict[int, list[tuple[int, list[float]]]] | None,
    known_names: list[str] | None,
    seg_root: Path | None,
    read_sizes: bool,
    check_files: bool,
) -> ImageRecord | None:
    """The record of image ``number``, or ``None`` (with a problem) when it must be left out."""
    image_id, line = cub.paths[number]
    if number in cub.bad:  # a malformed line already reported
        return None
    path = cub.root / "images" / image_id
    if check_files and not path.is_file():
        cub.problem("images.txt", line, number, f"image file {path} not found")
        return None
    if number not in labels:
        cub.problem("image_class_labels.txt", None, number, f"no class label for image {number}")
        return None
    label = labels[number] - 1
    if known_names is not None and label >= len(known_names):
        msg = f"class {labels[number]} out of range: classes.txt has {len(known_names)} classes"
        cub.problem("image_class_labels.txt", None, number, msg)
        return None
    size: tuple[int, int] | None = None
    if read_sizes:
        try:
            size = read_image_size(path)
        except ImageLoadError as err:
            cub.problem("images.txt", line, number, f"unreadable image: {err.reason}")
            return None
    kept: list[np.ndarray] = []
    if box_table is not None:
        if number not in box_table:
            cub.problem("bounding_boxes.txt", None, number, f"no bounding box for image {number}")
            return None
        for box_line, raw in box_table[number]:
            box, message = check_box(raw, size)
            if message is not None:
                cub.problem("bounding_boxes.txt", box_line, number, message, skip=box is None)
            if box is None:
                return None
            kept.append(box)
    mask = seg_root / Path(image_id).with_suffix(".png") if seg_root is not None else None
    return ImageRecord(
        image_id=image_id,
        path=path,
        labels=(label,),
        boxes=np.asarray(kept, dtype=np.float64).reshape(-1, 4),
        size=size,
        mask_paths=(mask,) if mask is not None and mask.is_file() else (),
    )
