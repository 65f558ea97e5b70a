"""Tests of wsol.localizer (Localizer, overlays, writers, linear heads) and of the TF-"SAME" receptive fields.

Hand-computed cases use a tiny "identity CAM" model whose CAM is the input image itself, so the boxes of a
drawn rectangle are known exactly; the pretrained EfficientNet-Lite0 runs on a real photo shipped by
matplotlib (nothing downloaded).
"""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from wsol.heads import CAMOutput, build_head
from wsol.localize import (
    extract_boxes,
    fast_backprojection,
    gradient_support,
    normalize_map,
    receptive_field_chain,
    tf_same_padding,
    upsample_map,
)
from wsol.localizer import (
    LinearHead,
    Localizer,
    Prediction,
    coco_detections,
    draw_overlay,
    fit_linear_head,
    predictions_json,
    short_name,
    voc_xml,
    with_linear_head,
)
from wsol.models import CAMNet, create_model, load_model


@functools.cache
def effnet() -> CAMNet:
    return load_model("efficientnet_lite0")


def hopper_path() -> str:
    from matplotlib import cbook

    return str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


class IdentityCAM(nn.Module):
    """CAM of class 0 = the channel mean of the input, class 1 = its negation; logits = scale · mean(CAM)."""

    num_classes = 2

    def __init__(self, size: int = 32, scale: float = 10.0, classes: int = 2, interpolation: str = "bilinear") -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.scale = scale
        self.num_classes = classes
        self.pretrained_cfg = {"input_size": (3, size, size), "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0),
                               "interpolation": interpolation}  # fmt: skip
        self.class_names = ["bright", "dark", "other"][:classes]

    def forward(self, x: torch.Tensor) -> CAMOutput:
        m = x.mean(dim=1) + self.dummy
        cams = torch.stack([m, -m, 0.5 * m][: self.num_classes], dim=1)
        return CAMOutput(self.scale * cams.mean(dim=(2, 3)), cams)


def rectangle(h: int, w: int, box: tuple[int, int, int, int]) -> np.ndarray:
    img = np.zeros((h, w, 3), dtype=np.uint8)
    x0, y0, x1, y1 = box
    img[y0 : y1 + 1, x0 : x1 + 1] = 255
    return img


# --- boxes in original pixels -------------------------------------------------------------------------


@pytest.mark.parametrize(("h", "w", "drawn"), [(64, 64, (16, 16, 47, 47)), (96, 64, (16, 24, 47, 71))])
def test_boxes_map_back_to_the_original_pixels(h: int, w: int, drawn: tuple[int, int, int, int]):
    # input 32×32, nearest resize (input pixel i ← original pixel ⌊(i + ½)·s⌋): the drawn rectangle becomes
    # exactly input pixels [8, 23] (scale factors 2 and 3)
    model = IdentityCAM(interpolation="nearest")
    loc = Localizer(model, topk=1, box_strategy="moreaux", strategy_kwargs={"threshold": 0.5})
    (pred,) = loc.predict([rectangle(h, w, drawn)])
    assert pred.image_size == (h, w) and pred.input_size == (32, 32)
    top = pred.top1
    assert (top.class_id, top.name) == (0, "bright")
    assert top.boxes.tolist() == [list(drawn)]
    assert top.box_scores.tolist() == [1.0]  # the normalized CAM is exactly 1 inside
    # zhou: contour box [x, y, x + w, y + h] of the reference protocol, one input pixel more at the far side
    # (input x1 = 24 → ⌈25·W/32⌉ − 1)
    zhou = Localizer(model, topk=1, strategy_kwargs={"threshold": 0.5}).predict([rectangle(h, w, drawn)])
    sx, sy = w / 32, h / 32
    assert zhou[0].top1.boxes.tolist() == [[drawn[0], drawn[1], int(np.ceil(25 * sx)) - 1, int(np.ceil(25 * sy)) - 1]]


