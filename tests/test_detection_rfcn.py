"""R-FCN model of wsol.detection: position-sensitive RoI pooling values, geometry, losses on edge cases, variants."""

from __future__ import annotations

import pytest
import torch

from wsol.detection.rfcn import (
    RFCN,
    VARIANTS,
    RFCNSpec,
    _CentredAnchors,
    build_rfcn,
    position_sensitive_pool,
    position_sensitive_vote,
)
from wsol.heads import CAMLayerHead
from wsol.pooling import ClassSpecificGWAP, GlobalAvgPool


def _tiny_spec(**kw: object) -> RFCNSpec:
    base = dict(
        backbone="lenet5", backbone_kwargs={"width1": 8, "width2": 16}, in_chans=1, variant="rfcn+gwap", ps_bins=3,
        reduce_channels=16, rpn_channels=8, anchor_sizes=[12.0, 20.0], aspect_ratios=[1.0],
        rpn_pre_nms_top_n_train=200, rpn_post_nms_top_n_train=50, rpn_pre_nms_top_n_test=200,
        rpn_post_nms_top_n_test=30, rpn_batch_size_per_image=64, roi_batch_size_per_image=32, freeze_bn=False,
    )
    base.update(kw)
    return RFCNSpec(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def model() -> RFCN:
    torch.manual_seed(0)
    return build_rfcn(_tiny_spec(), 2)


# ----------------------------------------------------------------------------------------------------------
# PS-RoI pooling
# ----------------------------------------------------------------------------------------------------------
def _bin_coded_maps(k: int, n: int, size: int, bin_px: int) -> torch.Tensor:
    """Channel ``ch`` holds ``100·ch + (y // bin_px)·k + (x // bin_px)``: constant inside every bin of the RoI
    ``[0, 0, k·bin_px, k·bin_px]``, and it tells which channel and which bin a pooled value came from."""
    ys = torch.arange(size)[:, None] // bin_px
    xs = torch.arange(size)[None, :] // bin_px
    bin_id = (ys * k + xs).float()
    return torch.stack([100.0 * ch + bin_id for ch in range(k * k * n)])[None]


@pytest.mark.parametrize("mode", ["align", "pool"])
def test_ps_pool_reads_channel_c_i_j_at_bin_i_j(mode: str) -> None:
    k, n, bin_px = 3, 2, 4
    maps = _bin_coded_maps(k, n, 16, bin_px)
    rois = torch.tensor([[0.0, 0.0, 0.0, k * bin_px, k * bin_px]])
    pooled = position_sensitive_pool(maps, rois, k, spatial_scale=1.0, mode=mode, sampling_ratio=2)
    assert pooled.shape == (1, n, k, k)
    for c in range(n):
        for i in range(k):
            for j in range(k):
                # channel (c·k + i)·k + j, sampled inside bin (i, j) of the RoI
                expected = 100.0 * ((c * k + i) * k + j) + (i * k + j)
                assert pooled[0, c, i, j].item() == pytest.approx(expected, abs=1e-4), (mode, c, i, j)


def test_ps_pool_spatial_scale_and_list_rois() -> None:
    k, bin_px = 2, 3
    maps = _bin_coded_maps(k, 1, 12, bin_px)
    # the same RoI in input pixels at stride 4: [0, 0, 24, 24] / 4 = [0, 0, 6, 6] feature cells
    pooled = position_sensitive_pool(maps, [torch.tensor([[0.0, 0.0, 24.0, 24.0]])], k, spatial_scale=0.25)
    expected = torch.tensor([[0.0 + 0, 100.0 + 1], [200.0 + 2, 300.0 + 3]])
    torch.testing.assert_close(pooled[0, 0], expected)
    vote = position_sensitive_vote(pooled)
    assert vote.item() == pytest.approx(expected.mean().item())


def test_ps_vote_is_the_bin_average() -> None:
    pooled = torch.arange(2 * 3 * 3, dtype=torch.float32).view(1, 2, 3, 3)
    torch.testing.assert_close(position_sensitive_vote(pooled), torch.tensor([[4.0, 13.0]]))


def test_ps_pool_bad_input() -> None:
    with pytest.raises(ValueError, match="multiple of k"):
        position_sensitive_pool(torch.zeros(1, 10, 8, 8), torch.zeros(1, 5), 3)
    with pytest.raises(ValueError, match=r"\(R, 5\)"):
        position_sensitive_pool(torch.zeros(1, 9, 8, 8), torch.zeros(1, 4), 3)
    with pytest.raises(ValueError, match="mode"):
        position_sensitive_pool(torch.zeros(1, 9, 8, 8), torch.zeros(1, 5), 3, mode="max")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------------------------
def test_lenet_geometry_is_derived_from_the_receptive_field(model: RFCN) -> None:
    # LeNet-5: stride 4, receptive field 16, no padding → cell 0 sees pixels 0..15, centre 8.0 (continuous)
    assert model.stride == 4
    assert model.offset == pytest.approx(8.0)
    assert model.spec.feature_stride == 4 and model.spec.feature_offset == pytest.approx(8.0)


def test_anchors_are_centred_on_receptive_fields() -> None:
    gen = _CentredAnchors([10.0], [1.0], stride=4, offset=8.0)
    from torchvision.models.detection.image_list import ImageList

    anchors = gen(ImageList(torch.zeros(2, 1, 20, 24), [(20, 24)] * 2), [torch.zeros(2, 3, 2, 3)])
    assert len(anchors) == 2 and anchors[0].shape == (6, 4)
    centres = (anchors[0][:, :2] + anchors[0][:, 2:]) / 2
    expected = torch.tensor([[8.0 + 4 * x, 8.0 + 4 * y] for y in range(2) for x in range(3)])
    torch.testing.assert_close(centres, expected)
    torch.testing.assert_close(anchors[0][:, 2] - anchors[0][:, 0], torch.full((6,), 10.0))


def test_roi_outputs_shift_rois_by_the_offset(model: RFCN) -> None:
    """A RoI is pooled at (x − c0) / S: with score maps coding the feature column, the pooled value is the
    column of the RoI's sampling points."""
    reduced = torch.zeros(1, model.spec.reduce_channels, 13, 13)
    with torch.no_grad():
        old_w, old_b = model.cls_maps.weight.clone(), model.cls_maps.bias.clone()
        model.cls_maps.weight.zero_()
        model.cls_maps.bias.zero_()
        cols = torch.arange(13.0)
        reduced[0, 0] = cols[None, :].expand(13, 13)  # channel 0 = feature column index
        model.cls_maps.weight[:, 0] = 1.0  # every score map = column index
        # cells 0, 1, 2 are centred at x = 8, 12, 16: the RoI [6, 6, 18, 18] spans them (bins of one cell)
        cls, _ = model.roi_outputs(reduced, [torch.tensor([[6.0, 6.0, 18.0, 18.0]])])
        model.cls_maps.weight.copy_(old_w)
        model.cls_maps.bias.copy_(old_b)
    # bin j samples columns j − 0.25 and j + 0.25 (sampling_ratio 2): bin means 0, 1, 2 (column −0.25 is
    # clamped to column 0 as roi_align does, so bin 0 gives (0 + 0.25) / 2); vote = (0.125 + 1 + 2) / 3
    torch.testing.assert_close(cls, torch.full((1, 3), (0.125 + 1.0 + 2.0) / 3))


# ----------------------------------------------------------------------------------------------------------
# Variants, losses, prediction
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_variants_have_the_weak_heads_of_table_v(variant: str) -> None:
    torch.manual_seed(0)
    m = build_rfcn(_tiny_spec(variant=variant, feature_stride=4, feature_offset=8.0), 3)
    expected = {"rfcn": set(), "rfcn+gap": {"gap"}, "rfcn+gwap": {"gwap"}, "rfcn+gwap+gap": {"gwap", "gap"}}[variant]
    assert set(m.weak) == expected
    for name, head in m.weak.items():
        assert isinstance(head, CAMLayerHead)
        assert isinstance(head.pool, ClassSpecificGWAP if name == "gwap" else GlobalAvgPool)
    out = m.weak_outputs(m.features(torch.rand(2, 1, 64, 64)))
    for o in out.values():
        assert o.logits.shape == (2, 3) and o.cams.shape == (2, 3, 13, 13)


def test_spec_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="variant"):
        RFCNSpec(variant="rfcn+spam")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ps_bins"):
        RFCNSpec(ps_bins=0)
    with pytest.raises(ValueError, match="rpn_bg_iou"):
        RFCNSpec(rpn_bg_iou=0.8, rpn_fg_iou=0.7)
    with pytest.raises(ValueError, match="pixel_mean"):
        RFCNSpec(in_chans=1, pixel_mean=[0.1, 0.2])


