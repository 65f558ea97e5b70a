"""Reader ``"standard"``: the field's metadata layout (``wsolevaluation``, Choe et al. CVPR 2020) as a DatasetIndex.

The layout is the one CUB-200-2011, ILSVRC and OpenImages30k are distributed in by Choe et al. (2020)::

    <metadata_root>/<split>/image_ids.txt       <image_id>                   (path relative to the image root)
                            class_labels.txt    <image_id>,<class>
                            image_sizes.txt     <image_id>,<width>,<height>
                            localization.txt    <image_id>,<x0>,<y0>,<x1>,<y1>        one line per box
                                           or   <image_id>,<mask.png>,<ignore.png>    one line per instance mask
                            class_names.txt     one class name per line (optional; written by ``wsol convert``)

and is parsed and checked line by line by :func:`wsol.data.metadata.read_metadata`; this module turns its
result into :class:`~wsol.data.records.ImageRecord` s (image file ``image_root / image_id``, mask files
``mask_root / mask path``) and adds the checks that need the disk and the class list.

It also holds the helpers every reader of :mod:`wsol.data` shares, so that all of them apply the **same box
policy** (:func:`check_box`): a box whose coordinates are not finite, with ``x1 < x0`` or ``y1 < y0``, or that
covers no pixel of the image, is a problem and its image is skipped; a box that sticks out of the image is
clipped into ``[0, W] × [0, H]`` and reported (the image is kept). ``x1 == W`` is accepted unchanged, as
:func:`~wsol.data.metadata.read_metadata` accepts it: CUB's metadata of Choe et al. writes ``x + width``.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from wsol.data.metadata import Metadata, MetadataProblem, read_metadata
from wsol.data.records import DatasetIndex, ImageRecord, register_dataset
from wsol.io import ImageLoadError

__all__ = [
    "as_bool",
    "as_path",
    "check_box",
    "derive_class_names",
    "display_path",
    "format_box",
    "read_class_names",
    "read_image_size",
    "read_standard",
    "read_text_lines",
    "resolve_class_names",
]

#: EXIF orientations that rotate the picture by ±90° (width and height swap once it is shown upright).
_ROTATED = {5, 6, 7, 8}


# ----------------------------------------------------------------------------------------------------------
# Helpers shared by the readers
# ----------------------------------------------------------------------------------------------------------
def as_path(value: Any, name: str) -> Path:
    """``value`` (``str`` or path-like) as a :class:`Path`; ``ValueError`` naming the argument otherwise."""
    if isinstance(value, str | os.PathLike):
        return Path(value)
    raise ValueError(f"{name} must be a path, got {value!r} ({type(value).__name__})")


def as_bool(value: Any, name: str) -> bool:
    """``value`` if it is a ``bool``; ``ValueError`` naming the argument otherwise."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise ValueError(f"{name} must be true or false, got {value!r}")


