"""wsol.data.stanford40: the Stanford 40 Actions reader and Moreaux et al. 2018's val/test split."""

from __future__ import annotations

import hashlib
import io
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import wsol.data.stanford40  # noqa: F401  (registers "stanford40")
from wsol.data.records import build_index
from wsol.data.stanford40 import moreaux_split, read_actions, read_stanford40

_buf = io.BytesIO()
Image.new("RGB", (50, 40), (90, 60, 30)).save(_buf, "JPEG")
JPEG = _buf.getvalue()  # one tiny 50×40 JPEG, written under every name (the reader does not decode)


def s40_xml(name: str, action: str, boxes: list[tuple[object, ...]], size: tuple[int, int] = (50, 40)) -> str:
    """The official file's shape: alphabetical tags, <action> and <name>person</name> per object."""
    objs = "".join(
        f"<object><action>{action}</action><bndbox><xmax>{x1}</xmax><xmin>{x0}</xmin><ymax>{y1}</ymax>"
        f"<ymin>{y0}</ymin></bndbox><name>person</name></object>"
        for x0, y0, x1, y1 in boxes
    )
    return (f"<annotation>\n<filename>{name}</filename>\n{objs}\n<size><depth>3</depth><height>{size[1]}</height>"
            f"<width>{size[0]}</width></size>\n</annotation>\n")  # fmt: skip


