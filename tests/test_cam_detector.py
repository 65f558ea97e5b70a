"""SPAM-CAM single-shot detector (Gudi et al. 2017 §3.1.1): hand-made CAMs with known peaks → known detections."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from wsol.detection.cam_detector import (
    CAMDetector,
    DegenerateCAMWarning,
    boxes_to_original,
    evaluate_cam_detector,
)
from wsol.metrics.boxes import box_iou
from wsol.models import create_model


class IdentityCAM(nn.Module):
    """CAM_c = channel c of the input (a depthwise 1×1 convolution with weight 1): the image *is* the CAM,
    and the receptive field is the identity (stride 1, size 1), so boxes are the mountains' extents."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conv = nn.Conv2d(num_classes, num_classes, 1, groups=num_classes, bias=False)
        nn.init.ones_(self.conv.weight)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cams = self.conv(x)
        return cams.amax(dim=(2, 3)), cams


def canvas(c: int = 2, size: int = 16) -> torch.Tensor:
    """Background −1 everywhere (below the floor 0)."""
    return torch.full((c, size, size), -1.0)


def blob(img: torch.Tensor, cls: int, box: tuple[int, int, int, int], value: float) -> None:
    x0, y0, x1, y1 = box
    img[cls, y0 : y1 + 1, x0 : x1 + 1] = value


def ring(img: torch.Tensor, cls: int, box: tuple[int, int, int, int], value: float) -> None:
    x0, y0, x1, y1 = box
    img[cls, y0, x0 : x1 + 1] = value
    img[cls, y1, x0 : x1 + 1] = value
    img[cls, y0 : y1 + 1, x0] = value
    img[cls, y0 : y1 + 1, x1] = value


def detector(c: int = 2, **kw: object) -> CAMDetector:
    kw.setdefault("thresholds", 1.0)
    kw.setdefault("floor", 0.0)
    return CAMDetector(IdentityCAM(c), **kw)  # type: ignore[arg-type]


# --- extraction --------------------------------------------------------------------------------------------


def test_two_peaks_give_two_boxes_scored_by_peak_height() -> None:
    img = canvas(1)
    blob(img, 0, (1, 2, 4, 5), 3.0)
    img[0, 3, 2] = 5.0  # the peak of the first mountain
    blob(img, 0, (9, 9, 12, 10), 2.0)
    boxes, scores, labels = detector(1).detect([img])[0]
    np.testing.assert_array_equal(boxes, [[1, 2, 4, 5], [9, 9, 12, 10]])
    np.testing.assert_allclose(scores, [5.0, 2.0])
    np.testing.assert_array_equal(labels, [0, 0])
    assert boxes.dtype == np.int64 and labels.dtype == np.int64 and scores.dtype == np.float64


def test_mountain_below_threshold_is_not_a_detection_but_floods_below_it() -> None:
    img = canvas(1)
    blob(img, 0, (2, 2, 3, 3), 0.5)  # peak 0.5 < threshold 1: no detection
    blob(img, 0, (8, 8, 13, 9), 0.5)  # a plateau at 0.5 ...
    img[0, 8, 10] = 4.0  # ... with one peak above the threshold: the whole mountain is flooded
    boxes, scores, _ = detector(1).detect([img])[0]
    np.testing.assert_array_equal(boxes, [[8, 8, 13, 9]])
    np.testing.assert_allclose(scores, [4.0])


def test_multilabel_image_gives_boxes_of_every_present_class_sorted_by_score() -> None:
    img = canvas(3)
    blob(img, 0, (0, 0, 2, 2), 2.0)
    blob(img, 2, (10, 4, 15, 6), 7.0)
    boxes, scores, labels = detector(3).detect([img])[0]
    np.testing.assert_array_equal(labels, [2, 0])
    np.testing.assert_array_equal(boxes, [[10, 4, 15, 6], [0, 0, 2, 2]])
    np.testing.assert_allclose(scores, [7.0, 2.0])


def test_per_class_thresholds() -> None:
    img = canvas(2)
    blob(img, 0, (0, 0, 2, 2), 2.0)
    blob(img, 1, (5, 5, 6, 6), 2.0)
    _, _, labels = detector(2, thresholds=[1.0, 3.0]).detect([img])[0]
    np.testing.assert_array_equal(labels, [0])  # class 1's peak (2) is below its threshold (3)


def test_image_without_objects_gives_empty_arrays() -> None:
    boxes, scores, labels = detector(2).detect(canvas(2)[None])[0]
    assert boxes.shape == (0, 4) and scores.shape == (0,) and labels.shape == (0,)
    assert boxes.dtype == np.int64 and labels.dtype == np.int64


