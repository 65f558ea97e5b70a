r"""PASCAL-VOC-style annotation XML: the one parser of the ILSVRC, PASCAL VOC and Stanford 40 readers.

The format (PASCAL VOC devkit; ImageNet's ``ILSVRC2012_bbox_*`` files and Stanford 40's ``XMLAnnotations``
use it too)::

    <annotation>
      <size><width>W</width><height>H</height>…</size>
      <object><name>dog</name><difficult>0</difficult>
              <bndbox><xmin>…</xmin><ymin>…</ymin><xmax>…</xmax><ymax>…</ymax></bndbox></object>
      …                                                       (one <object> per box, children in any order)
    </annotation>

**Coordinates.** ``offset`` is added to every corner, :math:`(x_0, y_0, x_1, y_1) = (x_{min}, y_{min}, x_{max},
y_{max}) + \text{offset}`, giving the library's 0-based inclusive pixel corners:

* ``offset=0`` (ILSVRC): values kept as written, the convention of Choe et al. 2020's ``metadata/ILSVRC``
  (``ILSVRC2012_val_00000001`` → ``111,108,441,193``);
* ``offset=-1`` (:data:`VOC_OFFSET`; PASCAL VOC and Stanford 40): the devkit's corners are 1-based and
  inclusive (area ``(xmax − xmin + 1)·(ymax − ymin + 1)``), so ``x0 = xmin − 1``. Stanford 40 ships no
  parser of its own; its files follow the VOC layout and the public readers of them (Gkioxari et al.'s R*CNN
  ``stanford40.py``, GluonCV's ``Stanford40Action``) subtract 1 as for VOC.

The parser only reads: it does not judge a box against the image (``x1 < x0``, outside ``<size>``). That is
the one box policy of every reader, :func:`wsol.data.standard.check_box`, applied per object by
:func:`check_object_boxes`.

**Errors.** Everything that makes a file unusable raises :class:`AnnotationError` (a ``ValueError``) with
``line`` set when the XML parser knows it: unreadable file, malformed XML, a ``<size>`` that is not two
positive integers (or none with ``require_size``), no ``<object>`` (with ``require_objects``), an object
without its label tag or ``<bndbox>``, a missing, non-numeric or non-finite corner, ``<difficult>`` other
than 0 / 1.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wsol.data.standard import check_box, format_box

__all__ = [
    "VOC_OFFSET",
    "AnnotationError",
    "XmlAnnotation",
    "XmlObject",
    "check_object_boxes",
    "parse_voc_xml",
]

#: ``offset`` turning the VOC devkit's 1-based inclusive corners (also Stanford 40's) into 0-based ones.
VOC_OFFSET = -1.0

_CORNERS = ("xmin", "ymin", "xmax", "ymax")


class AnnotationError(ValueError):
    """An annotation XML that cannot be used; ``line`` is the XML line when the parser knows it."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class XmlObject:
    """One ``<object>``: its label text, box ``(x0, y0, x1, y1)`` (offset applied) and ``difficult`` flag."""

    name: str
    box: tuple[float, float, float, float]
    difficult: bool = False


@dataclass(frozen=True)
class XmlAnnotation:
    """A parsed annotation file: ``size = (width, height)`` (None when the file has no ``<size>``), the
    objects in file order and the ``offset`` their boxes were read with (written corner = box − offset)."""

    size: tuple[int, int] | None
    objects: tuple[XmlObject, ...] = ()
    offset: float = 0.0

    @property
    def names(self) -> list[str]:
        """The label of each object."""
        return [o.name for o in self.objects]

    @property
    def boxes(self) -> np.ndarray:
        """``(K, 4)`` float64 boxes of the objects."""
        return np.array([o.box for o in self.objects], dtype=np.float64).reshape(-1, 4)


def _text(element: ET.Element, tag: str) -> str | None:
    """Stripped text of the child ``tag`` (None when absent or empty)."""
    text = element.findtext(tag)
    return (text.strip() or None) if text is not None else None


