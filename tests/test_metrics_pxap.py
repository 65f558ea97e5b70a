"""PxAP (Choe et al. 2020): a hand-computed case, a naive recomputation and the mask loader."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from wsol.metrics.pxap import PxAPEvaluator, compute_pxap, load_gt_mask, pxap_from_histograms


def test_hand_computed_pxap() -> None:
    # Thresholds [0, .25, .5, .75]; foreground scores {0.9, 0.6}, background {0.8, 0.1}.
    # Operating points from the top: t = .75 -> TP 1, FP 1 (P = 1/2, R = 1/2); t = .5 -> TP 2, FP 1
    # (P = 2/3, R = 1); lower thresholds add no recall. PxAP = 1/2 * 1/2 + 2/3 * 1/2 = 7/12.
    s = np.array([[0.9, 0.6], [0.8, 0.1]])
    mask = np.array([[1, 1], [0, 0]], dtype=np.uint8)
    res = compute_pxap([s], [mask], cam_curve_interval=0.25, resize=2, normalize=False)
    assert res.pxap == pytest.approx(100 * 7 / 12, abs=1e-12)
    assert res.num_foreground == 2 and res.num_background == 2
    # tp, fp at the right edges 3, 2, 1, .75, .5, .25, 0 (from the top)
    np.testing.assert_array_equal(res.thresholds, [2.0, 1.0, 0.75, 0.5, 0.25, 0.0])
    np.testing.assert_array_equal(res.recall, [0, 0, 0.5, 1, 1, 1])
    np.testing.assert_allclose(res.precision[2:], [0.5, 2 / 3, 2 / 3, 0.5])
    assert np.isnan(res.precision[:2]).all()


def test_ignore_pixels_are_left_out() -> None:
    s = np.array([[0.9, 0.6, 1.0], [0.8, 0.1, 0.95]])
    base = np.array([[1, 1, 0], [0, 0, 0]], dtype=np.uint8)
    ignored = np.array([[1, 1, 255], [0, 0, 255]], dtype=np.uint8)
    a = pxap_from_histograms(*_hists(s, base, 0.25))
    b = pxap_from_histograms(*_hists(s, ignored, 0.25))
    c = pxap_from_histograms(*_hists(s[:, :2], base[:, :2], 0.25))
    assert b.pxap == c.pxap and a.pxap < b.pxap  # the two high background scores hurt only when counted


def _hists(s: np.ndarray, mask: np.ndarray, interval: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    edges = np.append(np.arange(0, 1, interval), [1.0, 2.0, 3.0])
    return np.histogram(s[mask == 1], edges)[0], np.histogram(s[mask == 0], edges)[0], edges


def test_perfect_and_inverted_maps() -> None:
    mask = np.zeros((224, 224), dtype=np.uint8)
    mask[50:100, 60:120] = 1
    perfect = mask.astype(np.float64)
    assert compute_pxap([perfect], [mask]).pxap == pytest.approx(100.0, abs=1e-12)
    # inverted: foreground at the lowest score -> precision = fg share once it is reached
    inv = compute_pxap([1.0 - perfect], [mask])
    share = mask.sum() / mask.size
    assert inv.pxap == pytest.approx(100 * share, rel=1e-9)


def test_pxap_equals_naive_threshold_sweep() -> None:
    rng = np.random.default_rng(0)
    maps = [rng.random((224, 224)) ** 2 for _ in range(3)]
    masks = [(rng.random((224, 224)) < 0.3).astype(np.uint8) for _ in range(3)]
    masks[1][:10] = 255
    res = compute_pxap(maps, masks, cam_curve_interval=0.01, normalize=False)
    fg = np.concatenate([m[k == 1] for m, k in zip(maps, masks, strict=True)])
    bg = np.concatenate([m[k == 0] for m, k in zip(maps, masks, strict=True)])
    edges = np.append(np.arange(0, 1, 0.01), [1.0, 2.0])[::-1]  # operating points, from the top
    tp = np.array([(fg >= e).sum() for e in edges], dtype=float)
    fp = np.array([(bg >= e).sum() for e in edges], dtype=float)
    with np.errstate(invalid="ignore"):
        prec = tp / (tp + fp)
    rec = tp / len(fg)
    naive = 100 * sum(prec[i] * (rec[i] - rec[i - 1]) for i in range(1, len(edges)) if tp[i] + fp[i] > 0)
    assert res.pxap == pytest.approx(naive, rel=1e-12)
    np.testing.assert_array_equal(res.recall, rec)


def test_errors() -> None:
    with pytest.raises(ValueError, match="no foreground"):
        compute_pxap([np.eye(4)], [np.zeros((224, 224), dtype=np.uint8)])
    with pytest.raises(ValueError, match="shape"):
        compute_pxap([np.eye(4)], [np.zeros((10, 10), dtype=np.uint8)])
    with pytest.raises(ValueError, match="0, 1 or 255"):
        compute_pxap([np.eye(4)], [np.full((224, 224), 7, dtype=np.uint8)])
    with pytest.raises(ValueError, match="no image"):
        PxAPEvaluator().compute()
    with pytest.raises(ValueError, match="equal length"):
        pxap_from_histograms([1, 2], [1], [0, 1, 2])


def test_load_gt_mask_union_and_ignore(tmp_path: Path) -> None:
    a = np.zeros((100, 80), dtype=np.uint8)
    a[10:30, 10:30] = 255
    b = np.zeros((100, 80), dtype=np.uint8)
    b[50:60, 40:70] = 200
    ignore = np.zeros((100, 80), dtype=np.uint8)
    ignore[0:40, 0:40] = 255  # overlaps mask a: the overlap stays foreground
    for name, img in (("a.png", a), ("b.png", b), ("ig.png", ignore)):
        cv2.imwrite(str(tmp_path / name), img)
    mask = load_gt_mask(tmp_path, ["a.png", "b.png"], "ig.png", resize=224)
    fg = cv2.resize(np.float32(a), (224, 224), interpolation=cv2.INTER_NEAREST) > 0.5
    fg |= cv2.resize(np.float32(b), (224, 224), interpolation=cv2.INTER_NEAREST) > 0.5
    ig = (cv2.resize(np.float32(ignore), (224, 224), interpolation=cv2.INTER_NEAREST) > 0.5) & ~fg
    np.testing.assert_array_equal(mask, fg.astype(np.uint8) + 255 * ig.astype(np.uint8))
    assert set(np.unique(mask).tolist()) == {0, 1, 255}
    assert (load_gt_mask(tmp_path, ["a.png"], None) == 255).sum() == 0
    with pytest.raises(ValueError, match=r"missing\.png"):
        load_gt_mask(tmp_path, ["missing.png"], None)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="not a readable image"):
        load_gt_mask(tmp_path, ["bad.png"], None)
