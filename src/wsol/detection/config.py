"""YAML schema of semi-supervised detection runs (``task: detection``) and the train / evaluate entry points.

``wsol train --config X.yaml`` hands configs whose top level says ``task: detection`` to
:func:`train_from_config`; ``wsol evaluate`` hands checkpoints whose ``extras["task"]`` is ``"detection"`` to
:func:`evaluate_checkpoint`. Sections::

    task: detection
    model:  RFCNSpec            (wsol.detection.rfcn: backbone, variant rfcn | rfcn+gap | rfcn+gwap | ...)
    data:   DetectionDataConfig (dataset reader, train / test splits, boxed_fraction, resizing)
    train:  SemiTrainConfig     (wsol.detection.semi: steps, batch mix, optimizer, λ = weak_weight, ...)
    eval:   DetectionEvalConfig (score threshold, NMS, IoU)

Every key is checked (:func:`wsol.config.build_dataclass`): a typo is an error with the closest valid key.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from wsol.config import ConfigError, build_dataclass, dataclass_to_dict
from wsol.detection.rfcn import RFCN, RFCNSpec, build_rfcn
from wsol.detection.semi import (
    MNIST128Detection,
    RecordDetection,
    SemiSupervisedDataset,
    SemiTrainConfig,
    evaluate_detector,
    select_boxed,
    train_semi,
)

__all__ = [
    "DetectionDataConfig",
    "DetectionEvalConfig",
    "DetectionRunConfig",
    "SplitSpec",
    "build_source",
    "evaluate_checkpoint",
    "load_detector",
    "parse_detection_config",
    "train_from_config",
]


@dataclass
class SplitSpec:
    """One dataset split.

    Attributes:
        root: dataset folder; empty = ``data.root`` (unused for ``mnist128``).
        split: split name (``trainval``, ``test``, …; ``train`` / ``val`` / ``test`` for ``mnist128``).
        options: extra keyword arguments of the reader (e.g. ``{years: [2007, 2012]}`` for ``voc``).
        n: ``mnist128`` only: number of canvases.
        seed: ``mnist128`` only: canvas seed.
    """

    root: str = ""
    split: str = "train"
    options: dict[str, Any] = field(default_factory=dict)
    n: int = 1000
    seed: int = 0


@dataclass
class DetectionDataConfig:
    """Data of a detection run.

    Attributes:
        dataset: ``"mnist128"`` (multi-digit canvases) or a :mod:`wsol.data.records` reader (``"voc"``, …).
        root: dataset folder of every split whose own ``root`` is empty.
        train: training splits (concatenated; their class lists must agree).
        test: evaluation split, or null.
        boxed_fraction: share of training images that keep their boxes, in ``(0, 1]`` (Qiu Table V: 0.01–0.1).
        boxed_seed: seed of the boxed-image draw.
        cover_classes: at least one boxed image per class (:func:`wsol.detection.semi.select_boxed`).
        min_size / max_size: resize rule of record datasets (shorter side / longer-side cap, R-FCN 600 / 1000).
        min_digits / max_digits / box_kind: ``mnist128`` canvases (multilabel, ink or placement boxes).
    """

    dataset: str = "voc"
    root: str = ""
    train: list[SplitSpec] = field(default_factory=lambda: [SplitSpec(split="trainval")])
    test: SplitSpec | None = field(default_factory=lambda: SplitSpec(split="test"))
    boxed_fraction: float = 1.0
    boxed_seed: int = 0
    cover_classes: bool = True
    min_size: int = 600
    max_size: int = 1000
    min_digits: int = 1
    max_digits: int = 4
    box_kind: Literal["ink", "placement"] = "ink"

    def __post_init__(self) -> None:
        f = self.boxed_fraction
        if not (isinstance(f, int | float) and not isinstance(f, bool) and math.isfinite(f) and 0 < f <= 1):
            raise ValueError(f"boxed_fraction must be in (0, 1], got {f!r}")
        if not self.train:
            raise ValueError("train must list at least one split")
        if not 1 <= self.min_size <= self.max_size:
            raise ValueError(f"need 1 <= min_size <= max_size, got {self.min_size}, {self.max_size}")


@dataclass
class DetectionEvalConfig:
    """Evaluation of a detection run (VOC protocol, :func:`wsol.detection.semi.evaluate_detector`).

    Attributes:
        score_thresh: minimum class probability of a kept detection.
        nms_iou: per-class NMS IoU (R-FCN: 0.3).
        max_per_image: detections kept per image.
        iou: IoU of a true positive (VOC: 0.5).
        batch_size: images per forward pass.
        limit: evaluate only the first ``limit`` test images (null: all).
    """

    score_thresh: float = 0.01
    nms_iou: float = 0.3
    max_per_image: int = 100
    iou: float = 0.5
    batch_size: int = 1
    limit: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.score_thresh < 1:
            raise ValueError(f"score_thresh must be in [0, 1), got {self.score_thresh!r}")
        for name in ("nms_iou", "iou"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)!r}")
        if self.max_per_image < 1 or self.batch_size < 1 or (self.limit is not None and self.limit < 1):
            raise ValueError("max_per_image, batch_size and limit must be >= 1")


@dataclass
class DetectionRunConfig:
    """A whole detection config file (see the module docstring)."""

    task: Literal["detection"] = "detection"
    description: str = ""
    model: RFCNSpec = field(default_factory=RFCNSpec)
    data: DetectionDataConfig = field(default_factory=DetectionDataConfig)
    train: SemiTrainConfig = field(default_factory=SemiTrainConfig)
    eval: DetectionEvalConfig = field(default_factory=DetectionEvalConfig)


def parse_detection_config(raw: Mapping[str, Any]) -> DetectionRunConfig:
    """Validate a loaded YAML mapping into a :class:`DetectionRunConfig`.

    Raises:
        ConfigError: unknown key (with the closest valid one), wrong type or invalid value, ``task`` not
            ``detection``.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"a detection config must be a mapping, got {type(raw).__name__}")
    cfg = build_dataclass(DetectionRunConfig, raw)
    if cfg.data.dataset == "mnist128" and cfg.model.in_chans != 1:
        raise ConfigError(f"model.in_chans: mnist128 canvases have 1 channel, got {cfg.model.in_chans}")
    return cfg


