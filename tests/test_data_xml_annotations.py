"""wsol.data.xml_annotations: the one VOC-style XML parser (ILSVRC / VOC / Stanford 40) and its box check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsol.data.standard import check_box
from wsol.data.xml_annotations import (
    VOC_OFFSET,
    AnnotationError,
    XmlAnnotation,
    XmlObject,
    check_object_boxes,
    parse_voc_xml,
)


def _obj(name: str, box: tuple[object, ...], extra: str = "", label_tag: str = "name") -> str:
    corners = "".join(f"<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True))
    return f"<object><{label_tag}>{name}</{label_tag}>{extra}<bndbox>{corners}</bndbox></object>"


def _write(tmp_path: Path, body: str, size: str | None = "<size><width>40</width><height>30</height></size>") -> Path:
    path = tmp_path / "a.xml"
    path.write_text(f"<annotation>\n<filename>a.jpg</filename>\n{size or ''}\n{body}\n</annotation>\n")
    return path


def test_parses_size_names_boxes_and_difficult(tmp_path: Path) -> None:
    body = (
        _obj("dog", (1, 2, 40, 30), "<difficult>0</difficult>")
        + _obj(" cat ", (3.5, 4, 8, 9), "<difficult>1</difficult><part><name>head</name></part>")
        + _obj("dog", (5, 6, 7, 8))  # no <difficult>: 0
    )
    path = _write(tmp_path, body)
    ann = parse_voc_xml(path)
    assert ann.size == (40, 30) and ann.offset == 0.0
    assert ann.names == ["dog", "cat", "dog"]  # label text stripped; <part> names are not objects
    assert [o.difficult for o in ann.objects] == [False, True, False]
    np.testing.assert_array_equal(ann.boxes, [[1, 2, 40, 30], [3.5, 4, 8, 9], [5, 6, 7, 8]])  # as written
    assert ann.boxes.dtype == np.float64
    voc = parse_voc_xml(str(path), offset=VOC_OFFSET)  # str paths too
    np.testing.assert_array_equal(voc.boxes, [[0, 1, 39, 29], [2.5, 3, 7, 8], [4, 5, 6, 7]])
    assert voc.objects[1] == XmlObject("cat", (2.5, 3.0, 7.0, 8.0), True) and voc.offset == -1.0


def test_label_tag_and_children_in_any_order(tmp_path: Path) -> None:
    """Stanford 40's shape: alphabetical children, <action> plus <name>person</name>, <size> last."""
    body = (
        "<object><action>riding</action><bndbox><xmax>30</xmax><xmin>2</xmin><ymax>33</ymax><ymin>3</ymin>"
        "</bndbox><name>person</name></object>"
    )
    path = _write(tmp_path, body + "<size><depth>3</depth><height>40</height><width>50</width></size>", size=None)
    ann = parse_voc_xml(path, label_tag="action", offset=VOC_OFFSET, require_size=True)
    assert ann.size == (50, 40) and ann.names == ["riding"]
    np.testing.assert_array_equal(ann.boxes, [[1, 2, 29, 32]])
    assert parse_voc_xml(path).names == ["person"]


