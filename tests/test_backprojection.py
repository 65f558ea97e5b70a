"""Receptive-field geometry, Gudi et al.'s fast backprojection (Algorithm 1) and single-shot extraction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from wsol.localize import (
    Detections,
    LayerGeometry,
    MapStats,
    ReceptiveField,
    affine_decision_threshold,
    extract_boxes,
    fast_backprojection,
    find_peaks,
    gradient_support,
    gudi_boxes,
    gudi_detect,
    mountain_labels,
    receptive_field_chain,
)


class CAMNet(nn.Module):
    """features → 1×1 CAM conv; returns (logits, cams) like the project's models."""

    def __init__(self, features: nn.Module, channels: int = 4, num_classes: int = 2) -> None:
        super().__init__()
        self.features = features
        self.cam = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cams = self.cam(self.features(x))
        return cams.mean((2, 3)), cams


def lenet_like() -> CAMNet:
    # conv5 s1 p0 → maxpool2 s2 → conv5 → maxpool2: J = 1, 1, 2, 2; S = 4, P = 0,
    # K − 1 = 4·1 + 1·1 + 4·2 + 1·2 = 15 → K = 16.
    return CAMNet(
        nn.Sequential(
            nn.Conv2d(3, 4, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2, 2),
            nn.Conv2d(4, 4, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2, 2),
        )
    )  # fmt: skip


def padded_net() -> CAMNet:
    # conv3 p1 → conv3 s2 p1 → BN/ReLU → conv3 p1: J = 1, 1, 2; S = 2,
    # P = 1 + 1 + 1·2 = 4, K − 1 = 2 + 2 + 2·2 = 8 → K = 9.
    return CAMNet(
        nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
            nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
            nn.Conv2d(4, 4, 3, padding=1),
        )
    )  # fmt: skip


def dilated_net() -> CAMNet:
    # conv3 d2 p2 (effective 5) → conv3 s2 p1: P = 2 + 1 = 3, K − 1 = 4 + 2 = 6 → K = 7, S = 2.
    return CAMNet(nn.Sequential(nn.Conv2d(3, 4, 3, dilation=2, padding=2), nn.Conv2d(4, 4, 3, stride=2, padding=1)))


class Inception(nn.Module):
    """Stem conv3 p1, four parallel branches concatenated, then max pool 2×2/2.

    Hand geometry (P, E = K − 1 − P): stem (1, 1); branches: 1×1 → (1, 1); two conv3 p1 → (3, 3);
    maxpool3 s1 p1 → 1×1 → (2, 2); conv (1×5, pad (0, 2)) → (1, 1) vertically, (3, 3) horizontally.
    Union (3, 3) → K = 7; pool 2/2: P = 3, E = 3 + (2 − 1 − 0)·1 = 4 → K = 8, S = 2 (both axes).
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.b1 = nn.Conv2d(4, 1, 1)
        self.b2 = nn.Sequential(nn.Conv2d(4, 1, 3, padding=1), nn.ReLU(), nn.Conv2d(1, 1, 3, padding=1))
        self.b3 = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(4, 1, 1))
        self.b4 = nn.Conv2d(4, 1, (1, 5), padding=(0, 2))
        self.pool = nn.MaxPool2d(2, 2)
        self.cam = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = torch.relu(self.stem(x))
        f = self.pool(torch.cat([self.b1(f), self.b2(f), self.b3(f), self.b4(f)], dim=1))
        cams = self.cam(f)
        return cams.mean((2, 3)), cams


class Residual(nn.Module):
    """Stem conv3 p1 (P 1, E 1) → [conv3 s2 p1 → conv3 p1] + [1×1 s2] (ResNet downsampling block).

    Main path: P = 1 + 1 = 2, E = 1 + 1 = 2, S = 2; then P = 2 + 2 = 4, E = 2 + 2 = 4. Shortcut:
    P = 1, E = 1. Union: P = 4, K = 9, S = 2.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.a = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.short = nn.Conv2d(4, 4, 1, stride=2)
        self.cam = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = torch.relu(self.stem(x))
        f = torch.relu(self.b(torch.relu(self.a(f))) + self.short(f))
        cams = self.cam(f)
        return cams.mean((2, 3)), cams


