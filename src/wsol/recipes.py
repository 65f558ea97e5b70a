"""Run configs of ``wsol train``: a typed YAML schema, the shipped paper recipes, and the training driver.

A run config is a YAML file with the sections of :class:`RunConfig`::

    task: classification          # "detection" configs belong to wsol.detection
    description: one line shown by `wsol train --list-configs`
    model: {name: vgg16, head: zhou, pooling: null, num_classes: null, weights: /path/vgg16.pth, ...}
    data:  {dataset: cub, root: /path/to/CUB_200_2011, train_split: train, val_split: null, recipe: zhou,
            image_size: [224, 224], ...}
    train: {epochs: 50, batch_size: 32, optimizer: sgd, lr: 0.0001, ...}     # = wsol.trainer.TrainConfig
    log:   {tensorboard: true, log_dir: null, batch_every: 50}

Every key and value is checked (:func:`wsol.config.build_dataclass`): a typo gives one line naming the key
and the closest valid key. ``key.path=value`` overrides are applied before the check.

Losses. A single-label dataset trains with softmax cross-entropy (``train.loss: ce``); a multi-label one
(PASCAL VOC) needs ``train.loss: bce``, the per-class sigmoid cross-entropy of Qiu §IV-A ("For multi-label
classification, we use sigmoid cross entropy loss"); ``ce`` on a multi-label dataset is refused.

Gudi et al. 2017 §3 / §4.2 attach "a two-class softmax cross-entropy loss layer (per class)" to one pooled
CAM score ``s_c`` per class. With the two output units ``z_1 = a_1 s + d_1`` (present) and
``z_0 = a_0 s + d_0`` (absent),

.. math:: \\mathrm{softmax}(z)_1 = \\frac{e^{z_1}}{e^{z_0} + e^{z_1}} = \\sigma(z_1 - z_0)
          = \\sigma\\big((a_1 - a_0) s + (d_1 - d_0)\\big),

so the two-way softmax loss *is* the sigmoid cross-entropy on the single logit ``a s + d`` with
``a = a_1 − a_0``, ``d = d_1 − d_0``: the ``cam`` head with ``output_affine: true`` (per-class scale ``a_c``
and bias ``d_c``) and ``train.loss: bce``. The loss value and the gradient reaching the CAM and the backbone
are identical (``tests/test_recipes.py`` checks both); only the over-parameterization ``(a_1, a_0)`` is
gone, and Caffe's sum of the 20 per-class losses becomes a mean over classes (a constant factor 20 on
the loss, i.e. on the learning rate for SGD).

Checkpoints written by :func:`train_from_config` carry ``extras = {"run_config": <this config, resolved,
as plain data>, "task": "classification", "class_names": [...], "multilabel": bool, "dataset": name}``
so that ``wsol evaluate`` can rebuild the model *and* the evaluation data pipeline.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.resources
import math
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from wsol.config import ConfigError, apply_overrides, build_dataclass, dataclass_to_dict, load_yaml, suggest
from wsol.data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_transform
from wsol.trainer import TrainConfig, derive_seed, seed_everything

if TYPE_CHECKING:
    import torch

    from wsol.data.records import DatasetIndex, RecordDataset
    from wsol.models.base import CAMNet
    from wsol.trainer import Trainer

__all__ = [
    "PLACEHOLDER_PREFIX",
    "DataSection",
    "LogSection",
    "ModelSection",
    "RunConfig",
    "attach_tensorboard",
    "build_dataset",
    "build_model",
    "list_shipped_configs",
    "load_raw_config",
    "load_run_config",
    "read_split",
    "resolve_config_path",
    "resolve_data",
    "train_from_config",
]

#: Shipped configs use ``data.root: /path/to/<dataset>``; such a root is reported as "not set".
PLACEHOLDER_PREFIX = "/path/to/"


# ----------------------------------------------------------------------------------------------------------
# Schema
# ----------------------------------------------------------------------------------------------------------
@dataclass
class ModelSection:
    """``model:`` — the arguments of :func:`wsol.models.create_model` plus local weights.

    Attributes:
        name: backbone (``vgg16``, ``googlenet``, ``inception_v3``, ``resnet50``, ``alexnet``, ``lenet5``,
            ``timm:<name>``).
        head: CAM head (``zhou``, ``cam``, ``gapm``, ``gwap``, ``gwap_cs``).
        pooling: pooling for the ``zhou`` / ``cam`` heads (``gap``, ``gmp``, ``lse``, ``spam``, ...); None = the
            head's default.
        num_classes: None = the number of classes of the training split (a given value must match it).
        in_chans: input channels.
        backbone_kwargs: extra backbone arguments (e.g. ``extra_conv: null``).
        head_kwargs: extra head arguments (e.g. ``m: 5``, ``output_affine: true``, ``kernel_sizes``).
        weights: a *local* weights file loaded with :func:`wsol.models.loading.load_weights` (an ImageNet
            timm / torchvision state dict of the uncut network, or a wsol checkpoint); nothing is downloaded.
            None = random initialization.
        weights_strict: refuse weights with missing / unexpected keys (otherwise only warn).
    """

    name: str = "vgg16"
    head: str = "zhou"
    pooling: str | None = None
    num_classes: int | None = None
    in_chans: int = 3
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    head_kwargs: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None
    weights_strict: bool = True

    def __post_init__(self) -> None:
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 or null, got {self.num_classes}")


@dataclass
class DataSection:
    """``data:`` — which dataset, which splits, and the image pipeline.

    Attributes:
        dataset: reader name (:func:`wsol.data.records.list_datasets`: ``standard``, ``cub``, ``ilsvrc``,
            ``voc``, ``stanford40``, ``folder``, ...).
        root: the dataset folder (shipped configs hold a ``/path/to/...`` placeholder to override).
        train_split: split trained on.
        val_split: split validated on after every epoch (``best.pt`` = lowest validation loss); null = none
            (``best.pt`` then follows the training loss).
        test_split: split ``wsol evaluate`` uses by default (not read during training).
        reader_kwargs: extra arguments of the reader.
        recipe: augmentation recipe (:mod:`wsol.data.transforms`).
        image_size: network input ``[height, width]``; null = the model's ``pretrained_cfg`` input size.
        resize_size: resize before the random crop (``zhou`` recipe); null = ``image_size · 256/224``.
        flip_prob: horizontal flip probability (``zhou``, ``qiu``).
        mean: normalization mean on [0, 1] images; null = the model's ``pretrained_cfg`` (else ImageNet).
        std: normalization std; null like ``mean``.
        box_scaling: box convention of the evaluation resize (``edges`` exact, ``choe`` = Choe et al. 2020).
    """

    dataset: str = "standard"
    root: str = "/path/to/dataset"
    train_split: str = "train"
    val_split: str | None = "val"
    test_split: str | None = "test"
    reader_kwargs: dict[str, Any] = field(default_factory=dict)
    recipe: Literal["zhou", "moreaux", "qiu", "gudi", "none"] = "none"
    image_size: tuple[int, int] | None = None
    resize_size: tuple[int, int] | None = None
    flip_prob: float = 0.5
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    box_scaling: Literal["edges", "choe"] = "edges"

    def __post_init__(self) -> None:
        for name in ("image_size", "resize_size"):
            v = getattr(self, name)
            if v is not None and min(v) < 1:
                raise ValueError(f"{name} must hold positive sizes, got {list(v)}")
        if not 0.0 <= self.flip_prob <= 1.0:
            raise ValueError(f"flip_prob must lie in [0, 1], got {self.flip_prob}")
        if self.std is not None and min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {list(self.std)}")


@dataclass
class LogSection:
    """``log:`` — TensorBoard logging (rank 0 only).

    Attributes:
        tensorboard: write TensorBoard event files.
        log_dir: their folder; null = ``<train.out_dir>/tb``.
        batch_every: also log the training loss every this many batches (0 = per epoch only).
    """

    tensorboard: bool = True
    log_dir: str | None = None
    batch_every: int = 50

    def __post_init__(self) -> None:
        if self.batch_every < 0:
            raise ValueError(f"batch_every must be >= 0, got {self.batch_every}")


@dataclass
class RunConfig:
    """A whole ``wsol train`` run (see the module docstring for the YAML layout)."""

    task: Literal["classification", "detection"] = "classification"
    description: str = ""
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogSection = field(default_factory=LogSection)


# ----------------------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _shipped_dir() -> Iterator[Path]:
    with importlib.resources.as_file(importlib.resources.files("wsol") / "configs") as path:
        yield Path(path)


def _shipped_names() -> list[str]:
    with _shipped_dir() as d:
        return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def list_shipped_configs() -> dict[str, str]:
    """``{name: description}`` of the configs shipped in ``wsol/configs`` (``wsol train --list-configs``)."""
    out: dict[str, str] = {}
    with _shipped_dir() as d:
        for name in _shipped_names():
            try:
                raw = load_yaml(d / f"{name}.yaml")
            except ConfigError as err:  # a broken shipped file is a bug; show it rather than hide the list
                out[name] = f"<unreadable: {err}>"
                continue
            out[name] = str(raw.get("description", "")).strip()
    return out


def resolve_config_path(source: str | os.PathLike[str]) -> Path:
    """A config file path, or the shipped config named ``source`` (with or without ``.yaml``).

    Raises:
        ConfigError: neither an existing file nor a shipped name (the closest shipped name is suggested).
    """
    p = Path(source)
    if p.is_file():
        return p
    name = p.name[: -len(".yaml")] if p.name.endswith(".yaml") else p.name
    names = _shipped_names()
    if str(source) in (name, f"{name}.yaml") and name in names:
        with _shipped_dir() as d:
            return d / f"{name}.yaml"
    raise ConfigError(
        f"config {str(source)!r} is neither a file nor a shipped config{suggest(name, names)}; "
        "`wsol train --list-configs` lists the shipped ones"
    )


def load_raw_config(source: str | os.PathLike[str], overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The YAML mapping of a config file / shipped name with ``key.path=value`` overrides applied, unchecked.

    Raises:
        ConfigError: missing file / unknown shipped name, invalid YAML, malformed override.
    """
    return apply_overrides(load_yaml(resolve_config_path(source)), list(overrides))