def test_batch_and_list_of_different_sizes_keep_the_image_order() -> None:
    a, b, c = canvas(1, 16), canvas(1, 9), canvas(1, 16)
    blob(a, 0, (1, 1, 2, 2), 2.0)
    blob(b, 0, (4, 4, 8, 5), 3.0)
    blob(c, 0, (0, 10, 3, 15), 4.0)
    out = detector(1).detect([a, b, c])
    np.testing.assert_array_equal(out[0][0], [[1, 1, 2, 2]])
    np.testing.assert_array_equal(out[1][0], [[4, 4, 8, 5]])
    np.testing.assert_array_equal(out[2][0], [[0, 10, 3, 15]])


# --- NMS --------------------------------------------------------------------------------------------------


def nested_rings(cls_outer: int, cls_inner: int, c: int = 2) -> torch.Tensor:
    """Outer ring box [0, 0, 10, 10] (score 5) around an inner ring [2, 2, 8, 8] (score 4), separated by
    background: two mountains whose boxes have inclusive IoU 49/121 ≈ 0.405 (exclusive IoU 36/100 = 0.36)."""
    img = canvas(c)
    ring(img, cls_outer, (0, 0, 10, 10), 5.0)
    ring(img, cls_inner, (2, 2, 8, 8), 4.0)
    return img


def test_nms_uses_the_inclusive_iou() -> None:
    img = nested_rings(0, 0)
    assert float(box_iou(np.array([[0, 0, 10, 10]]), np.array([[2, 2, 8, 8]]))[0, 0]) == pytest.approx(49 / 121)
    # 0.38 lies between the exclusive (0.36) and the inclusive (0.405) IoU: only the inclusive one suppresses
    boxes, scores, _ = detector(2, nms_iou=0.38).detect([img])[0]
    np.testing.assert_array_equal(boxes, [[0, 0, 10, 10]])
    np.testing.assert_allclose(scores, [5.0])
    boxes, _, _ = detector(2, nms_iou=0.42).detect([img])[0]
    np.testing.assert_array_equal(boxes, [[0, 0, 10, 10], [2, 2, 8, 8]])
    boxes, _, _ = detector(2, nms_iou=1.0).detect([img])[0]  # disabled
    assert len(boxes) == 2


def test_nms_is_per_class() -> None:
    boxes, _, labels = detector(2, nms_iou=0.1).detect([nested_rings(0, 1)])[0]
    np.testing.assert_array_equal(boxes, [[0, 0, 10, 10], [2, 2, 8, 8]])
    np.testing.assert_array_equal(labels, [0, 1])


def test_max_detections_keeps_the_best() -> None:
    img = canvas(1)
    for k, v in enumerate((2.0, 6.0, 4.0)):
        blob(img, 0, (5 * k, 0, 5 * k + 1, 1), v)
    _, scores, _ = detector(1, max_detections=2).detect([img])[0]
    np.testing.assert_allclose(scores, [6.0, 4.0])


