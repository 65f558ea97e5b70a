"""wsol.evaluation.evaluate_model: hand-computed metrics of hand-built models, reference comparisons, bad items."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from torch import nn

from wsol.data.records import DatasetIndex, ImageRecord, RecordDataset
from wsol.evaluation import EvaluationReport, MoreauxThresholdBoxes, evaluate_model, export_map
from wsol.localize import DegenerateMapWarning, MapStats, moreaux_boxes, zhou_boxes
from wsol.metrics.boxacc import compute_boxacc
from wsol.metrics.classification import mean_average_precision, topk_accuracy
from wsol.metrics.localization import center_of_mass_accuracy, localization_accuracy, pointing_game
from wsol.metrics.pxap import compute_pxap, load_gt_mask

SIZE = 32
C = 6


# ----------------------------------------------------------------------------------------------------------
# Hand-built models. Images carry what the model outputs: red = the CAM, green row 0 = the logits,
# blue pixel (0, 0) / (0, 1) set = NaN CAMs / NaN logits.
# ----------------------------------------------------------------------------------------------------------
class ChannelModel(nn.Module):
    """``cams[b, c] = red`` shifted right by ``shift * c`` pixels; ``logits[b, c] = green[0, c]``."""

    def __init__(self, num_classes: int = C, shift: int = 0, nan_above: int | None = None) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.shift = shift
        self.nan_above = nan_above  # NaN CAMs (for flagged images) only for inputs wider than this
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        red = x[:, 0]
        cams = torch.stack([torch.roll(red, self.shift * c, dims=-1) for c in range(self.num_classes)], dim=1)
        logits = x[:, 1, 0, : self.num_classes].clone() + 0 * self.dummy
        flag_cam = x[:, 2, 0, 0] > 0.5
        if self.nan_above is None or x.shape[-1] > self.nan_above:
            cams[flag_cam] = float("nan")
        logits[x[:, 2, 0, 1] > 0.5] = float("nan")
        return logits, cams


def _rect(x0: int, y0: int, x1: int, y1: int, size: int = SIZE) -> np.ndarray:
    m = np.zeros((size, size), dtype=np.uint8)
    m[y0 : y1 + 1, x0 : x1 + 1] = 255
    return m


def _image(
    red: np.ndarray, logits: list[float] | None = None, nan_cam: bool = False, nan_logits: bool = False
) -> np.ndarray:
    img = np.zeros((*red.shape, 3), dtype=np.uint8)
    img[..., 0] = red
    if logits is not None:
        img[0, : len(logits), 1] = np.asarray(logits, dtype=np.uint8)
    img[0, 0, 2] = 255 if nan_cam else 0
    img[0, 1, 2] = 255 if nan_logits else 0
    return img


def _logits_with_rank(label: int, rank: int, num_classes: int = C) -> list[float]:
    """Green values (distinct, no ties) that put ``label`` at position ``rank`` of the ranking."""
    others = [c for c in range(num_classes) if c != label]
    order = [*others[:rank], label, *others[rank:]]
    values = [0.0] * num_classes
    for position, c in enumerate(order):
        values[c] = 250 - 40 * position
    return values


def _dataset(tmp_path: Path, items: list[tuple[str, np.ndarray, tuple[int, ...], list[list[int]]]],
             num_classes: int = C, **record_kw: object) -> RecordDataset:  # fmt: skip
    records = []
    for image_id, img, labels, boxes in items:
        path = tmp_path / image_id
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(path)
        records.append(ImageRecord(image_id, path, labels, boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4)))
    index = DatasetIndex("fixture", tmp_path, "test", [f"c{i}" for i in range(num_classes)], records)
    return RecordDataset(index)


def _three_boxes(tmp_path: Path, logits: list[list[float]] | None = None) -> RecordDataset:
    """Three images with hand-computed IoUs of Zhou's box (contour box = [x, y, x + w, y + h])."""
    logits = logits or [_logits_with_rank(1, 0)] * 3
    return _dataset(tmp_path, [
        # map = GT box: contour box [4, 6, 14, 22] vs GT [4, 6, 13, 21]: IoU = 160 / 187
        ("a.png", _image(_rect(4, 6, 13, 21), logits[0]), (1,), [[4, 6, 13, 21]]),
        # map [11..26]^2 → box [11, 11, 27, 27] (289 px) vs GT [2, 2, 17, 17] (256 px): 49 / 496
        ("b.png", _image(_rect(11, 11, 26, 26), logits[1]), (1,), [[2, 2, 17, 17]]),
        # map x 11..30, y 0..19 → box [11, 0, 31, 20] (441 px) vs GT [0, 0, 21, 19] (440 px): 220 / 661
        ("c.png", _image(_rect(11, 0, 30, 19), logits[2]), (1,), [[0, 0, 21, 19]]),
    ])  # fmt: skip