def load_run_config(source: str | os.PathLike[str] | Mapping[str, Any], overrides: Sequence[str] = ()) -> RunConfig:
    """Read and check a classification run config (a path, a shipped name, or an already loaded mapping).

    Raises:
        ConfigError: any problem, naming the key (unknown keys get the closest valid key suggested); a
            ``task: detection`` config (read by ``wsol.detection.config`` instead).
    """
    if isinstance(source, Mapping):
        raw = apply_overrides(source, list(overrides))
    else:
        raw = load_raw_config(source, overrides)
    if raw.get("task") == "detection":
        raise ConfigError("task: 'detection' configs are read by wsol.detection.config, not wsol.recipes")
    return build_dataclass(RunConfig, raw)


# ----------------------------------------------------------------------------------------------------------
# Model and data
# ----------------------------------------------------------------------------------------------------------
def build_model(cfg: RunConfig, num_classes: int | None = None, verbose: bool = True) -> CAMNet:
    """``create_model`` from ``cfg.model`` and, if ``cfg.model.weights`` is set, the local weights.

    Args:
        cfg: the run config.
        num_classes: classes of the dataset (wins when ``cfg.model.num_classes`` is null, must equal it
            otherwise).
        verbose: print the weight-loading report to stderr.

    Raises:
        ConfigError: unknown model / head / pooling, class-count mismatch, missing or unloadable weights.
    """
    from wsol.models import create_model, load_weights

    m = cfg.model
    n = m.num_classes if m.num_classes is not None else num_classes
    if n is None:
        raise ConfigError("model.num_classes: not set, and no dataset to take the number of classes from")
    if num_classes is not None and n != num_classes:
        raise ConfigError(f"model.num_classes: {n}, but the dataset has {num_classes} classes (or set it to null)")
    try:
        model = create_model(
            m.name, m.head, n, m.pooling, m.in_chans, backbone_kwargs=dict(m.backbone_kwargs), **dict(m.head_kwargs)
        )
    except (ValueError, TypeError) as err:
        raise ConfigError(f"model: {err}") from None
    if m.weights is not None:
        if not Path(m.weights).is_file():
            raise ConfigError(f"model.weights: {m.weights} does not exist (weights are only read from local files)")
        try:
            report = load_weights(model, m.weights, strict=m.weights_strict)
        except ValueError as err:
            raise ConfigError(f"model.weights: {err}") from None
        if verbose:
            print(report, file=sys.stderr)
    return model