def reference_nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, t: float) -> list[int]:
    """Greedy per-class NMS with the inclusive IoU, written out plainly."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    keep: list[int] = []
    for i in order:
        if all(
            labels[j] != labels[i] or float(box_iou(boxes[i : i + 1], boxes[j : j + 1])[0, 0]) <= t for j in keep
        ):
            keep.append(i)
    return keep


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 20), st.integers(0, 20), st.integers(0, 8), st.integers(0, 8), st.integers(0, 2)),
        min_size=1,
        max_size=12,
    ),
    st.sampled_from([0.3, 0.5, 0.7]),
)
def test_nms_matches_a_greedy_reference(raw: list[tuple[int, int, int, int, int]], t: float) -> None:
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h, _ in raw], dtype=np.int64)
    labels = np.array([c for *_, c in raw], dtype=np.int64)
    scores = np.arange(len(raw), dtype=np.float64)[::-1] * 0.5 + 1.0  # distinct scores
    det = detector(3, nms_iou=t, max_detections=None)
    keep = det._nms(boxes, scores, labels)
    assert keep.tolist() == reference_nms(boxes, scores, labels, t)


# --- degenerate maps and bad input ------------------------------------------------------------------------


def test_nan_map_gives_no_box_a_warning_and_is_counted() -> None:
    img = canvas(2)
    blob(img, 0, (0, 0, 2, 2), 3.0)
    img[0, 8, 8] = float("nan")
    blob(img, 1, (5, 5, 6, 6), 2.0)
    det = detector(2)
    with pytest.warns(DegenerateCAMWarning, match="image 0 class 0"):
        boxes, scores, labels = det.detect([img])[0]
    np.testing.assert_array_equal(labels, [1])  # class 1 is still detected
    np.testing.assert_array_equal(boxes, [[5, 5, 6, 6]])
    assert np.isfinite(scores).all()
    assert det.stats.n_nonfinite == 1 and det.stats.nonfinite == [0] and det.stats.n_maps == 2


def test_bad_inputs_raise_clear_errors() -> None:
    det = detector(2)
    with pytest.raises(ValueError, match="wrap it in a list"):
        det.detect(canvas(2))
    with pytest.raises(ValueError, match="float tensor"):
        det.detect([canvas(2).long()])
    with pytest.raises(ValueError, match="2-channel"):
        det.detect([canvas(3)])
    with pytest.raises(ValueError, match="thresholds must be one number or 2"):
        detector(2, thresholds=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="not finite for class"):
        detector(2, thresholds=[1.0, math.nan])
    with pytest.raises(ValueError, match="cam_thresholds"):
        CAMDetector(IdentityCAM(2))
    with pytest.raises(ValueError, match="ratio"):
        detector(2, ratio=1.5)
    with pytest.raises(ValueError, match="nms_iou"):
        detector(2, nms_iou=0.0)
    with pytest.raises(ValueError, match="score"):
        detector(2, score="logit")


# --- real CAM network: thresholds from the output layer, receptive field -----------------------------------


def lenet(num_classes: int = 2) -> nn.Module:
    torch.manual_seed(0)
    model = create_model("lenet5", head="cam", pooling="spam", num_classes=num_classes, in_chans=1, output_affine=True)
    with torch.no_grad():
        model.head.scale.copy_(torch.tensor([2.0, 4.0]))
        model.head.bias.copy_(torch.tensor([-1.0, 2.0]))
    return model


def test_thresholds_and_prob_scores_come_from_the_output_layer() -> None:
    model = lenet()
    det = CAMDetector(model, score="prob")
    np.testing.assert_allclose(det.thresholds, [0.5, -0.5])  # −d/a
    cams = torch.full((1, 2, 29, 29), -5.0)
    cams[0, 0, 3, 5] = 1.5
    boxes, scores, labels = det.detect_from_cams(cams, (128, 128))[0]
    np.testing.assert_array_equal(labels, [0])
    np.testing.assert_array_equal(boxes, [[20, 12, 35, 27]])
    np.testing.assert_allclose(scores, [1.0 / (1.0 + math.exp(-(2.0 * 1.5 - 1.0)))])


def test_single_cam_pixel_backprojects_to_its_receptive_field() -> None:
    # LeNet-5 on 128×128: CAM pixel x sees input [4x, 4x + 15] (stride 4, size 16)
    det = CAMDetector(lenet(), thresholds=0.0, ratio=0.0)
    cams = torch.full((1, 2, 29, 29), -1.0)
    cams[0, 1, 3, 5] = 2.0
    boxes, _, labels = det.detect_from_cams(cams, (128, 128))[0]
    np.testing.assert_array_equal(boxes, [[20, 12, 35, 27]])
    np.testing.assert_array_equal(labels, [1])
    # r = 0.5 shrinks each side by floor(15 · 0.5 / 2) = 3
    det = CAMDetector(lenet(), thresholds=0.0, ratio=0.5)
    np.testing.assert_array_equal(det.detect_from_cams(cams, (128, 128))[0][0], [[23, 15, 32, 24]])
    # the same boxes from the network's own forward pass on an image: the geometry is derived automatically
    out = CAMDetector(lenet(), thresholds=1e9).detect(torch.zeros(2, 1, 128, 128))
    assert all(len(b) == 0 for b, _, _ in out)


def test_boxes_to_original_hand_computed() -> None:
    # input 10×10 → original 20 (H) × 30 (W): x scale 3, y scale 2
    out = boxes_to_original(np.array([[1, 2, 3, 4]]), (10, 10), (20, 30))
    np.testing.assert_array_equal(out, [[3, 4, 11, 9]])
    np.testing.assert_array_equal(boxes_to_original(np.array([[0, 0, 9, 9]]), (10, 10), (20, 30)), [[0, 0, 29, 19]])
    np.testing.assert_array_equal(boxes_to_original(np.array([[1, 2, 3, 4]]), (10, 10), (10, 10)), [[1, 2, 3, 4]])


def test_input_size_resizes_and_maps_boxes_back() -> None:
    img = canvas(1, 16)
    blob(img, 0, (4, 8, 7, 15), 3.0)  # a 4×8 block at x 4..7, y 8..15
    big = torch.nn.functional.interpolate(img[None], size=(32, 32), mode="nearest")[0]  # 2× upscaled copy
    det = detector(1, input_size=(16, 16))
    boxes, _, _ = det.detect([big])[0]
    np.testing.assert_array_equal(boxes, [[8, 16, 15, 31]])  # the block in the 32×32 original's pixels


# --- evaluation -------------------------------------------------------------------------------------------


class TinyDataset:
    """Images with hand-placed CAM blobs and their ground truth (``annotation(i)`` like MNIST128)."""

    class _Ann:
        def __init__(self, boxes: list[list[int]], labels: list[int]) -> None:
            self._boxes = np.array(boxes, dtype=np.int64).reshape(-1, 4)
            self.labels = np.array(labels, dtype=np.int64)

        def boxes(self, kind: str = "ink") -> np.ndarray:
            return self._boxes

    def __init__(self) -> None:
        self.images, self.anns = [], []
        # image 0: TP (score 5); image 1: FP (score 4, GT elsewhere); image 2: TP (score 3)
        for det_box, value, gt_box in (
            ((1, 1, 3, 3), 5.0, [1, 1, 3, 3]),
            ((10, 10, 12, 12), 4.0, [1, 1, 3, 3]),
            ((5, 5, 7, 7), 3.0, [5, 5, 7, 7]),
        ):
            img = canvas(2)
            blob(img, 0, det_box, value)
            self.images.append(img)
            self.anns.append(self._Ann([gt_box], [0]))
        self.images.append(canvas(2))  # image 3: no object, no detection
        self.anns.append(self._Ann([], []))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], torch.zeros(2)

    def annotation(self, i: int) -> _Ann:
        return self.anns[i]


def test_evaluate_matches_a_hand_computed_voc_example() -> None:
    # ranked: TP (5), FP (4), TP (3); 3 GT boxes → recall 1/3, 1/3, 2/3; precision 1, 1/2, 2/3
    # 11-point: levels 0–0.3 → 1, levels 0.4–0.6 → 2/3, 0.7–1 → 0 ⇒ AP = (4 + 3·2/3) / 11 = 6/11
    # all-point: 1/3 · 1 + 1/3 · 2/3 = 5/9; CorLoc: images 0 and 2 of 3 ⇒ 2/3
    res = evaluate_cam_detector(detector(2), TinyDataset(), batch_size=3)
    assert res["map"] == pytest.approx(6 / 11)
    assert res["map_area"] == pytest.approx(5 / 9)
    assert res["corloc"] == pytest.approx(2 / 3)
    assert res["ap"] == {"0": pytest.approx(6 / 11), "1": None}  # class 1 has no GT: excluded from the mAP
    assert res["num_images"] == 4 and res["num_detections"] == 3 and res["num_gt"] == 3


def test_evaluate_ignores_difficult_boxes_and_skips_unreadable_images() -> None:
    data = TinyDataset()
    extra = canvas(2)
    blob(extra, 0, (8, 8, 9, 9), 9.0)  # best-scoring detection, on a difficult GT box: ignored
    data.images.append(extra)
    data.anns.append(TinyDataset._Ann([[8, 8, 9, 9]], [0]))
    gt = [(a.boxes(), a.labels) for a in data.anns[:-1]] + [(np.array([[8, 8, 9, 9]]), np.array([0]), [True])]

    class WithBad(TinyDataset):
        def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor] | None:
            return None if i == 5 else super().__getitem__(i)

        def __len__(self) -> int:
            return 6

    bad = WithBad()
    bad.images, bad.anns = data.images, data.anns
    res = evaluate_cam_detector(detector(2), bad, ground_truth=[*gt, gt[0]], class_names=["a", "b"])
    assert res["map"] == pytest.approx(6 / 11)  # unchanged by the difficult detection
    assert res["skipped_images"] == [5] and res["num_images"] == 5
    assert res["ap"]["a"] == pytest.approx(6 / 11)


def test_evaluate_rejects_missing_ground_truth() -> None:
    class NoGT:
        def __len__(self) -> int:
            return 1

        def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
            return canvas(2), torch.zeros(2)

    with pytest.raises(ValueError, match="ground_truth"):
        evaluate_cam_detector(detector(2), NoGT())


def test_shipped_gudi_voc_config_builds_a_model_the_detector_accepts() -> None:
    # VGG-16 SPAM-CAM of Gudi §4.2 as shipped (gudi_vgg16_spam_voc07.yaml), random weights; a CAM layer that makes
    # class 3's map a constant 5 (one mountain covering the map) and every other map −5 (no peak)
    from wsol.recipes import build_model, load_run_config

    model = build_model(load_run_config("gudi_vgg16_spam_voc07"), num_classes=20, verbose=False)
    with torch.no_grad():
        model.head.cam.weight.zero_()
        model.head.cam.bias.fill_(-5.0)
        model.head.cam.bias[3] = 5.0
    det = CAMDetector(model, input_size=(160, 160), normalize=True)
    np.testing.assert_allclose(det.thresholds, np.zeros(20))  # −d/a with the initial a = 1, d = 0
    boxes, scores, labels = det.detect([torch.rand(3, 80, 96)])[0]
    # the whole 160×160 input, mapped back to the 96×80 original
    np.testing.assert_array_equal(boxes, [[0, 0, 95, 79]])
    np.testing.assert_allclose(scores, [5.0], rtol=1e-5)
    np.testing.assert_array_equal(labels, [3])