# ----------------------------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------------------------
def build_source(data: DetectionDataConfig, spec: SplitSpec) -> MNIST128Detection | RecordDetection:
    """The detection source of one split (MNIST128 canvases or a records reader's index).

    Raises:
        ValueError: unknown reader, unusable folder (from the reader), bad MNIST128 settings.
    """
    if data.dataset == "mnist128":
        from wsol.data.mnist128 import MNIST128

        if spec.split not in ("train", "val", "test"):
            raise ValueError(f"mnist128 split must be train, val or test, got {spec.split!r}")
        ds = MNIST128(spec.split, spec.n, variant="multilabel", seed=spec.seed, min_digits=data.min_digits,
                      max_digits=data.max_digits, **spec.options)
        return MNIST128Detection(ds, box_kind=data.box_kind)
    from wsol.data.records import build_index

    root = spec.root or data.root
    if not root:
        raise ValueError(f"no folder for the {data.dataset} split {spec.split!r}: set data.root (or the split's root)")
    index = build_index(data.dataset, root, spec.split, **spec.options)
    if index.problems:
        index.report()
    if len(index) == 0:
        raise ValueError(f"{data.dataset} split {spec.split!r} at {root!r} has no usable image")
    return RecordDetection(index, data.min_size, data.max_size)


def _train_source(data: DetectionDataConfig) -> MNIST128Detection | RecordDetection:
    sources = [build_source(data, s) for s in data.train]
    if len(sources) == 1:
        return sources[0]
    if data.dataset == "mnist128":
        raise ValueError("mnist128 takes one train split")
    names = sources[0].class_names
    for s, spec in zip(sources[1:], data.train[1:], strict=True):
        if s.class_names != names:
            raise ValueError(f"train split {spec.split!r} has other classes than the first train split")
    first = sources[0].index
    records = [r for s in sources for r in s.index.records]
    merged = dataclasses.replace(first, records=records, split="+".join(s.split for s in data.train), problems=[])
    return RecordDetection(merged, data.min_size, data.max_size)


# ----------------------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------------------
def _json_ready(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _write_json(path: Path, payload: Any) -> None:
    from wsol.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(_json_ready(payload), indent=1) + "\n")


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def train_from_config(
    raw: Mapping[str, Any], resume: bool = False, *, log: Callable[[str], None] | None = _stderr
) -> dict[str, Any]:
    """Train (and, with a ``test`` split, evaluate) the detection run described by ``raw``.

    Writes ``train.out_dir`` (default ``runs/detection``): ``last.pt`` (a trainer-format checkpoint with
    ``extras = {"task": "detection", "run_config": ..., "class_names": ..., "boxed_images": ...}``),
    ``metrics.json`` (loss history), ``config.json`` (the resolved config) and ``eval.json`` (test metrics).

    Args:
        raw: the loaded YAML mapping (overrides already applied).
        resume: continue from ``out_dir/last.pt`` if it exists (same boxed images, same batch sequence).
        log: progress lines (None: silent).

    Returns:
        ``{"out_dir", "train": {"steps", "train_s", "boxed_images", "label_only_images"}, "eval": {...} or None}``.

    Raises:
        ConfigError: invalid config. ValueError: unusable data folder, non-finite loss.
    """
    cfg = parse_detection_config(raw)
    out_dir = Path(cfg.train.out_dir or "runs/detection")
    from wsol.commands import output_dir_problem

    problem = output_dir_problem(out_dir)
    if problem:
        raise ValueError(problem)
    train_src = _train_source(cfg.data)
    class_names = list(train_src.class_names)
    boxed = select_boxed([train_src.image_labels(i) for i in range(len(train_src))], cfg.data.boxed_fraction,
                         cfg.data.boxed_seed, cfg.data.cover_classes)
    dataset = SemiSupervisedDataset(train_src, boxed)
    spec = cfg.model
    if resume and (out_dir / "last.pt").is_file():
        spec = replace(spec, weights=None)  # the checkpoint holds every weight
    torch.manual_seed(cfg.train.seed)
    model = build_rfcn(spec, len(class_names))
    resolved = replace(cfg, model=replace(model.spec, weights=cfg.model.weights),
                       train=replace(cfg.train, out_dir=str(out_dir)))
    run_config = dataclass_to_dict(resolved)
    _write_json(out_dir / "config.json", run_config)
    extras = {"task": "detection", "run_config": run_config, "class_names": class_names,
              "boxed_images": len(boxed)}
    if log:
        log(f"detection: {cfg.model.variant} on {cfg.data.dataset}: {len(train_src)} training images, "
            f"{len(boxed)} with boxes (boxed_fraction={cfg.data.boxed_fraction})")
    summary = train_semi(model, dataset, resolved.train, resume=resume, extras=extras, log=log)
    metrics = None
    if cfg.data.test is not None:
        test_src = build_source(cfg.data, cfg.data.test)
        metrics = _evaluate(model, test_src, cfg.eval)
        _write_json(out_dir / "eval.json", metrics)
        if log:
            log(f"test mAP (VOC07 11-point) {metrics['map']:.4f}, area mAP {metrics['map_area']:.4f}")
    train_info = {k: summary[k] for k in ("steps", "train_s", "boxed_images", "label_only_images")}
    return {"out_dir": str(out_dir), "train": train_info, "eval": metrics}