def resolve_data(cfg: RunConfig, model: CAMNet | None = None) -> DataSection:
    """``cfg.data`` with ``image_size``, ``mean`` and ``std`` filled in: explicit values win, then the model's
    ``pretrained_cfg`` (the model is built when not given), then 224×224 and the ImageNet statistics."""
    d = cfg.data
    if d.image_size is not None and d.mean is not None and d.std is not None:
        return dataclasses.replace(d)
    if model is None:
        import torch

        shape_only = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, weights=None))
        with torch.device("meta"):  # only pretrained_cfg is needed: no memory, no initialization
            model = build_model(shape_only, cfg.model.num_classes or 1, verbose=False)
    pre = dict(getattr(model, "pretrained_cfg", {}) or {})
    size = d.image_size
    if size is None:
        inp = pre.get("input_size")
        size = (int(inp[-2]), int(inp[-1])) if inp else (224, 224)
    mean = d.mean if d.mean is not None else _three(pre.get("mean"), IMAGENET_MEAN, cfg.model.in_chans)
    std = d.std if d.std is not None else _three(pre.get("std"), IMAGENET_STD, cfg.model.in_chans)
    return dataclasses.replace(d, image_size=tuple(size), mean=mean, std=std)


def _three(value: Any, default: tuple[float, float, float], in_chans: int) -> tuple[float, float, float]:
    """Three per-channel values for the RGB transform (a grayscale model's single value is repeated)."""
    if not value:
        return default
    vals = [float(v) for v in value]
    if len(vals) == 1 or (in_chans == 1 and len(set(vals)) == 1):
        return (vals[0],) * 3  # type: ignore[return-value]
    return (vals[0], vals[1], vals[2]) if len(vals) == 3 else default


