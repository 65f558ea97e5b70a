r"""PASCAL VOC 2007 / 2012 (and the VOC07+12 union) as a multi-label :class:`~wsol.data.records.DatasetIndex`.

Layout (the devkit's)::

    VOCdevkit/VOC2007/ImageSets/Main/<split>.txt     one image id per line (train, val, trainval, test)
    VOCdevkit/VOC2007/Annotations/<id>.xml            size + one <object> per box (name, difficult, bndbox)
    VOCdevkit/VOC2007/JPEGImages/<id>.jpg

``root`` is either one year's folder (``…/VOC2007``: it holds ``Annotations``) or the ``VOCdevkit`` folder
with ``year=2007`` / ``year=2012`` or ``years=(2007, 2012)`` (the "07+12" union; ids become
``"VOC2007/000005"``, ``"VOC2012/2008_000002"`` so they stay unique; a single year keeps the bare id
``"000005"``, the devkit's results-file id).

**Boxes.** VOC ``bndbox`` corners are 1-based pixel indices, both inclusive (the devkit's
``(xmax − xmin + 1)·(ymax − ymin + 1)`` area). :func:`wsol.data.xml_annotations.parse_voc_xml` with
``offset=VOC_OFFSET`` stores 0-based inclusive corners

.. math:: x_0 = x_{min} - 1,\quad y_0 = y_{min} - 1,\quad x_1 = x_{max} - 1,\quad y_1 = y_{max} - 1,

so a box covers pixel columns ``x0 … x1`` of the decoded array, and :func:`wsol.metrics.boxes.box_iou` /
:mod:`wsol.metrics.detection` (inclusive ``+1`` widths, like the devkit) give the devkit's IoUs (a common
shift never changes an IoU). Boxes are then checked against the XML ``<size>`` by the policy every reader
shares, :func:`wsol.data.standard.check_box`: a box sticking out of the image is clipped to it and reported,
the image kept; a box with ``xmax < xmin`` / ``ymax < ymin`` or covering no pixel leaves its image out.
:func:`wsol.localizer.voc_xml` writes the inverse (``+ 1``).

**Labels.** Every object is kept with its class and ``difficult`` flag (``<difficult>`` absent = 0).
By default (``difficult_labels="include"``) an image's labels are *all* classes with an object in it,
including classes present only as difficult objects: the object is there, so training it as a negative
would be wrong. The devkit's classification protocol (``ImageSets/Main/<class>_<split>.txt`` label 0,
``VOCevalcls.m``) counts such image-class pairs as neither positive nor negative; for that evaluation pass
:func:`difficult_only_mask` as ``ignore`` to :func:`wsol.metrics.classification.mean_average_precision`.
Neither Qiu et al. (GWAP) nor Gudi et al. (SPAM) say how they treat them. ``difficult_labels="exclude"``
drops difficult-only classes from the labels instead (boxes are kept either way).

**Bad input.** A missing folder / split file raises ``ValueError`` naming it. Per image, a missing XML, a
missing JPEG, an XML the parser rejects (malformed, no ``<size>`` or no ``<object>``, an object without
``<bndbox>``, a missing, non-numeric or non-finite coordinate, ``<difficult>`` other than 0 / 1), an unknown
class name or a box rejected by :func:`~wsol.data.standard.check_box` is reported as a
:class:`~wsol.data.metadata.MetadataProblem` naming the file (and the line of malformed XML) and the **whole
image is skipped**: keeping it without the bad object would leave an image whose labels or ground truth miss
an object that is really there (a correct detection would then count as a false positive).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from wsol.data.metadata import MetadataProblem
from wsol.data.records import DatasetIndex, ImageRecord, register_dataset
from wsol.data.xml_annotations import VOC_OFFSET, AnnotationError, check_object_boxes, parse_voc_xml

__all__ = [
    "VOC_CLASSES",
    "difficult_only_mask",
    "read_split_file",
    "read_voc",
]

#: The 20 VOC classes in the devkit's order (class id = position).
VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


def read_split_file(path: Path, relative: str) -> tuple[list[tuple[int, str]], list[MetadataProblem]]:
    """``(line, id)`` pairs of an id-per-line file (blank lines skipped) and the problems (extra tokens,
    duplicates) named by ``relative`` and line. ``ValueError`` if the file cannot be read."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read {path}: {getattr(err, 'strerror', None) or err}") from None
    ids: list[tuple[int, str]] = []
    problems: list[MetadataProblem] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) > 1:
            problems.append(MetadataProblem(relative, number, tokens[0], f"expected one image id, got {line!r}"))
            continue
        if tokens[0] in seen:
            problems.append(MetadataProblem(relative, number, tokens[0], f"duplicate of line {seen[tokens[0]]}"))
            continue
        seen[tokens[0]] = number
        ids.append((number, tokens[0]))
    return ids, problems


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise ValueError(f"{what}: folder {path} does not exist")
    return path


