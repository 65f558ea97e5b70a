"""Tests of wsol.heads: the papers' identities between logits and class maps, and the regularizers."""

from __future__ import annotations

import pytest
import torch

from wsol.heads import (
    ActivityRegularizer,
    CAMLayerHead,
    CAMOutput,
    GAPmHead,
    GWAPHead,
    ZhouHead,
    activity_regularization,
    build_head,
    list_heads,
)
from wsol.pooling import SPAMPool


@pytest.fixture
def features() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(3, 8, 5, 7)


def test_registry_names():
    assert set(list_heads()) == {"zhou", "cam", "gapm", "gwap", "gwap_cs"}
    with pytest.raises(ValueError, match=r"unknown head 'fc'.*zhou"):
        build_head("fc", 8, 2)


def test_cam_output_unpacks_as_pair_and_keeps_extras():
    out = CAMOutput(torch.zeros(1, 2), torch.ones(1, 2, 3, 3), {"alpha": torch.zeros(1)})
    logits, cams = out
    assert logits is out.logits and cams is out.cams and len(out) == 2
    assert set(out.extras) == {"alpha"}


def test_zhou_identity_mean_of_cam_plus_bias_is_logit(features):
    head = ZhouHead(8, 4)
    logits, cams = head(features)
    assert cams.shape == (3, 4, 5, 7)
    assert torch.allclose(cams.mean(dim=(2, 3)) + head.fc.bias, logits, atol=1e-5)
    # eq. 2 by explicit loop over classes and units
    w = head.fc.weight
    for c in range(4):
        manual = sum(w[c, k] * features[:, k] for k in range(8))
        assert torch.allclose(cams[:, c], manual, atol=1e-5)


def test_cam_layer_head_pools_its_own_maps(features):
    head = CAMLayerHead(8, 3, pooling="spam", kernel_sizes=(1, 2, None))
    logits, cams = head(features)
    expected_maps = torch.einsum("ck,bkhw->bchw", head.cam.weight[:, :, 0, 0], features)
    expected_maps = expected_maps + head.cam.bias.view(1, -1, 1, 1)
    assert torch.allclose(cams, expected_maps, atol=1e-5)
    assert torch.allclose(logits, SPAMPool((1, 2, None))(cams), atol=1e-6)


def test_cam_layer_head_output_affine_and_threshold(features):
    head = CAMLayerHead(8, 2, pooling="gmp", output_affine=True)
    with torch.no_grad():
        head.scale.copy_(torch.tensor([2.0, -0.5]))
        head.bias.copy_(torch.tensor([-1.0, 1.0]))
    logits, cams = head(features)
    pooled = cams.flatten(2).amax(-1)
    assert torch.allclose(logits, pooled * head.scale + head.bias, atol=1e-6)
    # the CAM value where p = sigmoid(a s + d) = 0.5 is s* = -d / a
    assert torch.allclose(head.cam_thresholds(), torch.tensor([0.5, 2.0]))
    assert torch.equal(CAMLayerHead(8, 2).cam_thresholds(), torch.zeros(2))


def test_gapm_cam_is_sum_of_its_maps_and_logits_sum_of_pooled_maps(features):
    head = GAPmHead(8, 3, m=5)
    out = head(features)
    logits, cams = out
    maps = out.extras["activations"]
    assert maps.shape == (3, 15, 5, 7) and (maps >= 0).all()  # ReLU maps
    for c in range(3):
        assert torch.allclose(cams[:, c], maps[:, 5 * c : 5 * c + 5].sum(dim=1))  # eq. 4
        assert torch.allclose(logits[:, c], maps[:, 5 * c : 5 * c + 5].mean(dim=(2, 3)).sum(dim=1), atol=1e-6)
    assert cams.shape[-2:] == features.shape[-2:]  # padded 3x3 conv keeps the resolution


def test_gwap_head_identity_logit_is_alpha_weighted_cam(features):
    head = GWAPHead(8, 4)
    out = head(features)
    alpha = out.extras["alpha"]
    assert alpha.shape == (3, 1, 5, 7)
    assert torch.allclose(alpha.sum(dim=(2, 3)), torch.ones(3, 1))
    weighted = (alpha * out.cams).sum(dim=(2, 3)) + head.fc.bias
    assert torch.allclose(weighted, out.logits, atol=1e-5)


def test_gwap_cs_head_has_background_map_and_class_alphas(features):
    head = build_head("gwap_cs", 8, 3)
    out = head(features)
    assert head.cam.out_channels == 4  # 3 classes + background
    assert out.cams.shape == (3, 3, 5, 7)
    assert out.extras["alpha"].shape == (3, 3, 5, 7)
    assert torch.allclose((out.extras["alpha"] * out.cams).sum(dim=(2, 3)), out.logits, atol=1e-5)


