"""``wsol evaluate`` end to end: train a tiny model on a generated dataset, evaluate the checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import wsol.data.standard  # noqa: F401  (registers the "standard" reader)
from wsol.cli import main
from wsol.evaluation import evaluate_model
from wsol.models import create_model
from wsol.models.loading import load_model
from wsol.recipes import build_dataset, load_run_config, train_from_config
from wsol.trainer import TrainConfig, Trainer

SIZE = 32  # original images; 224 / 32 = 7 keeps Choe's box rescaling exact
CLASSES = ["red", "green", "blue"]


def _dataset(root: Path, n_train: int = 9, n_test: int = 6, broken: bool = False) -> Path:
    """Standard layout: one bright rectangle per image, its colour = its class, its box = the GT."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        ids, labels, sizes, locs = [], [], [], []
        for i in range(n):
            label = i % 3
            x0, y0 = (int(v) for v in rng.integers(0, 14, size=2))
            x1, y1 = x0 + int(rng.integers(6, 17)), y0 + int(rng.integers(6, 17))
            img = np.full((SIZE, SIZE, 3), 20, dtype=np.uint8)
            img[y0 : y1 + 1, x0 : x1 + 1, label] = 230
            image_id = f"{CLASSES[label]}/{split}_{i}.png"
            (root / image_id).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / image_id)
            ids.append(image_id)
            labels.append(f"{image_id},{label}")
            sizes.append(f"{image_id},{SIZE},{SIZE}")
            locs.append(f"{image_id},{x0},{y0},{x1},{y1}")
        if broken and split == "test":
            (root / "red/broken.png").write_bytes(b"not a png")
            ids.append("red/broken.png")
            labels.append("red/broken.png,0")
            sizes.append(f"red/broken.png,{SIZE},{SIZE}")
            locs.append("red/broken.png,1,1,5,5")
        meta = root / "metadata" / split
        meta.mkdir(parents=True, exist_ok=True)
        for name, lines in (("image_ids", ids), ("class_labels", labels), ("image_sizes", sizes),
                            ("localization", locs), ("class_names", CLASSES)):  # fmt: skip
            (meta / f"{name}.txt").write_text("".join(f"{line}\n" for line in lines))
    return root


def _run_config(root: Path, out: Path) -> dict:
    return {
        "model": {"name": "lenet5", "head": "cam", "pooling": "gap", "in_chans": 3},
        "data": {"dataset": "standard", "root": str(root), "val_split": None, "test_split": "test",
                 "recipe": "none", "image_size": [48, 48]},
        "train": {"epochs": 1, "batch_size": 4, "device": "cpu", "out_dir": str(out), "progress": False,
                  "log_format": "none", "lr": 0.01},
        "log": {"tensorboard": False},
    }  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``wsol train``'s code path (train_from_config → Trainer), one epoch: (dataset root, last.pt)."""
    base = tmp_path_factory.mktemp("e2e")
    root = _dataset(base / "data")
    torch.manual_seed(0)
    train_from_config(load_run_config(_run_config(root, base / "run")))
    return root, base / "run" / "last.pt"


