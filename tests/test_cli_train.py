"""``wsol train`` end to end on a generated folder-per-class dataset: training, checkpoint extras, TensorBoard,
bit-identical ``--resume``, config errors, shipped-config listing and the detection dispatch."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import wsol.data.folder  # noqa: F401  (registers the "folder" reader)
from wsol.cli import main
from wsol.recipes import list_shipped_configs

TINY = """\
description: tiny smoke run
model: {name: lenet5, head: cam, pooling: gap, backbone_kwargs: {width1: 4, width2: 8}}
data:
  dataset: folder
  root: /path/to/tiny
  train_split: train
  val_split: val
  recipe: zhou            # random crop + flip: resume must still be bit-identical
  image_size: [24, 24]
  resize_size: [28, 28]
train: {epochs: 4, batch_size: 4, optimizer: adam, lr: 0.01, device: cpu, progress: false, log_format: none}
log: {tensorboard: true, batch_every: 1}
"""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """root/{train,val}/{cat,dog}/*.png: a red (cat) or blue (dog) square at a random place on noise."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("val", 4)):
        for name, channel in (("cat", 0), ("dog", 2)):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 60, (30, 30, 3), dtype=np.uint8)
                y, x = rng.integers(0, 18, 2)
                img[y : y + 12, x : x + 12, channel] = 255
                Image.fromarray(img).save(root / split / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def full_run(dataset: Path, config: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("full")
    assert main(["train", "--config", str(config), f"data.root={dataset}", "--out", str(out)]) == 0
    return out


def scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_training_writes_checkpoints_with_the_run_config(full_run: Path, dataset: Path) -> None:
    history = json.loads((full_run / "metrics.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert history[-1]["train_loss"] < 0.25 * history[0]["train_loss"]  # it learns red vs blue squares
    assert history[-1]["val_accuracy"] == 1.0
    ckpt = torch.load(full_run / "last.pt", weights_only=True)
    extras = ckpt["extras"]
    assert extras["task"] == "classification" and extras["class_names"] == ["cat", "dog"]
    assert extras["dataset"] == "folder" and extras["multilabel"] is False
    run = extras["run_config"]
    assert run["data"]["root"] == str(dataset) and run["train"]["out_dir"] == str(full_run)
    assert run["data"]["mean"] == [0.0, 0.0, 0.0] and run["data"]["image_size"] == [24, 24]  # resolved
    assert yaml.safe_load((full_run / "run_config.yaml").read_text()) == run
    assert (full_run / "best.pt").is_file()


def test_tensorboard_scalars(full_run: Path) -> None:
    tb = scalars(full_run / "tb")
    assert [s for s, _ in tb["train/loss"]] == [1, 2, 3, 4]
    assert [s for s, _ in tb["val/accuracy"]] == [1, 2, 3, 4]
    history = json.loads((full_run / "metrics.json").read_text())
    np.testing.assert_allclose([v for _, v in tb["train/loss"]], [r["train_loss"] for r in history], rtol=1e-6)
    # TrainConfig's default StepLR: x0.94 every 2 epochs
    np.testing.assert_allclose([v for _, v in tb["lr"]], [0.01, 0.01, 0.0094, 0.0094], rtol=1e-6)
    # 16 training images / batch 4 = 4 batches per epoch, logged every batch: global steps 1..16
    assert [s for s, _ in tb["train/batch_loss"]] == list(range(1, 17))


def test_resume_continues_bit_identically(full_run: Path, dataset: Path, config: Path, tmp_path: Path) -> None:
    out = tmp_path / "split"
    base = ["train", "--config", str(config), f"data.root={dataset}", "--out", str(out)]
    assert main([*base, "train.epochs=2"]) == 0
    assert main([*base, "--resume"]) == 0
    history = json.loads((out / "metrics.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    resumed = torch.load(out / "last.pt", weights_only=True)["model"]
    straight = torch.load(full_run / "last.pt", weights_only=True)["model"]
    for key, value in straight.items():
        assert torch.equal(resumed[key], value), key
    assert [s for s, _ in scalars(out / "tb")["train/loss"]] == [1, 2, 3, 4]


def test_config_errors_exit_2_with_one_line(config: Path, dataset: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--config", str(config), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("wsol train: data.root: /path/to/tiny is the config's placeholder; give the dataset folder "
                   "with data.root=/your/path/to/tiny")
    assert main(["train", "--config", str(config), f"data.root={tmp_path / 'gone'}"]) == 2
    assert "data.root: dataset folder" in capsys.readouterr().err
    assert main(["train", "--config", str(config), "train.bach_size=3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wsol train: train.bach_size: unknown key (did you mean 'batch_size'?)")
    assert err.count("\n") == 1
    assert main(["train", "--config", str(config), f"data.root={dataset}", "data.train_split=tran"]) == 2
    assert "data.train_split" in capsys.readouterr().err
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert main(["train", "--config", str(config), f"data.root={dataset}", "--out", str(blocker / "sub")]) == 2
    assert "is not a writable folder" in capsys.readouterr().err
    assert main(["train"]) == 2
    assert "--config" in capsys.readouterr().err
    assert main(["train", "--config", "no_such_config"]) == 2
    assert "--list-configs" in capsys.readouterr().err


def test_list_and_print_config(config: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--list-configs"]) == 0
    out = capsys.readouterr().out
    for name, description in list_shipped_configs().items():
        assert f"{name}  " in out and description in out
    assert main(["train", "--config", "qiu_caffenet_gwap_voc07", "train.lr=0.001", "--out", "x",
                 "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["lr"] == 0.001 and printed["train"]["out_dir"] == "x"
    assert printed["model"]["head"] == "gwap" and printed["train"]["loss"] == "bce"


def test_detection_configs_are_dispatched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "det.yaml"
    path.write_text("task: detection\nmodel: {name: rfcn}\n")
    calls = []
    fake = types.ModuleType("wsol.detection.config")
    fake.train_from_config = lambda raw, resume=False: calls.append((raw, resume))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "wsol.detection.config", fake)
    assert main(["train", "--config", str(path), "model.lr=3", "--resume"]) == 0
    assert calls == [({"task": "detection", "model": {"name": "rfcn", "lr": 3}}, True)]
    monkeypatch.setitem(sys.modules, "wsol.detection.config", None)  # as if the module did not exist
    assert main(["train", "--config", str(path)]) == 2
    assert "wsol.detection.config" in capsys.readouterr().err