class FunctionalPool(nn.Module):
    """conv3 → F.max_pool2d(2) (invisible to module hooks) → CAM: S = 2, P = 0, K = 4."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.cam = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cams = self.cam(F.max_pool2d(torch.relu(self.conv(x)), 2))
        return cams.mean((2, 3)), cams


def geometry(rf: ReceptiveField) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    return rf.stride, rf.padding, rf.size


# ---------------------------------------------------------------------------------------------
# receptive_field_chain
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "size", "expected"),
    [
        (lenet_like, (40, 44), ((4, 4), (0, 0), (16, 16))),
        (padded_net, (20, 22), ((2, 2), (4, 4), (9, 9))),
        (dilated_net, (20, 22), ((2, 2), (3, 3), (7, 7))),
    ],
)
def test_sequential_chain_matches_hand_geometry_and_gradient_probe(make, size, expected) -> None:
    torch.manual_seed(0)
    net = make()
    rf = receptive_field_chain(net, size)
    assert rf.method == "hooks" and rf.sequential
    assert geometry(rf) == expected
    assert geometry(ReceptiveField.from_layers(rf.layers)) == expected
    probe = receptive_field_chain(net, size, method="gradient")
    assert probe.method == "gradient" and geometry(probe) == expected
    assert rf.cam_size == net(torch.zeros(1, 3, *size))[1].shape[-2:]


def test_chain_layer_order_and_tuple_dilation_params() -> None:
    net = lenet_like()
    rf = receptive_field_chain(net, (32, 32))
    assert [layer.name for layer in rf.layers] == ["features.0", "features.2", "features.3", "features.5", "cam"]
    tuple_net = CAMNet(nn.Conv2d(3, 4, (3, 5), stride=(1, 2), padding=(1, 0), dilation=(1, 2)))
    rf = receptive_field_chain(tuple_net, (12, 21))
    # height: k 3, s 1, p 1; width: effective kernel 2·(5 − 1) + 1 = 9, s 2, p 0
    assert geometry(rf) == ((1, 2), (1, 0), (3, 9))
    assert rf.cam_size == (12, 7)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_ceil_mode_pool_same_padding_and_avgpool() -> None:
    # conv3 → maxpool3 s2 ceil_mode: 12 → 10 → ceil((10 − 3)/2) + 1 = 5; S = 2, P = 0, K = 3 + 2 = 5
    net = CAMNet(nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(3, 2, ceil_mode=True)))
    rf = receptive_field_chain(net, (12, 12))
    assert geometry(rf) == ((2, 2), (0, 0), (5, 5)) and rf.cam_size == (5, 5)
    # padding="same" with an even kernel pads 1 before and 2 after; avg pool 2/2
    net = CAMNet(nn.Sequential(nn.Conv2d(3, 4, 4, padding="same"), nn.AvgPool2d(2)))
    rf = receptive_field_chain(net, (16, 16))
    assert geometry(rf) == ((2, 2), (1, 1), (5, 5))
    assert geometry(receptive_field_chain(net, (16, 16), method="gradient")) == geometry(rf)


def test_parallel_branches_union_equals_hand_and_gradient_probe() -> None:
    for net, size, expected in (
        (Inception(), (24, 24), ((2, 2), (3, 3), (8, 8))),
        (Residual(), (24, 24), ((2, 2), (4, 4), (9, 9))),
    ):
        rf = receptive_field_chain(net, size)
        assert rf.method == "hooks" and not rf.sequential
        assert geometry(rf) == expected
        assert geometry(receptive_field_chain(net, size, method="gradient")) == expected


def test_unhooked_spatial_op_falls_back_to_gradient_probe() -> None:
    net = FunctionalPool()
    with pytest.raises(ValueError, match="MaxPool2DWithIndicesBackward"):
        receptive_field_chain(net, (20, 20), method="hooks")
    rf = receptive_field_chain(net, (20, 20))
    assert rf.method == "gradient" and geometry(rf) == ((2, 2), (0, 0), (4, 4))
    with pytest.raises(ValueError, match=r"too small.*hooks could not be used"):
        receptive_field_chain(net, (8, 8))


def test_probe_restores_training_flags_and_batchnorm_statistics() -> None:
    net = padded_net()
    net.train()
    net.features[3].eval()  # a frozen BN inside a training model must stay frozen
    bn = net.features[3]
    before = bn.running_mean.clone()
    receptive_field_chain(net, (16, 16))
    receptive_field_chain(net, (16, 16), method="gradient")
    assert net.training and net.features[0].training and not bn.training
    assert torch.equal(bn.running_mean, before)


def test_receptive_field_errors() -> None:
    class NoConv(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x.mean((2, 3)), x

    with pytest.raises(ValueError, match="model"):
        receptive_field_chain(NoConv(), (8, 8))
    with pytest.raises(ValueError, match="model"):
        receptive_field_chain(lambda x: x, (8, 8))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="input_size"):
        receptive_field_chain(lenet_like(), (32,))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="method"):
        receptive_field_chain(lenet_like(), (32, 32), method="magic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="too small"):
        receptive_field_chain(lenet_like(), (20, 20), method="gradient")

    class LogitsOnly(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x)

    with pytest.raises(ValueError, match=r"\(logits, cams\)"):
        receptive_field_chain(LogitsOnly(), (8, 8))


# ---------------------------------------------------------------------------------------------
# fast_backprojection (Algorithm 1)
# ---------------------------------------------------------------------------------------------


def algorithm1_literal(x: int, y: int, layers: list[tuple[int, int, int]], image_hw: tuple[int, int]) -> np.ndarray:
    """Algorithm 1 lines 1–6 and 11 as printed (ratio 0), per layer from the CAM back to the input."""
    x0 = x1 = x
    y0 = y1 = y
    for s, p, k in reversed(layers):
        x0, y0 = x0 * s - p, y0 * s - p
        x1, y1 = x1 * s - p + k - 1, y1 * s - p + k - 1
    out = np.zeros(image_hw, dtype=bool)
    out[max(y0, 0) : y1 + 1, max(x0, 0) : x1 + 1] = True
    return out


def test_backprojection_equals_literal_algorithm1_for_many_pixels() -> None:
    layers = [(1, 1, 3), (2, 1, 3), (1, 1, 3), (1, 0, 1)]  # (s, p, k) of padded_net
    rf = ReceptiveField.from_layers(
        LayerGeometry(f"l{i}", (k, k), (s, s), (p, p)) for i, (s, p, k) in enumerate(layers)
    )
    assert geometry(rf) == ((2, 2), (4, 4), (9, 9))
    rng = np.random.default_rng(0)
    image_hw = (20, 22)
    for _ in range(5):
        xs, ys = rng.integers(0, 11, size=4), rng.integers(0, 10, size=4)
        expected = np.zeros(image_hw, dtype=bool)
        for x, y in zip(xs, ys, strict=True):
            expected |= algorithm1_literal(int(x), int(y), layers, image_hw)
        np.testing.assert_array_equal(fast_backprojection(xs, ys, rf, image_hw), expected)


def test_backprojection_single_pixel_hand_values_and_ratio_shrink() -> None:
    rf = ReceptiveField((4, 4), (0, 0), (16, 16))  # LeNet-like
    image_hw = (64, 64)

    def box(mask: np.ndarray) -> list[int]:
        ys, xs = np.nonzero(mask)
        return [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]

    # CAM pixel (x=3, y=2) sees x 12..27, y 8..23
    assert box(fast_backprojection([3], [2], rf, image_hw)) == [12, 8, 27, 23]
    # r = 0.5: both ends move ⌊15·0.25⌋ = 3 inward → 10 of 16 pixels kept
    assert box(fast_backprojection([3], [2], rf, image_hw, ratio=0.5)) == [15, 11, 24, 20]
    # r = 0.25: ⌊15·0.125⌋ = 1
    assert box(fast_backprojection([3], [2], rf, image_hw, ratio=0.25)) == [13, 9, 26, 22]
    # r = 1: ⌊15/2⌋ = 7 → the two centre pixels of the even-sized field
    assert box(fast_backprojection([3], [2], rf, image_hw, ratio=1.0)) == [19, 15, 20, 16]
    # odd field K = 9, r = 1 → the centre pixel only
    rf9 = ReceptiveField((2, 2), (4, 4), (9, 9))
    assert box(fast_backprojection([5], [5], rf9, (30, 30), ratio=1.0)) == [10, 10, 10, 10]
    # clipping at the border: CAM pixel 0 sees x −4..4 → 0..4
    assert box(fast_backprojection([0], [0], rf9, (30, 30))) == [0, 0, 4, 4]
    # filled boxes: the mask is exactly the union of the rectangles
    assert fast_backprojection([3], [2], rf, image_hw, ratio=0.5).sum() == 100
    assert not fast_backprojection([], [], rf, image_hw).any()


def test_backprojection_validates_arguments() -> None:
    rf = ReceptiveField((2, 2), (0, 0), (3, 3))
    with pytest.raises(ValueError, match="ratio"):
        fast_backprojection([0], [0], rf, (8, 8), ratio=-0.1)
    with pytest.raises(ValueError, match="ratio"):
        fast_backprojection([0], [0], rf, (8, 8), ratio=1.5)
    with pytest.raises(ValueError, match="image_size"):
        fast_backprojection([0], [0], rf, (8, 0))
    with pytest.raises(ValueError, match="same length"):
        fast_backprojection([0, 1], [0], rf, (8, 8))
    with pytest.raises(ValueError, match="xs"):
        fast_backprojection([-1], [0], rf, (8, 8))
    with pytest.raises(ValueError, match="rf"):
        fast_backprojection([0], [0], (2, 0, 3), (8, 8))  # type: ignore[arg-type]


def manual_gradient_support(net: nn.Module, image_hw: tuple[int, int], y: int, x: int) -> np.ndarray:
    """Input-gradient support computed directly (no library code): positive weights, max → avg pooling."""
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(p.abs() + 0.1)
    img = torch.rand(1, 3, *image_hw, dtype=torch.float64, requires_grad=True)
    net = net.double()
    _, cams = net(img + 0.5)
    cams[0, 0, y, x].backward()
    return (img.grad.abs().sum(1)[0] > 0).numpy()


@pytest.mark.parametrize("pixel", [(0, 0), (2, 3), (3, 4)])
def test_backprojection_equals_input_gradient_support(pixel: tuple[int, int]) -> None:
    torch.manual_seed(0)
    y, x = pixel
    image_hw = (28, 32)
    # LeNet-like with average pooling, so the plain gradient sees whole windows
    net = CAMNet(
        nn.Sequential(nn.Conv2d(3, 4, 5), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(4, 4, 5), nn.ReLU(), nn.AvgPool2d(2))
    )
    rf = receptive_field_chain(net, image_hw)
    bp = fast_backprojection([x], [y], rf, image_hw)
    np.testing.assert_array_equal(bp, manual_gradient_support(net, image_hw, y, x))
    # the library probe (max pooling model, positive copy) agrees, and leaves the model untouched
    lenet = lenet_like()
    weight = lenet.features[0].weight.clone()
    np.testing.assert_array_equal(gradient_support(lenet, image_hw, (y, x)), bp)
    assert torch.equal(lenet.features[0].weight, weight)


def test_backprojection_of_padded_border_pixel_equals_gradient_support() -> None:
    torch.manual_seed(1)
    net = padded_net()
    rf = receptive_field_chain(net, (20, 22))
    for y, x in [(0, 0), (9, 10), (4, 7)]:
        np.testing.assert_array_equal(
            fast_backprojection([x], [y], rf, (20, 22)), gradient_support(net, (20, 22), (y, x))
        )


def test_dilated_backprojection_is_bounding_box_of_gradient_support() -> None:
    # stacked: the second conv fills the holes of the dilated one → identical sets
    net = dilated_net()
    rf = receptive_field_chain(net, (20, 22))
    np.testing.assert_array_equal(gradient_support(net, (20, 22), (5, 5)), fast_backprojection([5], [5], rf, (20, 22)))
    # a lone dilated conv sees a 3×3 lattice with step 2; Algorithm 1 fills its 5×5 bounding box
    net = CAMNet(nn.Conv2d(3, 4, 3, dilation=2, padding=2))
    rf = receptive_field_chain(net, (12, 12))
    support = gradient_support(net, (12, 12), (5, 6))
    bp = fast_backprojection([6], [5], rf, (12, 12))
    expected = np.zeros((12, 12), dtype=bool)
    expected[3:8:2, 4:9:2] = True
    np.testing.assert_array_equal(support, expected)
    np.testing.assert_array_equal(np.argwhere(bp).min(0), [3, 4])
    np.testing.assert_array_equal(np.argwhere(bp).max(0), [7, 8])
    assert bp.sum() == 25


# ---------------------------------------------------------------------------------------------
# Gudi et al. §3.1.1
# ---------------------------------------------------------------------------------------------


def test_affine_decision_threshold() -> None:
    assert affine_decision_threshold(2.0, -1.0) == pytest.approx(0.5)
    np.testing.assert_allclose(affine_decision_threshold(np.array([1.0, -2.0]), np.array([-3.0, 1.0])), [3.0, 0.5])
    # two-class softmax: present (w1, b1), absent (w0, b0) → w = w1 − w0, b = b1 − b0
    w1, b1, w0, b0 = 1.5, -0.2, -0.5, 0.8
    s = affine_decision_threshold(w1 - w0, b1 - b0)
    assert w1 * s + b1 == pytest.approx(w0 * s + b0)
    with pytest.raises(ValueError, match="weight"):
        affine_decision_threshold(0.0, 1.0)
    with pytest.raises(ValueError, match="bias"):
        affine_decision_threshold(1.0, np.nan)


def mountain_map() -> np.ndarray:
    """9×12 CAM: a mountain (peak 1.0 at (4, 4)) whose flanks fall below the threshold 0.5 down to 0.1."""
    m = np.zeros((9, 12))
    profile = [0.1, 0.3, 0.6, 1.0, 0.6, 0.3, 0.1]  # columns 1..7
    for dy in (-1, 0, 1):
        m[4 + dy, 1:8] = np.array(profile) * (1.0 if dy == 0 else 0.5)
    return m


def test_gudi_flood_fill_includes_flanks_below_threshold_down_to_floor() -> None:
    m = mountain_map()
    labels, n = mountain_labels(m, 0.0)
    assert n == 1 and (labels > 0).sum() == 21
    det = gudi_detect(m, threshold=0.5)  # floor defaults to 0: every activated pixel
    # mountain: x 1..7, y 3..5 (includes the 0.05–0.3 flanks) → tight inclusive box [1, 3, 7, 5]
    np.testing.assert_array_equal(det.boxes, [[1, 3, 7, 5]])
    np.testing.assert_allclose(det.scores, [1.0])
    # a floor of 0.2 cuts the flanks: kept pixels x 2..6 on the centre row, x 3..5 on the others
    det = gudi_detect(m, threshold=0.5, floor=0.2)
    np.testing.assert_array_equal(det.boxes, [[2, 3, 6, 5]])


def test_gudi_two_peaks_two_scored_boxes_and_shared_mountain_merges() -> None:
    m = np.zeros((10, 20))
    m[2:5, 2:5] = 0.4
    m[3, 3] = 0.7
    m[5:9, 12:17] = 0.3
    m[6, 14] = 0.9
    ys, xs = find_peaks(m, 0.5)
    assert sorted(zip(ys.tolist(), xs.tolist(), strict=True)) == [(3, 3), (6, 14)]
    det = gudi_detect(m, threshold=0.5)
    np.testing.assert_array_equal(det.boxes, [[12, 5, 16, 8], [2, 2, 4, 4]])
    np.testing.assert_allclose(det.scores, [0.9, 0.7])
    # join the two mountains with a ridge above the floor: one mountain, scored by its highest peak
    m[4, 5:12] = 0.2
    det = gudi_detect(m, threshold=0.5)
    np.testing.assert_array_equal(det.boxes, [[2, 2, 16, 8]])
    np.testing.assert_allclose(det.scores, [0.9])
    # a peak below the threshold gives nothing
    det = gudi_detect(m, threshold=0.95)
    assert det.boxes.shape == (0, 4) and det.scores.shape == (0,)


def test_gudi_backprojects_through_the_receptive_field() -> None:
    rf = ReceptiveField((4, 4), (0, 0), (16, 16))
    m = np.zeros((8, 8))
    m[2, 3] = 1.0  # single-pixel mountain → input x 12..27, y 8..23
    det = gudi_detect(m, 0.5, rf=rf, image_size=(40, 40))
    np.testing.assert_array_equal(det.boxes, [[12, 8, 27, 23]])
    det = gudi_detect(m, 0.5, rf=rf, image_size=(40, 40), ratio=0.5)  # x 15..24, y 11..20
    np.testing.assert_array_equal(det.boxes, [[15, 11, 24, 20]])
    # a ring-shaped mountain backprojects to a shape with a hole: one box, the hole does not matter
    ring = np.zeros((9, 9))
    ring[1:8, 1:8] = 1.0
    ring[3:6, 3:6] = 0.0
    det = gudi_detect(ring, 0.5)
    np.testing.assert_array_equal(det.boxes, [[1, 1, 7, 7]])
    # a large ratio shrinks neighbouring receptive fields apart (size 2 < stride 4): still one box
    # per mountain, spanning all of its pieces
    m[2, 4] = 0.8
    det = gudi_detect(m, 0.5, rf=rf, image_size=(40, 40), ratio=1.0)  # x 19..20 and 23..24, y 15..16
    np.testing.assert_array_equal(det.boxes, [[19, 15, 24, 16]])


def test_gudi_batch_nan_and_validation() -> None:
    maps = np.stack([mountain_map(), np.zeros((9, 12)), mountain_map()])
    maps[2, 0, 0] = np.nan
    stats = MapStats()
    batch = gudi_detect(maps, 0.5, stats=stats)
    assert isinstance(batch, list) and all(isinstance(d, Detections) for d in batch)
    np.testing.assert_array_equal(batch[0].boxes, gudi_detect(maps[0], 0.5).boxes)
    assert batch[1].boxes.shape == (0, 4)
    assert batch[2].boxes.shape == (0, 4) and stats.nonfinite == [2]
    boxes = gudi_boxes(maps[:2], 0.5, stats=MapStats())
    np.testing.assert_array_equal(boxes[0], batch[0].boxes)
    np.testing.assert_array_equal(extract_boxes(maps[0], "gudi", threshold=0.5), batch[0].boxes)
    with pytest.raises(ValueError, match="floor"):
        gudi_detect(maps[0], 0.5, floor=0.6)
    with pytest.raises(ValueError, match="ratio"):
        gudi_detect(maps[0], 0.5, ratio=1.5)
    with pytest.raises(ValueError, match="image_size"):
        gudi_detect(maps[0], 0.5, rf=ReceptiveField.identity())
    with pytest.raises(ValueError, match="threshold"):
        gudi_detect(maps[0], float("nan"))
    with pytest.raises(ValueError, match="score_map"):
        gudi_detect(np.zeros((2, 2, 2, 2)), 0.5)


def test_gudi_end_to_end_with_derived_geometry() -> None:
    torch.manual_seed(0)
    net = lenet_like()
    rf = receptive_field_chain(net, (48, 48))
    cam = np.zeros(rf.cam_size)
    cam[4, 5] = 2.0
    cam[4, 6] = 1.0  # flank of the same mountain
    det = gudi_detect(cam, affine_decision_threshold(1.0, -1.5), rf=rf, image_size=(48, 48))
    # pixels x 5..6, y 4 → input x 20..39, y 16..31
    np.testing.assert_array_equal(det.boxes, [[20, 16, 39, 31]])
    np.testing.assert_allclose(det.scores, [2.0])


def test_gudi_relative_floor_is_a_fraction_of_each_maps_peak() -> None:
    m = mountain_map()  # centre row 0.1, 0.3, 0.6, 1.0, 0.6, 0.3, 0.1 (x 1..7); rows 3 and 5 half of it
    # floor 0.25 * max = 0.25: centre row x 2..6 (>= 0.3), rows 3/5 only x 3..5 (0.3, 0.5, 0.3)
    det = gudi_detect(m, 0.5, relative_floor=0.25)
    np.testing.assert_array_equal(det.boxes, [[2, 3, 6, 5]])
    # the same map scaled by 10 gives the same box: the floor follows the peak
    det10 = gudi_detect(m * 10, 0.5, relative_floor=0.25)
    np.testing.assert_array_equal(det10.boxes, det.boxes)
    # a relative floor above the threshold also raises the bar for peaks
    two = np.zeros((5, 12))
    two[2, 2], two[2, 9] = 1.0, 0.4
    det = gudi_detect(two, 0.1, relative_floor=0.5)
    np.testing.assert_array_equal(det.boxes, [[2, 2, 2, 2]])
    with pytest.raises(ValueError, match="relative_floor"):
        gudi_detect(m, 0.5, relative_floor=1.0)