def test_box_scaling_formula_with_non_integer_ratios():
    # input pixels [8, 23] of a 32-wide input on a 100-wide image: ⌊8·100/32⌋ = 25, ⌈24·100/32⌉ − 1 = 74
    loc = Localizer(IdentityCAM(), topk=1, box_strategy="moreaux", strategy_kwargs={"threshold": 0.5})
    boxes = np.array([[8, 8, 23, 23], [0, 0, 31, 31], [31, 0, 31, 0]])
    assert loc._to_image(boxes, (50, 100)).tolist() == [[25, 12, 74, 37], [0, 0, 99, 49], [96, 0, 99, 1]]


def test_localizer_matches_a_straightforward_reference():
    rng = np.random.default_rng(0)
    model = IdentityCAM(size=24, classes=3)
    loc = Localizer(model, topk=2, batch_size=2, strategy_kwargs={"threshold": 0.3})
    images = [rng.integers(0, 256, (int(rng.integers(10, 90)), int(rng.integers(10, 90)), 3), dtype=np.uint8)
              for _ in range(5)]  # fmt: skip
    preds = loc.predict(images)
    for img, pred in zip(images, preds, strict=True):
        x = loc.preprocess([img])
        with torch.no_grad():
            logits, cams = model(x)
        probs = torch.softmax(logits[0], 0).numpy()
        order = np.argsort(-probs)[:2]
        assert [c.class_id for c in pred.classes] == order.tolist()
        np.testing.assert_allclose([c.score for c in pred.classes], probs[order], rtol=1e-6)
        h, w = img.shape[:2]
        for c in pred.classes:
            norm = normalize_map(upsample_map(cams[0, c.class_id].numpy(), (24, 24)))
            ref = extract_boxes(norm, "zhou", threshold=0.3)
            mapped = [[np.floor(a * w / 24), np.floor(b * h / 24), np.ceil((cc + 1) * w / 24) - 1,
                       np.ceil((d + 1) * h / 24) - 1] for a, b, cc, d in ref]  # fmt: skip
            mapped = np.clip(np.array(mapped), 0, [w - 1, h - 1, w - 1, h - 1]).astype(int)
            assert c.boxes.tolist() == mapped.tolist()
            (x0, y0, x1, y1) = ref[0]
            np.testing.assert_allclose(c.box_scores, [norm[y0 : y1 + 1, x0 : x1 + 1].mean()], rtol=1e-5)


def test_batching_and_input_kinds_give_identical_predictions(tmp_path: Path):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (40, 30, 3), dtype=np.uint8), rng.integers(0, 256, (17, 50, 3), dtype=np.uint8)]
    images.append(images[0].copy())
    Image.fromarray(images[1]).save(tmp_path / "b.png")
    one = Localizer(IdentityCAM(classes=3), topk=3, batch_size=1).predict(images)
    many = Localizer(IdentityCAM(classes=3), topk=3, batch_size=8).predict(
        [Image.fromarray(images[0]), tmp_path / "b.png", images[2]]
    )
    frames = Localizer(IdentityCAM(classes=3), topk=3).predict_arrays(images)
    for a, b, c in zip(one, many, frames, strict=True):
        assert a.to_dict()["classes"] == b.to_dict()["classes"] == c.to_dict()["classes"]
        np.testing.assert_allclose(a.cams, b.cams, atol=1e-6)
    assert many[1].source == str(tmp_path / "b.png") and many[0].source is None


def test_scores_softmax_sigmoid_and_topk():
    img = rectangle(32, 32, (0, 0, 15, 31))  # mean intensity 1/2 → CAM means ±0.5, logits ±5
    soft = Localizer(IdentityCAM(), topk=5).predict([img])[0]
    assert [c.class_id for c in soft.classes] == [0, 1]  # topk clipped to the 2 classes
    e = np.exp([5.0, -5.0])
    np.testing.assert_allclose([c.score for c in soft.classes], e / e.sum(), rtol=1e-5)
    sig = Localizer(IdentityCAM(), score="sigmoid").predict([img])[0]
    np.testing.assert_allclose([c.score for c in sig.classes], 1 / (1 + np.exp([-5.0, 5.0])), rtol=1e-5)
    one = Localizer(IdentityCAM(classes=1)).predict([img])[0]  # one class: sigmoid by default
    assert one.score_kind == "sigmoid" and one.top1.score == pytest.approx(1 / (1 + np.exp(-5.0)), rel=1e-5)


