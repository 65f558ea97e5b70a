"""Semi-supervised detection pipeline: losses on hand-made cases, boxed selection and mixing proportions,
annotation repair, bad-data training, train → detect → mAP, checkpoints / resume, config entry points."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from wsol.config import ConfigError
from wsol.detection.config import evaluate_checkpoint, load_detector, parse_detection_config, train_from_config
from wsol.detection.rfcn import RFCNSpec, build_rfcn
from wsol.detection.semi import (
    AnnotationWarning,
    MixingBatchSampler,
    SemiSupervisedDataset,
    SemiTrainConfig,
    collate_detection,
    detect,
    evaluate_detector,
    region_regularization,
    sanitize_annotation,
    select_boxed,
    semi_supervised_losses,
    train_semi,
    weak_classification_loss,
)
from wsol.metrics.detection import evaluate_detections


# ----------------------------------------------------------------------------------------------------------
# A toy source: dim (class 0) and bright (class 1) squares on a black 64×64 canvas
# ----------------------------------------------------------------------------------------------------------
class ToySource:
    in_chans = 1

    def __init__(self, n: int, seed: int = 0, size: int = 64, annotations: dict | None = None) -> None:
        self.class_names = ["dim", "bright"]
        rng = np.random.default_rng(seed)
        self.size = size
        self.items = []
        for _ in range(n):
            k = int(rng.integers(1, 3))
            boxes, labels = [], []
            for q in rng.permutation(4)[:k]:  # one square per quadrant: never overlapping
                side = int(rng.integers(12, 20))
                x0 = (q % 2) * 32 + int(rng.integers(0, 32 - side))
                y0 = (q // 2) * 32 + int(rng.integers(0, 32 - side))
                boxes.append([x0, y0, x0 + side - 1, y0 + side - 1])
                labels.append(int(rng.integers(0, 2)))
            self.items.append((np.array(boxes, float), np.array(labels), np.zeros(k, bool), tuple(sorted(set(labels)))))
        for i, ann in (annotations or {}).items():
            self.items[i] = ann

    def __len__(self) -> int:
        return len(self.items)

    def image_id(self, i: int) -> str:
        return f"toy/{i}"

    def image_labels(self, i: int) -> tuple[int, ...]:
        return self.items[i][3]

    def ground_truth(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.items[i][0], self.items[i][1], self.items[i][2]

    def load(self, i: int) -> tuple[torch.Tensor, float, tuple[int, int]]:
        img = torch.zeros(1, self.size, self.size)
        boxes, labels = self.items[i][0], self.items[i][1]
        for b, c in zip(boxes, labels, strict=True):
            if np.isfinite(b).all() and b[2] >= max(b[0], 0) and b[3] >= max(b[1], 0):
                x0, y0 = max(int(b[0]), 0), max(int(b[1]), 0)
                img[0, y0 : int(b[3]) + 1, x0 : int(b[2]) + 1] = 0.45 if c == 0 else 1.0
        return img, 1.0, (self.size, self.size)


def _spec(variant: str = "rfcn+gwap") -> RFCNSpec:
    return RFCNSpec(
        backbone="lenet5", backbone_kwargs={"width1": 8, "width2": 24}, in_chans=1, variant=variant, ps_bins=3,
        reduce_channels=24, rpn_channels=16, anchor_sizes=[12.0, 18.0], aspect_ratios=[1.0],
        rpn_pre_nms_top_n_train=300, rpn_post_nms_top_n_train=60, rpn_pre_nms_top_n_test=300,
        rpn_post_nms_top_n_test=30, rpn_batch_size_per_image=64, roi_batch_size_per_image=32, freeze_bn=False,
        feature_stride=4, feature_offset=8.0,  # LeNet-5 geometry (tested in test_detection_rfcn)
    )


def _cfg(**kw: object) -> SemiTrainConfig:
    base = dict(steps=4, batch_size=4, boxed_per_batch=2, optimizer="adam", lr=3e-3, weight_decay=0.0,
                device="cpu", log_every=2, hflip=True)
    base.update(kw)
    return SemiTrainConfig(**base)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------------------
# Loss terms on hand-made cases
# ----------------------------------------------------------------------------------------------------------
def test_weak_loss_is_sigmoid_ce_summed_over_classes_averaged_over_images() -> None:
    logits = torch.tensor([[0.0, 2.0], [1.0, -1.0]])
    targets = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    # image 1: -log σ(0) - log(1 - σ(2)) = log 2 + log(1 + e²); image 2: -log σ(1) - log σ(-1)
    expected = (math.log(2) + math.log(1 + math.e**2) + math.log(1 + math.e**-1) + math.log(1 + math.e)) / 2
    assert weak_classification_loss(logits, targets).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="both be"):
        weak_classification_loss(logits, targets[:, :1])


def _maps(inside: float, outside: float, c: int = 2) -> torch.Tensor:
    s = torch.full((1, c, 4, 4), outside)
    s[0, 0, :2, :2] = inside
    return s


def test_region_regularizer_hinge_on_inside_minus_outside_average() -> None:
    # stride 1, offset 0.5: cell j is centred at j + 0.5; the box [0, 0, 2, 2) holds cells (0..1, 0..1)
    box = [torch.tensor([[0.0, 0.0, 2.0, 2.0]])]
    lab = [torch.tensor([0])]
    assert region_regularization(_maps(3.0, 1.0), box, lab, 1, 0.5, margin=1.0).item() == 0.0  # 3 − 1 ≥ 1
    assert region_regularization(_maps(3.0, 1.0), box, lab, 1, 0.5, margin=3.0).item() == pytest.approx(1.0)
    assert region_regularization(_maps(1.0, 1.5), box, lab, 1, 0.5, margin=1.0).item() == pytest.approx(1.5)
    # the other class's map is not involved
    s = _maps(1.0, 1.5)
    s[0, 1] = 100.0
    assert region_regularization(s, box, lab, 1, 0.5, margin=1.0).item() == pytest.approx(1.5)


def test_region_regularizer_negative_region_excludes_every_box_of_the_class() -> None:
    s = torch.zeros(1, 1, 4, 4)
    s[0, 0, 0, 0] = 4.0  # box A: cell (0, 0)
    s[0, 0, 3, 3] = 2.0  # box B: cell (3, 3)
    s[0, 0, 1, 2] = 1.4  # one negative cell; 14 negatives in all → mean 0.1
    boxes = [torch.tensor([[0.0, 0.0, 1.0, 1.0], [3.0, 3.0, 4.0, 4.0]])]
    loss = region_regularization(s, boxes, [torch.tensor([0, 0])], 1, 0.5, margin=2.5)
    # A: max(0, 2.5 − (4 − 0.1)) = 0; B: max(0, 2.5 − (2 − 0.1)) = 0.6; mean over the two boxes
    assert loss.item() == pytest.approx(0.3, abs=1e-6)


def test_region_regularizer_small_box_uses_nearest_cell_and_gradient_sign() -> None:
    s = torch.zeros(1, 1, 4, 4, requires_grad=True)
    box = [torch.tensor([[2.1, 1.1, 2.4, 1.4]])]  # contains no cell centre; nearest cell (row 1, col 2)
    loss = region_regularization(s, box, [torch.tensor([0])], 1, 0.5, margin=1.0)
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    assert s.grad[0, 0, 1, 2].item() == pytest.approx(-1.0)  # raise the object cell
    assert s.grad[0, 0, 0, 0].item() == pytest.approx(1.0 / 15)  # lower the negative cells


def test_region_regularizer_without_negative_region_or_boxes_is_zero_and_differentiable() -> None:
    s = torch.randn(2, 2, 3, 3, requires_grad=True)
    whole = [torch.tensor([[0.0, 0.0, 3.0, 3.0]]), torch.zeros(0, 4)]
    loss = region_regularization(s, whole, [torch.tensor([1]), torch.zeros(0, dtype=torch.int64)], 1, 0.5)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(s.grad, torch.zeros_like(s))
    with pytest.raises(ValueError, match="box labels"):
        region_regularization(s, [torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.zeros(0, 4)],
                              [torch.tensor([2]), torch.zeros(0, dtype=torch.int64)], 1, 0.5)


# ----------------------------------------------------------------------------------------------------------
# Boxed selection and the mixing sampler
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fraction", [0.01, 0.02, 0.05, 0.1, 0.37, 1.0])
def test_select_boxed_proportion(fraction: float) -> None:
    labels = [(i % 3,) for i in range(1000)]
    idx = select_boxed(labels, fraction, seed=3, cover_classes=False)
    assert len(idx) == round(1000 * fraction) and len(set(idx.tolist())) == len(idx)
    assert np.all(np.diff(idx) > 0) and idx.min() >= 0 and idx.max() < 1000
    covered = select_boxed(labels, fraction, seed=3)
    assert {labels[i][0] for i in covered} == {0, 1, 2}
    assert len(idx) <= len(covered) <= len(idx) + 3
    np.testing.assert_array_equal(select_boxed(labels, fraction, seed=3, cover_classes=False), idx)


def test_select_boxed_covers_rare_classes_and_keeps_at_least_one() -> None:
    labels = [(0,)] * 99 + [(1,)]
    idx = select_boxed(labels, 0.001, seed=0)
    assert 99 in idx.tolist()  # the only image of class 1
    assert len(select_boxed(labels, 0.001, seed=0, cover_classes=False)) == 1


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.01, float("nan"), float("inf"), True, "0.5", None])
def test_select_boxed_rejects_fractions_outside_0_1(bad: object) -> None:
    with pytest.raises(ValueError, match="boxed_fraction"):
        select_boxed([(0,)] * 10, bad)  # type: ignore[arg-type]


def test_mixing_sampler_proportions_and_coverage() -> None:
    boxed, unboxed = list(range(0, 10)), list(range(10, 100))
    sampler = MixingBatchSampler(boxed, unboxed, batch_size=8, boxed_per_batch=2, num_batches=45, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 45
    counts = np.zeros(100, dtype=int)
    for b in batches:
        assert len(b) == 8
        assert sum(i < 10 for i in b) == 2  # exactly two boxed images per batch
        counts[b] += 1
    # 45 batches × 2 = 90 boxed draws = 9 full passes over the 10 boxed images; 45 × 6 = 270 = 3 passes of 90
    assert (counts[:10] == 9).all() and (counts[10:] == 3).all()


def test_mixing_sampler_is_a_pure_function_of_seed_and_step() -> None:
    full = list(MixingBatchSampler(range(5), range(5, 40), 6, 3, 20, seed=7))
    resumed = list(MixingBatchSampler(range(5), range(5, 40), 6, 3, 20, seed=7, start=12))
    assert resumed == full[12:]
    other = list(MixingBatchSampler(range(5), range(5, 40), 6, 3, 20, seed=8))
    assert other != full


def test_mixing_sampler_uniform_and_boxed_only_modes() -> None:
    uni = list(MixingBatchSampler(range(10), range(10, 50), 5, None, 40, seed=0))
    # 40 × 5 = 200 draws = 4 passes over the 50 images: boxed share exactly 10/50 = boxed_fraction
    assert sum(i < 10 for b in uni for i in b) == 40
    only = list(MixingBatchSampler(range(3), [], 4, 1, 3, seed=0))
    assert all(i < 3 for b in only for i in b) and all(len(b) == 4 for b in only)
    with pytest.raises(ValueError, match="boxed_per_batch"):
        MixingBatchSampler(range(3), range(3, 9), 4, 5, 3)
    with pytest.raises(ValueError, match="no boxed image"):
        MixingBatchSampler([], range(3, 9), 4, 1, 3)


# ----------------------------------------------------------------------------------------------------------
# Annotation repair
# ----------------------------------------------------------------------------------------------------------
def test_sanitize_annotation_rules() -> None:
    boxes = np.array([[5, 5, 4, 9], [10, 10, 20, 20], [-5, 2, 8, 70], [100, 100, 120, 120], [1, 1, 3, 3]], float)
    labels = np.array([0, 1, 1, 2, 2])
    diff = np.array([0, 0, 0, 0, 1], bool)
    out, lab, img_labels, complete, msgs = sanitize_annotation(boxes, labels, diff, (3,), (64, 50), 4, "img7")
    np.testing.assert_array_equal(out, [[10, 10, 20, 20], [0, 2, 8, 63]])  # zero-area, outside, difficult gone
    np.testing.assert_array_equal(lab, [1, 1])
    assert img_labels == (0, 1, 2, 3)  # labels ∪ box labels
    assert not complete  # classes 0 (zero-area box) and 3 (no box) have no usable box; 2 has a difficult one
    text = " ".join(msgs)
    assert "zero area" in text and "outside" in text and "clipped" in text and "[0, 3]" in text
    with pytest.raises(ValueError, match="img7: box label 9"):
        sanitize_annotation(boxes[:1], np.array([9]), diff[:1], (), (64, 50), 4, "img7")


def test_dataset_demotes_incomplete_images_and_hides_unboxed_boxes() -> None:
    ann = {0: (np.array([[2.0, 2.0, 10.0, 10.0]]), np.array([0]), np.zeros(1, bool), (0, 1))}  # class 1 unboxed
    src = ToySource(4, annotations=ann)
    ds = SemiSupervisedDataset(src, [0, 1])
    with pytest.warns(AnnotationWarning, match=r"toy/0: class\(es\) \[1\]"):
        item = ds[0]
    assert not item["has_boxes"] and item["boxes"].shape == (0, 4)
    assert item["labels"].tolist() == [1.0, 1.0]
    boxed, unboxed = ds[1], ds[2]
    assert boxed["has_boxes"] and len(boxed["boxes"]) == len(src.items[1][0])
    # inclusive [x0, y0, x1, y1] → continuous [x0, y0, x1 + 1, y1 + 1]
    expected = torch.tensor(src.items[1][0], dtype=torch.float32) + torch.tensor([0.0, 0.0, 1.0, 1.0])
    torch.testing.assert_close(boxed["boxes"], expected)
    assert not unboxed["has_boxes"] and unboxed["boxes"].shape == (0, 4) and unboxed["labels"].sum() >= 1
    with pytest.raises(ValueError, match="boxed indices"):
        SemiSupervisedDataset(src, [4])


# ----------------------------------------------------------------------------------------------------------
# Training on bad data, end to end, checkpoints
# ----------------------------------------------------------------------------------------------------------
def test_training_on_bad_data_keeps_losses_finite() -> None:
    bad = {
        0: (np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0, bool), ()),  # an image with no object
        1: (np.array([[10.0, 10.0, 9.0, 20.0], [30, 30, 45, 45]]), np.array([1, 1]), np.zeros(2, bool), (1,)),
        2: (np.array([[50.0, 50.0, 90.0, 90.0], [-30, -30, -5, -5]]), np.array([1, 1]), np.zeros(2, bool), (1,)),
        3: (np.array([[4.0, 4.0, 20.0, 20.0]]), np.array([0]), np.zeros(1, bool), (0, 1)),  # class 1 unboxed
    }
    src = ToySource(8, seed=1, annotations=bad)
    ds = SemiSupervisedDataset(src, [0, 1, 2, 3, 4, 5])
    with pytest.warns(AnnotationWarning) as record:
        assert [ds[i]["has_boxes"] for i in range(4)] == [True, True, True, False]
    assert [str(w.message).split(":")[0] for w in record] == ["toy/1", "toy/2", "toy/3"]
    assert len(ds[1]["boxes"]) == 1 and len(ds[2]["boxes"]) == 1
    torch.manual_seed(0)
    model = build_rfcn(_spec("rfcn+gwap+gap"), 2)
    history = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AnnotationWarning)
        result = train_semi(model, ds, _cfg(steps=6, log_every=1, boxed_per_batch=3), log=history.append)
    assert result["steps"] == 6 and len(result["history"]) == 6
    for rec in result["history"]:
        assert all(math.isfinite(v) for k, v in rec.items() if k != "step"), rec
        assert "weak_gwap" in rec and "weak_gap" in rec
    assert any("det_cls" in rec for rec in result["history"])
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_semi_supervised_losses_parts_and_total() -> None:
    src = ToySource(4, seed=2)
    ds = SemiSupervisedDataset(src, [0])
    torch.manual_seed(0)
    model = build_rfcn(_spec("rfcn+gwap"), 2)
    model.train()
    batch = collate_detection([ds[i] for i in range(4)])
    total, parts = semi_supervised_losses(model, batch, weak_weight=0.1, region_weight=1.0)
    det = parts["rpn_cls"] + parts["rpn_box"] + parts["det_cls"] + parts["det_box"]
    torch.testing.assert_close(total, det + 0.1 * (parts["weak_gwap"] + parts["region"]))
    # label-only batch on plain R-FCN: nothing to train
    plain = build_rfcn(_spec("rfcn"), 2)
    none_total, none_parts = semi_supervised_losses(plain, collate_detection([ds[1], ds[2]]))
    assert none_total is None and none_parts == {}


def test_train_detect_map_beats_a_random_detector(tmp_path: Path) -> None:
    train_src, test_src = ToySource(48, seed=0), ToySource(24, seed=99)
    ds = SemiSupervisedDataset(train_src, select_boxed([train_src.image_labels(i) for i in range(48)], 0.25, 0))
    torch.manual_seed(0)
    model = build_rfcn(_spec("rfcn+gwap"), 2)
    train_semi(model, ds, _cfg(steps=70, batch_size=6, boxed_per_batch=3, log_every=70, hflip=False))
    metrics = evaluate_detector(model, test_src, batch_size=12)
    # a random detector: 10 random boxes per image with random scores and classes
    rng = np.random.default_rng(0)
    rand = []
    for _ in range(len(test_src)):
        xy = rng.uniform(0, 50, (10, 2))
        wh = rng.uniform(10, 20, (10, 2))
        rand.append((np.hstack([xy, np.minimum(xy + wh, 63)]), rng.random(10), rng.integers(0, 2, 10)))
    gts = [test_src.ground_truth(i) for i in range(len(test_src))]
    random_map = evaluate_detections(rand, gts, 2).mean_ap
    assert math.isfinite(metrics["map"]) and 0.0 <= metrics["map"] <= 1.0
    assert metrics["map"] > random_map + 0.3, (metrics["map"], random_map)
    assert metrics["corloc"] is not None and metrics["corloc"] > 0.5
    assert set(metrics["ap"]) == {"dim", "bright"}


def test_detect_returns_inclusive_boxes_in_original_pixels() -> None:
    torch.manual_seed(0)
    model = build_rfcn(_spec("rfcn"), 2)
    images = torch.rand(1, 1, 64, 64)
    raw = model.predict(images, score_thresh=0.0)
    dets = detect(model, images, scales=[2.0], score_thresh=0.0)
    boxes = raw[0][0].double() / 2.0
    boxes[:, 2:] -= 1.0
    boxes = boxes.clamp(min=0, max=31)
    np.testing.assert_allclose(dets[0][0], np.maximum(boxes.numpy(), np.hstack([boxes[:, :2], boxes[:, :2]])),
                               atol=1e-6)
    np.testing.assert_allclose(dets[0][1], raw[0][1].double().numpy(), atol=1e-7)
    assert dets[0][2].dtype == np.int64
    lst = detect(model, [images[0], images[0, :, :40, :50]])  # a list of differently sized images
    assert len(lst) == 2 and (lst[1][0][:, 2] <= 49).all() and (lst[1][0][:, 3] <= 39).all()


def test_checkpoint_and_bit_identical_resume(tmp_path: Path) -> None:
    src = ToySource(12, seed=4)
    ds = SemiSupervisedDataset(src, [0, 1, 2])
    extras = {"task": "detection", "run_config": {"x": 1}, "class_names": src.class_names}
    torch.manual_seed(0)
    straight = build_rfcn(_spec("rfcn+gwap"), 2)
    train_semi(straight, ds, _cfg(steps=4, out_dir=str(tmp_path / "a")), extras=extras)
    torch.manual_seed(0)
    first = build_rfcn(_spec("rfcn+gwap"), 2)
    train_semi(first, ds, _cfg(steps=2, out_dir=str(tmp_path / "b")), extras=extras)
    torch.manual_seed(123)  # a different process state: resume must not depend on it
    second = build_rfcn(_spec("rfcn+gwap"), 2)
    train_semi(second, ds, _cfg(steps=4, out_dir=str(tmp_path / "b")), resume=True, extras=extras)
    for (k, a), b in zip(straight.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    ckpt = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert ckpt["step"] == 4 and ckpt["extras"]["task"] == "detection"
    assert ckpt["extras"]["class_names"] == ["dim", "bright"]


# ----------------------------------------------------------------------------------------------------------
# Config entry points
# ----------------------------------------------------------------------------------------------------------
def _mnist_raw(out_dir: Path) -> dict:
    return {
        "task": "detection",
        "model": {"backbone": "lenet5", "backbone_kwargs": {"width1": 4, "width2": 8}, "in_chans": 1,
                  "variant": "rfcn+gwap", "ps_bins": 2, "reduce_channels": 8, "rpn_channels": 8,
                  "anchor_sizes": [20], "aspect_ratios": [1.0], "rpn_post_nms_top_n_test": 10, "freeze_bn": False},
        "data": {"dataset": "mnist128", "train": [{"split": "train", "n": 12}], "test": {"split": "test", "n": 4},
                 "boxed_fraction": 0.25, "max_digits": 2},
        "train": {"steps": 2, "batch_size": 2, "boxed_per_batch": 1, "device": "cpu", "out_dir": str(out_dir),
                  "log_every": 1},
        "eval": {"batch_size": 4},
    }


def test_train_from_config_and_evaluate_checkpoint(tmp_path: Path) -> None:
    out = train_from_config(_mnist_raw(tmp_path / "run"), log=None)
    assert out["train"]["steps"] == 2 and out["train"]["boxed_images"] >= 3
    assert math.isfinite(out["eval"]["map"])
    for name in ("last.pt", "config.json", "eval.json", "metrics.json"):
        assert (tmp_path / "run" / name).is_file(), name
    _, cfg, names = load_detector(tmp_path / "run" / "last.pt")
    assert names == [str(d) for d in range(10)] and cfg.model.feature_offset == pytest.approx(8.0)
    res = evaluate_checkpoint(tmp_path / "run" / "last.pt", device="cpu", out_dir=tmp_path / "ev")
    assert res["map"] == pytest.approx(out["eval"]["map"]) and res["step"] == 2
    assert (tmp_path / "ev" / "detection_eval.json").is_file()
    # wsol evaluate dispatches detection checkpoints to the same evaluation
    from wsol.cli import main

    assert main(["evaluate", "--checkpoint", str(tmp_path / "run" / "last.pt"), "--device", "cpu",
                 "--out", str(tmp_path / "cli")]) == 0  # fmt: skip
    cli = json.loads((tmp_path / "cli" / "detection_eval.json").read_text())
    assert cli["map"] == pytest.approx(res["map"]) and cli["map_area"] == pytest.approx(res["map_area"])


def test_config_errors_are_clear(tmp_path: Path) -> None:
    raw = _mnist_raw(tmp_path)
    raw["data"]["boxed_fraction"] = 0.0
    with pytest.raises(ConfigError, match=r"boxed_fraction must be in \(0, 1\]"):
        parse_detection_config(raw)
    raw = _mnist_raw(tmp_path)
    raw["train"]["weak_wieght"] = 0.1
    with pytest.raises(ConfigError, match="did you mean 'weak_weight'"):
        parse_detection_config(raw)
    raw = _mnist_raw(tmp_path)
    raw["model"]["variant"] = "rfcn+gwapp"
    with pytest.raises(ConfigError, match="rfcn\\+gwap"):
        parse_detection_config(raw)
    torch.save({"format_version": 1, "extras": {"task": "classification"}}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not a detection checkpoint"):
        load_detector(tmp_path / "x.pt")


def test_packaged_configs_parse() -> None:
    from wsol.config import load_yaml

    folder = Path(__file__).resolve().parents[1] / "src" / "wsol" / "configs"
    names = ["qiu_voc0712_rfcn_r50.yaml", "qiu_voc0712_rfcn_gap_r50.yaml", "qiu_voc0712_rfcn_gwap_r50.yaml"]
    variants = []
    for name in names:
        cfg = parse_detection_config(load_yaml(folder / name))
        assert cfg.data.dataset == "voc" and cfg.model.backbone == "resnet50" and cfg.train.weak_weight == 0.1
        variants.append(cfg.model.variant)
    assert variants == ["rfcn", "rfcn+gap", "rfcn+gwap"]


# ----------------------------------------------------------------------------------------------------------
# wsol.data.records indices (the "voc" reader) through RecordDetection
# ----------------------------------------------------------------------------------------------------------
def _voc_folder(root: Path) -> Path:
    """A 4-image VOC2007 folder: 40×30 JPEGs with dark squares (dog / cat), one undecodable JPEG."""
    from PIL import Image

    folder = root / "VOCdevkit" / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (folder / sub).mkdir(parents=True)
    objects = {"000001": [("dog", (3, 4, 14, 16))], "000002": [("cat", (20, 5, 33, 20)), ("dog", (2, 18, 10, 28))],
               "000003": [("cat", (5, 5, 18, 18))], "000004": [("dog", (1, 1, 5, 5))]}
    for image_id, objs in objects.items():
        arr = np.full((30, 40, 3), 255, np.uint8)
        xml = ["<annotation><size><width>40</width><height>30</height><depth>3</depth></size>"]
        for name, (x0, y0, x1, y1) in objs:
            arr[y0 - 1 : y1, x0 - 1 : x1] = 0 if name == "dog" else 128
            xml.append(f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
                       f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>")
        (folder / "Annotations" / f"{image_id}.xml").write_text("".join([*xml, "</annotation>"]))
        Image.fromarray(arr).save(folder / "JPEGImages" / f"{image_id}.jpg")
    (folder / "JPEGImages" / "000004.jpg").write_bytes(b"not a jpeg")
    (folder / "ImageSets" / "Main" / "trainval.txt").write_text("000001\n000002\n000003\n000004\n")
    (folder / "ImageSets" / "Main" / "test.txt").write_text("000002\n000003\n")
    return folder


def test_record_source_resizes_and_scales_boxes(tmp_path: Path) -> None:
    from wsol.data.records import UnreadableImageWarning, build_index
    from wsol.detection.semi import RecordDetection

    folder = _voc_folder(tmp_path)
    src = RecordDetection(build_index("voc", folder, "trainval"), min_size=60, max_size=100)
    image, scale, size = src.load(1)
    assert image.shape == (3, 60, 80) and scale == pytest.approx(2.0) and size == (30, 40)
    assert src.image_labels(1) == (7, 11)  # cat, dog
    ds = SemiSupervisedDataset(src, [0, 1, 2, 3])
    item = ds[1]
    # VOC (20, 5, 33, 20) 1-based → 0-based inclusive (19, 4, 32, 19) → continuous ×2: (38, 8, 66, 40)
    torch.testing.assert_close(item["boxes"][0], torch.tensor([38.0, 8.0, 66.0, 40.0]))
    with pytest.warns(UnreadableImageWarning, match="000004"):
        assert ds[3] is None
    batch = collate_detection([ds[0], ds[3], ds[2]])
    assert batch is not None and batch["images"].shape == (2, 3, 60, 80) and batch["indices"] == [0, 2]


def test_train_from_config_on_a_voc_folder(tmp_path: Path) -> None:
    from wsol.data.records import UnreadableImageWarning

    folder = _voc_folder(tmp_path)
    raw = {
        "task": "detection",
        "model": {"backbone": "lenet5", "backbone_kwargs": {"width1": 4, "width2": 8}, "in_chans": 3,
                  "variant": "rfcn+gwap+gap", "ps_bins": 2, "reduce_channels": 8, "rpn_channels": 8,
                  "anchor_sizes": [16], "aspect_ratios": [1.0], "freeze_bn": False},
        "data": {"dataset": "voc", "root": str(folder), "train": [{"split": "trainval"}], "test": {"split": "test"},
                 "boxed_fraction": 0.5, "min_size": 60, "max_size": 100},
        "train": {"steps": 3, "batch_size": 2, "boxed_per_batch": 1, "device": "cpu",
                  "out_dir": str(tmp_path / "run"), "log_every": 1},
        "eval": {"batch_size": 2},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreadableImageWarning)
        out = train_from_config(raw, log=None)
    assert out["train"]["steps"] == 3 and out["eval"]["num_images"] == 2
    assert math.isfinite(out["eval"]["map"]) and set(out["eval"]["ap"]) >= {"cat", "dog"}
    with pytest.warns(UnreadableImageWarning, match="000004"):
        res = evaluate_checkpoint(tmp_path / "run" / "last.pt", device="cpu", split="trainval")
    assert res["split"] == "trainval" and res["num_images"] == 3 and res["skipped_images"] == 1