def _check_root(cfg: RunConfig) -> Path:
    root = Path(cfg.data.root).expanduser()
    if root.is_dir():
        return root
    if str(cfg.data.root).startswith(PLACEHOLDER_PREFIX):
        raise ConfigError(
            f"data.root: {cfg.data.root} is the config's placeholder; give the dataset folder with "
            f"data.root=/your/path/to/{Path(cfg.data.root).name}"
        )
    what = "is not a folder" if root.exists() else "does not exist"
    raise ConfigError(f"data.root: dataset folder {root} {what}")


def read_split(cfg: RunConfig, split: str, *, which: str = "split") -> DatasetIndex:
    """Read one split with the configured reader; print every reader problem to stderr and keep the rest.

    Args:
        cfg: the run config.
        split: split name given to the reader.
        which: the config key the split came from (``train_split``, ...), named in errors.

    Raises:
        ConfigError: missing dataset folder, unknown reader (closest name suggested), a reader error
            (missing annotation file, ...), or a split without any usable image.
    """
    from wsol.data.records import build_index

    root = _check_root(cfg)
    try:
        index = build_index(cfg.data.dataset, root, split, **dict(cfg.data.reader_kwargs))
    except TypeError as err:
        raise ConfigError(f"data.reader_kwargs: {err}") from None
    except (ValueError, OSError) as err:
        key = "data.dataset" if str(err).startswith("unknown dataset") else f"data.{which}"
        raise ConfigError(f"{key}: {err}") from None
    if index.problems and os.environ.get("RANK", "0") == "0":  # under torchrun every rank reads: rank 0 reports
        index.report(sys.stderr, limit=len(index.problems))
    if len(index) == 0:
        extra = f" ({len(index.problems)} problems reported above)" if index.problems else ""
        raise ConfigError(f"data.{which}: split {split!r} of {root} ({cfg.data.dataset}) has no usable image{extra}")
    return index


