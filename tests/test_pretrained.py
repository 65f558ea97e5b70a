"""Tests of wsol.models.loading and wsol.models.pretrained: safe files, checkpoints, the offline EfficientNet-Lite0.

The pretrained checks use real photos shipped by installed packages (matplotlib's ``grace_hopper.jpg``,
scikit-learn's ``china.jpg`` / ``flower.jpg``), nothing downloaded.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from PIL import Image

import wsol
from wsol.models import CAMNet, create_model, load_model, load_weights, preprocess_image, save_model_checkpoint
from wsol.models.loading import read_weights_file
from wsol.models.pretrained import (
    efficientnet_lite0_cam,
    efficientnet_lite0_file,
    efficientnet_lite0_state_dict,
    imagenet_class_names,
    map_state_dict_by_order,
)
from wsol.trainer import TrainConfig, Trainer, atomic_torch_save


@functools.cache
def effnet() -> CAMNet:
    return load_model("efficientnet_lite0")


class Payload:
    """A custom class: pickling an instance stores a reference to code, which weights_only refuses."""

    def __init__(self) -> None:
        self.value = 1


# --- EfficientNet-Lite0 ---------------------------------------------------------------------------


def test_efficientnet_logits_equal_timms_own_logits():
    import timm

    ref = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    ref.load_state_dict(efficientnet_lite0_state_dict())
    model = effnet()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        out = model(x)
        torch.testing.assert_close(out.logits, ref(x), rtol=1e-5, atol=1e-5)
        # Zhou eq. 1–2 with GAP: mean of the CAM + bias = logit
        torch.testing.assert_close(out.cams.mean(dim=(2, 3)) + model.head.fc.bias, out.logits, rtol=1e-4, atol=1e-4)
    assert out.cams.shape == (2, 1000, 3, 3)  # stride 32: ⌈96/32⌉


def test_efficientnet_metadata():
    model = effnet()
    assert not model.training and model.num_classes == 1000
    assert model.pretrained_cfg["input_size"] == (3, 224, 224)
    assert model.pretrained_cfg["mean"] == (0.5, 0.5, 0.5) and model.pretrained_cfg["std"] == (0.5, 0.5, 0.5)
    names = model.class_names
    assert len(names) == 1000 and names == imagenet_class_names()
    assert names[0].startswith("tench") and names[652] == "military uniform" and names[999].startswith("toilet tissue")
    assert model.model_spec["name"] == "timm:tf_efficientnet_lite0" and model.model_spec["head"] == "zhou"


def _top5(image) -> list[str]:
    model = effnet()
    with torch.no_grad():
        logits = model(preprocess_image(image, model.pretrained_cfg)).logits[0]
    return [model.class_names[i] for i in logits.topk(5).indices.tolist()]


def test_efficientnet_classifies_real_photos():
    from matplotlib import cbook
    from sklearn.datasets import load_sample_image

    hopper = _top5(Image.open(cbook.get_sample_data("grace_hopper.jpg")))
    assert "military uniform" in hopper
    assert {"Windsor tie", "suit, suit of clothes", "bow tie, bow-tie, bowtie"} & set(hopper)
    assert _top5(load_sample_image("china.jpg"))[0] == "palace"
    assert _top5(load_sample_image("flower.jpg"))[0] == "daisy"


def test_efficientnet_cams_localize_on_a_real_photo():
    from matplotlib import cbook

    model = effnet()
    with torch.no_grad():
        cams = model(preprocess_image(Image.open(cbook.get_sample_data("grace_hopper.jpg")), model.pretrained_cfg)).cams
    assert cams.shape == (1, 1000, 7, 7)

    def peak_row(name: str) -> int:
        return int(cams[0, model.class_names.index(name)].argmax()) // 7

    assert peak_row("Windsor tie") >= 5  # the tie is at the bottom of the portrait
    assert peak_row("mortarboard") <= 1  # the cap at the top


def test_pretrained_with_other_classes_keeps_the_backbone():
    model = load_model("efficientnet_lite0", num_classes=5)
    assert model.num_classes == 5 and model.class_names is None
    ref = effnet().backbone.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in model.backbone.state_dict().items())
    assert efficientnet_lite0_cam(pretrained=False).class_names is None


def test_mapping_by_order_checks_count_and_shapes():
    target = {"a.weight": torch.zeros(2, 3), "a.bias": torch.zeros(2)}
    mapped = map_state_dict_by_order({"x.w": torch.ones(2, 3), "x.b": torch.ones(2)}, target)
    assert list(mapped) == ["a.weight", "a.bias"] and torch.equal(mapped["a.bias"], torch.ones(2))
    with pytest.raises(ValueError, match=r"#1 'x\.b' \(3,\) does not fit 'a\.bias' \(2,\)"):
        map_state_dict_by_order({"x.w": torch.ones(2, 3), "x.b": torch.ones(3)}, target)
    with pytest.raises(ValueError, match="1 tensors, the target architecture 2"):
        map_state_dict_by_order({"x.w": torch.ones(2, 3)}, target)
    # the shipped file: same count and every shape equal to timm's tf_efficientnet_lite0
    assert len(efficientnet_lite0_state_dict()) == len(read_weights_file(efficientnet_lite0_file())) == 296


# --- preprocessing --------------------------------------------------------------------------------


def test_preprocess_image_resize_crop_normalize():
    cfg = {"input_size": (3, 4, 4), "mean": (0.5, 0.25, 0.0), "std": (0.5, 0.25, 1.0), "crop_pct": 0.5,
           "interpolation": "bilinear"}
    flat = np.zeros((10, 20, 3), dtype=np.uint8)
    flat[...] = (255, 51, 0)
    x = preprocess_image(flat, cfg)
    assert x.shape == (1, 3, 4, 4)
    expected = torch.tensor([(1.0 - 0.5) / 0.5, (0.2 - 0.25) / 0.25, 0.0])
    torch.testing.assert_close(x[0].mean(dim=(1, 2)), expected)  # a constant image stays constant
    # crop_pct 0.5: shorter side resized to 8 (image 16×8), then the centre 4×4 is kept: columns 6..9
    stripes = np.zeros((10, 20), dtype=np.uint8)
    stripes[:, 10:] = 255  # right half white → in the 16-wide resize, columns 8.. are white
    gray = preprocess_image(stripes, {"input_size": (1, 4, 4), "mean": (0.0,), "std": (1.0,), "crop_pct": 0.5,
                                      "interpolation": "nearest"})
    torch.testing.assert_close(gray[0, 0], torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 4))
    with pytest.raises(ValueError, match="uint8"):
        preprocess_image(np.zeros((4, 4, 3), dtype=np.float32), cfg)
    with pytest.raises(ValueError, match="input_size"):
        preprocess_image(flat, {"mean": (0.5,), "std": (0.5,)})


# --- safe loading ---------------------------------------------------------------------------------


def test_arbitrary_pickles_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {"head.fc.weight": torch.zeros(2, 2)}, "payload": Payload()}, path)
    refused = r"refusing to load .*evil\.pt.*test_pretrained\.Payload.*weights_only=True.*unsafe"
    with pytest.raises(ValueError, match=refused):
        load_weights(create_model("lenet5", in_chans=1, num_classes=2), path)
    with pytest.raises(ValueError, match="weights_only"):
        load_model(str(path))


def test_missing_corrupt_and_non_state_dict_files(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        read_weights_file(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="cannot read weights file"):
        read_weights_file(tmp_path / "junk.pt")
    torch.save({"weights": [1, 2, 3]}, tmp_path / "list.pt")
    with pytest.raises(ValueError, match="not a state dict"):
        load_weights(create_model("lenet5", in_chans=1), tmp_path / "list.pt")


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown model 'resnet9000'.*efficientnet_lite0"):
        load_model("resnet9000")


# --- model checkpoints ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "lenet5", "head": "gapm", "num_classes": 3, "in_chans": 1, "m": 2},
        {"name": "timm:resnet18", "head": "cam", "pooling": "lse", "num_classes": 3,
         "backbone_kwargs": {"stage": 1}},
    ],
)
def test_save_and_load_model_round_trip(tmp_path, kwargs):
    model = create_model(**kwargs)
    chans = kwargs.get("in_chans", 3)
    path = tmp_path / "model.pt"
    save_model_checkpoint(model, path, class_names=["cat", "dog", "bird"])
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # atomic: no temp file left behind
    loaded = load_model(str(path))
    assert loaded.class_names == ["cat", "dog", "bird"] and not loaded.training
    assert loaded.model_spec == model.model_spec and loaded.pretrained_cfg == model.pretrained_cfg
    x = torch.rand(2, chans, 64, 64)
    model.eval()
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.cams, b.cams)
    with pytest.raises(ValueError, match=r"3 classes, but num_classes=5"):
        load_model(str(path), num_classes=5)
    bigger = create_model(**{**kwargs, "num_classes": 5})
    with pytest.raises(ValueError, match=r"3 classes, but the model has num_classes=5"):
        load_weights(bigger, path)


def test_save_model_checkpoint_errors(tmp_path):
    bare = CAMNet(torch.nn.Conv2d(1, 4, 3), wsol.build_head("cam", 4, 2))
    with pytest.raises(ValueError, match="no model_spec"):
        save_model_checkpoint(bare, tmp_path / "a.pt")
    model = create_model("lenet5", in_chans=1, num_classes=2)
    with pytest.raises(ValueError, match="class_names has 3 entries, the model has num_classes=2"):
        save_model_checkpoint(model, tmp_path / "a.pt", class_names=["a", "b", "c"])
    pooled = create_model("lenet5", in_chans=1, num_classes=2, pooling=wsol.build_pooling("gap"))
    with pytest.raises(ValueError, match="not plain python"):
        save_model_checkpoint(pooled, tmp_path / "a.pt")
    assert not list(tmp_path.iterdir())


def _train_lenet(tmp_path, num_classes: int, head: str, **head_kwargs):
    gen = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.rand(4, 1, 32, 32, generator=gen), torch.tensor([0, 1, 0, 1]))
    model = create_model("lenet5", head=head, num_classes=num_classes, in_chans=1, **head_kwargs)
    cfg = TrainConfig(epochs=1, batch_size=2, device="cpu", out_dir=str(tmp_path), progress=False, log_format="none")
    Trainer(model, data, config=cfg).fit()
    return model


@pytest.mark.parametrize("head, kwargs", [("gapm", {"m": 2}), ("cam", {}), ("zhou", {})])
def test_trainer_checkpoints_load_and_class_mismatch_is_named(tmp_path, head, kwargs):
    trained = _train_lenet(tmp_path, 3, head, **kwargs)
    fresh = create_model("lenet5", head=head, num_classes=3, in_chans=1, **kwargs)
    report = load_weights(fresh, tmp_path / "last.pt")
    assert report.kind == "checkpoint" and report.complete
    ref = trained.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in fresh.state_dict().items())
    other = create_model("lenet5", head=head, num_classes=7, in_chans=1, **kwargs)
    with pytest.raises(ValueError, match=r"3 classes, but the model has num_classes=7"):
        load_weights(other, tmp_path / "last.pt")
    # trainer checkpoints record the model spec, so load_model rebuilds the trained network
    rebuilt = load_model(str(tmp_path / "last.pt"))
    assert all(torch.equal(v, ref[k]) for k, v in rebuilt.state_dict().items())
    # a checkpoint without it (hand-made) is refused with a clear message
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    del ckpt["model_spec"]
    atomic_torch_save(ckpt, tmp_path / "nospec.pt")
    with pytest.raises(ValueError, match="no model_spec"):
        load_model(str(tmp_path / "nospec.pt"))


def test_atomic_checkpoint_and_partial_state(tmp_path):
    model = create_model("lenet5", in_chans=1, num_classes=2)
    state = model.state_dict()
    del state["head.cam.bias"]
    atomic_torch_save({"model": state}, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match=r"(?s)missing.*head\.cam\.bias"):
        load_weights(create_model("lenet5", in_chans=1, num_classes=2), tmp_path / "partial.pt")
    with pytest.warns(UserWarning, match="partial weight loading"):
        report = load_weights(create_model("lenet5", in_chans=1, num_classes=2), tmp_path / "partial.pt", strict=False)
    assert report.missing == ["head.cam.bias"] and len(report.loaded) == len(state)
