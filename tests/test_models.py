"""Tests of wsol.models: the registry and the FC-less LeNet-5 of Gudi et al. 2017."""

from __future__ import annotations

import pytest
import torch

import wsol
from wsol.cli import main
from wsol.models import CAMNet, create_model


@pytest.mark.parametrize(
    "size, expected",
    [(128, 29), (28, 4), (64, 13)],  # (H - 4) // 2 then (H' - 4) // 2
)
def test_lenet5_mapping_resolution(size, expected):
    model = create_model("lenet5", head="cam", pooling="gap", num_classes=1, in_chans=1)
    logits, cams = model(torch.zeros(2, 1, size, size))
    assert logits.shape == (2, 1) and cams.shape == (2, 1, expected, expected)


@pytest.mark.parametrize("head, pooling", [("zhou", "gap"), ("cam", "spam"), ("gapm", None), ("gwap_cs", None)])
def test_create_model_composes_backbone_head_pooling(head, pooling):
    model = wsol.create_model("lenet5", head=head, pooling=pooling, num_classes=3, in_chans=1)
    assert isinstance(model, CAMNet) and model.num_classes == 3
    x = torch.rand(1, 1, 128, 128)
    logits, cams = model(x)
    # one pass: the head applied to the backbone's features gives the same pair
    ref_logits, ref_cams = model.head(model.backbone(x))
    assert torch.equal(logits, ref_logits) and torch.equal(cams, ref_cams)
    backbone_ids = {id(p) for p in model.backbone_parameters()}
    assert backbone_ids == {id(p) for p in model.backbone.parameters()}
    assert not backbone_ids & {id(p) for p in model.head.parameters()}


def test_create_model_errors_name_valid_choices():
    with pytest.raises(ValueError, match=r"unknown model 'resnet9000'.*lenet5"):
        create_model("resnet9000")
    with pytest.raises(ValueError, match="unknown head"):
        create_model("lenet5", head="nope")
    model = create_model("lenet5", in_chans=1, num_classes=2)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        model(torch.zeros(1, 128, 128))


def test_cli_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "spam" in out and "gapm" in out and "lenet5" in out


def test_lenet5_optional_mnist_standardization():
    from wsol.models.lenet import MNIST_MEAN, MNIST_STD, LeNet5Features

    torch.manual_seed(0)
    plain = LeNet5Features(1)
    normed = LeNet5Features(1, normalize=True)
    normed.load_state_dict(plain.state_dict())
    x = torch.rand(2, 1, 32, 32)
    assert torch.allclose(normed(x), plain((x - MNIST_MEAN) / MNIST_STD), atol=1e-6)