IOU_A, IOU_B, IOU_C = 160 / 187, 49 / 496, 220 / 661


# ----------------------------------------------------------------------------------------------------------
# Hand-computed values
# ----------------------------------------------------------------------------------------------------------
def test_hand_computed_box_metrics(tmp_path: Path) -> None:
    rep = evaluate_model(ChannelModel(), _three_boxes(tmp_path), batch_size=2, cam_curve_interval=0.01)
    per = {p["image_id"]: p for p in rep.per_image}
    assert per["a.png"]["iou"] == pytest.approx(IOU_A)
    assert per["b.png"]["iou"] == pytest.approx(IOU_B)
    assert per["c.png"]["iou"] == pytest.approx(IOU_C)
    assert per["a.png"]["box"] == [4, 6, 14, 22]
    loc = rep.localization
    assert loc is not None and loc["num_units"] == 3
    assert loc["gt_known_loc"] == pytest.approx(100 / 3)
    assert loc["top1_loc"] == pytest.approx(100 / 3)  # every class prediction is right
    assert loc["top5_loc"] == pytest.approx(100 / 3)
    assert loc["mean_iou_gt_known"] == pytest.approx(100 * (IOU_A + IOU_B + IOU_C) / 3)
    # pointing: first maximum = top-left map pixel, inside the GT box for all three
    assert loc["pointing_game"]["accuracy"] == pytest.approx(100.0)
    # centre of mass: a (8.5, 13.5) in; b (18.5, 18.5) outside [1.5, 17.5]; c (20.5, 9.5) in [-0.5, 21.5]
    assert loc["center_of_mass"]["gt_known"] == pytest.approx(200 / 3)
    # accuracy vs IoU threshold δ
    curve = dict(zip(loc["iou_curve"]["iou_thresholds"], loc["iou_curve"]["gt_known"], strict=True))
    assert curve[0.0] == 100.0 and curve[0.3] == pytest.approx(200 / 3) and curve[0.35] == pytest.approx(100 / 3)
    assert curve[0.85] == pytest.approx(100 / 3) and curve[0.9] == 0.0  # IoU_A = 0.856
    # Moreaux (tight box, any threshold of an indicator map): IoUs 1, 49/463, 220/620
    tc = loc["threshold_curve"]
    assert tc["gt_known_accuracy"] == pytest.approx([100 / 3] * len(tc["thresholds"]))
    assert tc["mean_iou"][0] == pytest.approx(100 * (1 + 49 / 463 + 220 / 620) / 3)
    # MaxBoxAcc: an indicator map gives the same boxes at every CAM threshold (largest contour = only contour)
    b = rep.boxacc
    assert b is not None
    assert b.maxboxacc == pytest.approx(100 / 3)
    assert b.multi.max_accuracy[30] == pytest.approx(200 / 3)  # IoU_C = 0.333 >= 0.3
    assert b.maxboxacc_v2 == pytest.approx((200 / 3 + 100 / 3 + 100 / 3) / 3)
    assert rep.classification == {"num_images": 3, "top1_accuracy": 100.0, "top5_accuracy": 100.0}
    assert rep.counts["evaluated"] == 3 and not rep.skipped and not rep.has_skipped


