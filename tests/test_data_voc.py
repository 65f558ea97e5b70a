"""wsol.data.voc: the PASCAL VOC reader on generated devkit folders (values, years, difficult, bad input)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import wsol.data.voc  # noqa: F401  (registers "voc")
from wsol.data.records import build_index
from wsol.data.voc import VOC_CLASSES, difficult_only_mask, read_voc
from wsol.data.xml_annotations import VOC_OFFSET, parse_voc_xml
from wsol.localizer import ClassPrediction, Prediction, voc_xml
from wsol.metrics.classification import mean_average_precision

Obj = tuple[str, tuple[object, object, object, object], int | None]  # name, (xmin, ymin, xmax, ymax), difficult


def xml_text(width: int, height: int, objects: list[Obj], filename: str = "x.jpg") -> str:
    """A devkit-style annotation (difficult None = no <difficult> tag, as in some VOC2012 files)."""
    parts = [
        f"<annotation><folder>VOC</folder><filename>{filename}</filename>",
        f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size><segmented>0</segmented>",
    ]
    for name, (x0, y0, x1, y1), diff in objects:
        tag = "" if diff is None else f"<difficult>{diff}</difficult>"
        parts.append(
            f"<object><name>{name}</name><pose>Left</pose><truncated>0</truncated>{tag}"
            f"<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        )
    return "\n".join([*parts, "</annotation>"])


def make_year(folder: Path, images: dict[str, str | None], splits: dict[str, list[str]], size=(40, 30)) -> None:
    """VOC<year> folder: ``images`` maps id → XML text (None = no XML file); every id gets a JPEG."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for image_id, xml in images.items():
        Image.new("RGB", size, (10, 20, 30)).save(folder / "JPEGImages" / f"{image_id}.jpg")
        if xml is not None:
            (folder / "Annotations" / f"{image_id}.xml").write_text(xml)
    for split, ids in splits.items():
        (folder / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    (folder / "ImageSets" / "Main" / "dog_train.txt").write_text("000001  1\n")  # per-class lists are not splits


GOOD = {
    "000001": xml_text(40, 30, [("dog", (1, 2, 40, 30), 0), ("person", (5, 6, 9, 12), 1)]),
    "000002": xml_text(40, 30, [("cat", (3, 3, 8, 8), 1), ("cat", (10, 4, 20, 14), 1), ("dog", (2, 2, 3, 3), None)]),
    "000003": xml_text(40, 30, [("tvmonitor", (1.5, 1, 39.5, 29), 0)]),
}


@pytest.fixture
def voc07(tmp_path: Path) -> Path:
    folder = tmp_path / "VOCdevkit" / "VOC2007"
    make_year(folder, GOOD, {"trainval": ["000001", "000002", "000003"], "test": ["000002"]})
    return folder


def test_classes_are_the_devkit_order() -> None:
    assert len(VOC_CLASSES) == 20 and VOC_CLASSES[0] == "aeroplane" and VOC_CLASSES[-1] == "tvmonitor"
    assert VOC_CLASSES.index("dog") == 11 and VOC_CLASSES.index("person") == 14 and VOC_CLASSES.index("cat") == 7


def test_reads_boxes_labels_difficult_and_sizes(voc07: Path) -> None:
    idx = build_index("voc", voc07, "trainval")
    assert idx.name == "voc" and idx.multilabel and idx.class_names == list(VOC_CLASSES) and idx.problems == []
    assert [r.image_id for r in idx.records] == ["000001", "000002", "000003"]
    r1, r2, r3 = idx.records
    assert r1.path == voc07 / "JPEGImages" / "000001.jpg" and r1.size == (40, 30)
    # 1-based inclusive VOC corners → 0-based inclusive: minus one everywhere
    np.testing.assert_array_equal(r1.boxes, [[0, 1, 39, 29], [4, 5, 8, 11]])
    np.testing.assert_array_equal(r1.box_labels, [11, 14])
    np.testing.assert_array_equal(r1.difficult, [False, True])
    assert r1.labels == (11, 14)  # difficult-only person included by default
    np.testing.assert_array_equal(r2.box_labels, [7, 7, 11])
    np.testing.assert_array_equal(r2.difficult, [True, True, False])  # missing <difficult> = 0
    assert r2.labels == (7, 11)
    np.testing.assert_array_equal(r3.boxes, [[0.5, 0, 38.5, 28]])  # fractional corners kept
    t = idx.target(0)
    assert t.dtype == torch.float32 and t.nonzero().flatten().tolist() == [11, 14]
    assert len(build_index("voc", voc07, "test")) == 1


def test_difficult_only_classes_and_the_devkit_ignore_mask(voc07: Path) -> None:
    idx = read_voc(voc07, "trainval")
    mask = difficult_only_mask(idx)
    assert mask.shape == (3, 20)
    assert np.argwhere(mask).tolist() == [[0, 14], [1, 7]]  # person in 000001, cat in 000002
    excl = read_voc(voc07, "trainval", difficult_labels="exclude")
    assert [r.labels for r in excl.records] == [(11,), (11,), (19,)]
    np.testing.assert_array_equal(excl.records[0].difficult, [False, True])  # boxes are kept either way
    # devkit AP: an ignored pair is out of the ranking, so scoring it highest changes nothing for "person"
    targets = np.stack([idx.target(i).numpy() for i in range(3)])
    scores = np.zeros((3, 20))
    scores[0, 14] = 5.0  # the difficult-only person gets the top score
    scores[:, 11] = [3.0, 2.0, 1.0]
    res = mean_average_precision(scores, targets, ignore=mask)
    assert np.isnan(res.ap[14]) and res.ap[11] == pytest.approx(1.0)
    assert 14 in res.skipped


def test_inverse_of_voc_xml_writer(tmp_path: Path) -> None:
    boxes = np.array([[0, 0, 9, 4], [3, 7, 31, 19]])
    cls = ClassPrediction(11, "dog", 0.9, boxes, np.array([1.0, 0.5]))
    pred = Prediction((20, 32), (20, 32), [cls], np.zeros((1, 2, 2), np.float32))
    path = tmp_path / "p.xml"
    path.write_text(voc_xml(pred, "p.jpg"))
    ann = parse_voc_xml(path, offset=VOC_OFFSET)
    assert ann.size == (32, 20)
    assert [o.box for o in ann.objects] == [tuple(map(float, b)) for b in boxes]
    assert [(o.name, o.difficult) for o in ann.objects] == [("dog", False), ("dog", False)]


def test_devkit_years_and_the_0712_union(tmp_path: Path) -> None:
    devkit = tmp_path / "VOCdevkit"
    make_year(devkit / "VOC2007", {"000001": GOOD["000001"]}, {"trainval": ["000001"]})
    make_year(devkit / "VOC2012", {"2008_000002": GOOD["000002"], "000001": GOOD["000003"]},
              {"trainval": ["2008_000002", "000001"]})  # fmt: skip
    both = read_voc(devkit, "trainval", years=(2007, 2012))
    assert [r.image_id for r in both.records] == ["VOC2007/000001", "VOC2012/2008_000002", "VOC2012/000001"]
    assert both.records[2].path == devkit / "VOC2012" / "JPEGImages" / "000001.jpg"
    assert both.records[2].labels == (19,) and both.records[0].labels == (11, 14)
    only12 = read_voc(devkit, "trainval", year=2012)
    assert [r.image_id for r in only12.records] == ["2008_000002", "000001"]
    with pytest.raises(ValueError, match=r"exactly one VOC<year>.*VOC2007, VOC2012"):
        read_voc(devkit, "trainval")
    with pytest.raises(ValueError, match=r"VOC2010.*does not exist"):
        read_voc(devkit, "trainval", year=2010)
    with pytest.raises(ValueError, match="single VOC year folder"):
        read_voc(devkit / "VOC2007", "trainval", years=(2007, 2012))
    with pytest.raises(ValueError, match="either year or years"):
        read_voc(devkit, "trainval", year=2007, years=(2012,))
    single = tmp_path / "solo" / "VOCdevkit"
    make_year(single / "VOC2007", {"000001": GOOD["000001"]}, {"val": ["000001"]})
    assert [r.image_id for r in read_voc(single, "val").records] == ["000001"]  # the only year, no prefix


def test_missing_folders_and_files_name_them(tmp_path: Path, voc07: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        read_voc(tmp_path / "nowhere", "trainval")
    with pytest.raises(ValueError, match=r"Main/nosplit\.txt does not exist \(splits there: test, trainval\)"):
        read_voc(voc07, "nosplit")
    with pytest.raises(ValueError, match="plain name"):
        read_voc(voc07, "../trainval")
    with pytest.raises(ValueError, match="difficult_labels"):
        read_voc(voc07, "trainval", difficult_labels="ignore")  # type: ignore[arg-type]
    (voc07 / "JPEGImages").rename(voc07 / "images")
    with pytest.raises(ValueError, match=r"VOC images: folder .*JPEGImages does not exist"):
        read_voc(voc07, "trainval")


BAD = {
    "b_malformed": "<annotation><size><width>40</width>\n<height>30</height></size><object>",
    "b_noobject": "<annotation><size><width>40</width><height>30</height></size></annotation>",
    "b_nosize": "<annotation><object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax>"
    "<ymax>2</ymax></bndbox></object></annotation>",
    "b_nobndbox": "<annotation><size><width>40</width><height>30</height></size>"
    "<object><name>dog</name></object></annotation>",
    "b_nonnumeric": xml_text(40, 30, [("dog", (1, 1, "ten", 5), 0)]),
    "b_nan": xml_text(40, 30, [("dog", (1, 1, "nan", 5), 0)]),
    "b_outside": xml_text(40, 30, [("dog", (1, 1, 5, 5), 0), ("cat", (42, 2, 45, 10), 0)]),  # x0 = 41 > W - 1
    "b_flipped": xml_text(40, 30, [("dog", (9, 1, 5, 5), 0)]),
    "b_unknown": xml_text(40, 30, [("unicorn", (1, 1, 5, 5), 0)]),
    "b_baddifficult": xml_text(40, 30, [("dog", (1, 1, 5, 5), "yes")]),
    "b_noxml": None,
}
EXPECTED = {
    "b_malformed": (r"malformed XML", 2),
    "b_noobject": (r"no <object>", None),
    "b_nosize": (r"no <size>", None),
    "b_nobndbox": (r"object 1 \(dog\): no <bndbox>", None),
    "b_nonnumeric": (r"<xmax> is not a number: 'ten'", None),
    "b_nan": (r"<xmax> is not finite", None),
    "b_outside": (r"^object 2 \(cat\), written \[42, 2, 45, 10\]: bad box \[41, 1, 44, 9\]: entirely outside "
                  r"the 40x30 image; image skipped$", None),
    "b_flipped": (r"^object 1 \(dog\), written \[9, 1, 5, 5\]: bad box \[8, 0, 4, 4\]: x1 < x0 .*image skipped$",
                  None),
    "b_unknown": (r"unknown class name\(s\) \['unicorn'\]", None),
    "b_baddifficult": (r"<difficult> must be 0 or 1", None),
    "b_noxml": (r"annotation file does not exist", None),
}


def test_bad_annotations_are_reported_and_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "VOC2007"
    ids = ["000001", *BAD, "ghost", "000001"]
    make_year(folder, {"000001": GOOD["000001"], **BAD}, {"train": ids})
    (folder / "ImageSets" / "Main" / "train.txt").write_text("".join(f"{i}\n" for i in ids) + "x y\n")
    idx = read_voc(folder, "train")
    assert [r.image_id for r in idx.records] == ["000001"]
    by_id = {p.image_id: p for p in idx.problems}
    for image_id, (pattern, line) in EXPECTED.items():
        p = by_id[image_id]
        assert (p.file, p.line) == (f"Annotations/{image_id}.xml", line), p
        assert re.search(pattern, p.message), p
    ghost = by_id["ghost"]  # listed, neither XML nor JPEG
    assert (ghost.file, ghost.message) == ("Annotations/ghost.xml", "annotation file does not exist")
    dup = [p for p in idx.problems if p.image_id == "000001"]
    assert len(dup) == 1 and dup[0].file == "ImageSets/Main/train.txt" and dup[0].line == len(ids)
    assert "duplicate of line 1" in dup[0].message
    extra = [p for p in idx.problems if p.image_id == "x"]
    assert len(extra) == 1 and extra[0].line == len(ids) + 1
    assert len(idx.problems) == len(BAD) + 3


def test_boxes_sticking_out_are_clipped_and_kept(tmp_path: Path) -> None:
    """The shared policy (wsol.data.standard.check_box) after the 1-based → 0-based conversion."""
    folder = tmp_path / "VOC2007"
    out = xml_text(40, 30, [("dog", (0, 1, 44, 33), 0), ("cat", (3, 3, 8, 8), 1)])  # → [-1, 0, 43, 32]
    edge = xml_text(40, 30, [("dog", (2, 2, 41, 31), 0)])  # → [1, 1, 40, 30]: x1 == W, y1 == H tolerated
    make_year(folder, {"out": out, "edge": edge}, {"train": ["out", "edge"]})
    idx = read_voc(folder, "train")
    assert [r.image_id for r in idx.records] == ["out", "edge"]
    np.testing.assert_array_equal(idx.records[0].boxes, [[0, 0, 40, 30], [2, 2, 7, 7]])
    np.testing.assert_array_equal(idx.records[0].box_labels, [11, 7])
    np.testing.assert_array_equal(idx.records[1].boxes, [[1, 1, 40, 30]])
    (p,) = idx.problems  # one message, for the clipped box only
    assert (p.file, p.line, p.image_id) == ("Annotations/out.xml", None, "out")
    assert p.message == (
        "object 1 (dog), written [0, 1, 44, 33]: box [-1, 0, 43, 32] sticks out of the 40x30 image: "
        "clipped to [0, 0, 40, 30]; image kept"
    )


def test_image_listed_but_absent(voc07: Path) -> None:
    (voc07 / "JPEGImages" / "000002.jpg").unlink()
    idx = read_voc(voc07, "trainval")
    assert [r.image_id for r in idx.records] == ["000001", "000003"]
    (p,) = idx.problems
    assert (p.file, p.image_id, p.message) == ("JPEGImages/000002.jpg", "000002", "image listed but absent")