def test_train_then_evaluate_report_matches_library(trained: tuple[Path, Path], tmp_path: Path) -> None:
    _root, ckpt = trained
    out = tmp_path / "eval"
    code = main(["evaluate", "--checkpoint", str(ckpt), "--out", str(out), "--interval", "0.01", "--batch-size", "4"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    # the library on the same model and pipeline gives the same JSON (up to the CLI's source block)
    cfg = load_run_config(torch.load(ckpt, weights_only=True)["extras"]["run_config"])
    model = load_model(ckpt)
    lib = evaluate_model(model, build_dataset(cfg, "test", False, model=model), cam_curve_interval=0.01)
    expected = json.loads(lib.to_json())
    assert report.pop("source")["checkpoint"] == str(ckpt)
    expected.pop("source")
    assert report == expected
    # consistency of the numbers
    c, loc, b = report["classification"], report["localization"], report["boxacc"]
    assert report["counts"] == {**report["counts"], "items": 6, "evaluated": 6, "unreadable": 0, "nonfinite": 0}
    assert report["protocol"]["input_frame"] == [48, 48] and report["protocol"]["box_scaling"] == "edges"
    assert loc["top1_loc"] <= loc["gt_known_loc"] and loc["top1_loc"] <= c["top1_accuracy"]
    assert "top5_loc" not in loc  # 3 classes
    assert b["top1"]["MaxBoxAcc"]["value"] <= b["MaxBoxAcc"]["value"]
    assert loc["iou_curve"]["gt_known"][0] == 100.0
    md = (out / "report.md").read_text()
    for value in (c["top1_accuracy"], loc["top1_loc"], loc["gt_known_loc"], b["MaxBoxAccV2"]["value"]):
        assert f"{value:.2f}" in md
    assert str(ckpt) in md
    assert (out / "iou_curve.png").is_file() and (out / "boxacc_curve.png").is_file()
    per_image = [json.loads(line) for line in (out / "per_image.jsonl").read_text().splitlines()]
    assert [p["image_id"] for p in per_image] == [f"{CLASSES[i % 3]}/test_{i}.png" for i in range(6)]
    hits = np.mean([p["gt_known"] for p in per_image])
    assert 100 * hits == pytest.approx(loc["gt_known_loc"])


def test_exported_maps_give_the_same_maxboxacc_with_evaluate_maps(trained: tuple[Path, Path], tmp_path: Path) -> None:
    """Choe's frame (224, corner scaling): wsol evaluate-maps on the exported maps reproduces MaxBoxAcc(V2)."""
    root, ckpt = trained
    out, maps = tmp_path / "eval", tmp_path / "maps"
    args = ["evaluate", "--checkpoint", str(ckpt), "--out", str(out), "--interval", "0.01", "--export-maps", str(maps),
            "data.image_size=[224,224]", "data.box_scaling=choe"]  # fmt: skip
    assert main(args) == 0
    ours = json.loads((out / "report.json").read_text())["boxacc"]
    assert sorted(p.relative_to(maps).as_posix() for p in maps.rglob("*.npy")) == sorted(
        f"{CLASSES[i % 3]}/test_{i}.png.npy" for i in range(6)
    )
    theirs_path = tmp_path / "maps.json"
    code = main(["evaluate-maps", "--metadata", str(root / "metadata" / "test"), "--scoremaps", str(maps),
                 "--interval", "0.01", "--out", str(theirs_path)])  # fmt: skip
    assert code == 0
    theirs = json.loads(theirs_path.read_text())
    assert ours["MaxBoxAcc"]["value"] == pytest.approx(theirs["MaxBoxAcc"]["value"])
    assert ours["MaxBoxAccV2"]["value"] == pytest.approx(theirs["MaxBoxAccV2"]["value"])
    assert ours["MaxBoxAccV2"]["per_iou"] == theirs["MaxBoxAccV2"]["per_iou"]


def test_plain_trainer_checkpoint_with_dataset_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A Trainer checkpoint without a run config: the data come from --dataset/--root, the input size from the
    model's pretrained_cfg; an unreadable test image is reported and gives exit code 1."""
    root = _dataset(tmp_path / "data", n_train=3, n_test=3, broken=True)
    model = create_model("lenet5", head="cam", num_classes=3, in_chans=3)
    cfg = TrainConfig(epochs=1, batch_size=4, device="cpu", out_dir=str(tmp_path / "run"), progress=False,
                      log_format="none")  # fmt: skip
    train = build_dataset(load_run_config(_run_config(root, tmp_path / "run")), "train", True)
    Trainer(model, train, None, cfg).fit()
    out = tmp_path / "eval"
    args = ["evaluate", "--checkpoint", str(tmp_path / "run" / "last.pt"), "--dataset", "standard", "--root",
            str(root), "--split", "test", "--out", str(out), "--interval", "0.05"]  # fmt: skip
    assert main(args) == 1
    assert "skipped red/broken.png (unreadable)" in capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["skipped"] == [{"image_id": "red/broken.png", "kind": "unreadable",
                                  "reason": report["skipped"][0]["reason"]}]  # fmt: skip
    assert report["counts"]["evaluated"] == 3 and report["protocol"]["input_frame"] == [128, 128]
    assert "red/broken.png" in (out / "report.md").read_text()


def test_usage_errors_exit_2(trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _root, ckpt = trained
    out = str(tmp_path / "o")
    assert main(["evaluate", "--checkpoint", str(tmp_path / "nope.pt"), "--out", out]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(ckpt), "--out", out, "data.imag_size=[64,64]"]) == 2
    assert "image_size" in capsys.readouterr().err  # closest key suggested
    assert main(["evaluate", "--checkpoint", str(ckpt), "--out", out, "--multiscale", "1,x"]) == 2
    assert "--multiscale" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(ckpt), "--out", out, "--split", "nosuch"]) == 2
    assert "nosuch" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(ckpt), "--out", out, "--iou", "0"]) == 2
    obj = torch.load(ckpt, weights_only=True)
    obj["extras"] = {**obj["extras"], "task": "detection"}
    torch.save(obj, tmp_path / "det.pt")
    assert main(["evaluate", "--checkpoint", str(tmp_path / "det.pt"), "--out", out]) == 2
    assert "detection" in capsys.readouterr().err  # a classification run config in a "detection" checkpoint
    other = _dataset(tmp_path / "two", n_train=1, n_test=2)
    (other / "metadata" / "test" / "class_names.txt").write_text("a\nb\n")
    assert main(["evaluate", "--checkpoint", str(ckpt), "--out", out, "--root", str(other)]) == 2
    assert "3 classes but the dataset has 2" in capsys.readouterr().err


