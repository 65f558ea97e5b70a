"""Reader "standard" (wsolevaluation layout) and the helpers every reader shares (box policy, image sizes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import wsol.data.standard  # registers "standard"
from wsol.data.records import build_index
from wsol.data.standard import (
    check_box,
    derive_class_names,
    read_class_names,
    read_image_size,
    read_standard,
)
from wsol.io import ImageLoadError, load_image


def _image(path: Path, size: tuple[int, int] = (40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 10, 10)).save(path)


def _write(folder: Path, **files: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.txt").write_text(text)


IDS = ["001.Black_footed_Albatross/x_1.jpg", "001.Black_footed_Albatross/x_2.jpg", "002.Laysan_Albatross/y_1.jpg"]


def _cub_like(root: Path) -> Path:
    """A dataset in wsolevaluation's layout: images under root, metadata/test/*.txt."""
    for i in IDS:
        _image(root / i)
    _write(
        root / "metadata" / "test",
        image_ids="".join(f"{i}\n" for i in IDS),
        class_labels=f"{IDS[0]},0\n{IDS[1]},0\n{IDS[2]},1\n",
        image_sizes="".join(f"{i},40,30\n" for i in IDS),
        localization=f"{IDS[0]},1,2,30,20\n{IDS[0]},0,0,39,29\n{IDS[1]},5,5,40,30\n{IDS[2]},2.5,3,10,11\n",
    )
    return root


def test_reads_the_layout_into_records(tmp_path: Path) -> None:
    root = _cub_like(tmp_path / "CUB")
    index = build_index("standard", root, "test")
    assert index.problems == [] and index.name == "standard" and index.split == "test"
    assert [r.image_id for r in index.records] == IDS
    assert [r.labels for r in index.records] == [(0,), (0,), (1,)]
    assert index.records[0].path == root / IDS[0]
    np.testing.assert_array_equal(index.records[0].boxes, [[1, 2, 30, 20], [0, 0, 39, 29]])
    np.testing.assert_array_equal(index.records[0].box_labels, [0, 0])
    np.testing.assert_array_equal(index.records[2].boxes, [[2.5, 3, 10, 11]])
    assert all(r.size == (40, 30) for r in index.records)
    # class names from the CUB-like folders (one folder per class)
    assert index.class_names == ["001.Black_footed_Albatross", "002.Laysan_Albatross"]


def test_class_names_file_and_kwargs(tmp_path: Path) -> None:
    root = _cub_like(tmp_path / "CUB")
    (root / "metadata" / "test" / "class_names.txt").write_text("albatross\nlaysan\n")
    assert build_index("standard", root, "test").class_names == ["albatross", "laysan"]
    assert read_standard(root, "test", class_names=["a", "b", "c"]).class_names == ["a", "b", "c"]


def test_separate_metadata_and_image_roots(tmp_path: Path) -> None:
    """wsolevaluation keeps metadata/CUB/<split> apart from dataset/CUB."""
    data = _cub_like(tmp_path / "dataset" / "CUB")
    (data / "metadata").rename(tmp_path / "metadata")
    index = read_standard(data, "test", metadata_root=tmp_path / "metadata", image_root=data)
    assert len(index) == 3 and index.problems == []


def test_missing_folders_are_value_errors_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nowhere"):
        build_index("standard", tmp_path / "nowhere", "test")
    root = _cub_like(tmp_path / "CUB")
    with pytest.raises(ValueError, match=r"val.*splits found: test"):
        build_index("standard", root, "val")
    (root / "metadata" / "test" / "image_ids.txt").unlink()
    with pytest.raises(ValueError, match=r"image_ids\.txt"):
        build_index("standard", root, "test")


def test_bad_lines_missing_images_and_class_out_of_range(tmp_path: Path) -> None:
    root = _cub_like(tmp_path / "CUB")
    meta = root / "metadata" / "test"
    (meta / "localization.txt").write_text(f"{IDS[0]},1,2,30,20\n{IDS[1]},5,5,40\n{IDS[2]},2,3,10,11\n")
    (root / IDS[2]).unlink()
    index = read_standard(root, "test")
    assert [r.image_id for r in index.records] == [IDS[0]]
    by_id = {p.image_id: p for p in index.problems}
    # a line with a missing field: file and line named, item skipped
    assert by_id[IDS[1]].file == "metadata/test/localization.txt" and by_id[IDS[1]].line == 2
    assert "expected 5" in by_id[IDS[1]].message
    # image listed but absent on disk
    assert by_id[IDS[2]].file == "metadata/test/image_ids.txt" and by_id[IDS[2]].line == 3
    assert "not found" in by_id[IDS[2]].message
    # class id out of range once the class names are known
    (meta / "class_names.txt").write_text("only_one_class\n")
    (meta / "localization.txt").write_text(f"{IDS[0]},1,2,30,20\n{IDS[1]},5,5,40,30\n{IDS[2]},2,3,10,11\n")
    _image(root / IDS[2])
    index = read_standard(root, "test")
    assert [r.image_id for r in index.records] == IDS[:2]
    assert [(p.image_id, "out of range" in p.message) for p in index.problems] == [(IDS[2], True)]


