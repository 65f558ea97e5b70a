"""``wsol localize`` and ``wsol fit-linear`` driven through ``wsol.cli.main`` on generated images.

The default pretrained EfficientNet-Lite0 runs on CPU at 224 on a few images; format and error cases use a
tiny LeNet-5 checkpoint written by ``save_model_checkpoint``.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from wsol.cli import main
from wsol.localizer import LinearHead, Localizer
from wsol.metrics.boxes import box_iou
from wsol.models import create_model, save_model_checkpoint


def _photo(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(40, 220, (h, w, 3), dtype=np.uint8), (0, 0), 2)
    cv2.circle(img, (w // 3, h // 2), min(h, w) // 4, (230, 200, 30), -1)
    return img


@pytest.fixture
def lenet_ckpt(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = create_model("lenet5", head="cam", pooling="gap", num_classes=2, in_chans=1)
    model.pretrained_cfg = {"input_size": (1, 64, 64), "mean": (0.5,), "std": (0.5,)}
    path = tmp_path / "lenet.pt"
    save_model_checkpoint(model, path, class_names=["cat", "dog"])
    return path


def _lines(text: str, word: str) -> list[str]:
    return [line for line in text.splitlines() if word in line]


# --- the default pretrained model ---------------------------------------------------------------------


def test_localize_default_model_json_overlays_and_skips(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(_photo(90, 120, 0)).save(src / "a.jpg", quality=90)
    rgba = np.dstack([_photo(64, 48, 1), np.full((64, 48), 200, np.uint8)])
    Image.fromarray(rgba, mode="RGBA").save(src / "b.png")
    data = (src / "a.jpg").read_bytes()
    (src / "c_broken.jpg").write_bytes(data[: len(data) // 2])
    (src / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    rc = main(["localize", str(src), str(tmp_path / "missing.png"), "--out", str(out), "--topk", "3"])
    err = capsys.readouterr().err
    assert rc == 1
    skipped = _lines(err, ": skipped ")
    assert len(skipped) == 2
    assert "c_broken.jpg" in skipped[0] and "truncated" in skipped[0]
    assert "missing.png: no such file" in skipped[1]
    assert len(_lines(err, "notes.txt")) == 1 and "ignored" in err
    doc = json.loads((out / "predictions.json").read_text())
    assert doc["model"] == "efficientnet_lite0" and doc["box_strategy"] == "zhou" and doc["input_size"] == [224, 224]
    assert [Path(i["image"]).name for i in doc["images"]] == ["a.jpg", "b.png"]
    assert [Path(s["path"]).name for s in doc["skipped"]] == ["c_broken.jpg", "missing.png"]
    for item, (h, w) in zip(doc["images"], [(90, 120), (64, 48)], strict=True):
        assert (item["height"], item["width"]) == (h, w) and len(item["classes"]) == 3
        scores = [c["score"] for c in item["classes"]]
        assert scores == sorted(scores, reverse=True) and sum(scores) <= 1.0 + 1e-6
        for c in item["classes"]:
            for b in c["boxes"]:
                x0, y0, x1, y1 = b["box"]
                assert 0 <= x0 <= x1 <= w - 1 and 0 <= y0 <= y1 <= h - 1 and 0.0 <= b["score"] <= 1.0
        overlay = Image.open(out / item["overlay"])
        assert overlay.format == "PNG" and overlay.size == (w, h)
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["a.png", "b.png"]


# --- formats with a tiny checkpoint ---------------------------------------------------------------------


def _two_folders(tmp_path: Path) -> list[Path]:
    paths = []
    for i, folder in enumerate(("x", "y")):
        (tmp_path / folder).mkdir()
        p = tmp_path / folder / "img.png"
        Image.fromarray(_photo(50 + 10 * i, 70, i)).save(p)
        paths.append(p)
    return paths


def test_localize_voc_with_a_checkpoint(tmp_path: Path, lenet_ckpt: Path, capsys: pytest.CaptureFixture[str]):
    paths = _two_folders(tmp_path)
    out = tmp_path / "out"
    args = ["localize", *map(str, paths), "--model", str(lenet_ckpt), "--format", "voc", "--out", str(out)]
    assert main([*args, "--no-overlays"]) == 0
    files = sorted(p.name for p in (out / "voc").iterdir())
    assert files == ["img.xml", "img_2.xml"]  # same stem twice → unique names
    assert not (out / "overlays").exists()
    for name, (path, h) in zip(files, [(paths[0], 50), (paths[1], 60)], strict=True):
        root = ET.parse(out / "voc" / name).getroot()
        assert root.findtext("filename") == "img.png" and root.findtext("folder") == str(path.parent)
        assert (root.findtext("size/width"), root.findtext("size/height")) == ("70", str(h))
        objs = root.findall("object")
        assert {o.findtext("name") for o in objs} == {"cat", "dog"}
        for o in objs:
            xmin, ymin, xmax, ymax = (int(o.findtext(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax"))
            assert 1 <= xmin <= xmax <= 70 and 1 <= ymin <= ymax <= h  # VOC: 1-based
    assert "2 image(s) processed, 0 skipped" in capsys.readouterr().err


def test_localize_coco_and_strategy_arguments(tmp_path: Path, lenet_ckpt: Path):
    paths = _two_folders(tmp_path)
    out = tmp_path / "out"
    rc = main([
        "localize", *map(str, paths), "--model", str(lenet_ckpt), "--format", "coco", "--out", str(out),
        "--box-strategy", "multi_contour", "--threshold", "0.3", "--box-arg", "relu=true", "--topk", "1",
        "--input-size", "48", "--score", "sigmoid",
    ])  # fmt: skip
    assert rc == 0
    coco = json.loads((out / "coco_detections.json").read_text())
    assert coco["categories"] == [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    assert [im["file_name"] for im in coco["images"]] == [str(p) for p in paths]
    assert coco["info"]["strategy_kwargs"] == {"relu": True, "threshold": 0.3}
    assert coco["info"]["input_size"] == [48, 48] and coco["info"]["score"] == "sigmoid"
    assert coco["annotations"] and {a["image_id"] for a in coco["annotations"]} == {1, 2}
    for a in coco["annotations"]:
        _, _, w, h = a["bbox"]
        assert w >= 1 and h >= 1 and a["area"] == w * h and 0 <= a["score"] <= 1 and a["category_id"] in (1, 2)
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["img.png", "img_2.png"]


# --- unusable arguments: exit code 2 ---------------------------------------------------------------------


class Payload:
    def __init__(self) -> None:
        self.value = 1


def test_localize_unusable_arguments(tmp_path: Path, lenet_ckpt: Path, capsys: pytest.CaptureFixture[str]):
    img = tmp_path / "i.png"
    Image.fromarray(_photo(30, 30, 0)).save(img)
    out = str(tmp_path / "out")
    evil = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "extra": Payload()}, evil)
    mismatched = tmp_path / "mismatch.pt"
    ckpt = torch.load(lenet_ckpt, weights_only=True)
    ckpt["model_spec"]["num_classes"] = 3  # the weights are those of a 2-class head
    torch.save(ckpt, mismatched)
    wrong_head = tmp_path / "head.pt"
    LinearHead(np.zeros((2, 7)), np.zeros(2), ["p", "q"]).save(wrong_head)
    (tmp_path / "empty").mkdir()
    cases = [
        ([], "no input"),
        ([str(img), "--model", "resnet9000"], "unknown model 'resnet9000'.*valid names: efficientnet_lite0"),
        ([str(img), "--model", str(evil)], "refusing to load.*Payload.*unsafe"),
        ([str(img), "--model", str(mismatched)], "3 classes|shapes differ"),
        ([str(img), "--model", str(lenet_ckpt), "--linear-head", str(wrong_head)], "7 input features"),
        ([str(img), "--model", str(lenet_ckpt), "--box-arg", "oops"], "KEY=VALUE"),
        ([str(img), "--model", str(lenet_ckpt), "--threshold", "1.5"], r"threshold must be in \[0, 1\]"),
        ([str(img), "--model", str(lenet_ckpt), "--box-strategy", "gudi", "--box-arg", "ratio=2"], "ratio"),
        ([str(img), "--topk", "0"], "--topk must be a positive integer"),
        ([str(tmp_path / "empty")], "no image found"),
    ]
    for extra, pattern in cases:
        assert main(["localize", *extra, "--out", out]) == 2, extra
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and err.startswith("wsol localize: error: "), err
        assert re.search(pattern, err), (pattern, err)
    assert not (tmp_path / "out" / "predictions.json").exists()


# --- generic localizable features (Zhou et al. 2016 §4) --------------------------------------------------


def _shapes_folder(root: Path) -> dict[str, tuple[str, tuple[int, int, int, int]]]:
    """Red squares vs blue disks on smooth random backgrounds, 6 images per class; returns path → (class, box)."""
    rng = np.random.default_rng(0)
    truth = {}
    for cls in ("red_square", "blue_disk"):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            h, w = 160, 200
            img = cv2.GaussianBlur(rng.integers(60, 200, (h, w, 3), dtype=np.uint8), (0, 0), 3)
            s = int(rng.integers(80, 100))
            x0, y0 = int(rng.integers(0, w - s)), int(rng.integers(0, h - s))
            if cls == "red_square":
                img[y0 : y0 + s, x0 : x0 + s] = (220, 20, 20)
            else:
                cv2.circle(img, (x0 + s // 2, y0 + s // 2), s // 2, (20, 20, 220), -1)
            path = root / cls / f"{i}.png"
            Image.fromarray(img).save(path)
            truth[str(path)] = (cls, (x0, y0, x0 + s - 1, y0 + s - 1))
    return truth


def test_fit_linear_then_localize_with_the_head(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    data = tmp_path / "shapes"
    truth = _shapes_folder(data)
    (data / "red_square" / "broken.png").write_bytes(b"")  # reported and skipped: exit code 1
    head_path = tmp_path / "head.pt"
    assert main(["fit-linear", str(data), "--out", str(head_path)]) == 1
    err = capsys.readouterr().err
    assert len(_lines(err, ": skipped ")) == 1 and "broken.png: empty file" in err
    assert "12 images, 2 classes (blue_disk, red_square), 1280 features, training accuracy 1.000" in err
    head = LinearHead.load(head_path)
    assert head.class_names == ["blue_disk", "red_square"] and head.weight.shape == (2, 1280)
    assert head.model == "efficientnet_lite0" and head.backbone == "timm:tf_efficientnet_lite0"
    assert head.input_size == (224, 224) and head.train_accuracy == 1.0

    out = tmp_path / "out"
    rc = main(["localize", str(data), "--recursive", "--linear-head", str(head_path), "--out", str(out),
               "--topk", "2", "--no-overlays"])  # fmt: skip
    assert rc == 1  # broken.png again
    doc = json.loads((out / "predictions.json").read_text())
    assert len(doc["images"]) == 12 and doc["num_classes"] == 2 and doc["linear_head"]["classifier"] == "logreg"
    for item in doc["images"]:
        assert item["classes"][0]["name"] == truth[item["image"]][0]  # the head classifies its training images

    # the CAM of the predicted class (CAM_c = Σ_k w_k^c f_k with the fitted weights) lies on the drawn shape
    loc = Localizer(linear_head=head_path, topk=1)
    for pred in loc.predict(list(truth)):
        cls, box = truth[pred.source]
        assert pred.top1.name == cls
        heat = pred.heatmap(0)
        y, x = np.unravel_index(heat.argmax(), heat.shape)
        peak_inside = box[0] <= x <= box[2] and box[1] <= y <= box[3]
        iou = box_iou(pred.top1.boxes, np.array([box]))[0, 0]
        assert peak_inside or iou > 0.3, (pred.source, (x, y), iou)
        inside = np.zeros(heat.shape, dtype=bool)
        inside[box[1] : box[3] + 1, box[0] : box[2] + 1] = True
        assert heat[inside].mean() > heat[~inside].mean() + 0.2, pred.source


def test_fit_linear_unusable_data(tmp_path: Path, lenet_ckpt: Path, capsys: pytest.CaptureFixture[str]):
    one = tmp_path / "one"
    (one / "a").mkdir(parents=True)
    Image.fromarray(_photo(20, 20, 0)).save(one / "a" / "x.png")
    two = tmp_path / "two"
    (two / "a").mkdir(parents=True)
    (two / "b").mkdir()
    Image.fromarray(_photo(20, 20, 0)).save(two / "a" / "x.png")
    (two / "b" / "y.png").write_bytes(b"")
    for folder, pattern in [
        (tmp_path / "nope", "is not a folder"),
        (one, "at least two class sub-folders, found 1"),
        (two, "class 'b'.*has no usable image"),
    ]:
        assert main(["fit-linear", str(folder), "--out", str(tmp_path / "h.pt"), "--model", str(lenet_ckpt)]) == 2
        err = capsys.readouterr().err
        assert re.search(pattern, err), err
    assert not (tmp_path / "h.pt").exists()