def make_s40(root: Path, counts: dict[str, tuple[int, int]]) -> None:
    """``counts``: action → (train images, test images); every image gets one box (i % 7 + 1, 2, 30, 33)."""
    for sub in ("JPEGImages", "XMLAnnotations", "ImageSplits"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    lines = ["action_name\tnumber_of_images"]
    number = 0
    for action, (n_train, n_test) in counts.items():
        lines.append(f"{action}\t{n_train + n_test}")
        for part, n in (("train", n_train), ("test", n_test)):
            names = []
            for _ in range(n):
                number += 1
                name = f"{action}_{number:03d}.jpg"
                names.append(name)
                (root / "JPEGImages" / name).write_bytes(JPEG)
                box = (number % 7 + 1, 2, 30, 33)
                (root / "XMLAnnotations" / f"{Path(name).stem}.xml").write_text(s40_xml(name, action, [box]))
            (root / "ImageSplits" / f"{action}_{part}.txt").write_text("".join(f"{n}\n" for n in names))
    (root / "ImageSplits" / "actions.txt").write_text("\n".join(lines) + "\n")


ACTIONS40 = [f"action_{(7 * i) % 40:02d}" for i in range(40)]  # not alphabetical: ids follow actions.txt
TEST40 = {a: 50 + (i % 9) for i, a in enumerate(ACTIONS40)}  # 50 … 58 official test images per action


@pytest.fixture(scope="module")
def s40(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("s40") / "Stanford40"
    make_s40(root, {a: (2, TEST40[a]) for a in ACTIONS40})
    return root


def test_moreaux_split_sizes_and_per_class_counts(s40: Path) -> None:
    splits = {s: build_index("stanford40", s40, s) for s in ("train", "val", "test", "official_test")}
    assert all(not idx.problems for idx in splits.values())
    assert splits["test"].class_names == ACTIONS40 and splits["test"].num_classes == 40
    total = sum(TEST40.values())
    assert [len(splits[s]) for s in ("train", "val", "test", "official_test")] == [80, total - 2000, 2000, total]
    test_counts = Counter(ACTIONS40[r.label] for r in splits["test"].records)
    val_counts = Counter(ACTIONS40[r.label] for r in splits["val"].records)
    assert set(test_counts.values()) == {50}
    assert {a: val_counts.get(a, 0) for a in ACTIONS40} == {a: TEST40[a] - 50 for a in ACTIONS40}
    ids = {s: [r.image_id for r in idx.records] for s, idx in splits.items()}
    assert not set(ids["test"]) & set(ids["val"])
    assert sorted(ids["test"] + ids["val"]) == sorted(ids["official_test"])
    # records keep the official order: actions in actions.txt order, names in file order
    listed = [n for a in ACTIONS40 for n in (s40 / "ImageSplits" / f"{a}_test.txt").read_text().split()]
    assert ids["official_test"] == listed
    assert ids["test"] == [n for n in listed if n in set(ids["test"])]


def test_moreaux_test_set_is_the_documented_sha256_draw(s40: Path) -> None:
    test = read_stanford40(s40, "test")
    listed = (s40 / "ImageSplits" / f"{ACTIONS40[3]}_test.txt").read_text().split()
    expected = sorted(listed, key=lambda n: hashlib.sha256(f"0:{n}".encode()).hexdigest())[:50]
    got = [r.image_id for r in test.records if r.label == 3]
    assert sorted(got) == sorted(expected) and got == [n for n in listed if n in set(expected)]
    other = read_stanford40(s40, "test", seed=1)
    assert Counter(r.label for r in other.records) == Counter({i: 50 for i in range(40)})
    assert {r.image_id for r in other.records} != {r.image_id for r in test.records}
    assert [r.image_id for r in read_stanford40(s40, "test").records] == [r.image_id for r in test.records]
    small = read_stanford40(s40, "test", test_per_class=10)
    assert len(small) == 400
    test_set, val_set = moreaux_split(["a", "b", "c"], 2, seed=0)
    assert len(test_set) == 2 and test_set | val_set == {"a", "b", "c"} and not test_set & val_set


def test_values_boxes_labels_sizes(s40: Path) -> None:
    train = read_stanford40(s40, "train")
    r = train.records[0]
    assert (r.image_id, r.labels) == (f"{ACTIONS40[0]}_001.jpg", (0,))
    assert r.path == s40 / "JPEGImages" / r.image_id and r.size == (50, 40)
    np.testing.assert_array_equal(r.boxes, [[1, 1, 29, 32]])  # (2, 2, 30, 33) 1-based → 0-based
    np.testing.assert_array_equal(r.box_labels, [0])
    np.testing.assert_array_equal(r.difficult, [False])
    r5 = train.records[5]  # the third action's second train image; its xmin is number % 7 + 1 (1-based)
    name = r5.image_id
    number = int(name.rsplit("_", 1)[1][:3])
    np.testing.assert_array_equal(r5.boxes, [[number % 7, 1, 29, 32]])
    assert r5.labels == (2,) and not train.multilabel and train.target(5).item() == 2


def small_s40(root: Path) -> Path:
    make_s40(root, {"riding": (1, 3), "reading": (1, 3), "phoning": (1, 3)})
    return root


def test_missing_folders_and_files_name_them(tmp_path: Path) -> None:
    root = small_s40(tmp_path / "S40")
    with pytest.raises(ValueError, match="unknown Stanford 40 split 'validation'"):
        read_stanford40(root, "validation")
    with pytest.raises(ValueError, match="test_per_class must be a positive int"):
        read_stanford40(root, "test", test_per_class=0)
    with pytest.raises(ValueError, match="needs at least 50 per action"):
        read_stanford40(root, "test")  # 3 test images per action
    with pytest.raises(ValueError, match=r"riding_test\.txt lists 3 images"):
        read_stanford40(root, "val", test_per_class=4)
    assert len(read_stanford40(root, "test", test_per_class=2)) == 6
    assert len(read_stanford40(root, "val", test_per_class=2)) == 3
    with pytest.raises(ValueError, match=r"root: folder .*nowhere does not exist"):
        read_stanford40(tmp_path / "nowhere", "train")
    (root / "ImageSplits" / "reading_train.txt").unlink()
    with pytest.raises(ValueError, match=r"split of action 'reading': file .*reading_train\.txt does not exist"):
        read_stanford40(root, "train")
    assert len(read_stanford40(root, "official_test")) == 9  # the test lists are all there
    (root / "ImageSplits" / "actions.txt").unlink()
    with pytest.raises(ValueError, match=r"action list: file .*actions\.txt does not exist"):
        read_stanford40(root, "train")
    (root / "XMLAnnotations").rename(root / "xml")
    with pytest.raises(ValueError, match=r"annotations: folder .*XMLAnnotations does not exist"):
        read_stanford40(root, "train")


def test_actions_file(tmp_path: Path) -> None:
    path = tmp_path / "actions.txt"
    path.write_text("action_name\tnumber_of_images\n\nb 10\na 20\n")
    assert read_actions(path) == ["b", "a"]
    path.write_text("action_name\tnumber_of_images\nb 10\nb 20\n")
    with pytest.raises(ValueError, match=r"actions\.txt:3: action 'b' listed twice"):
        read_actions(path)
    path.write_text("action_name\n")
    with pytest.raises(ValueError, match="lists no action"):
        read_actions(path)


def test_bad_annotations_are_reported_and_skipped(tmp_path: Path) -> None:
    root = small_s40(tmp_path / "S40")
    xml = root / "XMLAnnotations"
    # test images: riding_002..004, reading_006..008, phoning_010..012
    (xml / "riding_002.xml").write_text("<annotation><size><width>50</width>\n<height>")
    (xml / "riding_003.xml").write_text(s40_xml("riding_003.jpg", "riding", []))
    (xml / "riding_004.xml").write_text(s40_xml("riding_004.jpg", "swimming", [(1, 1, 5, 5)]))
    (xml / "reading_006.xml").write_text(s40_xml("reading_006.jpg", "phoning", [(1, 1, 5, 5)]))
    (xml / "reading_007.xml").write_text(s40_xml("reading_007.jpg", "reading", [(1, 1, 5, 5), (51, 1, 53, 5)]))
    (xml / "reading_008.xml").write_text(s40_xml("reading_008.jpg", "reading", [(1, "x", 5, 5)]))
    (xml / "phoning_010.xml").write_text(
        "<annotation><object><action>phoning</action><name>person</name></object>"
        "<size><width>50</width><height>40</height></size></annotation>"
    )
    (xml / "phoning_011.xml").unlink()
    (root / "JPEGImages" / "phoning_012.jpg").unlink()
    with (root / "ImageSplits" / "phoning_test.txt").open("a") as f:
        f.write("riding_002.jpg\n")  # listed under two actions
    idx = read_stanford40(root, "official_test")
    assert idx.records == []
    got = {(p.file, p.image_id): (p.line, p.message) for p in idx.problems}
    expected = {
        ("XMLAnnotations/riding_002.xml", "riding_002.jpg"): (2, r"malformed XML"),
        ("XMLAnnotations/riding_003.xml", "riding_003.jpg"): (None, r"no <object>"),
        ("XMLAnnotations/riding_004.xml", "riding_004.jpg"): (None, r"unknown action 'swimming'"),
        ("XMLAnnotations/reading_006.xml", "reading_006.jpg"): (None, r"'phoning' but .* listed under 'reading'"),
        ("XMLAnnotations/reading_007.xml", "reading_007.jpg"): (
            None,
            r"^object 2 \(reading\), written \[51, 1, 53, 5\]: bad box \[50, 0, 52, 4\]: entirely outside the 50x40",
        ),
        ("XMLAnnotations/reading_008.xml", "reading_008.jpg"): (None, r"<ymin> is not a number: 'x'"),
        ("XMLAnnotations/phoning_010.xml", "phoning_010.jpg"): (None, r"object 1 \(phoning\): no <bndbox>"),
        ("XMLAnnotations/phoning_011.xml", "phoning_011.jpg"): (None, r"annotation file does not exist"),
        ("JPEGImages/phoning_012.jpg", "phoning_012.jpg"): (None, r"image listed but absent"),
        ("ImageSplits/phoning_test.txt", "riding_002.jpg"): (4, r"also listed in ImageSplits/riding_test\.txt"),
    }
    assert set(got) == set(expected)
    for key, (line, pattern) in expected.items():
        assert got[key][0] == line and re.search(pattern, got[key][1]), (key, got[key])
    parsed = [m for (f, _), (_, m) in got.items() if f.startswith("XML") and "exist" not in m]
    assert len(parsed) == 7 and all(m.endswith("; image skipped") for m in parsed)


def test_boxes_sticking_out_are_clipped_and_kept(tmp_path: Path) -> None:
    """1-based → 0-based, then the shared policy (wsol.data.standard.check_box): clipped, reported, kept."""
    root = small_s40(tmp_path / "S40")
    xml = root / "XMLAnnotations"
    # riding_001 (train): one box one pixel past the right and bottom edges, one inside
    (xml / "riding_001.xml").write_text(s40_xml("riding_001.jpg", "riding", [(0, 2, 52, 42), (3, 4, 10, 20)]))
    # reading_005 (train): xmax == width + 1 → x1 == W, tolerated unchanged like every reader
    (xml / "reading_005.xml").write_text(s40_xml("reading_005.jpg", "reading", [(2, 2, 51, 41)]))
    idx = read_stanford40(root, "train")
    assert [r.image_id for r in idx.records] == ["riding_001.jpg", "reading_005.jpg", "phoning_009.jpg"]
    np.testing.assert_array_equal(idx.records[0].boxes, [[0, 1, 50, 40], [2, 3, 9, 19]])
    np.testing.assert_array_equal(idx.records[0].box_labels, [0, 0])
    np.testing.assert_array_equal(idx.records[1].boxes, [[1, 1, 50, 40]])
    (p,) = idx.problems
    assert (p.file, p.line, p.image_id) == ("XMLAnnotations/riding_001.xml", None, "riding_001.jpg")
    assert p.message == (
        "object 1 (riding), written [0, 2, 52, 42]: box [-1, 1, 51, 41] sticks out of the 50x40 image: "
        "clipped to [0, 1, 50, 40]; image kept"
    )


def test_a_damaged_image_does_not_move_the_split(s40: Path, tmp_path: Path) -> None:
    before = [r.image_id for r in read_stanford40(s40, "test").records]
    victim = before[7]
    xml = s40 / "XMLAnnotations" / f"{Path(victim).stem}.xml"
    saved = xml.read_text()
    try:
        xml.write_text("<annotation>")
        after = read_stanford40(s40, "test")
    finally:
        xml.write_text(saved)
    assert [r.image_id for r in after.records] == [n for n in before if n != victim]
    assert [p.image_id for p in after.problems] == [victim]