def _check_split(split: str) -> str:
    if not isinstance(split, str) or not _SPLIT_NAME.match(split):
        raise ValueError(f"split must be a plain name such as 'trainval' or 'test', got {split!r}")
    return split


def _year_folders(root: Path, year: int | None, years: Sequence[int] | None) -> list[tuple[Path, str]]:
    """``(year folder, id prefix)`` pairs for ``root`` = a year folder or a VOCdevkit folder."""
    _require_dir(root, "VOC root")
    if year is not None and years is not None:
        raise ValueError("give either year or years, not both")
    wanted = None if year is None and years is None else ([year] if year is not None else list(years or ()))
    if wanted is not None and (not wanted or not all(isinstance(y, int) and not isinstance(y, bool) for y in wanted)):
        raise ValueError(f"VOC years must be integers such as 2007 or 2012, got {wanted!r}")
    if (root / "Annotations").is_dir() or (root / "ImageSets").is_dir():  # one year's folder
        named = re.fullmatch(r"VOC(\d{4})", root.name)
        if wanted is not None and (len(wanted) != 1 or (named is not None and int(named[1]) != wanted[0])):
            raise ValueError(f"{root} is a single VOC year folder; give the VOCdevkit folder to read years {wanted}")
        return [(root, "")]
    found = sorted(p.name for p in root.glob("VOC[0-9][0-9][0-9][0-9]") if p.is_dir())
    if wanted is None:
        if len(found) != 1:
            have = ", ".join(found) or "none"
            raise ValueError(
                f"{root} is neither a VOC year folder (no Annotations/) nor a VOCdevkit with exactly one VOC<year> "
                f"folder (found: {have}); pass year=2007 / years=(2007, 2012)"
            )
        wanted = [int(found[0][3:])]
    if len(set(wanted)) != len(wanted):
        raise ValueError(f"VOC years repeat: {wanted}")
    folders = []
    for y in wanted:
        folder = root / f"VOC{y}"
        if not folder.is_dir():
            raise ValueError(f"VOC{y}: folder {folder} does not exist (found: {', '.join(found) or 'none'})")
        folders.append((folder, f"VOC{y}/" if len(wanted) > 1 else ""))
    return folders


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _read_year(
    folder: Path, prefix: str, root: Path, split: str, include_difficult: bool
) -> tuple[list[ImageRecord], list[MetadataProblem]]:
    annotations = _require_dir(folder / "Annotations", "VOC annotations")
    images = _require_dir(folder / "JPEGImages", "VOC images")
    main = _require_dir(folder / "ImageSets" / "Main", "VOC image sets")
    split_file = main / f"{split}.txt"
    if not split_file.is_file():
        have = sorted(p.stem for p in main.glob("*.txt") if "_" not in p.stem)
        raise ValueError(f"VOC split file {split_file} does not exist (splits there: {', '.join(have) or 'none'})")
    ids, problems = read_split_file(split_file, _relative(split_file, root))
    class_id = {name: i for i, name in enumerate(VOC_CLASSES)}
    records = []
    for _, image_id in ids:
        rid = prefix + image_id
        xml_path, jpg_path = annotations / f"{image_id}.xml", images / f"{image_id}.jpg"
        if not xml_path.is_file():
            problems.append(MetadataProblem(_relative(xml_path, root), None, rid, "annotation file does not exist"))
            continue
        if not jpg_path.is_file():
            problems.append(MetadataProblem(_relative(jpg_path, root), None, rid, "image listed but absent"))
            continue
        try:
            ann = parse_voc_xml(xml_path, offset=VOC_OFFSET, require_size=True)
            unknown = sorted(set(ann.names) - set(class_id))
            if unknown:
                raise AnnotationError(f"unknown class name(s) {unknown}; VOC classes: {', '.join(VOC_CLASSES)}")
        except AnnotationError as err:
            problems.append(MetadataProblem(_relative(xml_path, root), err.line, rid, f"{err}; image skipped"))
            continue
        boxes, messages = check_object_boxes(ann)
        tail = "; image skipped" if boxes is None else ""
        problems.extend(MetadataProblem(_relative(xml_path, root), None, rid, m + tail) for m in messages)
        if boxes is None:
            continue
        box_labels = np.array([class_id[name] for name in ann.names], dtype=np.int64)
        difficult = np.array([o.difficult for o in ann.objects], dtype=bool)
        kept = box_labels if include_difficult else box_labels[~difficult]
        records.append(
            ImageRecord(
                rid,
                jpg_path,
                tuple(sorted({int(c) for c in kept})),
                boxes=boxes,
                box_labels=box_labels,
                difficult=difficult,
                size=ann.size,
            )
        )
    return records, problems


