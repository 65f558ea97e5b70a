"""Write any :class:`~wsol.data.records.DatasetIndex` in the standard metadata layout (Choe et al. 2020).

:func:`write_metadata` produces, in one split folder, the files :func:`wsol.data.metadata.read_metadata` (and
the ``"standard"`` reader, ``wsol evaluate-maps``, wsolevaluation itself) read::

    image_ids.txt      <image_id>                              every written image, in index order
    class_labels.txt   <image_id>,<class>                      when the images are labelled
    image_sizes.txt    <image_id>,<width>,<height>             record.size, else read from the image header
    localization.txt   <image_id>,<x0>,<y0>,<x1>,<y1>          one line per box (when some image has boxes)
                  or   <image_id>,<mask>,<ignore>              one line per mask (masks, when no image has boxes)
    class_names.txt    one class name per line                 (extra file; the "standard" reader uses it)

Numbers are written exactly: integral values as integers, others with Python's shortest round-trip ``repr``,
so reading the folder back gives the same boxes bit for bit.

Images that the layout cannot hold are reported and left out (the files stay consistent, so the folder reads
back without problems): an unreadable image (no size), an id containing ``,`` or a line break, a duplicate
id, zero or several labels in a labelled set (the layout has one class per image), no box in a split where
other images have boxes, a box rejected by :func:`wsol.data.standard.check_box` (a box sticking out is
clipped and reported), a mask outside ``mask_root``.

Every file is written atomically (:mod:`wsol.atomic`); a standard file of an earlier run that this index does
not produce (e.g. an old ``localization.txt``) is removed so it cannot be read with the new ids.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wsol.atomic import atomic_write_text
from wsol.data.metadata import METADATA_FILES, MetadataProblem
from wsol.data.records import DatasetIndex, ImageRecord
from wsol.data.standard import check_box, display_path, read_image_size
from wsol.io import ImageLoadError

__all__ = ["CLASS_NAMES_FILE", "format_number", "write_metadata"]

#: the class-names file written next to the standard files.
CLASS_NAMES_FILE = "class_names.txt"


def format_number(value: float) -> str:
    """``12.0`` → ``"12"``; other floats as their shortest round-trip ``repr`` (``12.5`` → ``"12.5"``)."""
    v = float(value)
    return str(int(v)) if v.is_integer() else repr(v)


@dataclass
class _Lines:
    ids: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    sizes: list[str] = field(default_factory=list)
    localization: list[str] = field(default_factory=list)


def _kind(records: Iterable[ImageRecord]) -> str | None:
    records = list(records)
    if any(len(r.boxes) for r in records):
        return "boxes"
    if any(r.mask_paths for r in records):
        return "masks"
    return None


def _mask_lines(record: ImageRecord, mask_root: Path) -> tuple[list[str], str | None]:
    """Localization lines of a record's masks, or ``([], reason)``."""
    rel: list[str] = []
    for p in (*record.mask_paths, *((record.ignore_path,) if record.ignore_path is not None else ())):
        try:
            text = Path(p).relative_to(mask_root).as_posix()
        except ValueError:
            return [], f"mask {p} is not inside the mask root {mask_root}"
        if "," in text or "\n" in text:
            return [], f"mask path {text!r} contains a comma or a line break"
        rel.append(text)
    masks = rel[: len(record.mask_paths)]
    ignore = rel[len(record.mask_paths)] if record.ignore_path is not None else ""
    return [f"{record.image_id},{m},{ignore if k == 0 else ''}" for k, m in enumerate(masks)], None