def test_cam_equal_to_gt_box_gives_full_gt_known_and_topk_from_ranks(tmp_path: Path) -> None:
    """Identity: CAM = GT box indicator ⇒ GT-known loc = MaxBoxAcc(V2) = 100 %; top-k loc = top-k accuracy."""
    boxes = [[3, 3, 12, 20], [10, 2, 25, 9], [5, 14, 20, 28], [0, 0, 9, 9]]
    ranks = [0, 0, 3, 5]  # top-1: 2/4, top-5: 3/4
    items = [(f"{i}.png", _image(_rect(*bx), _logits_with_rank(2, r)), (2,), [bx])
             for i, (bx, r) in enumerate(zip(boxes, ranks, strict=True))]  # fmt: skip
    rep = evaluate_model(ChannelModel(), _dataset(tmp_path, items), cam_curve_interval=0.05)
    assert rep.classification["top1_accuracy"] == 50.0 and rep.classification["top5_accuracy"] == 75.0
    loc = rep.localization
    assert loc["gt_known_loc"] == 100.0
    assert loc["top1_loc"] == 50.0 and loc["top5_loc"] == 75.0
    assert loc["center_of_mass"] == {"gt_known": 100.0, "top1": 50.0}
    assert rep.boxacc.maxboxacc == 100.0 and rep.boxacc.maxboxacc_v2 == 100.0
    assert rep.boxacc.top1_maxboxacc == 50.0
    assert loc["iou_curve"]["top1"][0] == 50.0


