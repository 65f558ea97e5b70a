"""Reader "folder": one folder per class, optional box CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import wsol.data.folder  # noqa: F401  (registers "folder")
from wsol.data.folder import read_box_csv, read_folder
from wsol.data.records import build_index


def _image(path: Path, size: tuple[int, int] = (30, 20)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (1, 2, 3)).save(path)


def _make(root: Path) -> Path:
    for rel in ("train/cat/1.jpg", "train/cat/2.PNG", "train/dog/sub/3.jpeg", "val/cat/4.jpg", "val/bird/5.jpg"):
        _image(root / rel)
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    return root


def test_reads_class_folders_with_a_shared_class_order(tmp_path: Path) -> None:
    root = _make(tmp_path / "photos")
    train = build_index("folder", root, "train")
    val = read_folder(root, "val")
    # the sorted union of the class folders of every split: ids agree across splits
    assert train.class_names == val.class_names == ["bird", "cat", "dog"]
    assert [(r.image_id, r.labels) for r in train.records] == [
        ("train/cat/1.jpg", (1,)), ("train/cat/2.PNG", (1,)), ("train/dog/sub/3.jpeg", (2,))
    ]  # fmt: skip
    assert [(r.image_id, r.labels) for r in val.records] == [("val/bird/5.jpg", (0,)), ("val/cat/4.jpg", (1,))]
    assert train.problems == [] and train.records[0].path == root / "train/cat/1.jpg"
    assert all(len(r.boxes) == 0 and r.size is None for r in train.records)
    assert read_folder(root, "train", read_sizes=True).records[0].size == (30, 20)


def test_split_all_reads_class_folders_in_root(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    for rel in ("b/1.jpg", "a/2.jpg"):
        _image(root / rel)
    (root / "README.md").write_text("ignored")
    index = read_folder(root, "all")
    assert index.class_names == ["a", "b"] and index.problems == []
    assert [(r.image_id, r.labels) for r in index.records] == [("a/2.jpg", (0,)), ("b/1.jpg", (1,))]


def test_class_names_file_or_argument_fix_the_order(tmp_path: Path) -> None:
    root = _make(tmp_path / "photos")
    (root / "class_names.txt").write_text("dog\ncat\nbird\n")
    assert read_folder(root, "train").records[0].labels == (1,)
    index = read_folder(root, "train", class_names=["cat"])
    assert [r.image_id for r in index.records] == ["train/cat/1.jpg", "train/cat/2.PNG"]
    (p,) = index.problems
    assert p.file == "train/dog" and "not among the class names" in p.message


def test_box_csv(tmp_path: Path) -> None:
    root = _make(tmp_path / "photos")
    (root / "boxes.csv").write_text(
        "image_id,x0,y0,x1,y1\n"
        "train/cat/1.jpg,1,2,10,12\n"
        "train/cat/1.jpg,0.5,3.25,29,19\n"
        "val/cat/4.jpg,5,5,6,6\n"  # another split: ignored
        "train/dog/sub/3.jpeg,4,4,8\n"  # missing field: line 5
        "train/cat/2.PNG,1,x,2,3\n"  # not a number: line 6
        "train/cat/missing.jpg,1,1,2,2\n"  # no such image: line 7
    )
    index = read_folder(root, "train")
    assert [r.image_id for r in index.records] == ["train/cat/1.jpg"]
    np.testing.assert_array_equal(index.records[0].boxes, [[1, 2, 10, 12], [0.5, 3.25, 29, 19]])
    np.testing.assert_array_equal(index.records[0].box_labels, [1, 1])
    got = sorted((p.line, p.image_id, p.file) for p in index.problems)
    assert got == [(5, "train/dog/sub/3.jpeg", "boxes.csv"), (6, "train/cat/2.PNG", "boxes.csv"),
                   (7, "train/cat/missing.jpg", "boxes.csv")]  # fmt: skip
    val = read_folder(root, "val")
    np.testing.assert_array_equal(val.records[1].boxes, [[5, 5, 6, 6]])


def test_box_policy_with_sizes(tmp_path: Path) -> None:
    root = _make(tmp_path / "photos")
    csv = tmp_path / "elsewhere.csv"
    csv.write_text("image_id,x0,y0,x1,y1\ntrain/cat/1.jpg,-2,3,40,19\ntrain/cat/2.PNG,31,1,40,5\n")
    index = read_folder(root, "train", boxes=csv, read_sizes=True)
    assert [r.image_id for r in index.records] == ["train/cat/1.jpg", "train/dog/sub/3.jpeg"]
    np.testing.assert_array_equal(index.records[0].boxes, [[0, 3, 30, 19]])  # clipped to the 30x20 image
    msgs = {p.image_id: p.message for p in index.problems}
    assert "clipped" in msgs["train/cat/1.jpg"] and "entirely outside the 30x20 image" in msgs["train/cat/2.PNG"]
    csv.write_text("image_id,x0,y0,x1,y1\ntrain/cat/1.jpg,9,3,4,19\n")
    assert "x1 < x0" in read_folder(root, "train", boxes=csv).problems[0].message


def test_unreadable_image_and_stray_image(tmp_path: Path) -> None:
    root = _make(tmp_path / "photos")
    (root / "train" / "cat" / "broken.jpg").write_bytes(b"garbage")
    _image(root / "train" / "stray.jpg")
    index = read_folder(root, "train", read_sizes=True)
    assert "train/cat/broken.jpg" not in [r.image_id for r in index.records]
    msgs = {p.file: p.message for p in index.problems}
    assert "unreadable image" in msgs["train/cat/broken.jpg"]
    assert "outside any class folder" in msgs["train/stray.jpg"]


def test_bad_input_value_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="missing_root"):
        read_folder(tmp_path / "missing_root", "train")
    root = _make(tmp_path / "photos")
    with pytest.raises(ValueError, match=r"test.*folders in .*: train, val"):
        read_folder(root, "test")
    (root / "boxes.csv").write_text("train/cat/1.jpg,1,2,3,4\n")
    with pytest.raises(ValueError, match=r"boxes\.csv:1: the first line must be the header"):
        read_folder(root, "train")
    with pytest.raises(ValueError, match=r"nope\.csv"):
        read_folder(root, "train", boxes=root / "nope.csv")
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(ValueError, match="no class folder"):
        read_folder(tmp_path / "empty", "train")


def test_read_box_csv_accepts_bom_and_blank_lines(tmp_path: Path) -> None:
    f = tmp_path / "b.csv"
    f.write_bytes("\ufeffimage_id, x0, y0, x1, y1\r\na/1.jpg,1,2,3,4\r\n\r\n".encode())
    boxes, problems = read_box_csv(f, tmp_path)
    assert problems == [] and boxes == {"a/1.jpg": [(2, [1.0, 2.0, 3.0, 4.0])]}