def test_degenerate_and_non_finite_maps():
    loc = Localizer(IdentityCAM(), topk=2)
    pred = loc.predict([np.full((20, 20, 3), 77, dtype=np.uint8)])[0]  # constant image → constant CAMs
    assert all(c.boxes.shape == (0, 4) and c.box_scores.shape == (0,) for c in pred.classes)
    assert loc.stats.n_constant == 2 and loc.stats.n_maps == 2
    assert np.all(pred.heatmap(0) == 0)

    class NaNModel(IdentityCAM):
        def forward(self, x: torch.Tensor) -> CAMOutput:
            out = super().forward(x)
            return CAMOutput(out.logits * float("nan"), out.cams)

    with pytest.raises(ValueError, match="non-finite logits for image 0"):
        Localizer(NaNModel()).predict([np.zeros((8, 8, 3), np.uint8)])


def test_bad_arguments_and_inputs():
    loc = Localizer(IdentityCAM())
    for bad, match in [
        (np.zeros((8, 8, 3), np.float32), "uint8"),
        (np.zeros((8, 8, 4), np.uint8), r"\(H, W, 3\)"),
        (np.zeros((0, 8, 3), np.uint8), "empty"),
        (3.5, "PIL.Image"),
    ]:
        with pytest.raises(ValueError, match=match):
            loc.predict([bad])
    with pytest.raises(ValueError, match="wrap a single image in a list"):
        loc.predict(np.zeros((8, 8, 3), np.uint8))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="frame 0"):
        loc.predict_arrays([np.zeros((8, 8), np.uint8)])
    for kwargs, match in [
        ({"topk": 0}, "topk must be a positive int"),
        ({"batch_size": -1}, "batch_size"),
        ({"box_strategy": "best"}, "unknown box strategy 'best'; available: zhou, moreaux"),
        ({"strategy_kwargs": {"threshold": 1.5}}, r"threshold must be in \[0, 1\]"),
        ({"strategy_kwargs": {"tresh": 0.1}}, "unknown argument"),
        ({"score": "probit"}, "score must be"),
        ({"input_size": (0, 4)}, "input_size"),
        ({"device": "nonsense"}, "invalid device"),
    ]:
        with pytest.raises(ValueError, match=match):
            Localizer(IdentityCAM(), **kwargs)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            Localizer(IdentityCAM(), device="cuda")
    with pytest.raises(ValueError, match=r"unknown model 'resnet9000'.*efficientnet_lite0"):
        Localizer("resnet9000")
    no_cfg = create_model("lenet5", head="cam", pooling="gap", num_classes=2, in_chans=1)
    no_cfg.pretrained_cfg = {}
    with pytest.raises(ValueError, match="input_size"):
        Localizer(no_cfg)
    assert Localizer(no_cfg, input_size=40).input_size == (40, 40)


