"""Tests of the generic trainer (Moreaux et al. 2018 §3.2-3.3 recipe) on a tiny CAM model and 16×16 data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from wsol.trainer import TrainConfig, Trainer, atomic_torch_save, load_checkpoint


class TinyCAM(nn.Module):
    """backbone (conv-BN-ReLU[-dropout]) → 1×1 conv classifier → CAMs; logits = GAP of the CAMs."""

    def __init__(self, num_classes: int = 2, bn: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(1, 6, 3, padding=1)]
        if bn:
            layers.append(nn.BatchNorm2d(6))
        layers += [nn.ReLU(), nn.Dropout(dropout)]
        self.backbone = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(6, num_classes, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cams = self.classifier(self.backbone(x))
        return cams.mean(dim=(2, 3)), cams


class NoBackbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cams = self.conv(x)
        return cams.mean(dim=(2, 3)), cams


def make_data(n: int, seed: int) -> TensorDataset:
    """Class 1: a bright 4×4 square at a random place; class 0: faint noise only."""
    g = torch.Generator().manual_seed(seed)
    x = 0.1 * torch.rand(n, 1, 16, 16, generator=g)
    y = torch.arange(n) % 2
    for i in range(n):
        if y[i] == 1:
            r, c = torch.randint(0, 12, (2,), generator=g).tolist()
            x[i, 0, r : r + 4, c : c + 4] = 1.0
    return TensorDataset(x, y)


def model_factory(**kw: Any) -> TinyCAM:
    torch.manual_seed(0)
    return TinyCAM(**kw)


def cfg(tmp_path: Path, **kw: Any) -> TrainConfig:
    base: dict[str, Any] = {"epochs": 4, "batch_size": 8, "optimizer": "adam", "lr": 0.02, "lr_step_epochs": 2,
                            "lr_gamma": 0.5, "out_dir": str(tmp_path), "progress": False, "log_format": "none"}
    base.update(kw)
    return TrainConfig(**base)


TRAIN = make_data(48, seed=1)
VAL = make_data(24, seed=2)


def test_tiny_run_learns(tmp_path: Path) -> None:
    hist = Trainer(model_factory(), TRAIN, VAL, cfg(tmp_path, epochs=6, lr=0.05)).fit()
    assert len(hist) == 6 and [h["epoch"] for h in hist] == [1, 2, 3, 4, 5, 6]
    assert hist[-1]["train_loss"] < 0.5 * hist[0]["train_loss"]
    assert hist[-1]["val_accuracy"] >= 0.9
    assert [h["lr"] for h in hist] == pytest.approx([0.05, 0.05, 0.025, 0.025, 0.0125, 0.0125])  # StepLR(2, 0.5)
    rows = (tmp_path / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 7 and rows[0].startswith("epoch,lr,train_loss")
    assert json.loads((tmp_path / "metrics.json").read_text()) == hist
    assert (tmp_path / "last.pt").is_file() and (tmp_path / "best.pt").is_file()
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["best_val_loss"] == min(h["val_loss"] for h in hist)
    assert best["epoch"] == 1 + min(range(6), key=lambda e: hist[e]["val_loss"])


def _assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def _strip_time(hist: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k != "time_s"} for h in hist]


class InterruptAt(Trainer):
    """Raises KeyboardInterrupt (like Ctrl-C) after batch ``batch`` of epoch ``epoch`` (0-based)."""

    stop_epoch = 1
    stop_batch = 2

    def on_batch_end(self, epoch: int, batch: int, loss: torch.Tensor) -> None:
        if (epoch, batch) == (self.stop_epoch, self.stop_batch):
            raise KeyboardInterrupt


@pytest.mark.parametrize("optimizer", ["nadam", "sgd"])
def test_resume_after_interrupt_is_bit_identical(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                                 optimizer: str) -> None:
    kw = {"optimizer": optimizer, "lr": 0.01}
    ref_model = model_factory(dropout=0.3)  # dropout: the RNG stream must be reproduced too
    ref_hist = Trainer(ref_model, TRAIN, VAL, cfg(tmp_path / "ref", **kw)).fit()

    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        InterruptAt(model_factory(dropout=0.3), TRAIN, VAL, cfg(run, **kw)).fit()
    err = capfd.readouterr().err
    assert "interrupted during epoch 2" in err and "after epoch 1" in err and "fit(resume=True)" in err
    assert load_checkpoint(run / "last.pt")["epoch"] == 1

    torch.manual_seed(123)  # a different fresh init: everything must come from the checkpoint
    resumed_model = TinyCAM(dropout=0.3)
    hist = Trainer(resumed_model, TRAIN, VAL, cfg(run, **kw)).fit(resume=True)
    _assert_same_weights(resumed_model, ref_model)
    assert _strip_time(hist) == _strip_time(ref_hist)


def test_resume_two_then_four_epochs(tmp_path: Path) -> None:
    ref_model = model_factory()
    Trainer(ref_model, TRAIN, VAL, cfg(tmp_path / "ref", epochs=4)).fit()
    Trainer(model_factory(), TRAIN, VAL, cfg(tmp_path / "run", epochs=2)).fit()
    model = model_factory()
    hist = Trainer(model, TRAIN, VAL, cfg(tmp_path / "run", epochs=4)).fit(resume=True)
    assert len(hist) == 4
    _assert_same_weights(model, ref_model)
    # Without resume the same folder restarts from the (identical) init: not equal to the 4-epoch weights.
    other = model_factory()
    Trainer(other, TRAIN, VAL, cfg(tmp_path / "run", epochs=2)).fit()
    assert not torch.equal(other.classifier.weight, ref_model.classifier.weight)


def test_epoch_shuffle_is_pure_function_of_seed_and_epoch(tmp_path: Path) -> None:
    t1 = Trainer(model_factory(), TRAIN, None, cfg(tmp_path, seed=7))
    t2 = Trainer(model_factory(), TRAIN, None, cfg(tmp_path, seed=7))
    t3 = Trainer(model_factory(), TRAIN, None, cfg(tmp_path, seed=8))
    torch.manual_seed(99)  # global RNG state must not matter
    assert list(t1.make_sampler(TRAIN, 3)) == list(t2.make_sampler(TRAIN, 3))
    assert list(t1.make_sampler(TRAIN, 3)) != list(t1.make_sampler(TRAIN, 4))
    assert list(t1.make_sampler(TRAIN, 3)) != list(t3.make_sampler(TRAIN, 3))
    assert sorted(t1.make_sampler(TRAIN, 3)) == list(range(len(TRAIN)))


def test_failed_save_keeps_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Trainer(model_factory(), TRAIN, VAL, cfg(tmp_path, epochs=1)).fit()
    before = (tmp_path / "last.pt").read_bytes()

    def broken_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        f.write(b"half a checkpoint")  # partial bytes reach the temp file ...
        raise OSError("disk full")  # ... then the save fails

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        Trainer(model_factory(), TRAIN, VAL, cfg(tmp_path, epochs=2)).fit(resume=True)
    assert (tmp_path / "last.pt").read_bytes() == before
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # temp file cleaned up
    with pytest.raises(OSError, match="disk full"):
        atomic_torch_save({"a": 1}, tmp_path / "new.pt")
    assert not (tmp_path / "new.pt").exists()


def test_checkpoint_loads_with_weights_only(tmp_path: Path) -> None:
    config = cfg(tmp_path, epochs=2, optimizer="nadam")
    trainer = Trainer(model_factory(), TRAIN, VAL, config)
    trainer.fit()
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert set(ckpt) >= {"model", "optimizer", "scheduler", "scaler", "epoch", "best_val_loss", "history",
                         "config", "rng"}
    assert ckpt["epoch"] == 2 and ckpt["config"] == config.to_dict()
    assert TrainConfig.from_dict(ckpt["config"]) == config
    assert set(ckpt["rng"]) == {"torch", "cuda", "numpy", "python"}
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(ckpt["model"][k], v)
    assert ckpt["scheduler"]["last_epoch"] == 2
    assert ckpt["history"] == trainer.history


def test_freeze_backbone_epochs(tmp_path: Path) -> None:
    snapshots: list[dict[str, torch.Tensor]] = []

    class Snap(Trainer):
        def on_epoch_end(self, epoch: int, record: Any) -> None:
            snapshots.append({k: v.clone() for k, v in self.model.state_dict().items()})

    model = model_factory()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    Snap(model, TRAIN, VAL, cfg(tmp_path, epochs=2, freeze_backbone_epochs=1)).fit()
    backbone = [k for k in init if k.startswith("backbone.")]
    assert "backbone.1.running_mean" in backbone  # BN statistics are frozen too
    for k in backbone:
        assert torch.equal(snapshots[0][k], init[k]), f"{k} changed while frozen"
    assert not torch.equal(snapshots[0]["classifier.weight"], init["classifier.weight"])
    assert not torch.equal(snapshots[1]["backbone.0.weight"], init["backbone.0.weight"])
    assert not torch.equal(snapshots[1]["backbone.1.running_mean"], init["backbone.1.running_mean"])
    assert all(p.requires_grad for p in model.parameters())


def test_freeze_via_backbone_parameters_method(tmp_path: Path) -> None:
    class WithMethod(NoBackbone):
        def backbone_parameters(self) -> Any:
            return [self.conv.weight]

    model = WithMethod()
    w0, b0 = model.conv.weight.clone(), model.conv.bias.clone()
    Trainer(model, TRAIN, None, cfg(tmp_path, epochs=1, freeze_backbone_epochs=1)).fit()
    assert torch.equal(model.conv.weight, w0) and not torch.equal(model.conv.bias, b0)
    with pytest.raises(ValueError, match="neither a backbone_parameters"):
        Trainer(NoBackbone(), TRAIN, None, cfg(tmp_path, freeze_backbone_epochs=2))


def test_regularizer_is_added_to_the_logged_loss(tmp_path: Path) -> None:
    model = model_factory(bn=False)

    def reg(out: Any) -> torch.Tensor:
        return 0.3 * out[1].abs().mean()

    # lr = 0 and one full batch: the logged loss must equal CE + reg of the untouched model exactly.
    config = cfg(tmp_path, epochs=1, lr=0.0, batch_size=len(TRAIN))
    hist = Trainer(model, TRAIN, VAL, config, regularizer=reg).fit()
    x, y = TRAIN.tensors
    with torch.no_grad():
        logits, cams = model(x)
        ce = F.cross_entropy(logits, y).item()
        r = 0.3 * cams.abs().mean().item()
        xv, yv = VAL.tensors
        lv, cv = model(xv)
        val_ce = F.cross_entropy(lv, yv).item()
        val_r = 0.3 * cv.abs().mean().item()
    assert r > 0.01
    assert hist[0]["train_task_loss"] == pytest.approx(ce, rel=1e-6)
    assert hist[0]["train_reg_loss"] == pytest.approx(r, rel=1e-6)
    assert hist[0]["train_loss"] == pytest.approx(ce + r, rel=1e-6)
    assert hist[0]["val_loss"] == pytest.approx(val_ce + val_r, rel=1e-5)  # one batch of 24
    assert hist[0]["val_task_loss"] == pytest.approx(val_ce, rel=1e-5)


def test_config_regularizer_is_moreaux_activity_regularization(tmp_path: Path) -> None:
    from wsol.heads import activity_regularization

    model = model_factory(bn=False)
    x, _ = TRAIN.tensors
    with torch.no_grad():
        expected = activity_regularization(model(x)[1], "l2", 1e-3).item()  # plain tuple: falls back to the CAMs
    config = cfg(tmp_path, epochs=1, regularizer="l2", reg_weight=1e-3, batch_size=len(TRAIN), lr=0.0)
    hist = Trainer(model, TRAIN, None, config).fit()
    assert hist[0]["train_reg_loss"] == pytest.approx(expected, rel=1e-5)
    assert hist[0]["train_reg_loss"] > 0


def test_bce_multilabel_and_binary_one_logit(tmp_path: Path) -> None:
    x, y = TRAIN.tensors
    multi_hot = F.one_hot(y, 2).float()
    hist = Trainer(model_factory(), TensorDataset(x, multi_hot), TensorDataset(x, multi_hot),
                   cfg(tmp_path / "a", loss="bce", epochs=5, lr=0.05)).fit()
    assert hist[-1]["val_accuracy"] >= 0.9  # per-label accuracy of logit > 0
    hist = Trainer(model_factory(num_classes=1), TRAIN, TRAIN, cfg(tmp_path / "b", loss="bce", epochs=5,
                                                                   lr=0.05)).fit()
    assert hist[-1]["train_loss"] < hist[0]["train_loss"] and hist[-1]["val_accuracy"] >= 0.9


def test_metrics_fn_results_are_logged(tmp_path: Path) -> None:
    def fn(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        return {"n": float(len(targets)), "pos": float(targets.sum())}

    hist = Trainer(model_factory(), TRAIN, VAL, cfg(tmp_path, epochs=1), metrics_fn=fn).fit()
    assert hist[0]["val_n"] == 24 and hist[0]["val_pos"] == 12


def test_unwritable_out_dir_fails_before_training(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match=r"out_dir=.*a_file/run.*not a writable folder"):
        Trainer(model_factory(), TRAIN, VAL, cfg(blocker / "run"))


@pytest.mark.parametrize(
    ("kw", "match"),
    [({"epochs": 0}, "epochs"), ({"optimizer": "rmsprop"}, "optimizer"), ({"loss": "mse"}, "loss"),
     ({"lr": float("nan")}, "lr"), ({"regularizer": "l3"}, "regularizer"), ({"device": "tpu"}, "device"),
     ({"batch_size": 2.5}, "batch_size")],
)
def test_bad_config(tmp_path: Path, kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=f"TrainConfig.{match}"):
        cfg(tmp_path, **kw)


def test_non_finite_loss_is_reported(tmp_path: Path) -> None:
    x, y = TRAIN.tensors
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="non-finite training loss"):
        Trainer(model_factory(), TensorDataset(bad, y), None, cfg(tmp_path, epochs=1)).fit()


def test_trains_on_mnist128_items_with_annotations(tmp_path: Path) -> None:
    from wsol.data.mnist128 import MNIST128

    train = MNIST128("train", 32, canvas_size=32, return_annotation=True)  # (image, target, annotation dict)
    val = MNIST128("val", 16, canvas_size=32)
    model = model_factory()
    hist = Trainer(model, train, val, cfg(tmp_path, epochs=1)).fit()
    x = torch.stack([val[i][0] for i in range(16)])
    y = torch.stack([val[i][1] for i in range(16)])
    with torch.no_grad():
        logits, _ = model.eval()(x)
    assert hist[0]["val_accuracy"] == pytest.approx((logits.argmax(1) == y).float().mean().item())
    assert hist[0]["val_loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)


def test_worker_processes_do_not_change_the_result(tmp_path: Path) -> None:
    a, b = model_factory(), model_factory()
    Trainer(a, TRAIN, VAL, cfg(tmp_path / "a", epochs=1)).fit()
    Trainer(b, TRAIN, VAL, cfg(tmp_path / "b", epochs=1, num_workers=2)).fit()
    _assert_same_weights(a, b)


def test_checkpoint_of_a_create_model_network_rebuilds_with_load_model(tmp_path: Path) -> None:
    from wsol.models import create_model, load_model

    torch.manual_seed(0)
    model = create_model("lenet5", head="cam", pooling="spam", num_classes=2, in_chans=1, kernel_sizes=(1, 2, None))
    images = torch.rand(8, 1, 32, 32)
    data = TensorDataset(images, torch.randint(0, 2, (8,)))
    Trainer(model, data, None, cfg(tmp_path, epochs=1, batch_size=4)).fit()
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["model_spec"]["pooling"] == "spam" and ckpt["model_spec"]["num_classes"] == 2
    rebuilt = load_model(str(tmp_path / "last.pt"))
    model.eval()
    with torch.no_grad():
        assert torch.equal(rebuilt(images)[0], model(images)[0])


def test_head_lr_mult_scales_only_the_new_layers(tmp_path: Path) -> None:
    """Plain SGD, one full-batch step: the head moves exactly ``mult`` times as far, the backbone as far."""
    steps = {}
    for mult in (1.0, 10.0):
        model = model_factory(bn=False)
        init = {k: v.clone() for k, v in model.state_dict().items()}
        config = cfg(tmp_path / str(mult), epochs=1, batch_size=48, optimizer="sgd", momentum=0.0, lr=0.01,
                     head_lr_mult=mult)
        trainer = Trainer(model, TRAIN, None, config)
        assert [g["lr"] for g in trainer.optimizer.param_groups] == ([0.01] if mult == 1.0 else [0.01, 0.1])
        trainer.fit()
        steps[mult] = {k: model.state_dict()[k] - init[k] for k in init}
    for k in steps[1.0]:
        expected = steps[1.0][k] * (10.0 if k.startswith("classifier.") else 1.0)
        torch.testing.assert_close(steps[10.0][k], expected, rtol=1e-4, atol=1e-7)
    assert steps[1.0]["classifier.weight"].abs().sum() > 0
    with pytest.raises(ValueError, match="head_lr_mult"):
        TrainConfig(head_lr_mult=0.0)
