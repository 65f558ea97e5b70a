"""Metadata reader: the wsolevaluation layout, and clear per-line problems for bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wsol.data.metadata import MetadataError, read_metadata, read_predictions


def _write(folder: Path, **files: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.txt").write_text(text)
    return folder


GOOD = {
    "image_ids": "a/1.jpg\na/2.jpg\nb/3.jpg\n",
    "class_labels": "a/1.jpg,0\na/2.jpg,0\nb/3.jpg,1\n",
    "image_sizes": "a/1.jpg,500,300\na/2.jpg,100,100\nb/3.jpg,40,60\n",
    "localization": "a/1.jpg,10,20,110,220\na/1.jpg,0,0,499,299\na/2.jpg,5,5,50,50\nb/3.jpg,1,2,39,59\n",
}


def test_reads_box_metadata(tmp_path: Path) -> None:
    meta, problems = read_metadata(_write(tmp_path, **GOOD))
    assert problems == [] and meta.rejected == {}
    assert meta.image_ids == ["a/1.jpg", "a/2.jpg", "b/3.jpg"] and len(meta) == 3
    assert meta.localization == "boxes"
    assert meta.class_labels == {"a/1.jpg": 0, "a/2.jpg": 0, "b/3.jpg": 1}
    assert meta.image_sizes["a/1.jpg"] == (500, 300)
    np.testing.assert_array_equal(meta.boxes["a/1.jpg"], [[10, 20, 110, 220], [0, 0, 499, 299]])
    assert set(meta.files) == {"image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt"}


def test_reads_mask_metadata_with_ignore_on_first_line_only(tmp_path: Path) -> None:
    folder = _write(
        tmp_path,
        image_ids="x/1.jpg\nx/2.jpg\r\n",
        class_labels="x/1.jpg,3\nx/2.jpg,4\n",
        localization="x/1.jpg,x/1_m1.png,x/1_ignore.png\nx/1.jpg,x/1_m2.png,\nx/2.jpg,x/2_m.png,\n",
    )
    meta, problems = read_metadata(folder)
    assert problems == [] and meta.localization == "masks"
    assert meta.mask_paths == {"x/1.jpg": ["x/1_m1.png", "x/1_m2.png"], "x/2.jpg": ["x/2_m.png"]}
    assert meta.ignore_paths == {"x/1.jpg": "x/1_ignore.png", "x/2.jpg": None}


def test_bad_lines_are_reported_with_file_line_and_id(tmp_path: Path) -> None:
    folder = _write(
        tmp_path,
        image_ids="a\nb\nc\nd\ne\nf\ng\na\n",
        class_labels="a,0\nb,cat\nc,1\nd,2\ne,0\nf,1\ng,1\nzzz,1\n",
        image_sizes="a,100,100\nb,100,100\nc,100\nd,100,100\ne,100,100\nf,100,100\ng,10,10\n",
        localization="a,1,2,30,40\nb,1,2,3,4\nc,1,2,3,4\nd,9,2,3,4\ne,1,2,x,4\nf,1,2,300,40\ng,-1,0,5,5\n",
    )
    meta, problems = read_metadata(folder)
    text = [str(p) for p in problems]
    assert meta.image_ids == ["a"]
    assert set(meta.rejected) == {"b", "c", "d", "e", "f", "g"}
    expected = [
        "image_ids.txt:8: duplicate image id 'a' (first on line 1); ignored",
        "class_labels.txt:2 [b]: class must be a non-negative integer, got 'cat'",
        "class_labels.txt:8: image id 'zzz' is not listed in image_ids.txt",
        "image_sizes.txt:3 [c]: expected 3 comma-separated fields <image_id>,<width>,<height>, got 2",
        "localization.txt:4 [d]: bad box [9.0, 2.0, 3.0, 4.0]: x1 < x0 or y1 < y0",
        "localization.txt:5 [e]: box coordinates must be numbers, got '1,2,x,4'",
        "localization.txt:6 [f]: bad box [1.0, 2.0, 300.0, 40.0]: box extends beyond the 100x100 image",
        "localization.txt:7 [g]: bad box [-1.0, 0.0, 5.0, 5.0]: negative coordinate",
    ]
    for line in expected:
        assert line in text, (line, text)
    # one message per (file, id): the bad box line is not repeated as "no valid entry"
    assert sum("[d]" in t for t in text) == 1
    assert any("image_sizes.txt:3" in r for r in meta.rejected["c"])
    assert problems == sorted(problems, key=lambda p: (p.file != "image_ids.txt", p.file, p.line is None))


def test_ids_missing_from_one_file(tmp_path: Path) -> None:
    folder = _write(
        tmp_path,
        image_ids="a\nb\n",
        image_sizes="a,10,10\n",
        localization="a,1,1,5,5\nb,1,1,5,5\n",
    )
    meta, problems = read_metadata(folder)
    assert meta.image_ids == ["a"]
    assert [str(p) for p in problems] == ["image_sizes.txt [b]: no valid entry in image_sizes.txt"]


def test_boxes_without_sizes_are_unusable(tmp_path: Path) -> None:
    meta, problems = read_metadata(_write(tmp_path, image_ids="a\n", localization="a,1,1,5,5\n"))
    assert meta.image_ids == [] and "image_sizes.txt is missing" in meta.rejected["a"][0]
    assert len(problems) == 1


def test_mask_lines_with_wrong_structure(tmp_path: Path) -> None:
    folder = _write(
        tmp_path,
        image_ids="a\nb\nc\n",
        localization="a,a1.png,a_ig.png\na,a2.png,again.png\nb,,b_ig.png\nc,c.png,c_ig.png\n",
    )
    meta, problems = read_metadata(folder)
    assert meta.image_ids == ["c"]
    text = [str(p) for p in problems]
    assert "localization.txt:2 [a]: ignore mask given again (only on the image's first line)" in text
    assert "localization.txt:3 [b]: empty mask path" in text


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        (lambda p: p / "nope", "does not exist"),
        (lambda p: _write(p / "m", class_labels="a,1\n"), "image_ids.txt' is missing"),
        (lambda p: _write(p / "m", image_ids="\n\n"), "empty metadata"),
    ],
)
def test_unusable_folders_raise(tmp_path: Path, setup, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MetadataError, match=match):
        read_metadata(setup(tmp_path))


def test_read_predictions(tmp_path: Path) -> None:
    path = tmp_path / "pred.txt"
    path.write_text("a,1\nb,two\nc,3\na,2\nd\n")
    preds, problems = read_predictions(path)
    assert preds == {"a": 1, "c": 3}
    assert [str(p) for p in problems] == [
        "pred.txt:2 [b]: predicted class must be a non-negative integer, got 'two'",
        "pred.txt:4 [a]: duplicate prediction",
        "pred.txt:5 [d]: expected 2 comma-separated fields <image_id>,<predicted class>, got 1",
    ]
    with pytest.raises(MetadataError, match="does not exist"):
        read_predictions(tmp_path / "missing.txt")