def test_one_channel_model_gets_luma():
    model = create_model("lenet5", head="cam", pooling="gap", num_classes=2, in_chans=1)
    loc = Localizer(model, input_size=(8, 8))
    img = np.zeros((8, 8, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 100, 200, 50
    x = loc.preprocess([img])
    assert x.shape == (1, 1, 8, 8)
    np.testing.assert_allclose(x.numpy(), (0.299 * 100 + 0.587 * 200 + 0.114 * 50) / 255, rtol=1e-5)


# --- overlays and writers -------------------------------------------------------------------------------


def test_heatmap_and_overlay(tmp_path: Path):
    img = rectangle(144, 192, (120, 18, 179, 89))
    pred = Localizer(IdentityCAM(), topk=2, strategy_kwargs={"threshold": 0.5}).predict([img])[0]
    heat = pred.heatmap(0)
    assert heat.shape == (144, 192) and heat.dtype == np.float32 and heat.min() == 0 and heat.max() == 1
    assert np.all(heat[24:84, 126:174] > 0.9) and np.all(heat[108:, :90] < 0.05)
    assert pred.heatmap(1, size=(10, 20)).shape == (10, 20)
    with pytest.raises(ValueError, match="rank"):
        pred.heatmap(2)
    out = tmp_path / "deep" / "ov.png"
    canvas = draw_overlay(img, pred, out, alpha=0.5)
    written = np.asarray(Image.open(out))
    assert written.shape == (144, 192, 3) and np.array_equal(written, canvas)
    # jet colormap blended 50/50: white image + dark-red heat inside the rectangle → (255, 128, 128) ± jet's
    # exact red; black image + dark-blue heat far from it → (0, 0, 64) ± jet's exact blue
    assert canvas[60, 150, 0] > 190 and 100 < canvas[60, 150, 1] < 150 and 100 < canvas[60, 150, 2] < 150
    assert canvas[130, 175, 0] < 10 and canvas[130, 175, 1] < 10 and 50 < canvas[130, 175, 2] < 90
    assert tuple(canvas[70, 120]) == (0, 255, 0)  # the box outline (top-1 box starts at x = 120)
    assert draw_overlay(img, pred, max_side=96).shape == (72, 96, 3)
    with pytest.raises(ValueError, match="144×192"):
        draw_overlay(rectangle(192, 144, (0, 0, 1, 1)), pred)
    with pytest.raises(ValueError, match="alpha"):
        draw_overlay(img, pred, alpha=2.0)


def _pred() -> Prediction:
    model = IdentityCAM(interpolation="nearest")
    loc = Localizer(model, topk=2, box_strategy="moreaux", strategy_kwargs={"threshold": 0.5})
    pred = loc.predict([rectangle(64, 64, (16, 16, 47, 47))])[0]
    pred.source = "a/b.png"
    return pred


def test_voc_xml():
    pred = _pred()
    root = ET.fromstring(voc_xml(pred, "b.png", "a"))
    assert root.findtext("filename") == "b.png" and root.findtext("size/width") == "64"
    objs = root.findall("object")
    assert [o.findtext("name") for o in objs] == ["bright", "dark"]
    bright = objs[0].find("bndbox")
    assert [int(bright.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax")] == [17, 17, 48, 48]  # 1-based
    assert float(objs[0].findtext("score")) == pytest.approx(pred.top1.score * 1.0, abs=1e-6)


def test_coco_detections_and_json():
    pred = _pred()
    coco = coco_detections([pred], ["a/b.png"], ["bright", "dark"])
    assert coco["images"] == [{"id": 1, "file_name": "a/b.png", "width": 64, "height": 64}]
    assert coco["categories"] == [{"id": 1, "name": "bright"}, {"id": 2, "name": "dark"}]
    first = coco["annotations"][0]
    assert first["bbox"] == [16, 16, 32, 32] and first["area"] == 1024 and first["category_id"] == 1
    assert first["score"] == pytest.approx(round(pred.top1.score, 6))
    with pytest.raises(ValueError, match="file names"):
        coco_detections([pred], [], ["bright", "dark"])
    doc = predictions_json([pred], {"model": "m"}, skipped=[])
    assert doc["model"] == "m" and doc["images"][0]["classes"][0]["boxes"][0] == {"box": [16, 16, 47, 47], "score": 1.0}
    assert doc["images"][0]["image"] == "a/b.png" and doc["skipped"] == []
    assert short_name("suit, suit of clothes") == "suit"


# --- linear heads (Zhou et al. 2016 §4) ---------------------------------------------------------------


def _blobs(n_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 4, (n_classes, 6))
    y = np.repeat(np.arange(n_classes), 15)
    return np.abs(centers[y] + rng.normal(0, 0.5, (len(y), 6))), y


@pytest.mark.parametrize("n_classes", [2, 3])
def test_fit_linear_head_reproduces_the_classifier(n_classes: int):
    from sklearn.linear_model import LogisticRegression

    x, y = _blobs(n_classes)
    head = fit_linear_head(x, y, [f"c{i}" for i in range(n_classes)])
    assert head.weight.shape == (n_classes, 6) and head.train_accuracy == 1.0
    ref = LogisticRegression(C=1.0, max_iter=5000).fit(x, y)
    probs = torch.softmax(torch.from_numpy(x @ head.weight.T.astype(np.float64) + head.bias), dim=1).numpy()
    np.testing.assert_allclose(probs, ref.predict_proba(x), atol=1e-5)  # softmax of the head = predict_proba
    svm = fit_linear_head(x, y, [f"c{i}" for i in range(n_classes)], classifier="svm")
    assert svm.train_accuracy == 1.0 and svm.classifier == "svm"


def test_fit_linear_head_checks():
    x, y = _blobs(2)
    for args, match in [
        ((x, y, ["a"]), "at least 2 classes"),
        ((x, y[:-1], ["a", "b"]), "labels"),
        ((x, y, ["a", "b", "c"]), "'c' has no example"),
        ((x * np.nan, y, ["a", "b"]), "NaN"),
        ((x, y + 5, ["a", "b"]), "class indices"),
    ]:
        with pytest.raises(ValueError, match=match):
            fit_linear_head(*args)
    with pytest.raises(ValueError, match="C must be"):
        fit_linear_head(x, y, ["a", "b"], C=0)


class Payload:
    def __init__(self) -> None:
        self.value = 1


def test_linear_head_file_roundtrip_and_safety(tmp_path: Path):
    weight, bias = np.arange(6, dtype=np.float32).reshape(2, 3), np.array([0.5, -0.5])
    head = LinearHead(weight, bias, ["x", "y"], "m", "lenet5", (20, 30), "svm", 0.75)
    head.save(tmp_path / "h.pt")
    raw = torch.load(tmp_path / "h.pt", weights_only=True)  # tensors and plain python only
    assert raw["format"] == "wsol-linear-head" and raw["class_names"] == ["x", "y"]
    back = LinearHead.load(tmp_path / "h.pt")
    assert np.array_equal(back.weight, head.weight) and np.array_equal(back.bias, head.bias)
    assert (back.class_names, back.model, back.backbone, back.input_size) == (["x", "y"], "m", "lenet5", (20, 30))
    assert (back.classifier, back.train_accuracy) == ("svm", 0.75)
    torch.save({"format": "wsol-linear-head", "payload": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match=r"refusing to load.*Payload"):
        LinearHead.load(tmp_path / "evil.pt")
    torch.save({"weight": torch.zeros(2, 3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a wsol linear head"):
        LinearHead.load(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="2 class names for 3 classes"):
        LinearHead(np.zeros((3, 2)), np.zeros(3), ["a", "b"])


def test_with_linear_head_is_a_zhou_head_on_the_backbone():
    model = create_model("lenet5", head="cam", pooling="spam", num_classes=3, in_chans=1).eval()
    k = model.head.in_channels
    rng = np.random.default_rng(0)
    head = LinearHead(rng.normal(size=(2, k)), rng.normal(size=2), ["p", "q"], backbone="lenet5")
    net = with_linear_head(model, head)
    assert net.backbone is model.backbone and net.class_names == ["p", "q"] and net.num_classes == 2
    assert net.model_spec["head"] == "zhou" and model.model_spec["head"] == "cam"  # the original is untouched
    x = torch.rand(2, 1, 40, 40)
    with torch.no_grad():
        feats = model.backbone(x)
        logits, cams = net(x)
    gap = feats.mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(logits.numpy(), gap @ head.weight.T + head.bias, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(cams.mean(dim=(2, 3)).numpy() + head.bias, logits.numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=f"3 input features, the model's backbone gives {k}"):
        with_linear_head(model, LinearHead(np.zeros((2, 3)), np.zeros(2), ["a", "b"]))
    with pytest.raises(ValueError, match="fitted on backbone 'vgg16'"):
        with_linear_head(model, LinearHead(np.zeros((2, k)), np.zeros(2), ["a", "b"], backbone="vgg16"))


# --- TF-"SAME" receptive fields (timm Conv2dSame / MaxPool2dSame / AvgPool2dSame, ReLU6) ------------------


def test_tf_same_padding_hand_values():
    # max((⌈n/s⌉ − 1)·s + k − n, 0) with k the effective kernel
    assert tf_same_padding(224, 3, 2) == 1  # 111·2 + 3 − 224
    assert tf_same_padding(112, 5, 2) == 3  # 55·2 + 5 − 112
    assert tf_same_padding(7, 3, 1) == 2
    assert tf_same_padding(5, 1, 2) == 0
    assert tf_same_padding(10, 5, 1) == 4  # k = 3, dilation 2 → effective 5


class _Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        from timm.layers import create_conv2d

        self.conv = create_conv2d(c, c, 3, padding="same")
        self.act = nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.act(self.conv(x))


def _tf_same_net() -> CAMNet:
    from timm.layers import create_conv2d, create_pool2d

    torch.manual_seed(0)
    backbone = nn.Sequential(
        create_conv2d(3, 4, 3, stride=2, padding="same"),  # Conv2dSame
        nn.ReLU6(),
        _Residual(4),
        _Residual(4),
        _Residual(4),  # positive probe weights push the activations past 6 here
        create_pool2d("max", 3, stride=2, padding="same"),  # MaxPool2dSame (pads with -inf)
        create_conv2d(4, 4, 5, stride=2, padding="same"),
        nn.ReLU6(),
        _Residual(4),
        create_pool2d("avg", 2, stride=2, padding="same"),  # AvgPool2dSame
    )
    return CAMNet(backbone, build_head("cam", 4, 2))


def test_tf_same_layers_hooks_agree_with_the_gradient_probe_everywhere():
    from timm.layers.conv2d_same import Conv2dSame
    from timm.layers.pool2d_same import AvgPool2dSame, MaxPool2dSame

    net = _tf_same_net()
    kinds = {type(m) for m in net.modules()}
    assert {Conv2dSame, MaxPool2dSame, AvgPool2dSame} <= kinds
    size = (67, 61)  # odd sizes: asymmetric TF padding (more after than before)
    rf = receptive_field_chain(net, size, method="hooks")
    assert rf.method == "hooks" and rf.stride == (16, 16) and rf.size == (59, 59)
    # every CAM pixel, borders included: the backprojected box is the true input-gradient support
    h, w = rf.cam_size
    for y in range(h):
        for x in range(w):
            expected = gradient_support(net, size, (y, x))
            assert expected.any(), (y, x)
            assert np.array_equal(fast_backprojection([x], [y], rf, size), expected), (y, x)
    probe = receptive_field_chain(net, (167, 161), method="gradient")
    hooks = receptive_field_chain(net, (167, 161), method="hooks")
    assert (probe.stride, probe.padding, probe.size) == (hooks.stride, hooks.padding, hooks.size)


def test_pretrained_efficientnet_receptive_field_and_gudi():
    model = effnet()
    rf = receptive_field_chain(model, (224, 224), method="hooks")
    # hand computation over the stem (k3 s2), 16 inverted-residual blocks and the TF-"SAME" paddings:
    # K − 1 = Σ (k_i − 1)·J_i = 850, P = Σ p_i·J_i with p = 0 for the stride-2 3×3 layers at even sizes
    # (total padding 1 → 0 before) and 1 for the stride-2 5×5 ones (total 3 → 1 before)
    assert (rf.stride, rf.padding, rf.size, rf.cam_size) == ((32, 32), (394, 394), (851, 851), (7, 7))
    odd = receptive_field_chain(model, (225, 231), method="hooks")
    assert odd.cam_size == (8, 8) and odd.size == (851, 851) and odd.padding != rf.padding
    loc = Localizer(model, topk=1, box_strategy="gudi")
    assert loc.rf is not None and loc.rf.padding == (394, 394)
    assert loc.strategy_kwargs["ratio"] == pytest.approx(1 - 32 / 851)
    pred = loc.predict([hopper_path()])[0]
    assert pred.top1.name == "military uniform" and pred.image_size == (600, 512)
    boxes = pred.top1.boxes
    assert len(boxes) >= 1 and np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2] <= 511) and np.all(boxes[:, 3] <= 599)
    assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])


def test_pretrained_efficientnet_on_a_real_photo():
    loc = Localizer(effnet(), topk=5, strategy_kwargs={"threshold": 0.5})
    pred = loc.predict([hopper_path()])[0]
    names = [c.name for c in pred.classes]
    assert names[0] == "military uniform" and len(names) == 5
    assert sum(c.score for c in pred.classes) <= 1.0 and pred.top1.score > 0.3
    heat = pred.heatmap(0)
    assert heat.shape == (600, 512)
    assert heat[300:].mean() > heat[:300].mean() + 0.1  # the uniform fills the lower half of the portrait
    (box,) = pred.top1.boxes
    assert box[1] > 250 and box[3] == 599 and 0 <= box[0] < box[2] <= 511
