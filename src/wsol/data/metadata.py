"""Reader of the field's metadata layout (``wsolevaluation``, Choe et al. CVPR 2020), with per-line checks.

One folder per split holds plain-text files, one record per line, fields separated by commas::

    image_ids.txt      <image_id>                       e.g. 001.Black_footed_Albatross/x_0046_18.jpg
    class_labels.txt   <image_id>,<integer class>
    image_sizes.txt    <image_id>,<width>,<height>
    localization.txt   <image_id>,<x0>,<y0>,<x1>,<y1>   one line per box (boxes: CUB, ILSVRC)
                  or   <image_id>,<mask.png>,<ignore.png>   one line per instance mask (OpenImages);
                       the ignore PNG is given on the image's first line only, later lines leave it empty

Boxes are ``[x0, y0, x1, y1]`` in original image pixels (inclusive corners); mask paths are relative to
a mask root folder. Only ``image_ids.txt`` is mandatory.

:func:`read_metadata` never stops at the first bad line: it returns a :class:`Metadata` of the items
that passed every check plus a list of :class:`MetadataProblem` (file, line number, image id, reason)
so a caller can report them and go on with the rest. Only an unusable folder (missing, no
``image_ids.txt``, no id at all) raises :class:`MetadataError`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

__all__ = [
    "METADATA_FILES",
    "Metadata",
    "MetadataError",
    "MetadataProblem",
    "parse_finite_number",
    "read_metadata",
    "read_predictions",
]

METADATA_FILES = ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt")
LocalizationKind = Literal["boxes", "masks"]


class MetadataError(ValueError):
    """The metadata folder cannot be used at all (missing folder, no ``image_ids.txt``, no ids)."""


@dataclass(frozen=True)
class MetadataProblem:
    """One bad record or inconsistency.

    Attributes:
        file: file name (e.g. ``"localization.txt"``).
        line: 1-based line number, or ``None`` for cross-file problems.
        image_id: the image concerned, if known.
        message: what is wrong.
    """

    file: str
    line: int | None
    image_id: str | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        who = f" [{self.image_id}]" if self.image_id is not None else ""
        return f"{where}{who}: {self.message}"


@dataclass
class Metadata:
    """Parsed metadata of one split; only items without problems are kept.

    Attributes:
        root: the folder read.
        image_ids: valid ids, in ``image_ids.txt`` order.
        class_labels: id → class (when ``class_labels.txt`` exists).
        image_sizes: id → ``(width, height)`` (when ``image_sizes.txt`` exists).
        boxes: id → ``(K, 4)`` float64 boxes (box localization).
        mask_paths: id → instance-mask paths (mask localization).
        ignore_paths: id → ignore-mask path or ``None`` (mask localization).
        localization: ``"boxes"``, ``"masks"`` or ``None`` (no ``localization.txt``).
        rejected: id → reasons, for ids of ``image_ids.txt`` dropped because of a problem.
        files: which of :data:`METADATA_FILES` were present.
    """

    root: Path
    image_ids: list[str]
    class_labels: dict[str, int] = field(default_factory=dict)
    image_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    boxes: dict[str, np.ndarray] = field(default_factory=dict)
    mask_paths: dict[str, list[str]] = field(default_factory=dict)
    ignore_paths: dict[str, str | None] = field(default_factory=dict)
    localization: LocalizationKind | None = None
    rejected: dict[str, list[str]] = field(default_factory=dict)
    files: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.image_ids)


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank lines with their 1-based numbers; ``\\r\\n`` endings accepted."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise MetadataError(f"{path}: not UTF-8 text ({err})") from None
    except OSError as err:
        raise MetadataError(f"{path}: cannot be read ({err})") from None
    return [(i, line.rstrip("\r")) for i, line in enumerate(text.split("\n"), 1) if line.strip()]


def _parse_int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def parse_finite_number(text: str) -> float | None:
    """An int, or a finite float (some exports write ``12.0``); ``None`` if not a number."""
    try:
        value = float(int(text))
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            return None
    return value if math.isfinite(value) else None


class _Reader:
    """Collects problems while parsing the files of one folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.problems: list[MetadataProblem] = []
        self.bad_ids: dict[str, list[str]] = {}
        self.flagged: set[tuple[str, str]] = set()

    def problem(self, file: str, line: int | None, image_id: str | None, message: str) -> None:
        self.problems.append(MetadataProblem(file, line, image_id, message))
        if image_id is not None:
            self.flagged.add((file, image_id))
            self.bad_ids.setdefault(image_id, []).append(f"{file}{'' if line is None else f':{line}'}: {message}")

    def fields(self, file: str, n: int, what: str) -> list[tuple[int, list[str]]]:
        """Lines of ``file`` split on commas, keeping those with ``n`` fields and a non-empty id."""
        out = []
        for lineno, line in _read_lines(self.root / file):
            parts = line.split(",")
            image_id = parts[0] if parts[0] else None
            if len(parts) != n:
                self.problem(file, lineno, image_id, f"expected {n} comma-separated fields {what}, got {len(parts)}")
            elif image_id is None:
                self.problem(file, lineno, None, "empty image id")
            else:
                out.append((lineno, parts))
        return out

    def image_ids(self) -> list[str]:
        file = "image_ids.txt"
        ids: list[str] = []
        first: dict[str, int] = {}
        for lineno, line in _read_lines(self.root / file):
            if line in first:  # not the item's fault: the first occurrence is kept and evaluated once
                self.problem(file, lineno, None, f"duplicate image id {line!r} (first on line {first[line]}); ignored")
                continue
            first[line] = lineno
            ids.append(line)
        return ids

    def class_labels(self, known: set[str]) -> dict[str, int]:
        file = "class_labels.txt"
        labels: dict[str, int] = {}
        for lineno, (image_id, text) in self.fields(file, 2, "<image_id>,<class>"):
            value = _parse_int(text)
            if value is None or value < 0:
                self.problem(file, lineno, image_id, f"class must be a non-negative integer, got {text!r}")
            elif image_id in labels:
                self.problem(file, lineno, image_id, "duplicate class label")
            elif image_id not in known:
                self.problem(file, lineno, None, f"image id {image_id!r} is not listed in image_ids.txt")
            else:
                labels[image_id] = value
        return labels

    def image_sizes(self, known: set[str]) -> dict[str, tuple[int, int]]:
        file = "image_sizes.txt"
        sizes: dict[str, tuple[int, int]] = {}
        for lineno, (image_id, ws, hs) in self.fields(file, 3, "<image_id>,<width>,<height>"):
            w, h = _parse_int(ws), _parse_int(hs)
            if w is None or h is None or w <= 0 or h <= 0:
                self.problem(file, lineno, image_id, f"width and height must be positive integers, got {ws!r}, {hs!r}")
            elif image_id in sizes:
                self.problem(file, lineno, image_id, "duplicate image size")
            elif image_id not in known:
                self.problem(file, lineno, None, f"image id {image_id!r} is not listed in image_ids.txt")
            else:
                sizes[image_id] = (w, h)
        return sizes

    def localization_kind(self) -> LocalizationKind | None:
        counts = {3: 0, 5: 0}
        for _, line in _read_lines(self.root / "localization.txt"):
            n = len(line.split(","))
            if n in counts:
                counts[n] += 1
        if counts[3] == counts[5] == 0:
            return None
        return "boxes" if counts[5] >= counts[3] else "masks"

    def boxes(self, known: set[str], sizes: dict[str, tuple[int, int]] | None) -> dict[str, np.ndarray]:
        file = "localization.txt"
        boxes: dict[str, list[list[float]]] = {}
        for lineno, (image_id, *texts) in self.fields(file, 5, "<image_id>,<x0>,<y0>,<x1>,<y1>"):
            values = [parse_finite_number(t) for t in texts]
            if image_id not in known:
                self.problem(file, lineno, None, f"image id {image_id!r} is not listed in image_ids.txt")
                continue
            if any(v is None for v in values):
                self.problem(file, lineno, image_id, f"box coordinates must be numbers, got {','.join(texts)!r}")
                continue
            x0, y0, x1, y1 = (float(v) for v in values if v is not None)
            message = None
            if min(x0, y0) < 0:
                message = "negative coordinate"
            elif x1 < x0 or y1 < y0:
                message = "x1 < x0 or y1 < y0"
            elif sizes is not None and image_id in sizes:
                w, h = sizes[image_id]
                if x1 > w or y1 > h:  # x1 == W tolerated: some exports write x + width
                    message = f"box extends beyond the {w}x{h} image"
            if message is not None:
                self.problem(file, lineno, image_id, f"bad box {[x0, y0, x1, y1]}: {message}")
            else:
                boxes.setdefault(image_id, []).append([x0, y0, x1, y1])
        return {k: np.asarray(v, dtype=np.float64) for k, v in boxes.items()}

    def masks(self, known: set[str]) -> tuple[dict[str, list[str]], dict[str, str | None]]:
        file = "localization.txt"
        masks: dict[str, list[str]] = {}
        ignores: dict[str, str | None] = {}
        for lineno, (image_id, mask, ignore) in self.fields(file, 3, "<image_id>,<mask>,<ignore mask>"):
            if image_id not in known:
                self.problem(file, lineno, None, f"image id {image_id!r} is not listed in image_ids.txt")
            elif not mask:
                self.problem(file, lineno, image_id, "empty mask path")
            elif image_id in masks:
                if ignore:
                    self.problem(file, lineno, image_id, "ignore mask given again (only on the image's first line)")
                masks[image_id].append(mask)
            else:
                masks[image_id] = [mask]
                ignores[image_id] = ignore or None
        return masks, ignores


