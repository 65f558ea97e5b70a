"""Run configs: shipped configs, overrides and errors, data pipeline, Gudi's two-way softmax identity."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from wsol.config import ConfigError
from wsol.data.records import DatasetIndex, ImageRecord, register_dataset
from wsol.heads import build_head
from wsol.recipes import (
    PLACEHOLDER_PREFIX,
    RunConfig,
    _metrics_fn,
    build_dataset,
    build_model,
    list_shipped_configs,
    load_raw_config,
    load_run_config,
    read_split,
    resolve_config_path,
    resolve_data,
    train_from_config,
)
from wsol.trainer import TrainConfig, Trainer

# classification configs (wsol.detection may ship "task: detection" configs next to them)
SHIPPED = sorted(n for n in list_shipped_configs() if load_raw_config(n).get("task") != "detection")
PAPER_DATASETS = {"ilsvrc": 1000, "cub": 200, "stanford40": 40, "voc": 20}


# ----------------------------------------------------------------------------------------------------------
# a test-only reader: N solid-colour images per class, optionally multi-label, with one bad record reported
# ----------------------------------------------------------------------------------------------------------
@register_dataset("_test_recipes_colors")
def _colors(root: Path, split: str, *, multilabel: bool = False, empty: bool = False) -> DatasetIndex:
    from wsol.data.metadata import MetadataProblem

    names = ["red", "green", "blue"]
    records = []
    for path in sorted((root / split).glob("*.png")):
        c = names.index(path.stem.split("_")[0])
        labels = (c, (c + 1) % 3) if multilabel else (c,)
        records.append(ImageRecord(f"{split}/{path.name}", path, labels, boxes=[[2, 2, 9, 9]]))
    problems = [MetadataProblem(f"{split}/labels.txt", 7, "broken.png", "not a class")]
    return DatasetIndex("_test_recipes_colors", root, split, names, [] if empty else records, multilabel, problems)


def make_colors(root: Path, per_class: int = 2) -> Path:
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        for c, rgb in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
            for i in range(per_class):
                img = np.zeros((12, 16, 3), np.uint8)
                img[2:10, 2:10] = rgb
                Image.fromarray(img).save(root / split / f"{['red', 'green', 'blue'][c]}_{i}.png")
    return root


def tiny_config(root: Path, out: Path, **train: object) -> dict:
    return {
        "model": {"name": "lenet5", "head": "cam", "pooling": "gap", "backbone_kwargs": {"width1": 4, "width2": 8}},
        "data": {"dataset": "_test_recipes_colors", "root": str(root), "val_split": "val", "recipe": "none",
                 "image_size": [20, 20]},
        "train": {"epochs": 1, "batch_size": 2, "optimizer": "sgd", "lr": 0.1, "device": "cpu", "progress": False,
                  "log_format": "none", "out_dir": str(out), **train},
        "log": {"tensorboard": False},
    }


# ----------------------------------------------------------------------------------------------------------
# shipped configs
# ----------------------------------------------------------------------------------------------------------
def test_every_paper_has_its_configs() -> None:
    expected = {
        "zhou_vgg16_gap_ilsvrc", "zhou_googlenet_gap_ilsvrc", "zhou_resnet50_gap_ilsvrc",
        "zhou_vgg16_gap_cub", "zhou_googlenet_gap_cub", "zhou_resnet50_gap_cub",
        "moreaux_inception_gap5_stanford40", "moreaux_inception_gap5_l1_stanford40",
        "moreaux_inception_gap5_l2_stanford40", "moreaux_inception_gap_zhou_stanford40",
        "qiu_googlenet_gwap_ilsvrc", "qiu_caffenet_gwap_voc07", "qiu_googlenet_gwap_voc07", "gudi_vgg16_spam_voc07",
    }
    assert expected <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_config_parses_and_is_consistent(name: str) -> None:
    cfg = load_run_config(name)
    assert isinstance(cfg, RunConfig) and cfg.task == "classification"
    assert cfg.description
    assert cfg.data.root.startswith(PLACEHOLDER_PREFIX)
    assert cfg.data.dataset in PAPER_DATASETS
    assert cfg.train.out_dir == f"runs/{name}"
    assert cfg.model.weights is None and cfg.model.num_classes is None
    assert cfg.train.loss == ("bce" if cfg.data.dataset == "voc" else "ce")  # VOC is multi-label (Qiu §IV-A)
    text = resolve_config_path(name).read_text(encoding="utf-8")
    assert "§" in text  # hyper-parameters cite the paper's section (or say it is silent)


def test_shipped_hyper_parameters_follow_the_papers() -> None:
    m = load_run_config("moreaux_inception_gap5_l1_stanford40")
    assert (m.model.head, m.model.head_kwargs["m"], m.data.image_size) == ("gapm", 5, (299, 299))
    assert (m.train.optimizer, m.train.lr, m.train.lr_step_epochs, m.train.freeze_backbone_epochs) == (
        "nadam", 0.002, 2, 10)
    assert (m.train.epochs, m.train.regularizer, m.train.reg_weight) == (125, "l1", 1e-7)
    assert load_run_config("moreaux_inception_gap5_l2_stanford40").train.regularizer == "l2"
    q = load_run_config("qiu_caffenet_gwap_voc07")
    assert (q.model.name, q.model.head, q.data.image_size, q.data.recipe) == ("alexnet", "gwap", (600, 600), "qiu")
    assert (q.train.batch_size, q.train.lr) == (4, 0.0005)
    # 60,000 iterations of 4 images over the 5,011 trainval images, lr step every 20,000 iterations
    assert q.train.epochs == round(60_000 * 4 / 5011) and q.train.lr_step_epochs == round(20_000 * 4 / 5011)
    g = load_run_config("gudi_vgg16_spam_voc07")
    assert (g.model.head, g.model.pooling, g.model.head_kwargs) == (
        "cam", "spam", {"kernel_sizes": [1, 2, 5, None], "output_affine": True})
    z = load_run_config("zhou_vgg16_gap_cub")
    assert (z.data.recipe, z.data.image_size, z.model.backbone_kwargs) == ("zhou", (224, 224), {"extra_conv": 1024})


# CAM size at each config's input size, from the layer arithmetic of wsol.models.backbones
SHIPPED_MAPS = {
    "gudi_vgg16_spam_voc07": 15,  # vgg16 with pool5 (Gudi §4.2): floor(500 / 32)
    "qiu_caffenet_gwap_voc07": 36,  # alexnet at 600: a = floor(597/4) = 149, b = floor(148/2) = 74, floor(73/2)
    "qiu_googlenet_gwap_voc07": 37,  # googlenet: floor(ceil(600/2) / 8)
    "moreaux_inception_gap5_stanford40": 17,  # inception_v3 at 299 (Moreaux §3.1: 17x17)
    **{n: 17 for n in ("moreaux_inception_gap5_l1_stanford40", "moreaux_inception_gap5_l2_stanford40",
                       "moreaux_inception_gap_zhou_stanford40")},
    **{n: 14 for n in SHIPPED if n.startswith("zhou_") or n == "qiu_googlenet_gwap_ilsvrc"},  # 224 / 16
}


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_builds_and_runs_shape_only(name: str) -> None:
    cfg = load_run_config(name)
    maps = SHIPPED_MAPS[name]
    n = PAPER_DATASETS[cfg.data.dataset]
    with torch.device("meta"):  # shapes only: no memory, no computation
        model = build_model(cfg, n)
        out = model(torch.empty(2, 3, *cfg.data.image_size))
    assert tuple(out.logits.shape) == (2, n)
    assert tuple(out.cams.shape) == (2, n, maps, maps)


def test_resolve_data_defaults_come_from_the_model() -> None:
    cfg = load_run_config({"model": {"name": "googlenet", "num_classes": 3}})
    d = resolve_data(cfg)
    assert (d.image_size, d.mean, d.std) == ((224, 224), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    d = resolve_data(load_run_config({"model": {"name": "inception_v3", "num_classes": 3}}))
    assert d.image_size == (299, 299)
    explicit = load_run_config({"model": {"name": "googlenet", "num_classes": 3},
                                "data": {"image_size": [64, 48], "mean": [0.1, 0.2, 0.3], "std": [1, 2, 3]}})
    d = resolve_data(explicit)
    assert (d.image_size, d.mean, d.std) == ((64, 48), (0.1, 0.2, 0.3), (1.0, 2.0, 3.0))


# ----------------------------------------------------------------------------------------------------------
# overrides and errors
# ----------------------------------------------------------------------------------------------------------
def test_overrides_are_applied_and_typed() -> None:
    cfg = load_run_config(
        "zhou_vgg16_gap_cub",
        ["train.lr=0.01", "data.image_size=[128, 96]", "model.head_kwargs.m=3", "data.val_split=null",
         "train.amp=true"],
    )
    assert cfg.train.lr == 0.01 and cfg.data.image_size == (128, 96) and cfg.model.head_kwargs == {"m": 3}
    assert cfg.data.val_split is None and cfg.train.amp is True
    assert cfg.train.epochs == 50  # untouched


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lr_stpe_epochs=3", r"train.lr_stpe_epochs: unknown key \(did you mean 'lr_step_epochs'\?\)"),
        ("modle.name=vgg16", r"modle: unknown key \(did you mean 'model'\?\)"),
        ("train.epochs=many", "train.epochs: must be an integer"),
        ("data.recipe=zhuo", "data.recipe: must be one of .* \\(did you mean 'zhou'\\?\\)"),
        ("train.optimizer=adamw", "train.optimizer: must be one of"),
        ("data.image_size=[224]", "data.image_size: must be a list of 2 items"),
        ("data.flip_prob=2", "data: flip_prob must lie in \\[0, 1\\]"),
        ("train.lr=-1", "train: TrainConfig.lr must be a finite number"),
        ("log.batch_every=-1", "log: batch_every must be >= 0"),
        ("no_equals_sign", "must look like section.key=value"),
    ],
)
def test_config_errors_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_run_config("zhou_vgg16_gap_cub", [override])


def test_unknown_config_name_suggests_a_shipped_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"did you mean 'zhou_vgg16_gap_cub'"):
        resolve_config_path("zhou_vgg16_cub")
    path = tmp_path / "mine.yaml"
    path.write_text("train: {epochs: 3}\n")
    assert resolve_config_path(path) == path
    assert resolve_config_path("gudi_vgg16_spam_voc07.yaml").name == "gudi_vgg16_spam_voc07.yaml"
    assert load_run_config(path).train.epochs == 3


def test_detection_configs_are_not_read_here() -> None:
    with pytest.raises(ConfigError, match=r"wsol.detection"):
        load_run_config({"task": "detection", "model": {}})


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  epochs: [1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+:\d+: invalid YAML"):
        load_raw_config(path)


def test_model_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model: unknown head 'zhuo'"):
        build_model(load_run_config({"model": {"head": "zhuo"}}), 3)
    with pytest.raises(ConfigError, match=r"model.num_classes: 5, but the dataset has 3"):
        build_model(load_run_config({"model": {"num_classes": 5}}), 3)
    with pytest.raises(ConfigError, match=r"model.weights: .*missing.pt does not exist"):
        build_model(load_run_config({"model": {"name": "lenet5", "weights": str(tmp_path / "missing.pt")}}), 3)
    with pytest.raises(ConfigError, match=r"model.num_classes: not set"):
        build_model(load_run_config({"model": {"name": "lenet5"}}))


def test_model_weights_are_loaded_from_a_local_file(tmp_path: Path) -> None:
    cfg = load_run_config({"model": {"name": "lenet5", "head": "cam", "num_classes": 3}})
    source = build_model(cfg)
    torch.save({"model": source.state_dict()}, tmp_path / "w.pt")
    cfg.model.weights = str(tmp_path / "w.pt")
    loaded = build_model(cfg, verbose=False)
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


# ----------------------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------------------
def test_missing_and_placeholder_roots(tmp_path: Path) -> None:
    cfg = load_run_config({"data": {"dataset": "_test_recipes_colors", "root": str(tmp_path / "nowhere")}})
    with pytest.raises(ConfigError, match=r"data.root: dataset folder .*nowhere does not exist"):
        read_split(cfg, "train")
    cfg = load_run_config("zhou_vgg16_gap_cub")
    with pytest.raises(ConfigError, match=r"data.root: /path/to/CUB_200_2011 is the config's placeholder"):
        read_split(cfg, "train")


def test_read_split_reports_problems_and_keeps_the_rest(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = make_colors(tmp_path / "colors")
    cfg = load_run_config({"data": {"dataset": "_test_recipes_colors", "root": str(root)}})
    index = read_split(cfg, "train", which="train_split")
    assert len(index) == 6
    err = capsys.readouterr().err
    assert "train/labels.txt:7" in err and "not a class" in err
    cfg.data.reader_kwargs = {"empty": True}
    with pytest.raises(ConfigError, match=r"data.train_split: split 'train' .* has no usable image"):
        read_split(cfg, "train", which="train_split")
    cfg.data.reader_kwargs = {"colour": True}
    with pytest.raises(ConfigError, match=r"data.reader_kwargs: .*colour"):
        read_split(cfg, "train")
    cfg.data.dataset = "_test_recipes_colours"
    with pytest.raises(ConfigError, match=r"data.dataset: unknown dataset .*did you mean '_test_recipes_colors'"):
        read_split(cfg, "train")


def test_build_dataset_applies_the_eval_transform(tmp_path: Path) -> None:
    root = make_colors(tmp_path / "colors")
    cfg = load_run_config({
        "model": {"name": "lenet5", "in_chans": 3},
        "data": {"dataset": "_test_recipes_colors", "root": str(root), "image_size": [24, 32],
                 "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    })
    ds = build_dataset(cfg, "val", train=False, return_index=True)
    x, y, i = ds[0]
    assert x.shape == (3, 24, 32) and int(y) == 2 and i == 0  # first file: blue_0.png
    # pure blue square (image 12x16 -> 24x32: rows 4..19, cols 4..19 exactly) normalized to +1, background -1
    assert x[2, 10, 10].item() == pytest.approx(1.0) and x[0, 10, 10].item() == pytest.approx(-1.0)
    assert x[2, 0, 0].item() == pytest.approx(-1.0)


# ----------------------------------------------------------------------------------------------------------
# losses
# ----------------------------------------------------------------------------------------------------------
def test_gudi_two_way_softmax_equals_affine_sigmoid_cross_entropy() -> None:
    """Per class, a two-way softmax on (a0 s + d0, a1 s + d1) = sigmoid((a1 - a0) s + d1 - d0): same loss, same
    gradient on the CAM layer and the features, for the `cam` head with output_affine and loss bce."""
    torch.manual_seed(0)
    b, k, c, h, w = 4, 6, 5, 7, 7
    head = build_head("cam", k, c, pooling="spam", kernel_sizes=(1, 2, 5, None), output_affine=True).double()
    a1, a0, d1, d0 = (torch.randn(c, dtype=torch.float64) for _ in range(4))
    with torch.no_grad():
        head.scale.copy_(a1 - a0)
        head.bias.copy_(d1 - d0)
    targets = (torch.rand(b, c) > 0.5).double()
    feats = torch.randn(b, k, h, w, dtype=torch.float64, requires_grad=True)

    # explicit: Caffe's per-class two-class softmax loss layers, summed over classes, averaged over the batch
    maps = head.cam(feats)
    pooled = head.pool(maps)  # (B, C) SPAM scores s_c
    z = torch.stack([a0 * pooled + d0, a1 * pooled + d1], dim=-1)  # (B, C, 2)
    explicit = F.cross_entropy(z.reshape(-1, 2), targets.long().reshape(-1), reduction="sum") / b
    g_explicit = torch.autograd.grad(explicit, [feats, head.cam.weight, head.cam.bias])

    # ours: the trainer's loss="bce" (mean over B x C) on the head's logits, times C (mean -> sum over classes)
    trainer_like = SimpleNamespace(config=TrainConfig(loss="bce"), _bce_target=Trainer._bce_target)
    logits = head(feats).logits
    ours = Trainer.task_loss(trainer_like, logits, targets) * c  # type: ignore[arg-type]
    g_ours = torch.autograd.grad(ours, [feats, head.cam.weight, head.cam.bias])
    # (the trainer computes its loss in float32, hence float32 tolerances)
    assert ours.item() == pytest.approx(explicit.item(), rel=1e-6)
    for ge, go in zip(g_explicit, g_ours, strict=True):
        torch.testing.assert_close(go, ge, rtol=1e-5, atol=1e-7)
    # the CAM threshold of §3.1.1: where the two outputs tie, (a1 - a0) s + (d1 - d0) = 0
    torch.testing.assert_close(head.cam_thresholds(), -(d1 - d0) / (a1 - a0))


def test_multilabel_dataset_refuses_softmax_loss(tmp_path: Path) -> None:
    root = make_colors(tmp_path / "colors")
    raw = tiny_config(root, tmp_path / "out")
    raw["data"]["reader_kwargs"] = {"multilabel": True}
    with pytest.raises(ConfigError, match=r"train.loss: dataset '_test_recipes_colors' is multi-label"):
        train_from_config(load_run_config(raw))


def test_metrics_fn_values() -> None:
    logits = torch.tensor([[3.0, 1.0, 0.0, -1.0, -2.0, -3.0], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]])
    top5 = _metrics_fn(False, 6)
    assert top5(logits, torch.tensor([5, 0])) == {"top5_accuracy": 0.0}
    assert top5(logits, torch.tensor([4, 1])) == {"top5_accuracy": 1.0}
    assert _metrics_fn(False, 5) is None  # top-5 of 5 classes is always 1
    mapf = _metrics_fn(True, 2)
    # class 0 ranked perfectly (AP 1); class 1: positive ranked second of two (AP 1/2)
    out = mapf(torch.tensor([[2.0, 1.0], [-1.0, 3.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert out["mAP"] == pytest.approx(1.0)
    out = mapf(torch.tensor([[2.0, 3.0], [-1.0, 1.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert out["mAP"] == pytest.approx((1.0 + 0.5) / 2)


def test_train_from_config_end_to_end(tmp_path: Path) -> None:
    root = make_colors(tmp_path / "colors", per_class=3)
    out = tmp_path / "out"
    raw = tiny_config(root, out, epochs=3)
    history = train_from_config(load_run_config(raw))
    assert [r["epoch"] for r in history] == [1, 2, 3]
    saved = yaml.safe_load((out / "run_config.yaml").read_text())
    assert saved["data"]["image_size"] == [20, 20] and saved["data"]["mean"] == [0.0, 0.0, 0.0]  # lenet5 cfg
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["extras"]["class_names"] == ["red", "green", "blue"]
    assert ckpt["extras"]["run_config"] == saved and ckpt["extras"]["multilabel"] is False
    assert ckpt["model_spec"]["class_names"] == ["red", "green", "blue"]
    assert ckpt["epoch"] == 3
    assert saved["model"]["num_classes"] == 3  # resolved from the dataset


def test_multilabel_training_uses_bce_and_reports_map(tmp_path: Path) -> None:
    root = make_colors(tmp_path / "colors")
    raw = tiny_config(root, tmp_path / "out", loss="bce")
    raw["data"]["reader_kwargs"] = {"multilabel": True}
    cfg = load_run_config(raw)
    history = train_from_config(cfg)
    ckpt = torch.load(tmp_path / "out" / "last.pt", weights_only=True)
    assert ckpt["extras"]["multilabel"] is True
    # the logged val mAP is scikit-learn's macro average precision of the final weights on the val split
    from sklearn.metrics import average_precision_score

    model = build_model(cfg, 3, verbose=False)
    model.load_state_dict(ckpt["model"])
    val = build_dataset(cfg, "val", False, model=model)
    with torch.no_grad():
        scores = torch.cat([model(val[i][0][None]).logits for i in range(len(val))]).sigmoid().numpy()
    targets = torch.stack([val[i][1] for i in range(len(val))]).numpy()
    assert history[-1]["val_mAP"] == pytest.approx(average_precision_score(targets, scores, average="macro"))