def build_dataset(
    cfg: RunConfig,
    split: str,
    train: bool,
    *,
    model: CAMNet | None = None,
    index: DatasetIndex | None = None,
    return_index: bool = False,
) -> RecordDataset:
    """A :class:`~wsol.data.records.RecordDataset` of ``split`` with the recipe's train or eval transform.

    Args:
        cfg: the run config.
        split: split name.
        train: augmented training transform (True) or the deterministic evaluation resize (False).
        model: used for the default ``image_size`` / ``mean`` / ``std`` (built when needed and not given).
        index: an already read index of that split (otherwise read with :func:`read_split`).
        return_index: items are ``(image, target, position)``.

    Raises:
        ConfigError: see :func:`read_split`; invalid transform settings.
    """
    from wsol.data.records import RecordDataset

    index = index if index is not None else read_split(cfg, split)
    d = resolve_data(cfg, model)
    try:
        transform = build_transform(
            d.recipe,
            train,
            d.image_size or (224, 224),
            d.mean or IMAGENET_MEAN,
            d.std or IMAGENET_STD,
            resize_size=d.resize_size,
            flip_prob=d.flip_prob,
            box_scaling="edges" if train else d.box_scaling,
        )
    except ValueError as err:
        raise ConfigError(f"data: {err}") from None
    return RecordDataset(index, transform, return_index=return_index)


# ----------------------------------------------------------------------------------------------------------
# TensorBoard
# ----------------------------------------------------------------------------------------------------------
def _tag(key: str) -> str:
    for prefix in ("train_", "val_"):
        if key.startswith(prefix):
            return f"{prefix[:-1]}/{key[len(prefix):]}"
    return key


def attach_tensorboard(trainer: Trainer, log_dir: str | os.PathLike[str], batch_every: int = 50) -> Any:
    """Log the trainer's per-epoch record (and the training loss every ``batch_every`` batches) to TensorBoard.

    Wraps the instance's ``on_epoch_end`` / ``on_batch_end`` hooks (whatever the trainer class, plain or
    distributed); only the main process (``trainer.is_main_process``) writes. Epoch scalars use the 1-based
    epoch as step (``train/loss``, ``val/accuracy``, ``lr``, ...); batch losses (``train/batch_loss``) use the
    global batch number ``epoch · batches_per_epoch + batch + 1``, so a resumed run continues the curves.

    Returns:
        The ``SummaryWriter`` (close it after ``fit``), or None on other ranks.
    """
    if not trainer.is_main_process:
        return None
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(log_dir))
    epoch_hook, batch_hook = trainer.on_epoch_end, trainer.on_batch_end
    # One step = one global batch, in the one-process and in the distributed trainer alike.
    per_epoch = max(1, math.ceil(len(trainer.train_set) / trainer.config.batch_size))  # type: ignore[arg-type]

    def on_batch_end(epoch: int, batch: int, loss: torch.Tensor) -> None:
        batch_hook(epoch, batch, loss)
        if batch_every and (batch + 1) % batch_every == 0:
            writer.add_scalar("train/batch_loss", float(loss), epoch * per_epoch + batch + 1)

    def on_epoch_end(epoch: int, record: Mapping[str, Any]) -> None:
        epoch_hook(epoch, record)
        for key, value in record.items():
            if key != "epoch" and isinstance(value, int | float) and not isinstance(value, bool):
                writer.add_scalar(_tag(key), float(value), int(record["epoch"]))
        writer.flush()

    trainer.on_batch_end = on_batch_end  # type: ignore[method-assign]
    trainer.on_epoch_end = on_epoch_end  # type: ignore[method-assign]
    return writer