def test_matches_reference_metric_functions(tmp_path: Path) -> None:
    """Smooth random maps, per-class maps differing (shifted), random rankings: every number equals the
    metric module's function applied to all maps at once (top-k loc with each ranked class's *own* map)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    items, reds, gts, labels, logits = [], [], [], [], []
    for i in range(8):
        cx, cy, s = rng.uniform(6, 26), rng.uniform(6, 26), rng.uniform(2, 6)
        red = np.round(255 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))).astype(np.uint8)
        x0, y0 = rng.integers(0, 16, size=2)
        box = [int(x0), int(y0), int(x0 + rng.integers(4, 15)), int(y0 + rng.integers(4, 15))]
        label = int(rng.integers(0, C))
        lg = [float(v) for v in rng.permutation(np.arange(0, 240, 40))]
        items.append((f"{i}.png", _image(red, lg), (label,), [box]))
        reds.append(red.astype(np.float32) / 255)
        gts.append(np.array([box]))
        labels.append(label)
        logits.append(np.array(lg) / 255)
    model = ChannelModel(shift=3)
    rep = evaluate_model(model, _dataset(tmp_path, items), batch_size=3, cam_curve_interval=0.01)
    one_by_one = evaluate_model(model, _dataset(tmp_path, items), batch_size=1, cam_curve_interval=0.01)
    assert one_by_one.to_dict(include_curves=True) == rep.to_dict(include_curves=True)  # batch-size invariant
    logits_arr, labels_arr = np.stack(logits), np.array(labels)
    acc = topk_accuracy(logits_arr, labels_arr, ks=(1, 5))
    assert rep.classification["top1_accuracy"] == pytest.approx(100 * acc[1])
    assert rep.classification["top5_accuracy"] == pytest.approx(100 * acc[5])
    cams = model(torch.from_numpy(np.stack([np.stack([r, np.zeros_like(r), np.zeros_like(r)]) for r in reds])))[1]
    cams = cams.numpy()
    order = np.argsort(-logits_arr, axis=1, kind="stable")[:, :5]
    per_rank = [[zhou_boxes(cams[i, c], 0.2) for c in order[i]] for i in range(8)]
    gt_maps = np.stack([cams[i, labels[i]] for i in range(8)])
    ref = localization_accuracy(per_rank, gts, order, labels_arr, ks=(1, 5), gt_known_boxes=zhou_boxes(gt_maps, 0.2))
    assert rep.localization["top1_loc"] == pytest.approx(100 * ref.topk[1])
    assert rep.localization["top5_loc"] == pytest.approx(100 * ref.topk[5])
    assert rep.localization["gt_known_loc"] == pytest.approx(100 * ref.gt_known)
    assert rep.localization["pointing_game"]["accuracy"] == pytest.approx(100 * pointing_game(gt_maps, gts).accuracy)
    correct = order[:, 0] == labels_arr
    com = center_of_mass_accuracy(gt_maps, gts, class_correct=correct)
    assert rep.localization["center_of_mass"]["top1"] == pytest.approx(100 * com.accuracy)
    box_ref = compute_boxacc(gt_maps, gts, None, correct, resize=SIZE, cam_curve_interval=0.01)
    assert rep.boxacc.maxboxacc == pytest.approx(box_ref.maxboxacc)
    assert rep.boxacc.maxboxacc_v2 == pytest.approx(box_ref.maxboxacc_v2)
    assert rep.boxacc.top1_maxboxacc_v2 == pytest.approx(box_ref.top1_maxboxacc_v2)
    np.testing.assert_allclose(rep.boxacc.multi.accuracy[70], box_ref.multi.accuracy[70])


# ----------------------------------------------------------------------------------------------------------
# Bad items: NaN outputs and unreadable images are reported and left out, never turned into numbers
# ----------------------------------------------------------------------------------------------------------
def test_nonfinite_outputs_and_unreadable_images_are_skipped(tmp_path: Path) -> None:
    good = _three_boxes(tmp_path / "good")
    ref = evaluate_model(ChannelModel(), good, cam_curve_interval=0.01)
    items = [(r.image_id, np.asarray(Image.open(r.path)), r.labels, r.boxes.tolist()) for r in good.index.records]
    items.insert(1, ("nan_cam.png", _image(_rect(4, 6, 13, 21), _logits_with_rank(1, 0), nan_cam=True), (1,),
                     [[4, 6, 13, 21]]))  # fmt: skip
    items.append(("nan_logits.png", _image(_rect(4, 6, 13, 21), _logits_with_rank(1, 0), nan_logits=True), (1,),
                  [[4, 6, 13, 21]]))  # fmt: skip
    ds = _dataset(tmp_path / "all", items)
    broken = ImageRecord("broken.png", tmp_path / "all" / "broken.png", (1,), boxes=[[0, 0, 3, 3]])
    broken.path.write_bytes(b"not an image")
    ds.index.records.append(broken)
    rep = evaluate_model(ChannelModel(), ds, batch_size=2, cam_curve_interval=0.01)
    kinds = {s["image_id"]: s["kind"] for s in rep.skipped}
    assert kinds == {"nan_cam.png": "nonfinite", "nan_logits.png": "nonfinite", "broken.png": "unreadable"}
    assert "class 1 contains NaN" in next(s["reason"] for s in rep.skipped if s["image_id"] == "nan_cam.png")
    assert rep.counts["items"] == 6 and rep.counts["evaluated"] == 3
    assert rep.counts["nonfinite"] == 2 and rep.counts["unreadable"] == 1 and rep.has_skipped
    assert rep.localization == ref.localization
    assert rep.classification == ref.classification
    assert rep.boxacc.maxboxacc_v2 == ref.boxacc.maxboxacc_v2
    assert {p["image_id"]: p["status"] for p in rep.per_image}["broken.png"] == "unreadable"
    json.loads(rep.to_json(), parse_constant=lambda token: pytest.fail(f"invalid JSON token {token}"))


def test_all_images_nonfinite_gives_no_metric(tmp_path: Path) -> None:
    items = [("x.png", _image(_rect(1, 1, 5, 5), _logits_with_rank(0, 0), nan_cam=True), (0,), [[1, 1, 5, 5]])]
    rep = evaluate_model(ChannelModel(), _dataset(tmp_path, items))
    assert rep.classification is None and rep.localization is None and rep.boxacc is None
    assert rep.counts["evaluated"] == 0 and rep.counts["nonfinite"] == 1
    assert any("NaN/inf" in n for n in rep.notes)


def test_constant_maps_are_counted_not_skipped(tmp_path: Path) -> None:
    items = [("flat.png", _image(np.zeros((SIZE, SIZE), np.uint8), _logits_with_rank(0, 0)), (0,), [[0, 0, 3, 3]]),
             ("ok.png", _image(_rect(2, 2, 9, 9), _logits_with_rank(0, 0)), (0,), [[2, 2, 9, 9]])]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # degenerate maps are counted, not warned about
        rep = evaluate_model(ChannelModel(), _dataset(tmp_path, items), cam_curve_interval=0.05)
    assert rep.counts["constant_maps"] == 1 and rep.counts["evaluated"] == 2 and not rep.skipped
    # flat map: box [0, 0, 0, 0] vs GT [0, 0, 3, 3] → IoU 1/16
    assert {p["image_id"]: p["iou"] for p in rep.per_image}["flat.png"] == pytest.approx(1 / 16)


# ----------------------------------------------------------------------------------------------------------
# Options: export, multi-scale, masks, multi-label, detection hook
# ----------------------------------------------------------------------------------------------------------
def test_export_maps_standard_layout(tmp_path: Path) -> None:
    items = [("sub/a.jpg.png", _image(_rect(2, 3, 9, 12), _logits_with_rank(0, 0)), (0,), [[2, 3, 9, 12]]),
             ("unlabeled.png", _image(_rect(5, 5, 8, 8), _logits_with_rank(4, 0)), (), [])]  # fmt: skip
    out = tmp_path / "maps"
    rep = evaluate_model(ChannelModel(shift=1), _dataset(tmp_path / "d", items), export_maps_dir=out)
    a = np.load(out / "sub/a.jpg.png.npy")
    assert a.dtype == np.float32 and a.shape == (SIZE, SIZE)
    np.testing.assert_array_equal(a, _rect(2, 3, 9, 12) / np.float32(255))  # class 0: no shift
    u = np.load(out / "unlabeled.png.npy")  # unlabeled: the top-1 class (4) map, shifted by 4
    np.testing.assert_array_equal(u, np.roll(_rect(5, 5, 8, 8) / np.float32(255), 4, axis=1))
    assert rep.counts["unlabeled"] == 1 and rep.classification["num_images"] == 1
    assert not list(out.rglob("*.tmp"))
    with pytest.raises(ValueError, match="outside the export folder"):
        export_map(out, "../evil", np.zeros((2, 2)))


def test_multiscale(tmp_path: Path) -> None:
    ds = _three_boxes(tmp_path)
    single = evaluate_model(ChannelModel(), ds, cam_curve_interval=0.01)
    one = evaluate_model(ChannelModel(), ds, multiscale=(1.0,), cam_curve_interval=0.01)
    # min-max normalization does not move boxes, maxima or the mass centre of a 0/1 map
    assert one.localization == single.localization
    assert one.protocol["multiscale"] == [1.0] and "scales" in one.protocol["description"]
    # NaN CAMs only at scale 2 (inputs wider than 32): found although the scale-1 map is finite
    items = [("ok.png", _image(_rect(4, 4, 20, 20), _logits_with_rank(0, 0)), (0,), [[4, 4, 20, 20]]),
             ("nan2.png", _image(_rect(4, 4, 20, 20), _logits_with_rank(0, 0), nan_cam=True), (0,), [[4, 4, 20, 20]])]
    rep = evaluate_model(ChannelModel(nan_above=SIZE), _dataset(tmp_path / "ms", items), multiscale=(1.0, 2.0))
    assert [s["image_id"] for s in rep.skipped] == ["nan2.png"]
    assert rep.localization["gt_known_loc"] == 100.0
    plain = evaluate_model(ChannelModel(nan_above=SIZE), _dataset(tmp_path / "ms2", items))
    assert not plain.skipped
    with pytest.raises(ValueError, match="multiscale"):
        evaluate_model(ChannelModel(), ds, multiscale=(0.0,))


def test_pxap_with_masks(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    records, maps, masks = [], [], []
    for i in range(3):
        red = rng.integers(0, 256, size=(SIZE, SIZE)).astype(np.uint8)
        red[5 + i : 20, 8:25] = np.maximum(red[5 + i : 20, 8:25], 200)
        path = tmp_path / f"{i}.png"
        Image.fromarray(_image(red, _logits_with_rank(0, 0))).save(path)
        mask_path = tmp_path / f"{i}_mask.png"
        Image.fromarray(_rect(8, 5 + i, 24, 19)).save(mask_path)
        records.append(ImageRecord(f"{i}.png", path, (0,), mask_paths=(mask_path,)))
        maps.append(red.astype(np.float32) / 255)
        masks.append(load_gt_mask(".", [str(mask_path)], None, resize=SIZE))
    ds = RecordDataset(DatasetIndex("m", tmp_path, "test", [f"c{i}" for i in range(C)], records))
    rep = evaluate_model(ChannelModel(), ds, cam_curve_interval=0.01)
    ref = compute_pxap(maps, masks, cam_curve_interval=0.01, resize=SIZE)
    assert rep.pxap is not None and rep.pxap.pxap == pytest.approx(ref.pxap)
    assert 0 < rep.pxap.pxap < 100
    assert rep.localization is None and rep.boxacc is None  # masks only, no boxes


def _multilabel_dataset(tmp_path: Path) -> RecordDataset:
    """Class c's CAM is channel c; image A: classes 0 and 1 exact; image B: class 0 exact, class 2 misses."""
    a = np.zeros((SIZE, SIZE, 3), np.uint8)
    a[..., 0], a[..., 1] = _rect(2, 2, 11, 11), _rect(16, 16, 27, 27)
    b = np.zeros((SIZE, SIZE, 3), np.uint8)
    b[..., 0], b[..., 2] = _rect(4, 4, 13, 13), _rect(2, 18, 13, 29)
    recs = []
    for name, img, labels, boxes, box_labels in (
        ("A.png", a, (0, 1), [[2, 2, 11, 11], [16, 16, 27, 27]], [0, 1]),
        ("B.png", b, (0, 2), [[4, 4, 13, 13], [18, 2, 29, 13]], [0, 2]),
    ):
        Image.fromarray(img).save(tmp_path / name)
        recs.append(ImageRecord(name, tmp_path / name, labels, boxes=boxes, box_labels=box_labels))
    return RecordDataset(DatasetIndex("ml", tmp_path, "test", ["r", "g", "b"], recs, multilabel=True))


