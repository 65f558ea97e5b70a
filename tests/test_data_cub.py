"""Reader "cub": CUB-200-2011's own files, written here in exactly the distributed format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import wsol.data.cub  # noqa: F401  (registers "cub")
from wsol.data.cub import cub_box, read_cub
from wsol.data.records import build_index

IMAGES = {  # number: (path, size, class number, is_train, "x y w h")
    1: ("001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg", (40, 30), 1, 0, "5.0 6.0 20.0 10.0"),
    2: ("001.Black_footed_Albatross/Black_Footed_Albatross_0009_34.jpg", (40, 30), 1, 1, "0.0 0.0 40.0 30.0"),
    3: ("002.Laysan_Albatross/Laysan_Albatross_0002_1027.jpg", (32, 24), 2, 0, "1.5 2.5 10.25 3.0"),
    4: ("002.Laysan_Albatross/Laysan_Albatross_0003_1033.jpg", (32, 24), 2, 1, "3.0 4.0 5.0 6.0"),
}


def _make_cub(root: Path, images: dict | None = None) -> Path:
    images = IMAGES if images is None else images
    for path, size, *_ in images.values():
        (root / "images" / path).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (20, 120, 60)).save(root / "images" / path)
    (root / "images.txt").write_text("".join(f"{n} {v[0]}\n" for n, v in images.items()))
    (root / "image_class_labels.txt").write_text("".join(f"{n} {v[2]}\n" for n, v in images.items()))
    (root / "train_test_split.txt").write_text("".join(f"{n} {v[3]}\n" for n, v in images.items()))
    (root / "bounding_boxes.txt").write_text("".join(f"{n} {v[4]}\n" for n, v in images.items()))
    (root / "classes.txt").write_text("1 001.Black_footed_Albatross\n2 002.Laysan_Albatross\n")
    return root


def test_box_conversion_matches_wsolevaluation_metadata() -> None:
    # CUB bounding_boxes.txt line 1 is "1 60.0 27.0 325.0 304.0"; wsolevaluation's metadata/CUB/test/
    # localization.txt has "001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg,60,27,385,331".
    assert cub_box(60.0, 27.0, 325.0, 304.0) == [60, 27, 385, 331]
    # image 3: "3 14.0 112.0 388.0 186.0" -> "...Black_Footed_Albatross_0002_55.jpg,14,112,402,298"
    assert cub_box(14.0, 112.0, 388.0, 186.0) == [14, 112, 402, 298]


def test_reads_test_and_train_splits(tmp_path: Path) -> None:
    root = _make_cub(tmp_path / "CUB_200_2011")
    test = build_index("cub", root, "test")
    assert test.problems == [] and test.name == "cub" and test.split == "test"
    assert test.class_names == ["001.Black_footed_Albatross", "002.Laysan_Albatross"]
    assert [r.image_id for r in test.records] == [IMAGES[1][0], IMAGES[3][0]]
    assert [r.labels for r in test.records] == [(0,), (1,)]  # 1-based class numbers -> 0-based ids
    assert test.records[0].path == root / "images" / IMAGES[1][0]
    np.testing.assert_array_equal(test.records[0].boxes, [[5, 6, 25, 16]])  # x, y, x + w, y + h
    np.testing.assert_array_equal(test.records[1].boxes, [[1.5, 2.5, 11.75, 5.5]])
    np.testing.assert_array_equal(test.records[1].box_labels, [1])
    assert test.records[0].size is None and test.records[0].mask_paths == ()
    train = read_cub(root, "train")
    assert [r.image_id for r in train.records] == [IMAGES[2][0], IMAGES[4][0]]
    np.testing.assert_array_equal(train.records[0].boxes, [[0, 0, 40, 30]])  # x1 == W accepted
    assert [r.image_id for r in read_cub(root, "all").records] == [v[0] for v in IMAGES.values()]


def test_read_sizes_and_segmentations(tmp_path: Path) -> None:
    root = _make_cub(tmp_path / "CUB_200_2011")
    seg = root / "segmentations" / IMAGES[1][0].replace(".jpg", ".png")
    seg.parent.mkdir(parents=True)
    Image.new("L", (40, 30), 255).save(seg)
    index = read_cub(root, "test", read_sizes=True)
    assert [r.size for r in index.records] == [(40, 30), (32, 24)]
    assert index.records[0].mask_paths == (seg,) and index.records[1].mask_paths == ()


def test_without_classes_txt_names_come_from_folders(tmp_path: Path) -> None:
    root = _make_cub(tmp_path / "CUB")
    (root / "classes.txt").unlink()
    assert read_cub(root, "all").class_names == ["001.Black_footed_Albatross", "002.Laysan_Albatross"]


def test_missing_folder_file_or_bad_split_are_value_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nope"):
        read_cub(tmp_path / "nope", "test")
    root = _make_cub(tmp_path / "CUB")
    with pytest.raises(ValueError, match="unknown CUB split 'val'"):
        read_cub(root, "val")
    (root / "bounding_boxes.txt").unlink()
    with pytest.raises(ValueError, match=r"bounding_boxes\.txt"):
        read_cub(root, "test")
    assert len(read_cub(root, "test", boxes=False)) == 2  # boxes not needed then
    (root / "train_test_split.txt").unlink()
    with pytest.raises(ValueError, match=r"train_test_split\.txt"):
        read_cub(root, "test", boxes=False)
    assert len(read_cub(root, "all", boxes=False)) == 4


def test_line_with_missing_field_is_reported_with_file_and_line(tmp_path: Path) -> None:
    root = _make_cub(tmp_path / "CUB")
    (root / "bounding_boxes.txt").write_text("1 5.0 6.0 20.0 10.0\n2 0 0 40 30\n3 1.5 2.5 10.25\n4 3 4 5 6\n")
    index = read_cub(root, "test")
    assert [r.image_id for r in index.records] == [IMAGES[1][0]]
    (p,) = index.problems
    assert (p.file, p.line, p.image_id) == ("bounding_boxes.txt", 3, IMAGES[3][0])
    assert "<x> <y> <width> <height>" in p.message
    (root / "images.txt").write_text(f"1 {IMAGES[1][0]}\n2\n3 {IMAGES[3][0]}\n4 {IMAGES[4][0]}\n")
    index = read_cub(root, "test")
    assert any(p.file == "images.txt" and p.line == 2 for p in index.problems)
    assert any(p.file == "image_class_labels.txt" and "not listed" in p.message for p in index.problems)


def test_missing_image_and_class_out_of_range(tmp_path: Path) -> None:
    root = _make_cub(tmp_path / "CUB")
    (root / "images" / IMAGES[3][0]).unlink()
    (root / "image_class_labels.txt").write_text("1 7\n2 1\n3 2\n4 2\n")
    index = read_cub(root, "test")
    assert index.records == []
    by_id = {p.image_id: p for p in index.problems}
    assert by_id[IMAGES[3][0]].file == "images.txt" and by_id[IMAGES[3][0]].line == 3
    assert "not found" in by_id[IMAGES[3][0]].message
    assert "class 7 out of range" in by_id[IMAGES[1][0]].message


def test_bad_boxes_rejected_or_clipped(tmp_path: Path) -> None:
    root = _make_cub(tmp_path / "CUB")
    # image 1 (40x30): sticks out -> clipped and kept; image 3: negative width -> x1 < x0
    (root / "bounding_boxes.txt").write_text("1 30 20 20 20\n2 0 0 40 30\n3 5 5 -2 3\n4 3 4 5 6\n")
    index = read_cub(root, "test", read_sizes=True)
    assert [r.image_id for r in index.records] == [IMAGES[1][0]]
    np.testing.assert_array_equal(index.records[0].boxes, [[30, 20, 40, 30]])
    msgs = {p.image_id: (p.line, p.message) for p in index.problems}
    assert msgs[IMAGES[1][0]][0] == 1 and "clipped to [30, 20, 40, 30]; image kept" in msgs[IMAGES[1][0]][1]
    assert msgs[IMAGES[3][0]][0] == 3 and "x1 < x0" in msgs[IMAGES[3][0]][1]
    # entirely outside the image: left out
    (root / "bounding_boxes.txt").write_text("1 100 100 5 5\n2 0 0 40 30\n3 1 1 2 2\n4 3 4 5 6\n")
    index = read_cub(root, "test", read_sizes=True)
    assert [r.image_id for r in index.records] == [IMAGES[3][0]]
    assert "entirely outside the 40x30 image" in index.problems[0].message


def test_problems_of_other_splits_are_not_reported(tmp_path: Path) -> None:
    root = _make_cub(tmp_path / "CUB")
    (root / "bounding_boxes.txt").write_text("1 5 6 20 10\n2 0 0 40\n3 1 1 2 2\n4 3 4 5 6\n")  # 2 is a train image
    assert read_cub(root, "test").problems == []
    train = read_cub(root, "train")
    assert [(p.line, p.image_id) for p in train.problems] == [(2, IMAGES[2][0])]
    assert [r.image_id for r in train.records] == [IMAGES[4][0]]


def test_missing_entries_are_reported(tmp_path: Path) -> None:
    root = _make_cub(tmp_path / "CUB")
    (root / "bounding_boxes.txt").write_text("1 5 6 20 10\n2 0 0 40 30\n4 3 4 5 6\n")
    (root / "train_test_split.txt").write_text("1 0\n2 1\n3 0\n")
    index = read_cub(root, "test")
    assert [r.image_id for r in index.records] == [IMAGES[1][0]]
    messages = sorted((p.image_id, p.message) for p in index.problems)
    assert messages == [
        (IMAGES[3][0], "no bounding box for image 3"),
        (IMAGES[4][0], "image 4 has no train/test entry"),
    ]