# ----------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------
def _metrics_fn(multilabel: bool, num_classes: int) -> Any:
    """Validation metrics beyond loss / accuracy: VOC-style mAP (multi-label), top-5 accuracy (single-label)."""
    import torch

    from wsol.metrics.classification import mean_average_precision, topk_accuracy

    if multilabel:

        def multilabel_metrics(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
            return {"mAP": mean_average_precision(torch.sigmoid(logits).numpy(), targets.numpy()).mean_ap}

        return multilabel_metrics
    if num_classes <= 5:
        return None

    def top5(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        return {"top5_accuracy": topk_accuracy(logits.numpy(), targets.numpy(), ks=(5,))[5]}

    return top5


def train_from_config(cfg: RunConfig, resume: bool = False) -> list[dict[str, Any]]:
    """Train the classification run ``cfg``: read the splits, build model and data, fit, log, checkpoint.

    Writes ``<train.out_dir>/run_config.yaml`` (the resolved config), ``last.pt`` / ``best.pt`` (with the
    run config, class names and multi-label flag under ``extras``), ``metrics.csv`` / ``metrics.json`` and,
    with ``log.tensorboard``, TensorBoard event files in ``log.log_dir`` (default ``<out_dir>/tb``).

    Args:
        cfg: a classification run config (:func:`load_run_config`).
        resume: continue from ``<out_dir>/last.pt`` (see :meth:`wsol.trainer.Trainer.fit`).

    Returns:
        The per-epoch history of :meth:`wsol.trainer.Trainer.fit`.

    Raises:
        ConfigError: a detection config, dataset / model / weights problems, train and validation splits
            with different classes, ``train.loss: ce`` on a multi-label dataset.
    """
    from wsol.atomic import atomic_write_text
    from wsol.distributed import make_trainer

    if cfg.task != "classification":
        raise ConfigError(f"task: {cfg.task!r} runs are trained by wsol.detection, not wsol.recipes")
    d = cfg.data
    train_index = read_split(cfg, d.train_split, which="train_split")
    val_index = read_split(cfg, d.val_split, which="val_split") if d.val_split else None
    names = list(train_index.class_names)
    if val_index is not None and list(val_index.class_names) != names:
        raise ConfigError(
            f"data.val_split: split {d.val_split!r} has {val_index.num_classes} classes that differ from the "
            f"{len(names)} of {d.train_split!r}"
        )
    multilabel = bool(train_index.multilabel)
    if multilabel and cfg.train.loss == "ce":
        raise ConfigError(
            f"train.loss: dataset {d.dataset!r} is multi-label (multi-hot targets); use train.loss=bce "
            "(per-class sigmoid cross-entropy, Qiu §IV-A)"
        )
    if cfg.model.weights is None and os.environ.get("RANK", "0") == "0":
        print(
            "note: model.weights is not set; training from random initialization (the papers fine-tune ImageNet "
            "weights: model.weights=/path/to/file)",
            file=sys.stderr,
        )
    seed_everything(derive_seed(cfg.train.seed, 7))  # the initial weights are a function of train.seed too
    model = build_model(cfg, len(names))
    model.class_names = names
    resolved = dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, num_classes=len(names)), data=resolve_data(cfg, model)
    )
    train_set = build_dataset(resolved, d.train_split, True, model=model, index=train_index)
    val_set = build_dataset(resolved, d.val_split, False, model=model, index=val_index) if val_index else None

    # A DistributedTrainer under torchrun (WORLD_SIZE > 1), a plain Trainer otherwise.
    trainer = make_trainer(model, train_set, val_set, cfg.train, metrics_fn=_metrics_fn(multilabel, len(names)))
    run_config = dataclass_to_dict(resolved)
    trainer.checkpoint_extras = {
        "run_config": run_config,
        "task": "classification",
        "class_names": names,
        "multilabel": multilabel,
        "dataset": d.dataset,
    }
    writer = None
    if trainer.is_main_process:
        out = Path(cfg.train.out_dir)
        atomic_write_text(out / "run_config.yaml", yaml.safe_dump(run_config, sort_keys=False))
        if cfg.log.tensorboard:
            writer = attach_tensorboard(trainer, cfg.log.log_dir or out / "tb", cfg.log.batch_every)
    try:
        return trainer.fit(resume=resume)
    finally:
        if writer is not None:
            writer.close()
