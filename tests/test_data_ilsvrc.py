"""Reader "ilsvrc": ImageNet folders and PASCAL-style XML annotations, written here in the real format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import wsol.data.ilsvrc  # noqa: F401  (registers "ilsvrc")
from wsol.data.ilsvrc import read_ilsvrc
from wsol.data.records import build_index

TENCH, GOLDFISH, SHARK = "n01440764", "n01443537", "n01484850"
MAPPING = (
    f"{SHARK} great white shark, white shark\n{TENCH} tench, Tinca tinca\n"
    f"{GOLDFISH} goldfish, Carassius auratus\n"
)


def _image(path: Path, size: tuple[int, int] = (50, 40)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 90, 200)).save(path, format="JPEG")


def _xml(path: Path, objects: list[tuple[str, tuple[float, ...]]], size: tuple[int, int] | None = (50, 40)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    size_xml = f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>" if size else ""
    objs = "".join(
        f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
        f"<bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for name, b in objects
    )
    path.write_text(
        f"<annotation><folder>val</folder><filename>{path.stem}</filename><source><database>ILSVRC_2012</database>"
        f"</source>{size_xml}<segmented>0</segmented>{objs}</annotation>\n"
    )


def _val(n: int) -> str:
    return f"ILSVRC2012_val_{n:08d}"


def _make_imagenet(root: Path) -> Path:
    for wnid, k in ((TENCH, 1), (TENCH, 2), (GOLDFISH, 1)):
        _image(root / "train" / wnid / f"{wnid}_{k}.JPEG")
    _xml(root / "annotations" / "train" / TENCH / f"{TENCH}_1.xml", [(TENCH, (3, 4, 30, 20))])
    for n in range(1, 4):
        _image(root / "val" / f"{_val(n)}.JPEG")
    ann = root / "annotations" / "val"
    _xml(ann / f"{_val(1)}.xml", [(GOLDFISH, (11, 10, 44, 19))])
    _xml(ann / f"{_val(2)}.xml", [(TENCH, (4, 4, 49, 16)), (TENCH, (2, 6, 43, 20))])  # two objects
    _xml(ann / f"{_val(3)}.xml", [(SHARK, (0, 0, 49, 39))])
    (root / "LOC_synset_mapping.txt").write_text(MAPPING)
    return root


def test_reads_val_with_boxes_from_xml(tmp_path: Path) -> None:
    root = _make_imagenet(tmp_path / "imagenet")
    index = build_index("ilsvrc", root, "val")
    assert index.problems == [] and index.name == "ilsvrc"
    # sorted wnids: the standard ImageNet class index; names from the mapping file
    assert index.class_names == ["tench, Tinca tinca", "goldfish, Carassius auratus", "great white shark, white shark"]
    assert [r.image_id for r in index.records] == [f"val/{_val(n)}.JPEG" for n in (1, 2, 3)]
    assert [r.labels for r in index.records] == [(1,), (0,), (2,)]
    np.testing.assert_array_equal(index.records[0].boxes, [[11, 10, 44, 19]])  # as written in the XML
    np.testing.assert_array_equal(index.records[1].boxes, [[4, 4, 49, 16], [2, 6, 43, 20]])
    np.testing.assert_array_equal(index.records[1].box_labels, [0, 0])
    assert index.records[0].size == (50, 40) and index.records[0].path == root / "val" / f"{_val(1)}.JPEG"


def test_reads_train_folders_with_optional_boxes(tmp_path: Path) -> None:
    root = _make_imagenet(tmp_path / "imagenet")
    index = read_ilsvrc(root, "train")
    assert index.problems == []
    ids = [r.image_id for r in index.records]
    expected = [f"train/{TENCH}/{TENCH}_1.JPEG", f"train/{TENCH}/{TENCH}_2.JPEG", f"train/{GOLDFISH}/{GOLDFISH}_1.JPEG"]
    assert ids == expected
    assert [r.labels for r in index.records] == [(0,), (0,), (1,)]
    np.testing.assert_array_equal(index.records[0].boxes, [[3, 4, 30, 20]])
    assert len(index.records[1].boxes) == 0 and index.records[1].size is None
    assert read_ilsvrc(root, "train", read_sizes=True).records[1].size == (50, 40)
    assert all(len(r.boxes) == 0 for r in read_ilsvrc(root, "train", boxes=False).records)


def test_class_order_without_mapping_file(tmp_path: Path) -> None:
    root = _make_imagenet(tmp_path / "imagenet")
    (root / "LOC_synset_mapping.txt").unlink()
    # the train folders define the classes (sorted wnids): the shark of val image 3 is unknown
    index = read_ilsvrc(root, "val")
    assert index.class_names == [TENCH, GOLDFISH]
    assert [r.image_id for r in index.records] == [f"val/{_val(1)}.JPEG", f"val/{_val(2)}.JPEG"]
    (p,) = index.problems
    assert p.image_id == f"val/{_val(3)}.JPEG" and "unknown synset 'n01484850'" in p.message
    # a val-only copy: the wnids of the XML files
    import shutil

    shutil.rmtree(root / "train")
    assert read_ilsvrc(root, "val").class_names == [TENCH, GOLDFISH, SHARK]


def test_kaggle_layout_is_found(tmp_path: Path) -> None:
    top = tmp_path / "imagenet-object-localization-challenge"
    data = top / "ILSVRC" / "Data" / "CLS-LOC"
    _image(data / "val" / f"{_val(1)}.JPEG")
    _xml(top / "ILSVRC" / "Annotations" / "CLS-LOC" / "val" / f"{_val(1)}.xml", [(GOLDFISH, (1, 2, 3, 4))])
    (top / "LOC_synset_mapping.txt").write_text(MAPPING)
    for root in (top, top / "ILSVRC"):  # mapping file in root or in its parent
        index = read_ilsvrc(root, "val")
        assert [r.labels for r in index.records] == [(1,)] and index.problems == []
        assert index.records[0].image_id == f"val/{_val(1)}.JPEG"


def test_val_in_class_folders_and_explicit_roots(tmp_path: Path) -> None:
    images, ann = tmp_path / "img", tmp_path / "bbox_val"
    _image(images / "val" / GOLDFISH / f"{_val(7)}.JPEG")
    _image(images / "val" / TENCH / f"{_val(8)}.JPEG")
    _xml(ann / f"{_val(7)}.xml", [(GOLDFISH, (5, 5, 9, 9))])
    (tmp_path / "synset_words.txt").write_text(MAPPING)
    index = read_ilsvrc(tmp_path, "val", image_root=images, annotation_root=ann)
    assert [r.image_id for r in index.records] == [f"val/{TENCH}/{_val(8)}.JPEG", f"val/{GOLDFISH}/{_val(7)}.JPEG"]
    assert [r.labels for r in index.records] == [(0,), (1,)]
    assert len(index.records[0].boxes) == 0  # class from the folder; no XML -> no box
    np.testing.assert_array_equal(index.records[1].boxes, [[5, 5, 9, 9]])


def test_bad_annotations_are_reported_and_skipped(tmp_path: Path) -> None:
    root = _make_imagenet(tmp_path / "imagenet")
    ann = root / "annotations" / "val"
    for n in range(4, 12):
        _image(root / "val" / f"{_val(n)}.JPEG")
    _xml(ann / f"{_val(4)}.xml", [])  # no object
    (ann / f"{_val(5)}.xml").write_text("<annotation>\n<object><name>n01440764</name>\n</annotation>\n")  # malformed
    _xml(ann / f"{_val(6)}.xml", [(TENCH, (1, 1, 5, 5)), (GOLDFISH, (1, 1, 5, 5))])  # two classes
    # 7: no XML at all
    _xml(ann / f"{_val(8)}.xml", [("n99999999", (1, 1, 5, 5))])  # unknown wnid
    _xml(ann / f"{_val(9)}.xml", [(TENCH, (60, 50, 70, 55))])  # entirely outside the 50x40 image
    _xml(ann / f"{_val(10)}.xml", [(TENCH, (10, 10, 55, 39))])  # sticks out: clipped, kept
    text = (ann / f"{_val(1)}.xml").read_text().replace("<xmax>44</xmax>", "")
    (ann / f"{_val(11)}.xml").write_text(text)  # missing field
    _xml(ann / f"{_val(12)}.xml", [(TENCH, (1, 1, 5, 5)), (TENCH, (9, 2, 4, 6))])  # x1 < x0: whole image out
    _image(root / "val" / f"{_val(12)}.JPEG")
    index = read_ilsvrc(root, "val")
    kept = [r.image_id for r in index.records]
    assert kept == [f"val/{_val(n)}.JPEG" for n in (1, 2, 3, 10)]
    np.testing.assert_array_equal(index.records[3].boxes, [[10, 10, 50, 39]])
    by_id = {p.image_id: p for p in index.problems}
    assert set(by_id) == {f"val/{_val(n)}.JPEG" for n in (4, 5, 6, 7, 8, 9, 10, 11, 12)}
    assert len(index.problems) == 9

    def msg(n: int) -> str:
        return by_id[f"val/{_val(n)}.JPEG"].message

    assert "no <object>" in msg(4)
    p5 = by_id[f"val/{_val(5)}.JPEG"]
    assert p5.file == f"annotations/val/{_val(5)}.xml" and p5.line == 3 and "malformed XML" in p5.message
    assert "several classes" in msg(6)
    assert "no annotation XML" in msg(7) and by_id[f"val/{_val(7)}.JPEG"].file == f"val/{_val(7)}.JPEG"
    assert "unknown synset 'n99999999'" in msg(8)
    assert msg(9) == "object 1 (n01440764): bad box [60, 50, 70, 55]: entirely outside the 50x40 image"
    assert msg(10) == (
        "object 1 (n01440764): box [10, 10, 55, 39] sticks out of the 50x40 image: clipped to [10, 10, 50, 39]; "
        "image kept"
    )
    assert msg(11) == "object 1 (n01443537) <bndbox>: no <xmax>"
    assert msg(12) == "object 2 (n01440764): bad box [9, 2, 4, 6]: x1 < x0 or y1 < y0"


def test_train_xml_of_another_class_is_reported(tmp_path: Path) -> None:
    root = _make_imagenet(tmp_path / "imagenet")
    _xml(root / "annotations" / "train" / TENCH / f"{TENCH}_2.xml", [(GOLDFISH, (3, 4, 30, 20))])
    index = read_ilsvrc(root, "train")
    assert len(index) == 2 and "objects of n01443537 in an image of class folder n01440764" in index.problems[0].message


def test_missing_folders_are_value_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="absent"):
        read_ilsvrc(tmp_path / "absent", "val")
    root = _make_imagenet(tmp_path / "imagenet")
    with pytest.raises(ValueError, match=r"test.*folders found: annotations, train, val"):
        read_ilsvrc(root, "test")
    with pytest.raises(ValueError, match="no_such_ann"):
        read_ilsvrc(root, "val", annotation_root=root / "no_such_ann")
    with pytest.raises(ValueError, match=r"no_such\.txt"):
        read_ilsvrc(root, "val", synset_file=root / "no_such.txt")