def write_metadata(
    index: DatasetIndex,
    out_dir: str | os.PathLike[str],
    *,
    image_sizes: bool = True,
    mask_root: str | os.PathLike[str] | None = None,
) -> list[MetadataProblem]:
    """Write ``index`` as one split folder of the standard layout (see the module docstring).

    Args:
        index: the records (from any reader).
        out_dir: the split folder to write (created if needed), e.g. ``metadata/test``.
        image_sizes: write ``image_sizes.txt``, reading the header of images whose size is unknown. Required for
            boxes (the layout's boxes are rescaled with it).
        mask_root: folder the mask paths are written relative to (mask localization); default ``index.root``.

    Returns:
        The problems of the records left out or changed (file = image path relative to ``index.root``).

    Raises:
        ValueError: ``out_dir`` cannot be created, ``image_sizes=False`` with boxes, a class name that is empty or
            contains a line break.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot create output folder {str(out)!r}: {err.strerror or err}") from None
    kind = _kind(index.records)
    if kind == "boxes" and not image_sizes:
        raise ValueError("image_sizes=False with boxes: the standard layout needs image_sizes.txt for boxes")
    for k, name in enumerate(index.class_names):
        if not name.strip() or "\n" in name or "\r" in name:
            raise ValueError(f"class {k} has name {name!r}: class names must be non-empty single lines")
    labelled = any(r.labels for r in index.records)
    masks_at = Path(mask_root) if mask_root is not None else Path(index.root)
    lines = _Lines()
    problems: list[MetadataProblem] = []
    seen: set[str] = set()
    for record in index.records:
        reason, extra = _add(record, index, kind, labelled, image_sizes, masks_at, seen, lines)
        where = display_path(Path(record.path), Path(index.root))
        problems.extend(MetadataProblem(where, None, record.image_id, m) for m in extra)
        if reason is not None:
            problems.append(MetadataProblem(where, None, record.image_id, f"{reason}; left out"))
        else:
            seen.add(record.image_id)
    files = {"image_ids.txt": lines.ids}
    if labelled:
        files["class_labels.txt"] = lines.labels
    if image_sizes:
        files["image_sizes.txt"] = lines.sizes
    if kind is not None:
        files["localization.txt"] = lines.localization
    for name, content in files.items():
        atomic_write_text(out / name, "".join(f"{line}\n" for line in content))
    if index.class_names:
        atomic_write_text(out / CLASS_NAMES_FILE, "".join(f"{n.strip()}\n" for n in index.class_names))
    for name in (*METADATA_FILES, CLASS_NAMES_FILE):
        if name not in files and not (name == CLASS_NAMES_FILE and index.class_names):
            (out / name).unlink(missing_ok=True)
    return problems


def _add(
    record: ImageRecord,
    index: DatasetIndex,
    kind: str | None,
    labelled: bool,
    image_sizes: bool,
    mask_root: Path,
    seen: set[str],
    lines: _Lines,
) -> tuple[str | None, list[str]]:
    """Append the lines of one record; return ``(reason it is left out or None, notes such as clipped boxes)``."""
    image_id = record.image_id
    if not image_id or any(c in image_id for c in ",\n\r"):
        return f"image id {image_id!r} is empty or contains a comma or a line break", []
    if image_id in seen:
        return "duplicate image id", []
    if labelled and len(record.labels) != 1:
        return f"{len(record.labels)} labels {record.labels}: the standard layout holds one class per image", []
    if labelled and index.class_names and not 0 <= record.labels[0] < index.num_classes:
        return f"class {record.labels[0]} out of range ({index.num_classes} classes)", []
    size = record.size
    if size is None and image_sizes:
        try:
            size = read_image_size(Path(record.path))
        except ImageLoadError as err:
            return f"no image size: {err.reason}", []
    notes: list[str] = []
    loc: list[str] = []
    if kind == "boxes":
        if len(record.boxes) == 0:
            return "no box, while other images of the split have boxes (the layout needs boxes for all)", []
        for raw in record.boxes:
            box, message = check_box(raw, size)
            if box is None:
                return str(message), notes
            if message is not None:
                notes.append(message)
            loc.append(",".join([image_id, *(format_number(v) for v in np.asarray(box))]))
    elif kind == "masks":
        if not record.mask_paths:
            return "no mask, while other images of the split have masks (the layout needs masks for all)", []
        loc, why = _mask_lines(record, mask_root)
        if why is not None:
            return why, []
    lines.ids.append(image_id)
    if labelled:
        lines.labels.append(f"{image_id},{record.labels[0]}")
    if image_sizes and size is not None:
        lines.sizes.append(f"{image_id},{size[0]},{size[1]}")
    lines.localization.extend(loc)
    return None, notes