def test_mask_layout_resolves_and_checks_mask_files(tmp_path: Path) -> None:
    root = tmp_path / "OpenImages"
    for i in ("val/c1/a.jpg", "val/c1/b.jpg"):
        _image(root / i)
    for m in ("val/c1/a_m1.png", "val/c1/a_m2.png", "val/c1/a_ignore.png"):
        _image(root / m)
    _write(
        root / "metadata" / "val",
        image_ids="val/c1/a.jpg\nval/c1/b.jpg\n",
        class_labels="val/c1/a.jpg,0\nval/c1/b.jpg,0\n",
        localization="val/c1/a.jpg,val/c1/a_m1.png,val/c1/a_ignore.png\nval/c1/a.jpg,val/c1/a_m2.png,\n"
        "val/c1/b.jpg,val/c1/b_m1.png,\n",
    )
    index = read_standard(root, "val")
    assert [r.image_id for r in index.records] == ["val/c1/a.jpg"]
    rec = index.records[0]
    assert rec.mask_paths == (root / "val/c1/a_m1.png", root / "val/c1/a_m2.png")
    assert rec.ignore_path == root / "val/c1/a_ignore.png" and len(rec.boxes) == 0
    assert len(index.problems) == 1 and "b_m1.png not found" in index.problems[0].message
    assert read_standard(root, "val", check_files=False).records[1].mask_paths == (root / "val/c1/b_m1.png",)


def test_derive_class_names() -> None:
    assert derive_class_names([("a/1.jpg", 0), ("b/2.jpg", 1), ("a/3.jpg", 0)], 3) == ["a", "b", "class_2"]
    assert derive_class_names([("x/a/1.jpg", 0), ("x/b/2.jpg", 1)], 2) == ["a", "b"]  # the parent folder
    assert derive_class_names([("val/1.jpg", 0), ("val/2.jpg", 1)], 2) == ["class_0", "class_1"]  # shared folder
    assert derive_class_names([("a/1.jpg", 0), ("b/2.jpg", 0)], 1) == ["class_0"]  # class over two folders
    assert derive_class_names([("1.jpg", 0)], 1) == ["class_0"]


def test_read_class_names_rejects_holes(tmp_path: Path) -> None:
    f = tmp_path / "names.txt"
    f.write_text("a\r\n b \n\n")
    assert read_class_names(f) == ["a", "b"]
    f.write_text("a\n\nc\n")
    with pytest.raises(ValueError, match=r"names.txt:2"):
        read_class_names(f)


# ----------------------------------------------------------------------------------------------------------
# Box policy
# ----------------------------------------------------------------------------------------------------------
def test_check_box_policy_hand_cases() -> None:
    size = (40, 30)
    box, msg = check_box([1, 2, 39, 29], size)
    assert msg is None and box.tolist() == [1, 2, 39, 29]
    box, msg = check_box([0, 0, 40, 30], size)  # x1 == W tolerated (x + width exports)
    assert msg is None and box.tolist() == [0, 0, 40, 30]
    box, msg = check_box([-3, 5, 45.5, 31], size)  # sticks out: clipped, kept, reported
    assert box.tolist() == [0, 5, 40, 30] and "clipped to [0, 5, 40, 30]" in msg
    assert check_box([10, 5, 4, 8], size)[0] is None  # x1 < x0
    assert "x1 < x0" in check_box([10, 5, 4, 8], size)[1]
    assert check_box([40, 0, 50, 10], size)[0] is None  # entirely right of the last column (39)
    assert "entirely outside" in check_box([-9, -9, -1, 5], size)[1]
    assert check_box([0, 0, float("nan"), 3], size)[0] is None
    assert check_box([0, 0, 1], size)[0] is None
    # without a size only the size-free rules apply
    box, msg = check_box([-2, 0, 1000, 900], None)
    assert box.tolist() == [0, 0, 1000, 900] and "clipped" in msg
    assert check_box([-5, 0, -1, 4], None)[0] is None


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(-50, 100, allow_nan=False), min_size=4, max_size=4),
    st.integers(1, 60),
    st.integers(1, 60),
)
def test_check_box_property(values: list[float], w: int, h: int) -> None:
    x0, y0, x1, y1 = values
    box, msg = check_box(values, (w, h))
    # inside the accepted range [0, W] x [0, H] and covering a pixel (x0 <= W - 1, y0 <= H - 1)
    inside = 0 <= x0 <= x1 <= w and 0 <= y0 <= y1 <= h and x0 <= w - 1 and y0 <= h - 1
    if box is None:
        assert msg is not None and not inside
        assert x1 < x0 or y1 < y0 or x1 < 0 or y1 < 0 or x0 > w - 1 or y0 > h - 1
        return
    assert 0 <= box[0] <= box[2] <= w and 0 <= box[1] <= box[3] <= h
    if inside:
        assert msg is None and box.tolist() == values
    else:  # clipping = intersection with [0, W] x [0, H]
        assert msg is not None and "clipped" in msg
        expected = [max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)]
        assert box.tolist() == expected


def test_read_image_size_honours_exif_orientation(tmp_path: Path) -> None:
    plain, rotated = tmp_path / "plain.jpg", tmp_path / "rotated.jpg"
    Image.new("RGB", (40, 20)).save(plain)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    Image.new("RGB", (40, 20)).save(rotated, exif=exif)
    assert read_image_size(plain) == (40, 20) == load_image(plain).size
    assert read_image_size(rotated) == (20, 40) == load_image(rotated).size
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(ImageLoadError, match=r"bad\.jpg"):
        read_image_size(tmp_path / "bad.jpg")
    with pytest.raises(ImageLoadError, match="no such file"):
        read_image_size(tmp_path / "none.jpg")


def test_module_registers_reader() -> None:
    from wsol.data.records import _READERS

    assert _READERS["standard"] is wsol.data.standard.read_standard
