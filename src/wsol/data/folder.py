"""Reader ``"folder"``: your own images, one folder per class, with an optional CSV of boxes.

Layout (the torchvision ``ImageFolder`` convention, with split folders)::

    <root>/<split>/<class>/<any/sub/folders>/<image>.jpg      e.g. root/train/cat/001.jpg, root/val/dog/7.png
    <root>/<class>/<image>.jpg                               with split "all" (when there is no root/all/)
    <root>/boxes.csv                                         optional ground-truth boxes
    <root>/class_names.txt                                   optional class order, one name per line

* image id = the image path relative to ``root`` with ``/`` separators (``"train/cat/001.jpg"``; with split
  ``"all"`` and no ``all/`` folder, ``"cat/001.jpg"``), the image file ``root / image_id``;
* classes: ``class_names`` argument, else ``root/class_names.txt``, else the sorted union of the class folders
  of every split folder (``train``, ``val``, ``test`` and the one read) so that class ids agree across splits;
  a class folder missing from a given list is reported and its images left out;
* images: files with an image extension (:data:`wsol.io.IMAGE_EXTENSIONS`, case-insensitive) anywhere below a
  class folder; other files are ignored; an image directly in the split folder (no class) is reported and
  ignored.

Box CSV (``boxes=...``, default ``<root>/boxes.csv`` when present): a header line ``image_id,x0,y0,x1,y1`` then
one row per box, ``image_id`` the id above (so one file can serve every split: rows of other splits are
ignored), ``x0,y0,x1,y1`` inclusive pixel corners in the upright image (EXIF orientation applied). Several rows
give several boxes; images without rows have no box. A malformed row (field count, not a number) is a problem
naming ``file:line`` and its image is left out; a row whose image does not exist is reported; boxes follow the
policy of :func:`wsol.data.standard.check_box` (sizes are known with ``read_sizes=True``)::

    image_id,x0,y0,x1,y1
    train/cat/001.jpg,12,30,140,118
    train/cat/001.jpg,150,20,199,90
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from wsol.data.metadata import MetadataProblem, parse_finite_number
from wsol.data.records import DatasetIndex, ImageRecord, register_dataset
from wsol.data.standard import (
    as_bool,
    as_path,
    check_box,
    display_path,
    read_class_names,
    read_image_size,
    resolve_class_names,
)
from wsol.io import ImageLoadError, is_image_path, iter_images

__all__ = ["BOX_CSV_HEADER", "read_box_csv", "read_folder"]

#: the required first line of a box CSV.
BOX_CSV_HEADER = ("image_id", "x0", "y0", "x1", "y1")
_SPLIT_FOLDERS = ("train", "val", "test")



def read_box_csv(path: Path, root: Path) -> tuple[dict[str, list[tuple[int, list[float]]]], list[MetadataProblem]]:
    """Read a box CSV (format in the module docstring).

    Returns:
        ``(image_id -> [(line, [x0, y0, x1, y1]), ...], problems)``; an id with a malformed row maps to an empty
        list (its image is then left out by :func:`read_folder`).

    Raises:
        ValueError: missing/unreadable file or a first line other than the header (naming the file).
    """
    if not path.is_file():
        raise ValueError(f"box CSV {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"box CSV {str(path)!r} cannot be read ({err})") from None
    name = display_path(path, root)
    rows = csv.reader(io.StringIO(text))
    boxes: dict[str, list[tuple[int, list[float]]]] = {}
    bad: set[str] = set()
    problems: list[MetadataProblem] = []
    try:
        header = next(rows, None)
        if header is None or tuple(h.strip() for h in header) != BOX_CSV_HEADER:
            raise ValueError(f"{path}:1: the first line must be the header {','.join(BOX_CSV_HEADER)}, got {header}")
        for row in rows:
            line = rows.line_num
            if not any(cell.strip() for cell in row):
                continue
            image_id = row[0].strip().replace("\\", "/") if row else ""
            if len(row) != 5 or not image_id:
                msg = f"expected 5 fields image_id,x0,y0,x1,y1, got {len(row)}"
                problems.append(MetadataProblem(name, line, image_id or None, msg))
                if image_id:
                    bad.add(image_id)
                continue
            values = [parse_finite_number(c) for c in row[1:]]
            if any(v is None for v in values):
                problems.append(MetadataProblem(name, line, image_id, f"coordinates must be numbers, got {row[1:]}"))
                bad.add(image_id)
                continue
            boxes.setdefault(image_id, []).append((line, [float(v) for v in values if v is not None]))
    except csv.Error as err:
        raise ValueError(f"{path}:{rows.line_num}: malformed CSV ({err})") from None
    for image_id in bad:
        boxes[image_id] = []
    return boxes, problems


def _class_order(root: Path, split_dir: Path, split_mode: bool, explicit: list[str] | None) -> list[str]:
    if explicit is not None:
        return explicit
    if (root / "class_names.txt").is_file():
        return read_class_names(root / "class_names.txt")
    folders = {split_dir} | ({root / s for s in _SPLIT_FOLDERS} if split_mode else set())
    names: set[str] = set()
    for folder in folders:
        if folder.is_dir():
            names |= {e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith(".")}
    return sorted(names)


@register_dataset("folder")
def read_folder(
    root: Path,
    split: str,
    *,
    boxes: str | os.PathLike[str] | None = None,
    class_names: Sequence[str] | str | os.PathLike[str] | None = None,
    read_sizes: bool = False,
) -> DatasetIndex:
    """Read one split of a folder-per-class dataset (layout and CSV format in the module docstring).

    Args:
        root: the dataset folder.
        split: a sub-folder of ``root`` holding class folders, or ``"all"`` for class folders directly in
            ``root`` (when ``root/all`` does not exist).
        boxes: box CSV; default ``root/boxes.csv`` if it exists.
        class_names: class order (list, or file with one name per line); see the module docstring for the
            default.
        read_sizes: read each image header for ``ImageRecord.size`` (and the box checks); an unreadable image is
            then reported and left out.

    Raises:
        ValueError: missing folder, missing CSV or class-names file given, bad CSV header, no class folder.
    """
    root = as_path(root, "root")
    read_sizes = as_bool(read_sizes, "read_sizes")
    if not root.is_dir():
        raise ValueError(f"dataset folder {str(root)!r} does not exist or is not a folder")
    split_mode = not (split == "all" and not (root / "all").is_dir())
    split_dir = root / split if split_mode else root
    if not split_dir.is_dir():
        found = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
        listed = ", ".join(found) or "none"
        raise ValueError(f"split folder {str(split_dir)!r} does not exist (folders in {root}: {listed})")
    names = _class_order(root, split_dir, split_mode, resolve_class_names(class_names))
    if not names:
        raise ValueError(f"{str(split_dir)!r} has no class folder (expected {split_dir}/<class>/<image files>)")
    csv_path = as_path(boxes, "boxes") if boxes is not None else (root / "boxes.csv")
    box_rows: dict[str, list[tuple[int, list[float]]]] = {}
    problems: list[MetadataProblem] = []
    if boxes is not None or csv_path.is_file():
        box_rows, problems = read_box_csv(csv_path, root)
    csv_name = display_path(csv_path, root)
    index = {name: k for k, name in enumerate(names)}
    records: list[ImageRecord] = []
    for entry in sorted(os.scandir(split_dir), key=lambda e: e.name):
        if entry.name.startswith(".") or entry.name in ("class_names.txt", csv_path.name):
            continue
        path = Path(entry.path)
        if entry.is_file():
            if is_image_path(path):
                msg = "image outside any class folder; ignored (images go in <split>/<class>/)"
                problems.append(MetadataProblem(display_path(path, root), None, None, msg))
        elif entry.is_dir() and entry.name not in index:
            msg = f"class folder {entry.name!r} is not among the class names; its images are left out"
            problems.append(MetadataProblem(display_path(path, root), None, None, msg))
        elif entry.is_dir():
            for image in iter_images([path], recursive=True):
                record = _record(image, index[entry.name], root, box_rows, csv_name, read_sizes, problems)
                if record is not None:
                    records.append(record)
    seen = {r.image_id for r in records} | {p.image_id for p in problems}
    for image_id, rows in box_rows.items():
        if image_id not in seen and not (root / image_id).is_file():
            line = rows[0][0] if rows else None
            problems.append(MetadataProblem(csv_name, line, image_id, f"image {root / image_id} not found"))
    return DatasetIndex("folder", root, split, names, records, problems=problems)


def _record(
    path: Path,
    label: int,
    root: Path,
    box_rows: dict[str, list[tuple[int, list[float]]]],
    csv_name: str,
    read_sizes: bool,
    problems: list[MetadataProblem],
) -> ImageRecord | None:
    image_id = path.relative_to(root).as_posix()
    rows = box_rows.get(image_id)
    if rows is not None and not rows:  # a malformed row, already reported
        return None
    size: tuple[int, int] | None = None
    if read_sizes:
        try:
            size = read_image_size(path)
        except ImageLoadError as err:
            problems.append(MetadataProblem(image_id, None, image_id, f"unreadable image: {err.reason}"))
            return None
    kept: list[np.ndarray] = []
    for line, raw in rows or []:
        box, message = check_box(raw, size)
        if message is not None:
            problems.append(MetadataProblem(csv_name, line, image_id, message))
        if box is None:
            return None
        kept.append(box)
    return ImageRecord(image_id, path, (label,), np.asarray(kept, dtype=np.float64).reshape(-1, 4), size=size)