def read_metadata(root: str | os.PathLike[str]) -> tuple[Metadata, list[MetadataProblem]]:
    """Read and check a metadata folder (see the module docstring for the layout).

    Checks: field counts, integer / numeric fields, positive sizes, boxes with ``x0 <= x1``,
    ``y0 <= y1``, non-negative and inside the image (``x1 <= W``, ``y1 <= H``), duplicate records, ids
    listed in one file but missing from another, unknown ids. Every item of ``image_ids.txt`` with a
    problem, or missing from a present ``class_labels.txt`` / ``image_sizes.txt`` /
    ``localization.txt``, is left out of :attr:`Metadata.image_ids` and listed in
    :attr:`Metadata.rejected`; box localization without ``image_sizes.txt`` rejects every item
    (boxes cannot be rescaled).

    Args:
        root: folder with ``image_ids.txt`` and optionally the other files.

    Returns:
        ``(metadata, problems)``.

    Raises:
        MetadataError: ``root`` is not a folder, ``image_ids.txt`` is missing/unreadable or lists no id.
    """
    folder = Path(root)
    if not folder.is_dir():
        raise MetadataError(f"metadata folder {str(folder)!r} does not exist or is not a folder")
    present = tuple(f for f in METADATA_FILES if (folder / f).is_file())
    if "image_ids.txt" not in present:
        raise MetadataError(f"{str(folder / 'image_ids.txt')!r} is missing")
    reader = _Reader(folder)
    all_ids = reader.image_ids()
    if not all_ids:
        raise MetadataError(f"{str(folder / 'image_ids.txt')!r} lists no image id (empty metadata)")
    known = set(all_ids)
    labels = reader.class_labels(known) if "class_labels.txt" in present else {}
    sizes = reader.image_sizes(known) if "image_sizes.txt" in present else {}
    kind = reader.localization_kind() if "localization.txt" in present else None
    boxes: dict[str, np.ndarray] = {}
    masks: dict[str, list[str]] = {}
    ignores: dict[str, str | None] = {}
    if kind == "boxes":
        boxes = reader.boxes(known, sizes if "image_sizes.txt" in present else None)
    elif kind == "masks":
        masks, ignores = reader.masks(known)
    elif "localization.txt" in present:
        reader.problem("localization.txt", None, None, "no line with 5 (boxes) or 3 (masks) fields")

    needs: list[tuple[str, Mapping[str, object]]] = []
    if "class_labels.txt" in present:
        needs.append(("class_labels.txt", labels))
    if "image_sizes.txt" in present:
        needs.append(("image_sizes.txt", sizes))
    if kind == "boxes":
        needs.append(("localization.txt", boxes))
    elif kind == "masks":
        needs.append(("localization.txt", masks))
    for image_id in all_ids:
        for file, table in needs:
            if image_id not in table and (file, image_id) not in reader.flagged:
                reader.problem(file, None, image_id, f"no valid entry in {file}")
        if kind == "boxes" and "image_sizes.txt" not in present:
            reader.problem("image_sizes.txt", None, image_id, "image_sizes.txt is missing: boxes cannot be rescaled")
    valid = [i for i in all_ids if i not in reader.bad_ids]
    meta = Metadata(
        root=folder,
        image_ids=valid,
        class_labels={i: labels[i] for i in valid if i in labels},
        image_sizes={i: sizes[i] for i in valid if i in sizes},
        boxes={i: boxes[i] for i in valid if i in boxes},
        mask_paths={i: masks[i] for i in valid if i in masks},
        ignore_paths={i: ignores[i] for i in valid if i in ignores},
        localization=kind,
        rejected={i: reader.bad_ids[i] for i in all_ids if i in reader.bad_ids},
        files=present,
    )
    return meta, _sorted(reader.problems)