def test_detection_losses_image_without_objects_are_finite(model: RFCN) -> None:
    torch.manual_seed(1)
    model.train()
    images = torch.rand(2, 1, 64, 64)
    feats = model.features(images)
    targets = [
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},  # no object at all
        {"boxes": torch.tensor([[10.0, 12.0, 30.0, 34.0]]), "labels": torch.tensor([1])},
    ]
    losses = model.detection_losses(images, feats, [(64, 64)] * 2, targets)
    assert set(losses) == {"rpn_cls", "rpn_box", "det_cls", "det_box"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    only_empty = model.detection_losses(images[:1], feats[:1].detach(), [(64, 64)], targets[:1])
    assert only_empty["det_box"].item() == 0.0 and only_empty["rpn_box"].item() == 0.0
    assert all(torch.isfinite(v) for v in only_empty.values())


def test_roi_scores_of_rois_outside_the_image_are_defined(model: RFCN) -> None:
    model.eval()
    rois = [torch.tensor([[-50.0, -50.0, -10.0, -10.0], [40.0, 40.0, 500.0, 500.0], [5.0, 5.0, 5.0, 5.0]])]
    probs = model.roi_scores(torch.rand(1, 1, 64, 64), rois)
    assert probs.shape == (3, 3)
    assert torch.isfinite(probs).all()
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(3))
    with pytest.raises(ValueError, match="entries for 1 images"):
        model.roi_scores(torch.rand(1, 1, 64, 64), rois * 2)


def test_predict_returns_nms_filtered_boxes_inside_the_image(model: RFCN) -> None:
    model.train()
    out = model.predict(torch.rand(2, 1, 64, 60), [(64, 60), (50, 40)], score_thresh=0.0, nms_iou=0.3,
                        max_per_image=7)
    assert len(out) == 2
    from torchvision.ops import box_iou

    for (boxes, scores, labels), (h, w) in zip(out, [(64, 60), (50, 40)], strict=True):
        assert 0 < len(boxes) <= 7 and boxes.shape[1] == 4
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert ((labels >= 0) & (labels < 2)).all()
        assert (scores[:-1] >= scores[1:]).all()  # batched_nms sorts by score
        for c in labels.unique():
            b = boxes[labels == c]
            iou = box_iou(b, b) - torch.eye(len(b))
            assert (iou <= 0.3 + 1e-6).all()  # per-class NMS
    assert model.training  # predict runs in eval mode and restores the training mode