def test_size_is_optional_unless_required(tmp_path: Path) -> None:
    path = _write(tmp_path, _obj("n01440764", (1, 2, 3, 4)), size=None)
    assert parse_voc_xml(path).size is None
    with pytest.raises(AnnotationError, match=r"^no <size> element"):
        parse_voc_xml(path, require_size=True)
    ok = _write(tmp_path, _obj("a", (1, 2, 3, 4)), size="<size><width>500.0</width><height> 375 </height></size>")
    assert parse_voc_xml(ok).size == (500, 375)


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ("<size><width>-3</width><height>4</height></size>", r"<size><width> must be a positive integer, got '-3'"),
        ("<size><width>4</width><height>2.5</height></size>", r"<height> must be a positive integer, got '2.5'"),
        ("<size><width>4</width><height>abc</height></size>", r"<height> must be a positive integer, got 'abc'"),
        ("<size><width>inf</width><height>3</height></size>", r"<width> must be a positive integer, got 'inf'"),
        ("<size><height>3</height></size>", r"<width> must be a positive integer, got None"),
    ],
)
def test_bad_size(tmp_path: Path, size: str, message: str) -> None:
    with pytest.raises(AnnotationError, match=message):
        parse_voc_xml(_write(tmp_path, _obj("a", (1, 1, 2, 2)), size=size))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("<object><bndbox><xmin>1</xmin></bndbox></object>", r"^object 1: no <name>$"),
        ("<object><name>  </name></object>", r"^object 1: no <name>$"),
        (_obj("a", (1, 1, 2, 2)) + "<object><name>dog</name></object>", r"^object 2 \(dog\): no <bndbox>$"),
        (_obj("dog", (1, 1, "", 2)), r"^object 1 \(dog\) <bndbox>: no <xmax>$"),
        (_obj("dog", (1, "ten", 2, 2)), r"^object 1 \(dog\) <bndbox>: <ymin> is not a number: 'ten'$"),
        (_obj("dog", (1, 1, "nan", 2)), r"<xmax> is not finite: 'nan'"),
        (_obj("dog", ("-inf", 1, 2, 2)), r"<xmin> is not finite: '-inf'"),
        (_obj("dog", (1, 1, 2, 2), "<difficult>yes</difficult>"), r"^object 1 \(dog\): <difficult> must be 0 or 1"),
        ("", r"^no <object> element$"),
    ],
)
def test_bad_objects_raise_with_the_object_named(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(AnnotationError, match=message) as info:
        parse_voc_xml(_write(tmp_path, body))
    assert info.value.line is None and isinstance(info.value, ValueError)


def test_objects_optional_when_allowed(tmp_path: Path) -> None:
    ann = parse_voc_xml(_write(tmp_path, ""), require_objects=False)
    assert ann.objects == () and ann.names == [] and ann.boxes.shape == (0, 4)


def test_malformed_and_unreadable_files(tmp_path: Path) -> None:
    path = tmp_path / "bad.xml"
    path.write_text("<annotation>\n<size><width>4</width>\n<height>3</height>\n</annotation>\n")
    with pytest.raises(AnnotationError, match=r"^malformed XML \(mismatched tag") as info:
        parse_voc_xml(path)
    assert info.value.line == 4
    path.write_bytes(b"\x00\x01garbage")
    with pytest.raises(AnnotationError, match="malformed XML") as info:
        parse_voc_xml(path)
    assert info.value.line == 1
    with pytest.raises(AnnotationError, match="cannot read the file") as info:
        parse_voc_xml(tmp_path / "missing.xml")
    assert info.value.line is None


def _ann(boxes: list[tuple[float, float, float, float]], size: tuple[int, int] | None, offset: float = 0.0):
    objects = tuple(XmlObject(f"o{k}", b) for k, b in enumerate(boxes, 1))
    return XmlAnnotation(size, objects, offset)


def test_check_object_boxes_hand_cases() -> None:
    size = (40, 30)
    boxes, messages = check_object_boxes(_ann([(0, 0, 39, 29), (5, 6, 7, 8)], size))
    np.testing.assert_array_equal(boxes, [[0, 0, 39, 29], [5, 6, 7, 8]])
    assert messages == []
    boxes, messages = check_object_boxes(_ann([(1, 2, 3, 4), (-2, 5, 45, 31)], size))
    np.testing.assert_array_equal(boxes, [[1, 2, 3, 4], [0, 5, 40, 30]])
    assert messages == [
        "object 2 (o2): box [-2, 5, 45, 31] sticks out of the 40x30 image: clipped to [0, 5, 40, 30]; image kept"
    ]
    # a rejected box: no boxes, and only the rejection is reported (the clipped box's "image kept" would lie)
    boxes, messages = check_object_boxes(_ann([(-2, 5, 45, 31), (9, 1, 4, 5), (40, 0, 45, 5)], size))
    assert boxes is None
    assert messages == [
        "object 2 (o2): bad box [9, 1, 4, 5]: x1 < x0 or y1 < y0",
        "object 3 (o3): bad box [40, 0, 45, 5]: entirely outside the 40x30 image",
    ]
    # the size argument overrides the file's (ILSVRC reads it from the image when the XML has none)
    assert check_object_boxes(_ann([(0, 0, 45, 5)], None), (50, 40))[1] == []
    assert check_object_boxes(_ann([(0, 0, 45, 5)], (40, 30)), (50, 40))[1] == []
    np.testing.assert_array_equal(check_object_boxes(_ann([(0, 0, 900, 5)], None))[0], [[0, 0, 900, 5]])
    # with an offset, the corners as written in the file are named too
    _, messages = check_object_boxes(_ann([(8.0, 0.0, 4.0, 4.0)], size, VOC_OFFSET))
    assert messages == ["object 1 (o1), written [9, 1, 5, 5]: bad box [8, 0, 4, 4]: x1 < x0 or y1 < y0"]
    boxes, messages = check_object_boxes(_ann([], size))
    assert boxes is not None and boxes.shape == (0, 4) and messages == []


corner = st.integers(-5, 60)


@settings(max_examples=50, deadline=None)
@given(
    boxes=st.lists(st.tuples(corner, corner, corner, corner), min_size=1, max_size=4),
    w=st.integers(1, 50),
    h=st.integers(1, 50),
    offset=st.sampled_from([0.0, VOC_OFFSET]),
)
def test_parse_then_check_matches_check_box_per_box(
    tmp_path_factory: pytest.TempPathFactory, boxes: list[tuple[int, ...]], w: int, h: int, offset: float
) -> None:
    """Reference: written + offset per corner, then standard.check_box box by box (any rejection → None)."""
    folder = tmp_path_factory.mktemp("x")
    size = f"<size><width>{w}</width><height>{h}</height></size>"
    ann = parse_voc_xml(_write(folder, "".join(_obj("a", b) for b in boxes), size=size), offset=offset)
    expected = np.asarray(boxes, dtype=np.float64) + offset
    np.testing.assert_array_equal(ann.boxes, expected)
    got, messages = check_object_boxes(ann)
    reference = [check_box(b, (w, h)) for b in expected]
    if any(box is None for box, _ in reference):
        assert got is None and len(messages) == sum(box is None for box, _ in reference)
    else:
        np.testing.assert_array_equal(got, [box for box, _ in reference])
        assert len(messages) == sum(m is not None for _, m in reference)
        assert all(m.endswith("image kept") for m in messages)
