"""Converter to the standard layout (``write_metadata``) and the ``wsol convert`` command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import wsol.data.cub
import wsol.data.folder
import wsol.data.standard  # noqa: F401  (registers the readers)
from wsol.cli import main
from wsol.commands.convert import parse_options
from wsol.data.convert import format_number, write_metadata
from wsol.data.metadata import read_metadata
from wsol.data.records import DatasetIndex, ImageRecord, build_index

CUB = {  # number: (path, size, class number, is_train, "x y w h")
    1: ("001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg", (40, 30), 1, 0, "5.0 6.0 20.0 10.0"),
    2: ("001.Black_footed_Albatross/Black_Footed_Albatross_0009_34.jpg", (40, 30), 1, 1, "0.0 0.0 40.0 30.0"),
    3: ("002.Laysan_Albatross/Laysan_Albatross_0002_1027.jpg", (32, 24), 2, 0, "1.5 2.5 10.25 3.1"),
    4: ("002.Laysan_Albatross/Laysan_Albatross_0003_1033.jpg", (24, 32), 2, 0, "0 0 24 32"),
}


def _image(path: Path, size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (5, 80, 160)).save(path)


def _make_cub(root: Path) -> Path:
    for path, size, *_ in CUB.values():
        _image(root / "images" / path, size)
    (root / "images.txt").write_text("".join(f"{n} {v[0]}\n" for n, v in CUB.items()))
    (root / "image_class_labels.txt").write_text("".join(f"{n} {v[2]}\n" for n, v in CUB.items()))
    (root / "train_test_split.txt").write_text("".join(f"{n} {v[3]}\n" for n, v in CUB.items()))
    (root / "bounding_boxes.txt").write_text("".join(f"{n} {v[4]}\n" for n, v in CUB.items()))
    (root / "classes.txt").write_text("1 001.Black_footed_Albatross\n2 002.Laysan_Albatross\n")
    return root


def _assert_same_records(a: DatasetIndex, b: DatasetIndex) -> None:
    assert a.class_names == b.class_names and len(a) == len(b)
    for ra, rb in zip(a.records, b.records, strict=True):
        assert (ra.image_id, ra.path, ra.labels, ra.size) == (rb.image_id, rb.path, rb.labels, rb.size)
        np.testing.assert_array_equal(ra.boxes, rb.boxes)  # bit-exact
        np.testing.assert_array_equal(ra.box_labels, rb.box_labels)


def test_format_number_round_trips() -> None:
    assert format_number(12.0) == "12" and format_number(-0.0) == "0" and format_number(12.5) == "12.5"
    for v in (1.5 + 2.5 + 10.25, 3.1 + 2.5, 1 / 3, 1e-7, 123456789.123):
        assert float(format_number(v)) == v


def test_round_trip_cub_to_standard_and_back(tmp_path: Path) -> None:
    root = _make_cub(tmp_path / "CUB_200_2011")
    cub = build_index("cub", root, "test", read_sizes=True)
    assert cub.problems == [] and len(cub) == 3
    out = tmp_path / "metadata" / "test"
    assert write_metadata(cub, out) == []
    assert (out / "image_ids.txt").read_text().splitlines() == [CUB[n][0] for n in (1, 3, 4)]
    assert (out / "localization.txt").read_text().splitlines()[0] == f"{CUB[1][0]},5,6,25,16"
    assert (out / "image_sizes.txt").read_text().splitlines()[2] == f"{CUB[4][0]},24,32"
    assert (out / "class_names.txt").read_text() == "001.Black_footed_Albatross\n002.Laysan_Albatross\n"
    back = build_index("standard", root, "test", metadata_root=tmp_path / "metadata", image_root=root / "images")
    assert back.problems == []
    _assert_same_records(cub, back)
    # the written folder is valid for the plain metadata reader too (wsol evaluate-maps, wsolevaluation)
    meta, problems = read_metadata(out)
    assert problems == [] and meta.localization == "boxes" and len(meta) == 3


def test_sizes_are_read_from_headers_when_unknown(tmp_path: Path) -> None:
    root = _make_cub(tmp_path / "CUB")
    cub = build_index("cub", root, "test")  # sizes unknown
    assert all(r.size is None for r in cub.records)
    write_metadata(cub, tmp_path / "m")
    assert (tmp_path / "m" / "image_sizes.txt").read_text().splitlines() == [
        f"{CUB[1][0]},40,30", f"{CUB[3][0]},32,24", f"{CUB[4][0]},24,32"
    ]  # fmt: skip


def test_items_the_layout_cannot_hold_are_reported_and_left_out(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.jpg", tmp_path / "bad.jpg"
    _image(good, (20, 10))
    bad.write_bytes(b"garbage")
    records = [
        ImageRecord("good.jpg", good, (0,), [[1, 1, 5, 5]]),
        ImageRecord("bad.jpg", bad, (0,), [[1, 1, 5, 5]]),  # unreadable: no size
        ImageRecord("nobox.jpg", good, (1,), size=(20, 10)),  # others have boxes
        ImageRecord("two.jpg", good, (0, 1), [[1, 1, 2, 2]], size=(20, 10)),  # two labels
        ImageRecord("a,b.jpg", good, (0,), [[1, 1, 2, 2]], size=(20, 10)),  # comma in the id
        ImageRecord("good.jpg", good, (1,), [[1, 1, 2, 2]], size=(20, 10)),  # duplicate id
        ImageRecord("out.jpg", good, (1,), [[30, 1, 40, 2]], size=(20, 10)),  # entirely outside
        ImageRecord("clip.jpg", good, (1,), [[-1, 1, 25, 8]], size=(20, 10)),  # clipped, kept
        ImageRecord("cls.jpg", good, (5,), [[1, 1, 2, 2]], size=(20, 10)),  # class out of range
    ]
    index = DatasetIndex("custom", tmp_path, "x", ["a", "b"], records)
    out = tmp_path / "meta"
    problems = write_metadata(index, out)
    left_out = sorted(p.image_id for p in problems if p.message.endswith("left out"))
    assert left_out == sorted(["bad.jpg", "nobox.jpg", "two.jpg", "a,b.jpg", "good.jpg", "out.jpg", "cls.jpg"])
    assert [p.image_id for p in problems if "clipped" in p.message] == ["clip.jpg"]
    assert (out / "image_ids.txt").read_text() == "good.jpg\nclip.jpg\n"
    assert (out / "localization.txt").read_text() == "good.jpg,1,1,5,5\nclip.jpg,0,1,20,8\n"
    meta, read_problems = read_metadata(out)
    assert read_problems == [] and meta.image_ids == ["good.jpg", "clip.jpg"]


def test_masks_unlabelled_and_stale_files(tmp_path: Path) -> None:
    img = tmp_path / "val" / "a.jpg"
    _image(img, (8, 8))
    m1, m2, ign = (tmp_path / "val" / n for n in ("a_m1.png", "a_m2.png", "a_ignore.png"))
    out = tmp_path / "meta"
    out.mkdir()
    (out / "localization.txt").write_text("stale\n")
    (out / "class_labels.txt").write_text("stale\n")
    rec = ImageRecord("val/a.jpg", img, (0,), mask_paths=(m1, m2), ignore_path=ign)
    assert write_metadata(DatasetIndex("s", tmp_path, "val", ["c"], [rec]), out, image_sizes=False) == []
    lines = (out / "localization.txt").read_text().splitlines()
    assert lines == ["val/a.jpg,val/a_m1.png,val/a_ignore.png", "val/a.jpg,val/a_m2.png,"]
    assert not (out / "image_sizes.txt").exists()
    # unlabelled, no localization: old class_labels / localization files removed
    plain = DatasetIndex("s", tmp_path, "val", [], [ImageRecord("val/a.jpg", img)])
    assert write_metadata(plain, out) == []
    assert sorted(p.name for p in out.iterdir()) == ["image_ids.txt", "image_sizes.txt"]
    with pytest.raises(ValueError, match="image_sizes=False with boxes"):
        write_metadata(DatasetIndex("s", tmp_path, "v", ["c"], [ImageRecord("x", img, (0,), [[0, 0, 1, 1]])]),
                       out, image_sizes=False)  # fmt: skip


def test_folder_with_float_boxes_round_trip(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    _image(root / "val" / "cat" / "1.jpg", (30, 20))
    _image(root / "val" / "dog" / "2.jpg", (30, 20))
    rows = ["image_id,x0,y0,x1,y1", "val/cat/1.jpg,0.1,0.2,12.345678901234,19", "val/dog/2.jpg,1,1,3,3"]
    (root / "boxes.csv").write_text("\n".join(rows) + "\n")
    index = build_index("folder", root, "val", read_sizes=True)
    write_metadata(index, root / "metadata" / "val")
    _assert_same_records(index, build_index("standard", root, "val"))


# ----------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------
def test_cli_convert_clean_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _make_cub(tmp_path / "CUB")
    out = tmp_path / "out" / "test"
    code = main(["convert", "--dataset", "cub", "--root", str(root), "--split", "test", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "wrote 3 images" in captured.out and captured.err == ""
    assert len((out / "localization.txt").read_text().splitlines()) == 3


def test_cli_convert_reports_bad_items_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _make_cub(tmp_path / "CUB")
    (root / "bounding_boxes.txt").write_text("1 5 6 20 10\n2 0 0 40 30\n3 1.5 2.5 10.25\n4 0 0 24 32\n")
    (root / "images" / CUB[4][0]).unlink()
    out = tmp_path / "out"
    code = main(["convert", "--dataset", "cub", "--root", str(root), "--split", "test", "--out", str(out),
                 "--option", "read_sizes=true"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 1
    err = captured.err.splitlines()
    assert len(err) == 2
    assert f"bounding_boxes.txt:3 [{CUB[3][0]}]" in err[0]
    assert f"images.txt:4 [{CUB[4][0]}]" in err[1] and "not found" in err[1]
    assert (out / "image_ids.txt").read_text() == f"{CUB[1][0]}\n"


def test_cli_convert_argument_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "out")
    assert main(["convert", "--dataset", "cub", "--root", str(tmp_path / "none"), "--split", "test", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "error: dataset folder" in err and str(tmp_path / "none") in err
    root = _make_cub(tmp_path / "CUB")
    base = ["convert", "--root", str(root), "--split", "test", "--out", out]
    assert main([*base, "--dataset", "cubb"]) == 2
    assert "unknown dataset 'cubb'" in capsys.readouterr().err
    assert main([*base, "--dataset", "cub", "--option", "colour=red"]) == 2
    assert "colour" in capsys.readouterr().err
    assert main([*base, "--dataset", "cub", "--option", "oops"]) == 2
    assert "key=value" in capsys.readouterr().err
    (root / "images.txt").unlink()
    assert main([*base, "--dataset", "cub"]) == 2
    assert "images.txt" in capsys.readouterr().err


def test_parse_options() -> None:
    assert parse_options(["a=1", "read-sizes=TRUE", "b=none", "c=x=y", "d="]) == {
        "a": "1", "read_sizes": True, "b": None, "c": "x=y", "d": ""
    }  # fmt: skip
    with pytest.raises(ValueError, match="twice"):
        parse_options(["a=1", "a=2"])
