"""wsol.experiments.finegrained / ``wsol finegrained``: Zhou et al. 2016 §4.1 on generated images.

The images: a cluttered background of random 4×4 colour patches (blue ≤ 0.4) and one small s×s square,
red-ish (class 0) or green-ish (class 1), with blue 1. The hand-built network has one 1×1 convolution + ReLU:
channel 0 = ReLU(4·B − 2) (fires on the square only), channel 1 = R, channel 2 = G, and a Zhou head whose CAM
is channel 0 for both classes. So the CAM box is known (Zhou's contour box of the square, one pixel more on
the far sides), the full-image GAP colour is dominated by the clutter, and the crop's is the square's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from wsol.commands import finegrained as cmd
from wsol.data.records import DatasetIndex, ImageRecord, register_dataset
from wsol.experiments.finegrained import PAPER_TABLE4, crop, gt_crop_box, run_finegrained
from wsol.heads import ZhouHead
from wsol.io import load_image
from wsol.localizer import LinearHead, Localizer, fit_linear_head
from wsol.metrics.classification import accuracy
from wsol.models import CAMNet, create_model, save_model_checkpoint

SIZE = 32


def hand_model() -> CAMNet:
    conv = nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[0, 2], conv.bias[0] = 4.0, -2.0  # objectness: blue 1 → 2, blue ≤ 0.4 → 0
        conv.weight[1, 0] = 1.0  # R
        conv.weight[2, 1] = 1.0  # G
    head = ZhouHead(3, 2)
    with torch.no_grad():
        head.fc.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
        head.fc.bias.zero_()
    net = CAMNet(nn.Sequential(conv, nn.ReLU()), head).eval()
    net.pretrained_cfg = {"input_size": (3, SIZE, SIZE), "mean": (0.0,) * 3, "std": (1.0,) * 3}
    return net


def make_split(root: Path, split: str, n: int, seed: int) -> tuple[DatasetIndex, list[tuple[int, int, int]]]:
    """Images ``<split>_<i>.png`` and their index; also the squares ``(x0, y0, s)``."""
    rng = np.random.default_rng(seed)
    records, squares = [], []
    for i in range(n):
        c = i % 2
        img = np.repeat(np.repeat(rng.uniform(0, 1, (SIZE // 4, SIZE // 4, 3)), 4, 0), 4, 1)
        img[..., 2] *= 0.4
        s = int(rng.integers(5, 8))
        x0, y0 = (int(v) for v in rng.integers(1, SIZE - s - 1, 2))
        img[y0 : y0 + s, x0 : x0 + s] = (0.9, 0.1, 1.0) if c == 0 else (0.1, 0.9, 1.0)
        path = root / f"{split}_{i:02d}.png"
        Image.fromarray(np.rint(img * 255).astype(np.uint8)).save(path)
        records.append(ImageRecord(path.name, path, (c,), boxes=[[x0, y0, x0 + s - 1, y0 + s - 1]]))
        squares.append((x0, y0, s))
    return DatasetIndex("toy", root, split, ["red", "green"], records), squares


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> tuple[DatasetIndex, DatasetIndex, list[tuple[int, int, int]]]:
    root = tmp_path_factory.mktemp("toy")
    train, _ = make_split(root, "train", 32, seed=0)
    test, squares = make_split(root, "test", 32, seed=1)
    return train, test, squares


def test_crop_helps_when_the_cam_finds_the_object(toy) -> None:
    train, test, squares = toy
    res = run_finegrained(hand_model(), train, test, cam_source="model", classifier="logreg", batch_size=8)
    # the CAM boxes: Zhou's contour box [x, y, x + w, y + h] of the square (inclusive pixels)
    expected = np.array([[x0, y0, x0 + s, y0 + s] for x0, y0, s in squares])
    np.testing.assert_array_equal(res.test.cam_boxes, expected)
    assert not res.test.fallback.any() and not res.train.fallback.any()
    np.testing.assert_allclose(res.test_ious, [s * s / (s + 1) ** 2 for _, _, s in squares])
    assert res.cam_box_iou50 == 1.0
    # full-image features = spatial means of the three channels, computed by hand
    for i, r in enumerate(test.records[:5]):
        x = np.asarray(load_image(r.path), dtype=np.float64) / 255
        ref = [np.maximum(4 * x[..., 2] - 2, 0).mean(), x[..., 0].mean(), x[..., 1].mean()]
        np.testing.assert_allclose(res.test.full[i], ref, rtol=1e-5, atol=1e-6)
    # the crop removes the clutter: perfect on crops, poor on full images (paper: 63.0 → 67.8 %)
    assert res.accuracy_crop == 1.0 and res.accuracy_bbox == 1.0
    assert res.accuracy_full <= 0.8 and res.accuracy_crop - res.accuracy_full >= 0.2
    # reference: crop by hand, features with the Localizer, fit the same classifier
    loc = Localizer(hand_model(), topk=1)

    def feats(index: DatasetIndex, boxes: np.ndarray | None) -> np.ndarray:
        frames = [np.asarray(load_image(r.path)) for r in index.records]
        if boxes is not None:
            frames = [crop(f, b) for f, b in zip(frames, boxes, strict=True)]
        return loc.features(frames)

    y_train, y_test = np.arange(32) % 2, np.arange(32) % 2
    for kind, tr_boxes, te_boxes in (
        ("full", None, None),
        ("crop", res.train.cam_boxes, expected),
        ("bbox", np.array([gt_crop_box(r) for r in train.records]), np.array([gt_crop_box(r) for r in test.records])),
    ):
        head = fit_linear_head(feats(train, tr_boxes), y_train, ["red", "green"], "logreg")
        te = feats(test, te_boxes)
        want = accuracy(te @ head.weight.T + head.bias, y_test)
        got = {"full": res.accuracy_full, "crop": res.accuracy_crop, "bbox": res.accuracy_bbox}[kind]
        assert got == pytest.approx(want), kind
        np.testing.assert_allclose(res.heads[kind].weight, head.weight, rtol=1e-4, atol=1e-6)
    doc = res.to_dict()
    assert doc["accuracy"] == {"full": res.accuracy_full, "crop": 1.0, "bbox": 1.0}
    assert doc["n_train"] == doc["n_test"] == 32 and doc["n_fallback"] == {"train": 0, "test": 0}
    first = doc["test_images"][0]
    assert first["cam_box"] == expected[0].tolist() and first["label"] == 0 and first["pred_crop"] == 0
    md = res.to_markdown()
    assert "| CAM crop (model CAM, threshold 0.2) | n/a | 100.0 | 67.8 |" in md
    assert f"| full image | n/a | {100 * res.accuracy_full:.1f} | 63.0 |" in md


def test_linear_cam_source_uses_the_full_image_classifier(toy, tmp_path: Path) -> None:
    train, test, _ = toy
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    records = [*train.records, ImageRecord("broken.png", broken, (1,), boxes=[[0, 0, 3, 3]])]
    train_bad = DatasetIndex("toy", train.root, "train", train.class_names, records)
    res = run_finegrained(hand_model(), train_bad, test, classifier="svm", batch_size=16)
    assert res.settings["cam_source"] == "linear" and res.settings["classifier"] == "svm"
    (p,) = res.problems
    assert p.image_id == "broken.png" and p.file == str(broken) and "not an image" in p.message
    assert len(res.train.records) == 32 and res.train.labels.tolist() == (np.arange(32) % 2).tolist()
    # the boxes are those of the Localizer with the fitted full-image head as Zhou head
    loc = Localizer(hand_model(), topk=1, linear_head=res.heads["full"], strategy_kwargs={"threshold": 0.2})
    frames = [np.asarray(load_image(r.path)) for r in test.records]
    boxes = np.array([p.top1.boxes[0] for p in loc.predict_arrays(frames)])
    np.testing.assert_array_equal(res.test.cam_boxes, boxes)
    feats = Localizer(hand_model(), topk=1).features([crop(f, b) for f, b in zip(frames, boxes, strict=True)])
    np.testing.assert_allclose(res.test.crop, feats, rtol=1e-6)
    assert res.heads["full"].classifier == "svm" and res.heads["full"].input_size == (SIZE, SIZE)
    assert 0.0 <= res.accuracy_crop <= 1.0 and res.cam_box_iou50 is not None


def test_helpers_and_argument_checks(toy, tmp_path: Path) -> None:
    img = np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3)
    np.testing.assert_array_equal(crop(img, [1, 2, 3, 4]), img[2:5, 1:4])
    np.testing.assert_array_equal(crop(img, [-3, -1, 99, 0]), img[0:1, 0:6])
    r = ImageRecord("a", tmp_path / "a.png", (1,), boxes=[[0.5, 1.2, 3.5, 4.0], [7, 7, 9, 9], [0, 0, 1, 1]],
                    box_labels=[1, 0, 1])  # fmt: skip
    assert gt_crop_box(r).tolist() == [0, 0, 4, 4]  # boxes of class 1 only, rounded outward
    train, test, _ = toy
    with pytest.raises(ValueError, match="cam_source"):
        run_finegrained(hand_model(), train, test, cam_source="gradcam")  # type: ignore[arg-type]
    multi = DatasetIndex("voc", train.root, "train", train.class_names, train.records, multilabel=True)
    with pytest.raises(ValueError, match="multi-label"):
        run_finegrained(hand_model(), multi, test)
    other = DatasetIndex("toy", train.root, "test", ["a", "b"], test.records)
    with pytest.raises(ValueError, match="class names differ"):
        run_finegrained(hand_model(), train, other)
    empty = DatasetIndex("toy", train.root, "test", train.class_names, [])
    with pytest.raises(ValueError, match="has no image"):
        run_finegrained(hand_model(), train, empty)
    two = DatasetIndex("toy", train.root, "test", train.class_names, [ImageRecord("z", train.records[0].path, (0, 1))])
    with pytest.raises(ValueError, match=r"image z has labels \(0, 1\)"):
        run_finegrained(hand_model(), train, two)
    one_class = train.subset([0, 2, 4])
    with pytest.raises(ValueError, match="'green' has no example"):
        run_finegrained(hand_model(), one_class, test, cam_source="model")
    assert PAPER_TABLE4 == {"full": 63.0, "crop": 67.8, "bbox": 70.5, "cam_box_iou50": 41.0}


_FIXTURE: dict[str, DatasetIndex] = {}


@register_dataset("_finegrained_test_fixture")
def _fixture_reader(root: Path, split: str, **_: object) -> DatasetIndex:
    if split not in _FIXTURE:
        raise ValueError(f"no split {split!r} in the fixture")
    return _FIXTURE[split]


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cmd.register(parser.add_subparsers())
    args = parser.parse_args(["finegrained", *argv])
    return args.func(args)


def test_cli_writes_json_markdown_and_heads(toy, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train, test, _ = toy
    torch.manual_seed(0)
    net = create_model("lenet5", head="zhou", num_classes=2, in_chans=3)
    ckpt = tmp_path / "m.pt"
    save_model_checkpoint(net, ckpt, class_names=["red", "green"])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"")
    bad = ImageRecord("broken.png", broken, (0,), boxes=[[0, 0, 1, 1]])
    _FIXTURE["train"] = DatasetIndex("toy", train.root, "train", train.class_names, [*train.records, bad])
    _FIXTURE["test"] = test
    out = tmp_path / "out"
    common = ["--checkpoint", str(ckpt), "--dataset", "_finegrained_test_fixture", "--root", str(tmp_path),
              "--input-size", "32", "--quiet"]  # fmt: skip
    code = _cli([*common, "--out", str(out), "--classifier", "logreg", "--cam-source", "model"])
    err = capsys.readouterr().err
    assert code == 1 and "skipped" in err and "broken.png" in err and "empty file" in err
    doc = json.loads((out / "finegrained.json").read_text())
    from wsol.models import load_model

    ref = run_finegrained(load_model(ckpt), _FIXTURE["train"], test, cam_source="model", classifier="logreg",
                          input_size=32)  # fmt: skip
    assert doc["accuracy"] == pytest.approx(
        {"full": ref.accuracy_full, "crop": ref.accuracy_crop, "bbox": ref.accuracy_bbox}
    )
    assert doc["n_train"] == 32 and doc["n_test"] == 32 and len(doc["test_images"]) == 32
    assert doc["cam_box_iou50"] == pytest.approx(ref.cam_box_iou50)
    assert doc["settings"]["model"] == str(ckpt) and doc["dataset"]["name"] == "_finegrained_test_fixture"
    assert len(doc["skipped"]) == 1 and "broken.png" in doc["skipped"][0]
    assert "Zhou et al. 2016" in (out / "finegrained.md").read_text()
    head = LinearHead.load(out / "linear_head_full.pt")
    np.testing.assert_allclose(head.weight, ref.heads["full"].weight, rtol=1e-4, atol=1e-6)
    assert head.backbone == "lenet5" and head.input_size == (32, 32)
    assert LinearHead.load(out / "linear_head_crop.pt").num_classes == 2
    # unusable arguments → exit 2 with a message
    assert _cli([*common, "--out", str(out), "--threshold", "2"]) == 2
    assert _cli([*common[:2], "--dataset", "nope", "--root", str(tmp_path), "--out", str(out)]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err
    assert _cli([*common, "--out", str(out), "--test-split", "val"]) == 2
    assert "no split 'val'" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert _cli([*common, "--out", str(blocker / "sub")]) == 2
