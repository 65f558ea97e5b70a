"""``wsol evaluate-maps`` end to end on fixtures written in the real on-disk format."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from wsol.cli import main


def _rect(x0: int, y0: int, x1: int, y1: int, size: int = 224) -> np.ndarray:
    m = np.zeros((size, size), dtype=np.float32)
    m[y0 : y1 + 1, x0 : x1 + 1] = 1.0
    return m


def _box_fixture(root: Path, bad_items: bool = True) -> tuple[Path, Path]:
    meta, maps = root / "meta", root / "maps"
    (maps / "cls").mkdir(parents=True)
    meta.mkdir()
    ids = ["cls/good.jpg", "cls/miss.jpg"]
    sizes = {"cls/good.jpg": (448, 448), "cls/miss.jpg": (224, 224)}
    boxes = {"cls/good.jpg": "60,100,259,199", "cls/miss.jpg": "150,150,200,200"}
    # good: GT -> [30, 50, 129, 99] in the 224 frame; the map's box [30, 50, 130, 100] has IoU 5000/5151.
    np.save(maps / "cls/good.jpg.npy", _rect(30, 50, 129, 99))
    np.save(maps / "cls/miss.jpg.npy", _rect(10, 10, 50, 50))  # IoU 0 at every threshold
    if bad_items:
        ids += ["cls/nofile.jpg", "cls/nan.jpg", "cls/3d.jpg", "cls/badbox.jpg", "cls/garbage.jpg"]
        for i in ids[2:]:
            sizes[i] = (100, 100)
            boxes[i] = "10,10,50,50"
        boxes["cls/badbox.jpg"] = "10,10,5,50"
        nan_map = _rect(1, 1, 5, 5)
        nan_map[0, 0] = np.nan
        np.save(maps / "cls/nan.jpg.npy", nan_map)
        np.save(maps / "cls/3d.jpg.npy", np.zeros((3, 8, 8)))
        np.save(maps / "cls/badbox.jpg.npy", _rect(1, 1, 5, 5))
        (maps / "cls/garbage.jpg.npy").write_bytes(b"this is not a numpy file")
    (meta / "image_ids.txt").write_text("".join(f"{i}\n" for i in ids))
    (meta / "class_labels.txt").write_text("".join(f"{i},{k % 2}\n" for k, i in enumerate(ids)))
    (meta / "image_sizes.txt").write_text("".join(f"{i},{sizes[i][0]},{sizes[i][1]}\n" for i in ids))
    (meta / "localization.txt").write_text("".join(f"{i},{boxes[i]}\n" for i in ids))
    return meta, maps


def test_box_metrics_with_bad_items(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    meta, maps = _box_fixture(tmp_path)
    pred = tmp_path / "pred.txt"
    pred.write_text("cls/good.jpg,0\ncls/miss.jpg,0\ncls/nan.jpg,1\n")  # good: right class, miss: wrong
    out, plot = tmp_path / "out" / "report.json", tmp_path / "out" / "curve.png"
    code = main(
        ["evaluate-maps", "--metadata", str(meta), "--scoremaps", str(maps), "--predictions", str(pred),
         "--interval", "0.01", "--out", str(out), "--plot", str(plot)]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    report = json.loads(out.read_text())
    assert report["num_items"] == 7 and report["num_evaluated"] == 2 and report["num_rejected"] == 5
    reasons = {r["image_id"]: r["reason"] for r in report["rejected"]}
    assert set(reasons) == {"cls/nofile.jpg", "cls/nan.jpg", "cls/3d.jpg", "cls/badbox.jpg", "cls/garbage.jpg"}
    assert "missing score map" in reasons["cls/nofile.jpg"]
    assert "NaN or inf" in reasons["cls/nan.jpg"]
    assert "2-D" in reasons["cls/3d.jpg"]
    assert "localization.txt:6" in reasons["cls/badbox.jpg"] and "x1 < x0" in reasons["cls/badbox.jpg"]
    assert "unreadable score map" in reasons["cls/garbage.jpg"]
    for image_id in reasons:  # one stderr line per rejected item, naming it
        assert sum(line.startswith(f"wsol evaluate-maps: rejected {image_id}: ") for line in err.splitlines()) == 1
    # good is correct at every threshold and delta, miss never: 50 % everywhere.
    assert report["MaxBoxAcc"]["value"] == 50.0 and report["MaxBoxAccV2"]["value"] == 50.0
    assert report["MaxBoxAcc"]["per_iou"]["70"] == {"max_accuracy": 50.0, "best_cam_threshold": 0.0}
    assert report["top1"]["MaxBoxAcc"]["value"] == 50.0  # good has the right class, miss has not
    assert "PxAP" not in report
    image = cv2.imread(str(plot))
    assert image is not None and image.shape[0] > 100


def test_clean_run_prints_json_and_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    meta, maps = _box_fixture(tmp_path, bad_items=False)
    code = main(["evaluate-maps", "--metadata", str(meta), "--scoremaps", str(maps), "--iou", "50", "--curves"])
    captured = capsys.readouterr()
    assert code == 0 and captured.err == ""
    report = json.loads(captured.out)
    assert report["num_rejected"] == 0 and report["MaxBoxAccV2"]["value"] == 50.0
    assert len(report["MaxBoxAcc"]["cam_thresholds"]) == 1000
    assert report["MaxBoxAcc"]["accuracy"]["50"] == [50.0] * 1000


def test_reference_method_gives_the_same_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    meta, maps = _box_fixture(tmp_path, bad_items=False)
    np.save(maps / "cls/good.jpg.npy", np.random.default_rng(0).standard_normal((7, 7)))
    args = ["evaluate-maps", "--metadata", str(meta), "--scoremaps", str(maps), "--interval", "0.01", "--curves"]
    assert main([*args, "--method", "fast"]) == 0
    fast = json.loads(capsys.readouterr().out)
    assert main([*args, "--method", "reference"]) == 0
    ref = json.loads(capsys.readouterr().out)
    fast["protocol"].pop("method"), ref["protocol"].pop("method")
    assert fast == ref


def test_pxap_with_masks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    meta, maps, masks = tmp_path / "meta", tmp_path / "maps", tmp_path / "masks"
    for d in (meta, maps / "o", masks / "o"):
        d.mkdir(parents=True)
    fg = np.zeros((100, 100), dtype=np.uint8)
    fg[20:60, 30:70] = 255
    ignore = np.zeros_like(fg)
    ignore[0:10] = 255
    cv2.imwrite(str(masks / "o/a_m.png"), fg)
    cv2.imwrite(str(masks / "o/a_ignore.png"), ignore)
    (meta / "image_ids.txt").write_text("o/a.jpg\n")
    (meta / "localization.txt").write_text("o/a.jpg,o/a_m.png,o/a_ignore.png\n")
    perfect = cv2.resize(fg.astype(np.float64) / 255, (224, 224), interpolation=cv2.INTER_NEAREST)
    np.save(maps / "o/a.jpg.npy", perfect)
    args = ["evaluate-maps", "--metadata", str(meta), "--scoremaps", str(maps), "--mask-root", str(masks)]
    assert main([*args, "--plot", str(tmp_path / "pr.png")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["PxAP"]["value"] == pytest.approx(100.0, abs=1e-9) and report["num_evaluated"] == 1
    assert (tmp_path / "pr.png").stat().st_size > 0
    assert main(args[:-2]) == 2  # masks without --mask-root
    assert "--mask-root" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--metadata", "{root}/missing"], "does not exist"),
        (["--scoremaps", "{root}/maps/missing"], "score map folder"),
        (["--interval", "1.5"], "--interval"),
        (["--iou", "50", "50"], "--iou"),
        (["--predictions", "{root}/nope.txt"], "predictions file"),
    ],
)
def test_unusable_arguments_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    meta, maps = _box_fixture(tmp_path, bad_items=False)
    args = ["evaluate-maps", "--metadata", str(meta), "--scoremaps", str(maps)]
    assert main([*args, *(e.format(root=tmp_path) for e in extra)]) == 2
    assert message in capsys.readouterr().err


def test_empty_metadata_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    meta, maps = _box_fixture(tmp_path, bad_items=False)
    (meta / "image_ids.txt").write_text("\n")
    assert main(["evaluate-maps", "--metadata", str(meta), "--scoremaps", str(maps)]) == 2
    assert "empty metadata" in capsys.readouterr().err
