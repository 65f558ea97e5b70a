"""Reader ``"ilsvrc"``: ImageNet (ILSVRC 2012 CLS-LOC) from its own folders and PASCAL-style XML annotations.

Accepted layouts (``image_root`` / ``annotation_root`` point elsewhere when needed)::

    <root>/train/<wnid>/<wnid>_<n>.JPEG          training images, one folder per synset
    <root>/val/ILSVRC2012_val_<n>.JPEG           validation images, flat (or val/<wnid>/... after "valprep")
    <annotations>/<wnid>/<wnid>_<n>.xml          optional training boxes (ILSVRC2012_bbox_train_v2)
    <annotations>/ILSVRC2012_val_<n>.xml         validation boxes and class (ILSVRC2012_bbox_val_v3)
    <root>/LOC_synset_mapping.txt                optional "<wnid> <words>" lines (or synset_words.txt)

and the Kaggle "ImageNet Object Localization Challenge" layout, found automatically:
``<root>/[ILSVRC/]Data/CLS-LOC/{train,val}`` with ``<root>/[ILSVRC/]Annotations/CLS-LOC/{train,val}``.

Each XML is ``<annotation><size><width>W</width><height>H</height></size><object><name>wnid</name>
<bndbox><xmin>…</xmin><ymin>…</ymin><xmax>…</xmax><ymax>…</ymax></bndbox></object>…</annotation>``, read by
:func:`wsol.data.xml_annotations.parse_voc_xml` (``offset=0``); one ``<object>`` per instance, so an image can
have several boxes, all of the image's class. Box values are taken as written (inclusive pixel corners), as in
the ``metadata/ILSVRC`` files of Choe et al. (2020): image ``ILSVRC2012_val_00000001`` → ``111,108,441,193``.

* image id: the path relative to the image root (``"val/ILSVRC2012_val_00000001.JPEG"``,
  ``"train/n01440764/n01440764_10026.JPEG"``), as in wsolevaluation's metadata;
* class order: sorted wnids — the standard ImageNet class index (0 = ``n01440764``, tench). The wnids come from
  the synset mapping file when present, else from the ``train/`` folders, else (a partial dataset) from the
  split's own folders and XML files; class names are the mapping's words when present, else the wnids;
* class of an image: its folder, else the ``<name>`` of its XML objects (they must agree).

Bad input is reported and the image left out: an XML the parser rejects (malformed — file and line named —,
an object without ``<name>`` or ``<bndbox>``, a missing or non-numeric coordinate, a bad ``<size>``), an XML
without objects, objects of several classes or of a class other than the image's folder, an unknown wnid, a
flat image without XML, a box rejected by :func:`wsol.data.standard.check_box` (``x1 < x0``, covering no
pixel). A box sticking out of the image is clipped to it and reported, and the image is kept; ``x1 == W``
(``xmax`` equal to the width, as in some ImageNet files) is accepted unchanged, as by every reader.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wsol.data.metadata import MetadataProblem
from wsol.data.records import DatasetIndex, ImageRecord, register_dataset
from wsol.data.standard import as_bool, as_path, display_path, read_image_size, read_text_lines
from wsol.data.xml_annotations import AnnotationError, XmlAnnotation, check_object_boxes, parse_voc_xml
from wsol.io import ImageLoadError, is_image_path

__all__ = ["read_ilsvrc", "read_synsets"]

_SYNSET_FILES = ("LOC_synset_mapping.txt", "synset_words.txt")


def read_synsets(path: Path) -> list[tuple[str, str]]:
    """``(wnid, words)`` of each ``"<wnid> <words>"`` line of ``LOC_synset_mapping.txt`` / ``synset_words.txt``.

    Raises:
        ValueError: missing file, or a wnid listed twice (naming ``file:line``).
    """
    out: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for lineno, line in read_text_lines(path):
        wnid, _, words = line.strip().partition(" ")
        if wnid in seen:
            raise ValueError(f"{path}:{lineno}: synset {wnid} listed again (first on line {seen[wnid]})")
        seen[wnid] = lineno
        out.append((wnid, words.strip() or wnid))
    return out


def _first_dir(candidates: Sequence[Path]) -> Path | None:
    return next((c for c in candidates if c.is_dir()), None)


@dataclass
class _Item:
    image_id: str
    path: Path
    wnid: str | None  # class folder, None for a flat image
    xml: Path | None


class _Listing:
    """``.xml`` names per annotation folder, listed once (one ``stat`` per image would be slow on ILSVRC train)."""

    def __init__(self) -> None:
        self.cache: dict[Path, set[str]] = {}

    def find(self, folder: Path, stem: str) -> Path | None:
        if folder not in self.cache:
            try:
                self.cache[folder] = {e.name for e in os.scandir(folder) if e.name.endswith(".xml")}
            except OSError:
                self.cache[folder] = set()
        name = f"{stem}.xml"
        return folder / name if name in self.cache[folder] else None


def _scan(split_dir: Path, images: Path, ann_dir: Path | None, boxes: bool) -> list[_Item]:
    """Images of the split folder (flat files and ``<wnid>/`` folders), sorted, with their XML if any.

    With ``boxes=False`` images in class folders get no XML (flat images still need theirs: it gives the class).
    """
    listing = _Listing()
    items: list[_Item] = []

    def xml_for(stem: str, wnid: str | None) -> Path | None:
        if ann_dir is None or (wnid is not None and not boxes):
            return None
        found = listing.find(ann_dir / wnid, stem) if wnid is not None else None
        return found or listing.find(ann_dir, stem)

    for entry in sorted(os.scandir(split_dir), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            for sub in sorted(os.scandir(entry.path), key=lambda e: e.name):
                if sub.is_file() and is_image_path(sub.name) and not sub.name.startswith("."):
                    p = Path(sub.path)
                    items.append(_Item(p.relative_to(images).as_posix(), p, entry.name, xml_for(p.stem, entry.name)))
        elif entry.is_file() and is_image_path(entry.name):
            p = Path(entry.path)
            items.append(_Item(p.relative_to(images).as_posix(), p, None, xml_for(p.stem, None)))
    return items


def _classes(
    synset_path: Path | None, images: Path, items: list[_Item], parsed: dict[str, XmlAnnotation]
) -> tuple[list[str], list[str]]:
    """``(sorted wnids, class names)`` (see the module docstring for the sources, in order)."""
    if synset_path is not None:
        pairs = sorted(read_synsets(synset_path))
        return [w for w, _ in pairs], [words for _, words in pairs]
    train = images / "train"
    if train.is_dir():
        wnids = sorted(e.name for e in os.scandir(train) if e.is_dir() and not e.name.startswith("."))
    else:
        found = {i.wnid for i in items if i.wnid is not None}
        found |= {name for ann in parsed.values() for name in ann.names}
        wnids = sorted(found)
    return wnids, list(wnids)


@register_dataset("ilsvrc")
def read_ilsvrc(
    root: Path,
    split: str,
    *,
    image_root: str | os.PathLike[str] | None = None,
    annotation_root: str | os.PathLike[str] | None = None,
    synset_file: str | os.PathLike[str] | None = None,
    boxes: bool = True,
    read_sizes: bool = False,
) -> DatasetIndex:
    """Read split ``split`` (``"train"``, ``"val"``) of ImageNet (see the module docstring).

    Args:
        root: the ImageNet folder.
        split: sub-folder of the image root.
        image_root: folder holding ``train/`` and ``val/`` (default: ``root/[ILSVRC/]Data/CLS-LOC`` when it
            exists, else ``root``).
        annotation_root: folder of the split's XML files (flat, or one sub-folder per wnid). Default: the first
            existing of ``root/[ILSVRC/]Annotations/CLS-LOC/<split>``, ``root/annotations/<split>``, the split's
            image folder (XML next to the images).
        synset_file: ``"<wnid> <words>"`` file; default ``LOC_synset_mapping.txt`` or ``synset_words.txt`` in
            ``root`` (or its parent, the Kaggle layout).
        boxes: read the XML of images in class folders (``False``: classification only, e.g. the 1.28 M
            training images, of which only ~40 % have boxes, without parsing 544 k XML files).
        read_sizes: read the header of images whose XML gives no ``<size>`` (or that have no XML), to fill
            ``ImageRecord.size`` and check their boxes.

    Raises:
        ValueError: missing folder or named file.
    """
    root = as_path(root, "root")
    read_sizes, boxes = as_bool(read_sizes, "read_sizes"), as_bool(boxes, "boxes")
    if not root.is_dir():
        raise ValueError(f"ImageNet folder {str(root)!r} does not exist or is not a folder")
    if image_root is not None:
        images = as_path(image_root, "image_root")
        if not images.is_dir():
            raise ValueError(f"image folder {str(images)!r} does not exist")
    else:
        images = _first_dir([root / "ILSVRC" / "Data" / "CLS-LOC", root / "Data" / "CLS-LOC"]) or root
    split_dir = images / split
    if not split_dir.is_dir():
        found = sorted(e.name for e in os.scandir(images) if e.is_dir() and not e.name.startswith("."))
        listed = ", ".join(found) or "none"
        raise ValueError(f"split folder {str(split_dir)!r} does not exist (folders found: {listed})")
    if annotation_root is not None:
        ann_dir: Path | None = as_path(annotation_root, "annotation_root")
        if not ann_dir.is_dir():
            raise ValueError(f"annotation folder {str(ann_dir)!r} does not exist")
    else:
        kaggle = [root / "ILSVRC" / "Annotations" / "CLS-LOC" / split, root / "Annotations" / "CLS-LOC" / split]
        ann_dir = _first_dir([*kaggle, root / "annotations" / split, split_dir])
    if synset_file is not None:
        synset_path: Path | None = as_path(synset_file, "synset_file")
        if not synset_path.is_file():
            raise ValueError(f"synset file {str(synset_path)!r} does not exist")
    else:
        candidates = [d / f for d in (root, root.parent) for f in _SYNSET_FILES]
        synset_path = next((c for c in candidates if c.is_file()), None)

    items = _scan(split_dir, images, ann_dir, boxes)
    problems: list[MetadataProblem] = []
    parsed: dict[str, XmlAnnotation] = {}
    for item in items:
        if item.xml is None:
            continue
        try:
            parsed[item.image_id] = parse_voc_xml(item.xml)
        except AnnotationError as err:
            problems.append(MetadataProblem(display_path(item.xml, root), err.line, item.image_id, str(err)))
    wnids, names = _classes(synset_path, images, items, parsed)
    index = {w: k for k, w in enumerate(wnids)}
    records: list[ImageRecord] = []
    failed = {p.image_id for p in problems}
    for item in items:
        if item.image_id in failed:
            continue
        record, item_problems = _record(item, parsed.get(item.image_id), index, root, read_sizes)
        problems.extend(item_problems)
        if record is not None:
            records.append(record)
    return DatasetIndex("ilsvrc", root, split, names, records, problems=problems)


def _record(
    item: _Item, ann: XmlAnnotation | None, index: dict[str, int], root: Path, read_sizes: bool
) -> tuple[ImageRecord | None, list[MetadataProblem]]:
    """The record of one image and the problems met (record ``None``: left out)."""
    where = display_path(item.xml, root) if item.xml is not None else display_path(item.path, root)

    def fail(message: str) -> tuple[None, list[MetadataProblem]]:
        return None, [MetadataProblem(where, None, item.image_id, message)]

    if ann is None and item.wnid is None:
        return fail("no annotation XML for this image: its class is unknown")
    if item.wnid is not None:
        wnid = item.wnid
        others = sorted({n for n in ann.names if n != wnid}) if ann is not None else []
        if others:
            return fail(f"objects of {', '.join(others)} in an image of class folder {wnid}")
    else:
        kinds = sorted(set(ann.names)) if ann is not None else []
        if len(kinds) != 1:
            return fail(f"objects of several classes ({', '.join(kinds)}); expected one class per image")
        wnid = kinds[0]
    if wnid not in index:
        return fail(f"unknown synset {wnid!r} (not among the {len(index)} classes)")
    size = ann.size if ann is not None else None
    if size is None and read_sizes:
        try:
            size = read_image_size(item.path)
        except ImageLoadError as err:
            return fail(f"unreadable image: {err.reason}")
    boxes, messages = check_object_boxes(ann, size) if ann is not None else (np.zeros((0, 4)), [])
    problems = [MetadataProblem(where, None, item.image_id, m) for m in messages]
    if boxes is None:
        return None, problems
    label = index[wnid]
    record = ImageRecord(
        image_id=item.image_id,
        path=item.path,
        labels=(label,),
        boxes=boxes,
        size=size,
    )
    return record, problems