class ChannelsAsClasses(nn.Module):
    """``cams[b, c] = x[b, c]``, ``logits[b, c] = mean of channel c``."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x.mean(dim=(2, 3)) + 0 * self.dummy, x.clone()


def test_multilabel_corloc_map_and_pairs(tmp_path: Path) -> None:
    ds = _multilabel_dataset(tmp_path)
    rep = evaluate_model(ChannelsAsClasses(), ds, export_maps_dir=tmp_path / "maps")
    loc = rep.localization
    assert loc["unit"] == "(image, class) pair" and loc["num_units"] == 4
    assert loc["gt_known_loc"] == 75.0  # B's class-2 map lies outside its box
    assert loc["corloc"]["per_class"] == {"r": 100.0, "g": 100.0, "b": 0.0}
    assert loc["corloc"]["mean"] == pytest.approx(200 / 3)
    assert loc["pointing_game"]["accuracy"] == 75.0
    assert loc["pointing_game"]["mean_class_accuracy"] == pytest.approx(200 / 3)
    assert "top1_loc" not in loc and rep.boxacc is None
    scores = np.array([[100, 144, 0], [100, 0, 144]]) / 1024  # mean of each 0/1 channel
    ref = mean_average_precision(scores, np.array([[1, 1, 0], [1, 0, 1]]))
    assert rep.classification["mAP"] == pytest.approx(100 * ref.mean_ap)
    assert rep.classification["per_class_AP"]["g"] == pytest.approx(100 * ref.ap[1])
    assert (tmp_path / "maps" / "A.png.cls1.npy").is_file() and (tmp_path / "maps" / "B.png.cls2.npy").is_file()
    assert not (tmp_path / "maps" / "A.png.cls2.npy").exists()


def test_detection_hook_receives_raw_cams_and_original_sizes(tmp_path: Path) -> None:
    ds = _multilabel_dataset(tmp_path)
    seen: list[tuple[tuple[int, ...], tuple[int, int], list[tuple[int, int]]]] = []

    def oracle(cams: torch.Tensor, size: tuple[int, int], sizes: list[tuple[int, int]]) -> list:
        seen.append((tuple(cams.shape), size, list(sizes)))
        out = []
        for i in range(cams.shape[0]):
            r = ds.index.records[len(seen) - 1 + i]  # batch_size=1: image order
            keep = r.box_labels != 2  # never detects class 2
            out.append((r.boxes[keep], np.ones(int(keep.sum())), r.box_labels[keep]))
        return out

    rep = evaluate_model(ChannelsAsClasses(), ds, batch_size=1, detector=oracle)
    assert seen == [((1, 3, SIZE, SIZE), (SIZE, SIZE), [(SIZE, SIZE)])] * 2
    assert rep.detection["per_class_AP"] == pytest.approx({"r": 100.0, "g": 100.0, "b": 0.0})
    assert rep.detection["mAP"] == pytest.approx(200 / 3)


# ----------------------------------------------------------------------------------------------------------
# Report output
# ----------------------------------------------------------------------------------------------------------
def test_report_json_markdown_and_plots(tmp_path: Path) -> None:
    rep = evaluate_model(ChannelModel(), _three_boxes(tmp_path / "d"), cam_curve_interval=0.01)
    d = json.loads(rep.to_json(include_curves=True, include_per_image=True))
    assert d["units"] == "percent"
    assert d["localization"]["gt_known_loc"] == pytest.approx(100 / 3)
    assert d["boxacc"]["MaxBoxAccV2"]["value"] == pytest.approx(rep.boxacc.maxboxacc_v2)
    assert len(d["boxacc"]["MaxBoxAcc"]["accuracy"]["50"]) == 100
    assert len(d["per_image"]) == 3 and d["protocol"]["input_frame"] == [SIZE, SIZE]
    assert "per_image" not in rep.to_dict() and "accuracy" not in rep.to_dict()["boxacc"]["MaxBoxAcc"]
    md = rep.to_markdown()
    assert "| GT-known localization (`gt_known_loc`) | 33.33 |" in md and "(`top1_loc`) | 33.33 |" in md
    assert f"{rep.boxacc.maxboxacc_v2:.2f}" in md and "## Protocol" in md
    paths = rep.plots(tmp_path / "plots")
    assert sorted(p.name for p in paths) == ["boxacc_curve.png", "iou_curve.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert isinstance(rep, EvaluationReport)


def test_bad_arguments_are_named(tmp_path: Path) -> None:
    ds = _three_boxes(tmp_path)
    with pytest.raises(ValueError, match="batch_size"):
        evaluate_model(ChannelModel(), ds, batch_size=0)
    with pytest.raises(ValueError, match="cam_threshold"):
        evaluate_model(ChannelModel(), ds, cam_threshold=1.5)
    with pytest.raises(ValueError, match="iou_thresholds"):
        evaluate_model(ChannelModel(), ds, iou_thresholds=(0,))
    with pytest.raises(ValueError, match="interpolation"):
        evaluate_model(ChannelModel(), ds, interpolation="lanczos")
    with pytest.raises(ValueError, match="the model has 4 classes but the dataset has 6"):
        evaluate_model(ChannelModel(num_classes=4), ds)
    with pytest.raises(ValueError, match="RecordDataset"):
        evaluate_model(ChannelModel(), [1, 2])  # type: ignore[arg-type]

    class NoCams(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3))

    with pytest.raises(ValueError, match=r"\(logits, cams\)"):
        evaluate_model(NoCams(), ds)
    mixed = _dataset(tmp_path / "mixed", [("a.png", _image(_rect(1, 1, 4, 4)), (0,), [[1, 1, 4, 4]]),
                                          ("b.png", _image(_rect(1, 1, 4, 4, size=16)), (0,), [[1, 1, 4, 4]])])
    with pytest.raises(ValueError, match="different sizes"):
        evaluate_model(ChannelModel(), mixed, batch_size=1)


@settings(max_examples=50, deadline=None)
@given(
    arrays(np.float64, (7, 9), elements=st.floats(-5, 5, allow_nan=False)),
    st.lists(st.floats(0, 1), min_size=1, max_size=6),
)
def test_moreaux_threshold_boxes_equal_moreaux_boxes(score_map: np.ndarray, thresholds: list[float]) -> None:
    fast = MoreauxThresholdBoxes()
    for t in thresholds:  # the same array threshold after threshold (cached), as the curve calls it
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DegenerateMapWarning)
            expected = moreaux_boxes(score_map, t)
        np.testing.assert_array_equal(fast(score_map, t), expected)
    other = score_map[::-1].copy()  # a new array is not served from the cache
    np.testing.assert_array_equal(fast(other, thresholds[0]), moreaux_boxes(other, thresholds[0], stats=MapStats()))