def _voc_fixture(root: Path, n: int = 6) -> Path:
    """VOC2007 layout: each image holds one or two coloured squares; red = aeroplane, green = bicycle."""
    voc = root / "VOC2007"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    ids = []
    for i in range(n):
        img = np.full((SIZE, SIZE, 3), 20, dtype=np.uint8)
        objects = []
        for cls, name in ((0, "aeroplane"), (1, "bicycle"))[: 1 + i % 2]:
            x0, y0 = (int(v) for v in rng.integers(0, 20, size=2)) if cls == 0 else (2, 22)
            img[y0 : y0 + 8, x0 : x0 + 8, cls] = 230
            # VOC corners are 1-based inclusive
            objects.append(f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{x0 + 1}</xmin>"
                           f"<ymin>{y0 + 1}</ymin><xmax>{x0 + 8}</xmax><ymax>{y0 + 8}</ymax></bndbox></object>")
        image_id = f"{i:06d}"
        Image.fromarray(img).save(voc / "JPEGImages" / f"{image_id}.jpg", quality=95)
        (voc / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><filename>{image_id}.jpg</filename><size><width>{SIZE}</width><height>{SIZE}</height>"
            f"<depth>3</depth></size>{''.join(objects)}</annotation>"
        )
        ids.append(image_id)
    for split in ("train", "test"):
        (voc / "ImageSets/Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return voc


def test_multilabel_checkpoint_reports_cam_detection_ap(tmp_path: Path) -> None:
    """VOC data + a SPAM CAM model: ``wsol evaluate`` adds Gudi's CAM-detection AP, equal to the library's."""
    from wsol.detection.cam_detector import CAMDetector

    voc = _voc_fixture(tmp_path / "voc")
    raw = {
        "model": {"name": "lenet5", "head": "cam", "pooling": "spam", "in_chans": 3,
                  "head_kwargs": {"output_affine": True}},
        "data": {"dataset": "voc", "root": str(voc), "val_split": None, "test_split": "test", "recipe": "none",
                 "image_size": [32, 32]},
        "train": {"epochs": 2, "batch_size": 3, "device": "cpu", "out_dir": str(tmp_path / "run"),
                  "progress": False, "log_format": "none", "lr": 0.01, "loss": "bce"},
        "log": {"tensorboard": False},
    }  # fmt: skip
    torch.manual_seed(0)
    train_from_config(load_run_config(raw))
    out = tmp_path / "eval"
    ckpt = tmp_path / "run" / "last.pt"
    assert main(["evaluate", "--checkpoint", str(ckpt), "--out", str(out), "--interval", "0.05"]) == 0
    report = json.loads((out / "report.json").read_text())
    det = report["detection"]
    assert set(det) >= {"mAP", "mAP_all_point", "per_class_AP"}
    model = load_model(ckpt).eval()
    cfg = load_run_config(raw)
    detector = CAMDetector(model, ratio=0.0, relative_floor=0.5, nms_iou=0.5)
    lib = evaluate_model(model, build_dataset(cfg, "test", False, model=model), detector=detector.detect_from_cams,
                         cam_curve_interval=0.05)
    assert det["mAP"] == pytest.approx(lib.detection["mAP"], abs=1e-9)
    assert det["per_class_AP"]["aeroplane"] == pytest.approx(lib.detection["per_class_AP"]["aeroplane"], abs=1e-9)
    assert 0.0 <= det["mAP"] <= 100.0
    off = tmp_path / "eval_off"
    assert main(["evaluate", "--checkpoint", str(ckpt), "--out", str(off), "--interval", "0.05",
                 "--detection", "off"]) == 0  # fmt: skip
    assert json.loads((off / "report.json").read_text())["detection"] is None
