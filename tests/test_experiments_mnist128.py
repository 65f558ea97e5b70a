"""Tests of the MNIST128 study: the three task APs on hand-made CAMs, and `wsol demo` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wsol.cli import main
from wsol.data.mnist128 import MNIST128
from wsol.experiments.mnist128 import SETUPS, build_model, evaluate
from wsol.localize import ReceptiveField, receptive_field_chain
from wsol.metrics.boxes import box_iou


@pytest.fixture(scope="module")
def six_canvases() -> MNIST128:
    return MNIST128("test", 6, variant="binary", seed=0)  # exact 50 %: odd indices are positive


def _lenet_rf() -> ReceptiveField:
    return receptive_field_chain(build_model(SETUPS[0]), (128, 128), in_channels=1)


def test_lenet_receptive_field_is_stride4_size16():
    rf = _lenet_rf()
    assert rf.stride == (4, 4) and rf.padding == (0, 0) and rf.size == (16, 16)


def _cam_on_box(box: np.ndarray, rf: ReceptiveField) -> np.ndarray:
    """CAM (29x29) of -1 with 2.0 on every pixel whose receptive-field centre lies in ``box``."""
    cam = -np.ones((29, 29))
    centres = np.arange(29) * rf.stride[0] - rf.padding[0] + (rf.size[0] - 1) / 2
    cols = (centres >= box[0]) & (centres <= box[2])
    rows = (centres >= box[1]) & (centres <= box[3])
    cam[np.ix_(rows, cols)] = 2.0
    return cam


def test_three_task_aps_on_hand_made_cams(six_canvases):
    ds, rf = six_canvases, _lenet_rf()
    positive = [int(ds.annotation(i).labels[0]) == 3 for i in range(6)]
    assert positive == [False, True, False, True, False, True]
    cams = -np.ones((6, 29, 29))
    for i in (1, 5):  # positives localized exactly
        cams[i] = _cam_on_box(ds.annotation(i).boxes()[0], rf)
    gt3 = ds.annotation(3).boxes()[0]
    far = (0, 0) if gt3[0] > 40 or gt3[1] > 40 else (28, 28)
    cams[3][far] = 2.0  # positive, but the peak is far from the digit
    scores = np.array([0.9, 0.8, 0.6, 0.7, 0.1, 0.5])
    # ranking: 0 (neg), 1 (pos, hit), 3 (pos, miss), 2 (neg), 5 (pos, hit), 4 (neg)
    result = evaluate(scores, cams, ds, rf, cam_threshold=0.0, ratio=0.7)
    # classification: positives at ranks 2, 3, 5 -> (1/2 + 2/3 + 3/5) / 3
    assert result["classification"] == pytest.approx(100 * (1 / 2 + 2 / 3 + 3 / 5) / 3)
    # pin-pointing and extent: TPs at ranks 2 and 5, three positives -> (1/2 + 2/5) / 3
    assert result["pinpointing"] == pytest.approx(100 * (1 / 2 + 2 / 5) / 3)
    assert result["extent"] == pytest.approx(100 * (1 / 2 + 2 / 5) / 3)
    for i in (1, 5):
        assert box_iou(result["best_boxes"][i][None], ds.annotation(i).boxes()).max() >= 0.5
    assert result["no_box_positives"] == 0
    # a threshold above every peak leaves the positives without boxes: extent AP 0
    none = evaluate(scores, cams, ds, rf, cam_threshold=5.0, ratio=0.7)
    assert none["extent"] == 0.0 and none["no_box_positives"] == 3


def test_demo_quick_writes_table_json_chart_and_overlays(tmp_path, capsys):
    out = tmp_path / "demo"
    extra = tmp_path / "copy.json"
    code = main(
        ["demo", "--quick", "--poolings", "spam", "gap", "--train-size", "64", "--test-size", "32",
         "--out", str(out), "--json", str(extra)]
    )
    assert code == 0
    report = json.loads((out / "results.json").read_text())
    assert json.loads(extra.read_text()) == report
    rows = {r["key"]: r for r in report["results"]}
    assert set(rows) == {"spam", "gap"}
    for row in rows.values():
        for task in ("classification", "pinpointing", "extent"):
            assert 0.0 <= row[task] <= 100.0
        assert row["paper"] is not None
    table = (out / "table.md").read_text()
    assert f"{rows['spam']['extent']:.1f} / 95.8" in table
    assert (out / "mnist128_bars.png").stat().st_size > 1000
    assert (out / "overlays" / "spam.png").stat().st_size > 1000
    assert (out / "runs" / "spam" / "last.pt").exists()
    assert "Gudi et al. 2017" in capsys.readouterr().out


def test_demo_unwritable_output_is_a_clear_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["demo", "--quick", "--out", str(blocker / "sub")]) == 2
    assert "cannot create output folder" in capsys.readouterr().err


def test_demo_unwritable_json_path_is_a_clear_error_before_training(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = main(["demo", "--quick", "--out", str(tmp_path / "out"), "--json", str(blocker / "x" / "r.json")])
    assert code == 2
    assert "cannot create output folder" in capsys.readouterr().err
    assert not (tmp_path / "out" / "runs").exists()  # nothing was trained


def test_demo_interrupted_then_resumed_gives_the_uninterrupted_weights(tmp_path, capsys, monkeypatch):
    import torch

    from wsol.trainer import Trainer, load_checkpoint

    args = ["demo", "--quick", "--poolings", "gmp", "--train-size", "48", "--test-size", "16", "--epochs", "2"]
    assert main([*args, "--out", str(tmp_path / "full")]) == 0

    original = Trainer.on_batch_end

    def interrupt(self, epoch, batch, loss):
        if epoch == 1 and batch == 0:  # 0-based: the second epoch
            raise KeyboardInterrupt
        return original(self, epoch, batch, loss)

    monkeypatch.setattr(Trainer, "on_batch_end", interrupt)
    assert main([*args, "--out", str(tmp_path / "cut")]) == 130
    assert "--resume" in capsys.readouterr().err
    assert load_checkpoint(tmp_path / "cut" / "runs" / "gmp" / "last.pt")["epoch"] == 1
    monkeypatch.setattr(Trainer, "on_batch_end", original)
    assert main([*args, "--out", str(tmp_path / "cut"), "--resume"]) == 0
    full = load_checkpoint(tmp_path / "full" / "runs" / "gmp" / "last.pt")["model"]
    resumed = load_checkpoint(tmp_path / "cut" / "runs" / "gmp" / "last.pt")["model"]
    assert all(torch.equal(full[k], resumed[k]) for k in full)