@register_dataset("voc")
def read_voc(
    root: Path,
    split: str,
    *,
    year: int | None = None,
    years: Sequence[int] | None = None,
    difficult_labels: Literal["include", "exclude"] = "include",
) -> DatasetIndex:
    """Read split ``split`` (``ImageSets/Main/<split>.txt``) of PASCAL VOC (rules in the module docstring).

    Args:
        root: a ``VOC<year>`` folder, or the ``VOCdevkit`` folder holding them.
        split: ``train`` / ``val`` / ``trainval`` / ``test`` (any ``Main/<split>.txt``), read in every year.
        year: the one year to read under a VOCdevkit (default: its only ``VOC<year>`` folder).
        years: several years, e.g. ``(2007, 2012)`` for VOC07+12 (ids prefixed ``"VOC<year>/"``).
        difficult_labels: ``"include"`` (default) or ``"exclude"`` classes present only as difficult objects
            from the image labels.

    Returns:
        A multi-label index over the 20 classes (:data:`VOC_CLASSES`), records in split-file order (years in
        the given order), the bad images in ``problems``.

    Raises:
        ValueError: missing root / year / ``Annotations`` / ``JPEGImages`` / ``ImageSets/Main`` folder or split
            file (named), bad ``split`` / ``year`` / ``difficult_labels``.
    """
    if difficult_labels not in ("include", "exclude"):
        raise ValueError(f"difficult_labels must be 'include' or 'exclude', got {difficult_labels!r}")
    _check_split(split)
    root = Path(root)
    records, problems = [], []
    for folder, prefix in _year_folders(root, year, years):
        recs, probs = _read_year(folder, prefix, root, split, difficult_labels == "include")
        records.extend(recs)
        problems.extend(probs)
    return DatasetIndex("voc", root, split, list(VOC_CLASSES), records, multilabel=True, problems=problems)


def difficult_only_mask(index: DatasetIndex) -> np.ndarray:
    """``(N, C)`` bool: class ``c`` occurs in image ``i`` only as difficult objects.

    These are the devkit's label-0 ("difficult") image-class pairs, left out of the classification AP
    ranking: ``mean_average_precision(scores, targets, ignore=difficult_only_mask(index))``.
    """
    out = np.zeros((len(index), index.num_classes), dtype=bool)
    for i, r in enumerate(index.records):
        if r.box_labels.size:
            hard = np.zeros(index.num_classes, dtype=bool)
            easy = np.zeros(index.num_classes, dtype=bool)
            np.logical_or.at(hard, r.box_labels[r.difficult], True)
            np.logical_or.at(easy, r.box_labels[~r.difficult], True)
            out[i] = hard & ~easy
    return out