@pytest.mark.parametrize("name", ["zhou", "cam", "gapm", "gwap", "gwap_cs"])
def test_every_head_single_forward_non_square_batch1_bfloat16(name):
    torch.manual_seed(1)
    head = build_head(name, 6, 2)
    x = torch.randn(1, 6, 4, 9)
    logits, cams = head(x)
    assert logits.shape == (1, 2) and cams.shape == (1, 2, 4, 9)
    head16 = head.to(torch.bfloat16)
    l16, c16 = head16(x.to(torch.bfloat16))
    assert l16.dtype == torch.bfloat16 and c16.dtype == torch.bfloat16
    assert torch.allclose(l16.float(), logits, atol=0.15, rtol=0.05)


@pytest.mark.parametrize("name", ["zhou", "cam", "gapm", "gwap", "gwap_cs"])
def test_heads_reject_wrong_input(name):
    head = build_head(name, 6, 2)
    with pytest.raises(ValueError, match="in_channels=6"):
        head(torch.zeros(1, 5, 3, 3))
    with pytest.raises(ValueError, match=r"\(B, K, H, W\)"):
        head(torch.zeros(6, 3, 3))


def test_heads_reject_bad_arguments():
    with pytest.raises(ValueError, match="m must be a positive int"):
        GAPmHead(4, 2, m=0)
    with pytest.raises(ValueError, match="num_classes"):
        build_head("zhou", 4, 0)
    with pytest.raises(ValueError, match="unknown pooling"):
        build_head("cam", 4, 2, pooling="nope")
    with pytest.raises(ValueError, match="gwap"):
        build_head("zhou", 4, 2, pooling="gwap_cs")


def test_activity_regularization_hand_values():
    # batch of 2 images, 2 maps of 1x2 pixels each
    maps = torch.tensor(
        [
            [[[1.0, 2.0]], [[0.0, 3.0]]],
            [[[4.0, 0.0]], [[-1.0, -2.0]]],
        ]
    )
    # L1: image 0: |1+2| + |0+3| = 6; image 1: |4| + |-3| = 7; mean 6.5
    assert activity_regularization(maps, "l1", alpha=2.0).item() == pytest.approx(2.0 * 6.5)
    # L2: image 0: sqrt(5) + 3; image 1: 4 + sqrt(5); mean (7 + 2 sqrt 5) / 2
    expected = (7 + 2 * 5**0.5) / 2
    assert activity_regularization(maps, "l2", alpha=0.5).item() == pytest.approx(0.5 * expected)
    assert activity_regularization(maps).item() == pytest.approx(1e-7 * 6.5)  # default alpha 1e-7
    with pytest.raises(ValueError, match="kind"):
        activity_regularization(maps, "l3")
    with pytest.raises(ValueError, match="alpha"):
        ActivityRegularizer("l1", alpha=-1.0)


def test_regularizer_uses_head_activations_and_has_gradient():
    torch.manual_seed(2)
    head = GAPmHead(4, 2, m=3)
    out = head(torch.randn(2, 4, 3, 3))
    reg = ActivityRegularizer("l2", alpha=1.0)
    value = reg(out)
    assert value.item() == pytest.approx(activity_regularization(out.extras["activations"], "l2", 1.0).item())
    value.backward()
    assert head.conv.weight.grad is not None and head.conv.weight.grad.abs().sum() > 0
    # a plain (logits, cams) tuple falls back to the cams
    assert reg((out.logits, out.cams)).item() == pytest.approx(
        activity_regularization(out.cams, "l2", 1.0).item()
    )


def test_zhou_topk_cams_equal_the_gathered_full_maps(features):
    head = ZhouHead(8, 6)
    logits, cams = head(features)
    top_logits, ids, maps = head.topk_cams(features, 2)
    assert torch.equal(top_logits, logits)
    assert torch.equal(ids, logits.topk(2, dim=1).indices)
    for b in range(features.shape[0]):
        assert torch.allclose(maps[b], cams[b, ids[b]], atol=1e-5)


def test_camnet_topk_cams_generic_path_gathers_the_maps():
    from wsol.models import create_model

    torch.manual_seed(3)
    model = create_model("lenet5", head="gapm", num_classes=4, in_chans=1, m=2)
    x = torch.rand(2, 1, 32, 32)
    logits, cams = model(x)
    top_logits, ids, maps = model.topk_cams(x, 3)
    assert torch.equal(top_logits, logits) and ids.shape == (2, 3)
    for b in range(2):
        assert torch.equal(maps[b], cams[b, ids[b]])