def _evaluate(model: RFCN, source: Any, ev: DetectionEvalConfig, limit: int | None = None) -> dict[str, Any]:
    n = len(source)
    lim = limit if limit is not None else ev.limit
    indices = range(min(n, lim)) if lim is not None else None
    return evaluate_detector(model, source, indices=indices, batch_size=ev.batch_size, score_thresh=ev.score_thresh,
                             nms_iou=ev.nms_iou, max_per_image=ev.max_per_image, iou=ev.iou)


def load_detector(ckpt_path: str | Path, device: str = "cpu") -> tuple[RFCN, DetectionRunConfig, list[str]]:
    """Rebuild the detector of a detection checkpoint (``torch.load(weights_only=True)``).

    Raises:
        ValueError: unreadable file, not a detection checkpoint, or a checkpoint whose weights do not fit.
    """
    from wsol.trainer import load_checkpoint, resolve_device

    ckpt = load_checkpoint(ckpt_path)
    extras = ckpt.get("extras") or {}
    if extras.get("task") != "detection" or "run_config" not in extras:
        raise ValueError(f"{ckpt_path} is not a detection checkpoint (extras.task = {extras.get('task')!r})")
    cfg = parse_detection_config(extras["run_config"])
    class_names = list(extras.get("class_names") or [])
    if not class_names:
        raise ValueError(f"{ckpt_path}: checkpoint lacks class_names")
    model = build_rfcn(replace(cfg.model, weights=None), len(class_names))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise ValueError(f"{ckpt_path}: weights do not fit the model of its run_config: {err}") from None
    model.to(resolve_device(device)).eval()
    return model, cfg, class_names


def evaluate_checkpoint(
    ckpt_path: str | Path,
    *,
    root: str | None = None,
    split: str | None = None,
    device: str = "auto",
    limit: int | None = None,
    out_dir: str | Path | None = None,
) -> dict[str, Any]:
    """VOC detection metrics of a detection checkpoint on its run's test split (or ``root`` / ``split``).

    Writes ``out_dir/detection_eval.json`` when ``out_dir`` is given.

    Returns:
        :func:`wsol.detection.semi.evaluate_detector`'s dict plus ``checkpoint``, ``step``, ``variant``,
        ``dataset`` and ``split``.

    Raises:
        ValueError: not a detection checkpoint; no test split in the run and none given; unusable data folder.
    """
    from wsol.trainer import load_checkpoint

    model, cfg, class_names = load_detector(ckpt_path, device)
    test = cfg.data.test
    if test is None and split is None:
        raise ValueError(f"{ckpt_path}: its run has no test split; pass split (and root)")
    test = replace(test or SplitSpec(), root=root if root is not None else (test.root if test else ""),
                   split=split if split is not None else test.split)  # type: ignore[union-attr]
    source = build_source(cfg.data, test)
    if list(source.class_names) != class_names:
        raise ValueError(f"the evaluation split has classes {source.class_names}, the checkpoint {class_names}")
    metrics = _evaluate(model, source, cfg.eval, limit)
    step = int(load_checkpoint(ckpt_path).get("step", 0))
    result = {"checkpoint": str(ckpt_path), "step": step, "variant": cfg.model.variant, "dataset": cfg.data.dataset,
              "split": test.split, **metrics}
    if out_dir is not None:
        out = Path(out_dir)
        from wsol.commands import output_dir_problem

        problem = output_dir_problem(out)
        if problem:
            raise ValueError(problem)
        _write_json(out / "detection_eval.json", result)
    return result