def _number(element: ET.Element, tag: str, where: str) -> float:
    text = _text(element, tag)
    if text is None:
        raise AnnotationError(f"{where}: no <{tag}>")
    try:
        value = float(text)
    except ValueError:
        raise AnnotationError(f"{where}: <{tag}> is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise AnnotationError(f"{where}: <{tag}> is not finite: {text!r}")
    return value


def _size(top: ET.Element, required: bool) -> tuple[int, int] | None:
    element = top.find("size")
    if element is None:
        if required:
            raise AnnotationError("no <size> element (image width and height)")
        return None
    out = []
    for tag in ("width", "height"):
        text = _text(element, tag)
        try:
            value = float(text) if text is not None else 0.0
        except ValueError:
            value = 0.0
        if not (math.isfinite(value) and value > 0 and value.is_integer()):  # "500" and "500.0" accepted
            raise AnnotationError(f"<size><{tag}> must be a positive integer, got {text!r}")
        out.append(int(value))
    return out[0], out[1]


def _difficult(obj: ET.Element, where: str) -> bool:
    text = _text(obj, "difficult")
    if text is None:
        return False
    if text not in ("0", "1"):
        raise AnnotationError(f"{where}: <difficult> must be 0 or 1, got {text!r}")
    return text == "1"


def _object(obj: ET.Element, k: int, label_tag: str, offset: float) -> XmlObject:
    name = _text(obj, label_tag)
    where = f"object {k}" + (f" ({name})" if name else "")
    if name is None:
        raise AnnotationError(f"{where}: no <{label_tag}>")
    bndbox = obj.find("bndbox")
    if bndbox is None:
        raise AnnotationError(f"{where}: no <bndbox>")
    x0, y0, x1, y1 = (_number(bndbox, tag, f"{where} <bndbox>") + offset for tag in _CORNERS)
    return XmlObject(name, (x0, y0, x1, y1), _difficult(obj, where))


def parse_voc_xml(
    path: str | Path,
    *,
    label_tag: str = "name",
    offset: float = 0.0,
    require_size: bool = False,
    require_objects: bool = True,
) -> XmlAnnotation:
    """Parse one VOC-style annotation file (rules in the module docstring).

    Args:
        path: the XML file.
        label_tag: the child of ``<object>`` holding its label (``"name"``; Stanford 40: ``"action"``).
        offset: added to every corner: ``0`` keeps them as written (ILSVRC), :data:`VOC_OFFSET` (``-1``)
            turns VOC / Stanford 40's 1-based corners into 0-based ones.
        require_size: a file without ``<size>`` is an error (else ``size`` is None).
        require_objects: a file without ``<object>`` is an error (else ``objects`` is empty).

    Returns:
        The size and the objects in file order (direct ``<object>`` children of the root).

    Raises:
        AnnotationError: see the module docstring; ``line`` is set for malformed XML.
    """
    try:
        top = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise AnnotationError(f"malformed XML ({err})", line=err.position[0]) from None
    except OSError as err:
        raise AnnotationError(f"cannot read the file ({err.strerror or err})") from None
    size = _size(top, require_size)
    elements = top.findall("object")
    if not elements and require_objects:
        raise AnnotationError("no <object> element")
    objects = tuple(_object(obj, k, label_tag, float(offset)) for k, obj in enumerate(elements, 1))
    return XmlAnnotation(size, objects, float(offset))


def check_object_boxes(
    annotation: XmlAnnotation, size: tuple[int, int] | None = None
) -> tuple[np.ndarray | None, list[str]]:
    """Apply :func:`wsol.data.standard.check_box` (the readers' one box policy) to every object's box.

    Args:
        annotation: a parsed file.
        size: ``(width, height)`` to check against; default ``annotation.size``.

    Returns:
        ``(boxes, messages)``: the ``(K, 4)`` float64 boxes (clipped where one sticks out) and one message per
        clipped box (``"object k (label): box … sticks out …; image kept"``); or ``(None, messages)`` when a box
        is rejected (``x1 < x0``, covers no pixel), ``messages`` then naming the rejected object(s) only: the
        caller leaves the whole image out rather than keep it without an object that is really there. With a
        non-zero ``offset`` the messages also give the corners as written in the file (``written [...]``),
        since ``check_box`` sees the converted ones.
    """
    size = annotation.size if size is None else size
    kept: list[np.ndarray] = []
    clipped: list[str] = []
    rejected: list[str] = []
    for k, obj in enumerate(annotation.objects, 1):
        box, message = check_box(obj.box, size)
        if message is not None:
            where = f"object {k} ({obj.name})"
            if annotation.offset:
                where += f", written {format_box([v - annotation.offset for v in obj.box])}"
            (rejected if box is None else clipped).append(f"{where}: {message}")
        if box is not None:
            kept.append(box)
    if rejected:
        return None, rejected
    return np.asarray(kept, dtype=np.float64).reshape(-1, 4), clipped