def _sorted(problems: list[MetadataProblem]) -> list[MetadataProblem]:
    """Problems in file order (:data:`METADATA_FILES` first), then line order; cross-file ones last."""
    order = {name: i for i, name in enumerate(METADATA_FILES)}
    return sorted(problems, key=lambda p: (order.get(p.file, len(order)), p.line is None, p.line or 0))


def read_predictions(path: str | os.PathLike[str]) -> tuple[dict[str, int], list[MetadataProblem]]:
    """Read predicted classes, one ``<image_id>,<class>`` per line (format of ``class_labels.txt``).

    Returns:
        ``(id → predicted class, problems)``; bad or duplicate lines are reported and skipped.

    Raises:
        MetadataError: the file is missing or unreadable.
    """
    file = Path(path)
    if not file.is_file():
        raise MetadataError(f"predictions file {str(file)!r} does not exist")
    reader = _Reader(file.parent)
    out: dict[str, int] = {}
    name = file.name
    for lineno, (image_id, text) in reader.fields(name, 2, "<image_id>,<predicted class>"):
        value = _parse_int(text)
        if value is None or value < 0:
            reader.problem(name, lineno, image_id, f"predicted class must be a non-negative integer, got {text!r}")
        elif image_id in out:
            reader.problem(name, lineno, image_id, "duplicate prediction")
        else:
            out[image_id] = value
    return out, _sorted(reader.problems)
