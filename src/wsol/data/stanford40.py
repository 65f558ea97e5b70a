"""Stanford 40 Actions (Yao et al. 2011) with Moreaux et al. 2018's validation / test split.

Layout (the official archives unpacked side by side)::

    Stanford40/ImageSplits/actions.txt                 header "action_name  number_of_images", one action a line
    Stanford40/ImageSplits/<action>_train.txt          image file names ("applauding_001.jpg"), one a line
    Stanford40/ImageSplits/<action>_test.txt
    Stanford40/JPEGImages/<name>.jpg
    Stanford40/XMLAnnotations/<stem>.xml               VOC-style: <size>, one <object> per person with
                                                       <bndbox> and <action>

Class ids follow ``actions.txt`` order; an image's label is its action (the split file it is listed in); its
boxes are the person box(es) of the XML, each labelled with the action. The XML is read by
:func:`wsol.data.xml_annotations.parse_voc_xml` (``label_tag="action"``) and its coordinates converted like
VOC's, 1-based inclusive → 0-based inclusive (``offset=VOC_OFFSET``: ``x0 = xmin − 1``; the dataset ships no
parser of its own, and the public readers of its files — Gkioxari et al.'s R*CNN, GluonCV — subtract 1 too).
Image ids are the file names of the split files (``"applauding_001.jpg"``).

**Splits.** ``"train"`` (4,000 images, 100 per action), ``"official_test"`` (5,532) and Moreaux et al.
2018 §4.1's split of the official test set: "one with 3532 images used for validation and 2000 (50 images
per class) for the test stage". The paper does not say how the 50 were drawn; we draw them
deterministically and independently of numpy / Python versions: within each action, the images listed in
``<action>_test.txt`` are ranked by ``sha256(f"{seed}:{file name}")`` (hex digest order) and the first
``test_per_class`` (50) form ``"test"``, the rest ``"val"``. The ranking uses the *listed* names only, so the
split does not move when some images or annotations are damaged locally (those are reported and skipped
afterwards). Records keep the split files' order, actions in ``actions.txt`` order.

**Bad input.** Missing folders / files raise ``ValueError`` naming them; an action with fewer than
``test_per_class`` test images makes the Moreaux split impossible (``ValueError``). Per image, a missing
JPEG or XML, malformed XML, an XML without ``<size>`` / ``<object>``, an object without ``<action>`` /
``<bndbox>``, a non-numeric coordinate, a box rejected by :func:`wsol.data.standard.check_box`
(``xmax < xmin``, covering no pixel), an action name not in ``actions.txt`` or one differing from the split
file's is a :class:`~wsol.data.metadata.MetadataProblem` naming the file, and the image is skipped (see
:mod:`wsol.data.voc` for why whole images). A box sticking out of the image is clipped to it and reported,
and the image is kept.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from wsol.data.metadata import MetadataProblem
from wsol.data.records import DatasetIndex, ImageRecord, register_dataset
from wsol.data.voc import read_split_file
from wsol.data.xml_annotations import VOC_OFFSET, AnnotationError, check_object_boxes, parse_voc_xml

__all__ = ["STANFORD40_SPLITS", "moreaux_split", "read_actions", "read_stanford40"]

#: Split names accepted by :func:`read_stanford40`.
STANFORD40_SPLITS = ("train", "val", "test", "official_test")


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _require(path: Path, what: str, is_dir: bool) -> Path:
    ok = path.is_dir() if is_dir else path.is_file()
    if not ok:
        raise ValueError(f"Stanford 40 {what}: {'folder' if is_dir else 'file'} {path} does not exist")
    return path


def read_actions(path: Path) -> list[str]:
    """Action names of ``actions.txt`` in file order (the header line and the count column are skipped).

    Raises:
        ValueError: unreadable file, no action, a duplicate action (with its line).
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read {path}: {getattr(err, 'strerror', None) or err}") from None
    actions: list[str] = []
    for number, line in enumerate(lines, 1):
        tokens = line.split()
        if not tokens or (not actions and tokens[0] == "action_name"):
            continue
        if tokens[0] in actions:
            raise ValueError(f"{path}:{number}: action {tokens[0]!r} listed twice")
        actions.append(tokens[0])
    if not actions:
        raise ValueError(f"{path} lists no action")
    return actions


def _rank_key(seed: int, name: str) -> str:
    return hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()


def moreaux_split(names: list[str], test_per_class: int = 50, seed: int = 0) -> tuple[set[str], set[str]]:
    """``(test, val)`` names of one action: the ``test_per_class`` names with the smallest
    ``sha256(f"{seed}:{name}")`` go to test, the others to val (Moreaux et al. 2018 §4.1, our draw)."""
    ranked = sorted(names, key=lambda n: _rank_key(seed, n))
    return set(ranked[:test_per_class]), set(ranked[test_per_class:])


