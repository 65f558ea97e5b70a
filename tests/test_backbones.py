"""Tests of wsol.models.backbones: CAM surgery, mapping resolution, receptive fields, backbone weight loading.

Expected numbers are derived by hand in the comments (PyTorch's ⌊(n + 2p − k)/s⌋ + 1 per layer; receptive
fields S = Π s_i, P = Σ p_i J_i, K − 1 = Σ (k_i − 1) J_i with J_i the jump before layer i, widest branch
where branches merge). Inputs are small (64–120 px) so the whole file runs in a few seconds on one core.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F

from wsol.localize import receptive_field_chain
from wsol.models import create_model, load_weights
from wsol.models.backbones import MAPPING_RESOLUTION, CutBackbone, mapping_resolution


@functools.cache
def model(name: str, **backbone_kwargs):
    """One CAMNet per (backbone, kwargs) for the whole module (building them is the slow part)."""
    return create_model(name, head="cam", num_classes=2, backbone_kwargs=backbone_kwargs).eval()


# --- mapping resolution ---------------------------------------------------------------------------


def _vgg16(h: int) -> int:
    return h // 16  # four 2×2/2 max pools, pool5 removed; 3×3/1/1 convs keep the size


def _googlenet(h: int) -> int:
    n = (h + 6 - 7) // 2 + 1  # conv1 7×7/2 pad 3 → ⌈h/2⌉
    for _ in range(3):  # maxpool1-3: 3×3/2 ceil_mode → ⌈(n − 3)/2⌉ + 1 = ⌊n/2⌋
        n = -(-(n - 3) // 2) + 1
    return n  # maxpool4 (after inception4e) removed


def _resnet50(h: int) -> int:
    n = (h + 6 - 7) // 2 + 1  # conv1 7×7/2 pad 3
    for _ in range(3):  # maxpool 3×3/2 pad 1, layer2 and layer3 3×3/2 pad 1; layer4 stride 1
        n = (n + 2 - 3) // 2 + 1
    return n


def _alexnet(h: int) -> int:
    n = (h + 4 - 11) // 4 + 1  # conv1 11×11/4 pad 2
    n = (n - 3) // 2 + 1  # pool1 3×3/2
    n = (n - 3) // 2 + 1  # conv2 keeps the size (5×5 pad 2), pool2 3×3/2; conv3-5 keep it, pool5 removed
    return n


def _inception_v3(h: int) -> int:
    n = (h - 3) // 2 + 1  # Conv2d_1a 3×3/2
    n -= 2  # Conv2d_2a 3×3 valid (2b pads 1)
    n = (n - 3) // 2 + 1  # Pool1 3×3/2
    n -= 2  # Conv2d_4a 3×3 valid (3b is 1×1)
    n = (n - 3) // 2 + 1  # Pool2 3×3/2
    return (n - 3) // 2 + 1  # Mixed_6a: 3×3/2 valid branches; Mixed_5x and 6b-6e keep the size


FORMULA = {"vgg16": _vgg16, "googlenet": _googlenet, "resnet50": _resnet50, "alexnet": _alexnet,
           "inception_v3": _inception_v3}


@pytest.mark.parametrize(
    "name, expected",
    [("vgg16", 14), ("googlenet", 14), ("resnet50", 14), ("alexnet", 13), ("inception_v3", 17)],
)
def test_formula_and_shape_pass_give_the_papers_mapping_resolution(name, expected):
    (size, _), maps, _ = MAPPING_RESOLUTION[name]
    assert FORMULA[name](size) == expected  # Zhou §3.1: 13 (AlexNet), 14 (VGG, GoogLeNet); Moreaux §3: 17
    assert mapping_resolution(model(name), (size, size)) == (expected, expected) == maps
    assert model(name).pretrained_cfg["input_size"] == (3, size, size)


@pytest.mark.parametrize(
    "name, sizes",
    [("vgg16", [(64, 80)]), ("googlenet", [(64, 70), (61, 61)]), ("resnet50", [(64, 72), (63, 63)]),
     ("alexnet", [(67, 99)]), ("inception_v3", [(107, 120)])],
)
def test_real_forward_matches_the_formula(name, sizes):
    net = model(name)
    for h, w in sizes:
        with torch.no_grad():
            _, cams = net(torch.rand(1, 3, h, w))
        assert cams.shape[-2:] == (FORMULA[name](h), FORMULA[name](w))
        assert mapping_resolution(net, (h, w)) == (FORMULA[name](h), FORMULA[name](w))


@pytest.mark.parametrize("name", ["alexnet", "googlenet"])
def test_cheap_backbones_at_default_size(name):
    (size, _), maps, _ = MAPPING_RESOLUTION[name]
    with torch.no_grad():
        _, cams = model(name)(torch.rand(1, 3, size, size))
    assert cams.shape == (1, 2, *maps)


def test_mapping_resolution_rejects_tiny_input_and_bad_size():
    with pytest.raises(ValueError, match="too small"):
        mapping_resolution(model("alexnet"), (8, 8))
    with pytest.raises(ValueError, match="input_size"):
        mapping_resolution(model("alexnet"), (0, 8))


# --- receptive fields -----------------------------------------------------------------------------

# (S, P, K); jumps J in brackets.
RF = {
    # 13 convs 3×3/1/1 and 4 pools 2×2/2: K − 1 = 2·2·1 + 1 + 2·2·2 + 2 + 3·2·4 + 4 + 3·2·8 + 8 + 3·2·16 = 195
    # (the classic 196 of conv5_3) + the extra 3×3 conv at J=16: +32 → 228; P = 2 + 4 + 12 + 24 + 48 + 16 = 106
    "vgg16": ((16, 16), (106, 106), (228, 228)),
    # conv1 7×7/2 p3 [1]: 6, P 3 | pool1 3/2 [2]: 4 | conv3 3×3 p1 [4]: 8, P 4 | pool2 [4]: 8 |
    # inception3a, 3b: widest branch 3×3 p1 [8]: 2·16, P 16 | pool3 [8]: 16 | 4a-4e [16]: 5·32, P 80 |
    # extra conv [16]: 32, P 16  →  K = 267, P = 119
    "googlenet": ((16, 16), (119, 119), (267, 267)),
    # stem: 1a 3×3/2 [1]: 2 | 2a [2]: 4 | 2b p1 [2]: 4, P 2 | Pool1 [2]: 4 | 4a [4]: 8 | Pool2 [4]: 8 → 30
    # Mixed_5b-d [8]: 5×5 p2 or two 3×3 p1: 3·32, P 48 | Mixed_6a [8]: left p 1, right 3 (1x1, 3×3 p1,
    # 3×3/2 p0): 32, P 8 | Mixed_6b-e [16]: two 7-taps per axis, p 6: 4·192, P 384  →  K = 927, P = 442
    "inception_v3": ((16, 16), (442, 442), (927, 927)),
    # conv1 7×7/2 p3 [1]: 6, P 3 | maxpool 3/2 p1 [2]: 4, P 2 | layer1 3 blocks 3×3 p1 [4]: 24, P 12 |
    # layer2 (stride in conv2) [4] then 3 blocks [8]: 8 + 48, P 4 + 24 | layer3 [8] then 5 [16]: 16 + 160,
    # P 8 + 80 | layer4: first block 3×3 d1 [16]: 32, P 16; 2 blocks dilation 2 (k_eff 5, p 2): 128, P 64
    # → K = 427 (as the stride-32 ResNet-50: dilation keeps the field), P = 213
    "resnet50": ((16, 16), (213, 213), (427, 427)),
    # conv1 11×11/4 p2 [1]: 10, P 2 | pool1 3/2 [4]: 8 | conv2 5×5 p2 [8]: 32, P 16 | pool2 [8]: 16 |
    # conv3-5 3×3 p1 [16]: 96, P 48 → 163 (the classic conv5 field) | extra [16]: 32, P 16 → K 195, P 82
    "alexnet": ((16, 16), (82, 82), (195, 195)),
}


@pytest.mark.parametrize(
    "name, size", [("vgg16", 64), ("googlenet", 64), ("inception_v3", 107), ("resnet50", 64), ("alexnet", 67)]
)
def test_receptive_field_chain_of_each_backbone(name, size):
    rf = receptive_field_chain(model(name), (size, size))
    assert rf.method == "hooks"  # every spatial op is a hooked module (Inception pools included)
    assert (rf.stride, rf.padding, rf.size) == RF[name]
    assert rf.cam_size == (FORMULA[name](size),) * 2


@pytest.mark.parametrize(
    "name, expected",
    [("vgg16", ((16, 16), (90, 90), (196, 196))), ("alexnet", ((16, 16), (66, 66), (163, 163)))],
)
def test_without_extra_conv_the_classic_conv5_fields(name, expected):
    net = model(name, extra_conv=None)
    assert net.backbone.out_channels in (512, 256) and not any("extra" in k for k in net.state_dict())
    rf = receptive_field_chain(net, (64, 64))
    assert (rf.stride, rf.padding, rf.size) == expected and rf.sequential


def test_extra_conv_is_zhous_layer():
    extra = model("vgg16").backbone.extra
    conv = extra[0]
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding) == (
        512, 1024, (3, 3), (1, 1), (1, 1))
    assert isinstance(extra[1], torch.nn.ReLU)
    with torch.no_grad():
        assert model("vgg16").backbone(torch.randn(1, 3, 64, 64)).min() >= 0  # ReLU after the added conv


# --- backbone weight loading ----------------------------------------------------------------------


def test_googlenet_loads_a_torchvision_file_and_equals_the_uncut_network(tmp_path):
    import torchvision

    ref = torchvision.models.googlenet(weights=None, aux_logits=True, transform_input=False, init_weights=True).eval()
    path = tmp_path / "googlenet.pth"
    torch.save(ref.state_dict(), path)
    net = create_model("googlenet", head="zhou", num_classes=3).eval()
    report = load_weights(net, path)
    assert report.complete and not report.adapted
    assert any(k.startswith("aux1.") for k in report.skipped) and "fc.weight" in report.skipped
    assert any(k.startswith("inception5b.") for k in report.skipped)
    assert set(report.new) == {"backbone.extra.0.weight", "backbone.extra.0.bias", "head.fc.weight", "head.fc.bias"}
    seen = {}
    ref.inception4e.register_forward_hook(lambda m, i, o: seen.setdefault("out", o))
    x = torch.randn(2, 3, 80, 80)
    with torch.no_grad():
        ref(x)
        ours = net.backbone[:-1](x)  # everything but the added conv
    torch.testing.assert_close(ours, seen["out"], rtol=0, atol=0)


def test_inception_v3_hookable_blocks_compute_timms_forward():
    import timm

    ref = timm.create_model("inception_v3", pretrained=False, aux_logits=True).eval()
    net = create_model("inception_v3", head="gapm", num_classes=2).eval()
    report = load_weights(net, ref.state_dict())
    assert report.complete and {k.split(".")[0] for k in report.skipped} == {
        "Mixed_7a", "Mixed_7b", "Mixed_7c", "AuxLogits", "fc"}
    x = torch.randn(1, 3, 107, 107)
    with torch.no_grad():
        torch.testing.assert_close(net.backbone(x), ref.forward_preaux(x), rtol=1e-5, atol=1e-5)


def test_resnet50_stride16_equals_torchvisions_dilated_resnet():
    import timm
    import torchvision

    state = timm.create_model("resnet50", pretrained=False).state_dict()  # ordinary stride-32 weights
    net = create_model("resnet50", head="cam", num_classes=2).eval()
    report = load_weights(net, state)
    assert report.complete and report.skipped == ["fc.weight", "fc.bias"]
    # torchvision's independent implementation of the same surgery, same tensor names
    tv = torchvision.models.resnet50(weights=None, replace_stride_with_dilation=[False, False, True]).eval()
    tv.load_state_dict(state)
    tv_features = torch.nn.Sequential(*list(tv.children())[:-2])
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(net.backbone(x), tv_features(x), rtol=1e-4, atol=1e-4)


def test_vgg16_and_alexnet_outputs_are_the_uncut_features_before_pool5():
    import torchvision

    tv_vgg_features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"]).eval()
    # torchvision's vgg16 key layout; the 120 M-parameter classifier is replaced by same-named small stand-ins
    state = {f"features.{k}": v for k, v in tv_vgg_features.state_dict().items()}
    state.update({"classifier.0.weight": torch.zeros(4, 8), "classifier.0.bias": torch.zeros(4)})
    vgg = create_model("vgg16", head="cam", num_classes=2).eval()
    report = load_weights(vgg, state)
    assert report.complete and report.skipped == ["classifier.0.weight", "classifier.0.bias"]
    alex_ref = torchvision.models.alexnet(weights=None).eval()
    alex = create_model("alexnet", head="cam", num_classes=2, backbone_kwargs={"extra_conv": None}).eval()
    assert load_weights(alex, alex_ref.state_dict()).complete
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(F.max_pool2d(vgg.backbone.features(x), 2, 2), tv_vgg_features(x))
        torch.testing.assert_close(F.max_pool2d(alex.backbone(x), 3, 2), alex_ref.features(x))


def test_strict_loading_names_missing_and_unexpected_keys():
    import torchvision

    state = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False).state_dict()
    del state["inception4e.branch1.conv.weight"]
    state["bogus.weight"] = torch.zeros(1)
    net = model("googlenet")
    with pytest.raises(ValueError, match=r"(?s)missing.*inception4e\.branch1\.conv\.weight.*unexpected.*bogus"):
        load_weights(net, state)
    with pytest.warns(UserWarning, match="partial weight loading"):
        report = load_weights(create_model("googlenet"), state, strict=False)
    assert report.missing == ["backbone.inception4e.branch1.conv.weight"] and report.unexpected == ["bogus.weight"]


def test_wrong_architecture_and_wrong_shapes_are_refused():
    import timm

    with pytest.raises(ValueError, match="no tensor matches the backbone"):
        load_weights(create_model("alexnet"), timm.create_model("resnet18").state_dict())
    state = timm.create_model("resnet50", pretrained=False).state_dict()
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 3, 3)
    with pytest.raises(ValueError, match=r"layer1\.0\.conv1\.weight.*\(64, 64, 3, 3\) vs model \(64, 64, 1, 1\)"):
        load_weights(create_model("resnet50"), state)


# --- timm:<name> ----------------------------------------------------------------------------------


def test_timm_prefix_forward_features_and_stage():
    import timm

    ref = timm.create_model("resnet18", pretrained=False).eval()
    last = create_model("timm:resnet18", head="zhou", num_classes=1000).eval()
    stage3 = create_model("timm:resnet18", head="cam", num_classes=3, backbone_kwargs={"stage": 3}).eval()
    assert last.model_spec["name"] == "timm:resnet18" and stage3.model_spec["backbone_kwargs"] == {"stage": 3}
    assert (last.backbone.out_channels, last.backbone.reduction) == (512, 32)
    assert (stage3.backbone.out_channels, stage3.backbone.reduction) == (256, 16)
    r1 = load_weights(last, ref.state_dict())
    r2 = load_weights(stage3, ref.state_dict())
    assert r1.skipped == ["fc.weight", "fc.bias"]
    assert r2.complete and any(k.startswith("layer4.") for k in r2.skipped) and "fc.weight" in r2.skipped
    seen = {}
    ref.layer3.register_forward_hook(lambda m, i, o: seen.setdefault("layer3", o))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected_last = ref.forward_features(x)
        torch.testing.assert_close(last.backbone(x), expected_last, rtol=0, atol=0)
        torch.testing.assert_close(stage3.backbone(x), seen["layer3"], rtol=0, atol=0)
        # the Zhou head on forward_features reproduces timm's own classifier once given its FC
        last.head.fc.load_state_dict(ref.fc.state_dict())
        torch.testing.assert_close(last(x).logits, ref(x), rtol=1e-5, atol=1e-5)
    rf = receptive_field_chain(stage3, (64, 64))
    assert rf.stride == (16, 16) and rf.method == "hooks"


def test_timm_in_chans_adapts_the_first_conv():
    import timm

    ref = timm.create_model("resnet18", pretrained=False)
    net = create_model("timm:resnet18", in_chans=1, num_classes=2, backbone_kwargs={"stage": 1})
    report = load_weights(net, ref.state_dict())
    assert report.adapted == ["backbone.model.conv1.weight"]
    # timm.models.adapt_input_conv for one channel: the sum over the RGB filters
    torch.testing.assert_close(net.backbone.model.conv1.weight, ref.conv1.weight.sum(dim=1, keepdim=True))
    assert len(net.pretrained_cfg["mean"]) == 1
    assert math.isclose(net.pretrained_cfg["mean"][0], sum(ref.pretrained_cfg["mean"]) / 3)


def test_timm_token_models_need_a_stage():
    vit = create_model("timm:vit_tiny_patch16_224", num_classes=2).eval()
    with pytest.raises(ValueError, match=r"\(1, 197, 192\), not \(B, C, H, W\) maps; pass backbone_kwargs=\{'stage'"):
        vit(torch.rand(1, 3, 224, 224))
    vit = create_model("timm:vit_tiny_patch16_224", num_classes=2, backbone_kwargs={"stage": -1}).eval()
    with torch.no_grad():
        assert vit(torch.rand(1, 3, 224, 224)).cams.shape == (1, 2, 14, 14)  # 224 / patch 16
    assert (vit.backbone.out_channels, vit.backbone.stage) == (192, 11)


def test_timm_errors():
    with pytest.raises(ValueError, match=r"unknown timm model 'resnet181'.*resnet18"):
        create_model("timm:resnet181")
    with pytest.raises(ValueError, match="pretrained"):
        create_model("timm:resnet18", backbone_kwargs={"pretrained": True})
    with pytest.raises(ValueError, match=r"stage must be an int in \[-5, 5\)"):
        create_model("timm:resnet18", backbone_kwargs={"stage": 5})
    with pytest.raises(ValueError, match=r"unknown model 'nope'.*vgg16.*timm:<model name>"):
        create_model("nope")


def test_named_backbone_argument_errors():
    with pytest.raises(ValueError, match="extra_conv"):
        create_model("vgg16", backbone_kwargs={"extra_conv": -3})
    with pytest.raises(ValueError, match="output_stride"):
        create_model("resnet50", backbone_kwargs={"output_stride": 4})
    with pytest.raises(ValueError, match="in_chans"):
        create_model("alexnet", in_chans=0)


def test_grayscale_named_backbones():
    for name in ("alexnet", "googlenet"):
        net = create_model(name, in_chans=1, num_classes=2).eval()
        assert isinstance(net.backbone, CutBackbone) and net.pretrained_cfg["input_size"][0] == 1
        with torch.no_grad():
            assert net(torch.rand(1, 1, 64, 64)).cams.shape[1] == 2


def test_vgg16_pool5_is_gudis_stride_32_network():
    """``pool5=True`` = the stride-16 features followed by VGG's 2×2 max pool (same weights), 15×15 at 500."""
    torch.manual_seed(0)
    plain = create_model("vgg16", head="cam", num_classes=3, backbone_kwargs={"extra_conv": None})
    pooled = create_model("vgg16", head="cam", num_classes=3, backbone_kwargs={"extra_conv": None, "pool5": True})
    pooled.load_state_dict(plain.state_dict())
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(pooled.backbone(x), F.max_pool2d(plain.backbone(x), 2))
    assert mapping_resolution(pooled, (500, 500)) == (15, 15)
    assert mapping_resolution(plain, (500, 500)) == (31, 31)
    with pytest.raises(ValueError, match="pool5"):
        create_model("vgg16", backbone_kwargs={"pool5": "yes"})