def display_path(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` (``/`` separators) when it lies inside it, else the full path.

    Problems name their file this way: short, and still findable from the dataset folder.
    """
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def read_text_lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank lines of a UTF-8 text file with their 1-based numbers (``\\r\\n`` accepted).

    Raises:
        ValueError: the file is missing, unreadable or not UTF-8 (naming it).
    """
    if not path.is_file():
        raise ValueError(f"{str(path)!r} does not exist" if not path.exists() else f"{str(path)!r} is not a file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{str(path)!r} is not UTF-8 text ({err})") from None
    except OSError as err:
        raise ValueError(f"{str(path)!r} cannot be read ({err.strerror or err})") from None
    return [(i, line.rstrip("\r")) for i, line in enumerate(text.split("\n"), 1) if line.strip()]


def read_class_names(path: Path) -> list[str]:
    """One class name per line (surrounding spaces stripped); class id = 0-based line number.

    Raises:
        ValueError: missing/unreadable file, an empty name in the middle (it would shift every later class id)
            or no name at all; the message names ``file:line``.
    """
    if not path.is_file():
        raise ValueError(f"class names file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"class names file {str(path)!r} cannot be read ({err})") from None
    lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    for i, name in enumerate(lines, 1):
        if not name:
            raise ValueError(f"{path}:{i}: empty class name (class ids are line numbers; remove or fill the line)")
    if not lines:
        raise ValueError(f"class names file {str(path)!r} lists no class")
    return lines


def resolve_class_names(value: Any, name: str = "class_names") -> list[str] | None:
    """A ``class_names`` argument: ``None``, a sequence of names, or a path to a class-names file."""
    if value is None:
        return None
    if isinstance(value, str | os.PathLike):
        return read_class_names(Path(value))
    if isinstance(value, Sequence) and all(isinstance(v, str) and v for v in value) and len(value) > 0:
        return list(value)
    raise ValueError(f"{name} must be a non-empty list of non-empty names or a file path, got {value!r}")


def derive_class_names(labelled_ids: Sequence[tuple[str, int]], num_classes: int) -> list[str]:
    """Class names from the folders of image ids, else ``"class_<k>"``.

    A class takes the name of its images' parent folder (``"001.Black_footed_Albatross/x.jpg"`` →
    ``"001.Black_footed_Albatross"``) only when folders and classes correspond one to one over all ids; any
    ambiguity (a class spread over two folders, a folder shared by two classes, ids without a folder) gives
    ``"class_<k>"`` for every class.
    """
    names = [f"class_{k}" for k in range(num_classes)]
    folder_of: dict[int, set[str]] = {}
    class_of: dict[str, set[int]] = {}
    for image_id, label in labelled_ids:
        if "/" not in image_id:
            return names
        folder = image_id.rsplit("/", 1)[0].rsplit("/", 1)[-1]
        folder_of.setdefault(label, set()).add(folder)
        class_of.setdefault(folder, set()).add(label)
    if not folder_of or any(len(v) != 1 for v in folder_of.values()) or any(len(v) != 1 for v in class_of.values()):
        return names
    for label, folders in folder_of.items():
        if 0 <= label < num_classes:
            names[label] = next(iter(folders))
    return names


def read_image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image as :func:`wsol.io.load_image` returns it, from the file header only.

    The EXIF orientation is honoured (orientations 5–8 rotate by 90°: width and height swap), since
    ``load_image`` shows images upright and boxes are drawn on upright images. Only the header is read, so
    this is fast enough for tens of thousands of files.

    Raises:
        ImageLoadError: missing file, not an image, unreadable header (naming the file and the reason).
    """
    if not path.is_file():
        raise ImageLoadError(path, "no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                try:
                    orientation = im.getexif().get(0x0112)
                except Exception:  # a malformed EXIF block: load_image keeps such pixels as stored too
                    orientation = None
    except Exception as err:  # Pillow raises many types for bad headers (OSError, SyntaxError, ValueError, ...)
        raise ImageLoadError(path, f"cannot read the image header ({type(err).__name__}: {err})") from None
    if w <= 0 or h <= 0:
        raise ImageLoadError(path, f"image has an empty size {w}x{h}")
    return (h, w) if orientation in _ROTATED else (w, h)


def format_box(box: Sequence[float]) -> str:
    """``[x0, y0, x1, y1]`` with integral values written as integers."""
    return "[" + ", ".join(f"{float(v):g}" for v in box) + "]"


def check_box(box: Sequence[float], size: tuple[int, int] | None) -> tuple[np.ndarray | None, str | None]:
    """Apply the box policy shared by every reader.

    Boxes are ``[x0, y0, x1, y1]`` with inclusive pixel corners; the accepted range is ``[0, W] × [0, H]``
    (``x1 == W`` is tolerated because exports writing ``x + width`` produce it, e.g. CUB's metadata of
    Choe et al. 2020).

    * not 4 finite numbers, ``x1 < x0`` or ``y1 < y0`` → rejected;
    * covers no pixel of the image (``x1 < 0``, ``y1 < 0``, ``x0 > W − 1`` or ``y0 > H − 1``) → rejected;
    * partly outside the accepted range → clipped into it, kept, and a message says so.

    Without a size only the first rule, ``x1 < 0`` / ``y1 < 0`` and the clipping of negative coordinates apply.

    Returns:
        ``(box, message)``: ``box`` is the float64 ``(4,)`` box to keep (clipped if needed) or ``None`` when
        rejected; ``message`` is ``None`` for a clean box, else what was wrong and what was done.
    """
    try:
        b = np.asarray(box, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return None, f"bad box {box!r}: not 4 numbers"
    if b.shape != (4,) or not np.isfinite(b).all():
        return None, f"bad box {box!r}: not 4 finite numbers"
    x0, y0, x1, y1 = (float(v) for v in b)
    if x1 < x0 or y1 < y0:
        return None, f"bad box {format_box(b)}: x1 < x0 or y1 < y0"
    hi_x, hi_y = (math.inf, math.inf) if size is None else (float(size[0]), float(size[1]))
    if x1 < 0 or y1 < 0 or x0 > hi_x - 1 or y0 > hi_y - 1:
        where = "" if size is None else f" {size[0]}x{size[1]}"
        return None, f"bad box {format_box(b)}: entirely outside the{where} image"
    clipped = np.array([min(max(x0, 0.0), hi_x), min(max(y0, 0.0), hi_y), min(x1, hi_x), min(y1, hi_y)])
    if np.array_equal(clipped, b):
        return b, None
    where = "the image" if size is None else f"the {size[0]}x{size[1]} image"
    return clipped, f"box {format_box(b)} sticks out of {where}: clipped to {format_box(clipped)}; image kept"


# ----------------------------------------------------------------------------------------------------------
# The "standard" reader
# ----------------------------------------------------------------------------------------------------------
def _id_lines(meta_dir: Path) -> dict[str, int]:
    """First line number of each id of ``image_ids.txt`` (``read_metadata`` keeps ids, not their lines)."""
    first: dict[str, int] = {}
    for lineno, line in read_text_lines(meta_dir / "image_ids.txt"):
        first.setdefault(line, lineno)
    return first


def _standard_class_names(
    meta: Metadata, explicit: list[str] | None, meta_dir: Path, metadata_root: Path
) -> tuple[list[str], bool]:
    """``(names, known)``: ``known`` is False when the names were made up from the ids / labels."""
    if explicit is not None:
        return explicit, True
    for candidate in (meta_dir / "class_names.txt", metadata_root / "class_names.txt"):
        if candidate.is_file():
            return read_class_names(candidate), True
    labels = meta.class_labels
    num = max(labels.values()) + 1 if labels else 0
    return derive_class_names([(i, labels[i]) for i in meta.image_ids if i in labels], num), False


@register_dataset("standard")
def read_standard(
    root: Path,
    split: str,
    *,
    metadata_root: str | os.PathLike[str] | None = None,
    image_root: str | os.PathLike[str] | None = None,
    mask_root: str | os.PathLike[str] | None = None,
    class_names: Sequence[str] | str | os.PathLike[str] | None = None,
    check_files: bool = True,
) -> DatasetIndex:
    """Read split ``split`` of a dataset in the standard metadata layout (Choe et al. 2020).

    Args:
        root: the dataset folder (images under it, ``metadata/<split>/`` by default).
        split: metadata sub-folder, e.g. ``"train"``, ``"val"``, ``"test"``.
        metadata_root: folder holding one sub-folder per split (default ``root / "metadata"``), e.g.
            wsolevaluation's ``metadata/CUB``.
        image_root: folder the image ids are relative to (default ``root``).
        mask_root: folder the mask paths of ``localization.txt`` are relative to (default: the image root, as in
            wsolevaluation where masks live under ``dataset/OpenImages``).
        class_names: names (list or file) overriding ``class_names.txt``. Without either, class names are the
            parent folders of the ids when they match the classes one to one (CUB), else ``"class_<k>"``.
        check_files: report (and skip) images and masks missing on disk.

    Returns:
        The index; every problem of :func:`read_metadata` is carried with its file (path relative to ``root``
        when inside it) and line, plus: image or mask file missing, class id out of range (when class names are
        known from a file or argument).

    Raises:
        ValueError: missing dataset / metadata / split folder, missing ``image_ids.txt``, bad class names file.
    """
    root = as_path(root, "root")
    if not root.is_dir():
        raise ValueError(f"dataset folder {str(root)!r} does not exist or is not a folder")
    meta_root = as_path(metadata_root, "metadata_root") if metadata_root is not None else root / "metadata"
    images = as_path(image_root, "image_root") if image_root is not None else root
    masks = as_path(mask_root, "mask_root") if mask_root is not None else images
    check_files = as_bool(check_files, "check_files")
    if not meta_root.is_dir():
        raise ValueError(f"metadata folder {str(meta_root)!r} does not exist (set metadata_root=...)")
    meta_dir = meta_root / split
    if not meta_dir.is_dir():
        splits = sorted(p.name for p in meta_root.iterdir() if p.is_dir())
        raise ValueError(f"split folder {str(meta_dir)!r} does not exist (splits found: {', '.join(splits) or 'none'})")
    if not images.is_dir():
        raise ValueError(f"image folder {str(images)!r} does not exist (set image_root=...)")
    meta, found = read_metadata(meta_dir)
    names, known = _standard_class_names(meta, resolve_class_names(class_names), meta_dir, meta_root)
    problems = [MetadataProblem(display_path(meta_dir / p.file, root), p.line, p.image_id, p.message) for p in found]
    lines = _id_lines(meta_dir)
    ids_file = display_path(meta_dir / "image_ids.txt", root)
    labels_file = display_path(meta_dir / "class_labels.txt", root)
    loc_file = display_path(meta_dir / "localization.txt", root)
    records: list[ImageRecord] = []
    for image_id in meta.image_ids:
        path = images / image_id
        if check_files and not path.is_file():
            problems.append(MetadataProblem(ids_file, lines.get(image_id), image_id, f"image file {path} not found"))
            continue
        label = meta.class_labels.get(image_id)
        if label is not None and known and label >= len(names):
            msg = f"class {label} out of range: {len(names)} class names known"
            problems.append(MetadataProblem(labels_file, None, image_id, msg))
            continue
        mask_paths = tuple(masks / p for p in meta.mask_paths.get(image_id, []))
        ignore = meta.ignore_paths.get(image_id)
        ignore_path = masks / ignore if ignore else None
        missing = [p for p in (*mask_paths, ignore_path) if p is not None and check_files and not p.is_file()]
        if missing:
            problems.append(MetadataProblem(loc_file, None, image_id, f"mask file {missing[0]} not found"))
            continue
        records.append(
            ImageRecord(
                image_id=image_id,
                path=path,
                labels=() if label is None else (label,),
                boxes=meta.boxes.get(image_id, np.zeros((0, 4))),
                size=meta.image_sizes.get(image_id),
                mask_paths=mask_paths,
                ignore_path=ignore_path,
            )
        )
    return DatasetIndex("standard", root, split, names, records, problems=problems)