def _listed(
    splits_dir: Path, root: Path, action: str, part: str
) -> tuple[list[tuple[int, str]], list[MetadataProblem], str]:
    path = _require(splits_dir / f"{action}_{part}.txt", f"split of action {action!r}", is_dir=False)
    relative = _relative(path, root)
    ids, problems = read_split_file(path, relative)
    return ids, problems, relative


def _record(
    root: Path, name: str, label: int, actions: list[str]
) -> tuple[ImageRecord | None, list[MetadataProblem]]:
    """The record of one listed image (``None``: skipped) and the problems met."""
    image = root / "JPEGImages" / name
    xml = root / "XMLAnnotations" / f"{Path(name).stem}.xml"
    if not image.is_file():
        return None, [MetadataProblem(_relative(image, root), None, name, "image listed but absent")]
    if not xml.is_file():
        return None, [MetadataProblem(_relative(xml, root), None, name, "annotation file does not exist")]
    try:
        ann = parse_voc_xml(xml, label_tag="action", offset=VOC_OFFSET, require_size=True)
        for o in ann.objects:
            if o.name not in actions:
                raise AnnotationError(f"unknown action {o.name!r} (not in ImageSplits/actions.txt)")
            if o.name != actions[label]:
                raise AnnotationError(f"action {o.name!r} but the image is listed under {actions[label]!r}")
    except AnnotationError as err:
        return None, [MetadataProblem(_relative(xml, root), err.line, name, f"{err}; image skipped")]
    boxes, messages = check_object_boxes(ann)
    tail = "; image skipped" if boxes is None else ""
    problems = [MetadataProblem(_relative(xml, root), None, name, m + tail) for m in messages]
    if boxes is None:
        return None, problems
    k = len(boxes)
    return ImageRecord(name, image, (label,), boxes, np.full(k, label), np.zeros(k, bool), ann.size), problems


@register_dataset("stanford40")
def read_stanford40(root: Path, split: str, *, seed: int = 0, test_per_class: int = 50) -> DatasetIndex:
    """Read a split of Stanford 40 Actions (rules in the module docstring).

    Args:
        root: the folder holding ``ImageSplits``, ``JPEGImages`` and ``XMLAnnotations``.
        split: ``"train"``, ``"val"`` / ``"test"`` (Moreaux et al. 2018) or ``"official_test"``.
        seed: seed of the Moreaux draw (0 = the split this library documents and reports on).
        test_per_class: test images per action in the Moreaux split (paper: 50).

    Raises:
        ValueError: unknown split, bad ``seed`` / ``test_per_class``, missing folder or file (named), an
            action with too few test images for the Moreaux split.
    """
    if split not in STANFORD40_SPLITS:
        raise ValueError(f"unknown Stanford 40 split {split!r}; valid: {', '.join(STANFORD40_SPLITS)}")
    for value, name in ((seed, "seed"), (test_per_class, "test_per_class")):
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "test_per_class" else 0):
            raise ValueError(f"{name} must be a {'positive' if name == 'test_per_class' else 'non-negative'} int, "
                             f"got {value!r}")  # fmt: skip
    root = Path(root)
    _require(root, "root", is_dir=True)
    splits_dir = _require(root / "ImageSplits", "image splits", is_dir=True)
    _require(root / "JPEGImages", "images", is_dir=True)
    _require(root / "XMLAnnotations", "annotations", is_dir=True)
    actions = read_actions(_require(splits_dir / "actions.txt", "action list", is_dir=False))
    part = "train" if split == "train" else "test"
    records: list[ImageRecord] = []
    problems: list[MetadataProblem] = []
    seen: dict[str, str] = {}
    for label, action in enumerate(actions):
        ids, probs, relative = _listed(splits_dir, root, action, part)
        problems.extend(probs)
        fresh = []
        for line, name in ids:
            if name in seen:
                problems.append(MetadataProblem(relative, line, name, f"also listed in {seen[name]}; kept there"))
            else:
                seen[name] = relative
                fresh.append(name)
        if split in ("val", "test"):
            if len(fresh) < test_per_class:
                raise ValueError(
                    f"{relative} lists {len(fresh)} images; the Moreaux split needs at least {test_per_class} "
                    "per action"
                )
            test, val = moreaux_split(fresh, test_per_class, seed)
            keep = test if split == "test" else val
            fresh = [n for n in fresh if n in keep]
        for name in fresh:
            record, found = _record(root, name, label, actions)
            problems.extend(found)
            if record is not None:
                records.append(record)
    return DatasetIndex("stanford40", root, split, actions, records, problems=problems)
