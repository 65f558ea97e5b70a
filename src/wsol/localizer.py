r"""Pretrained CAM localization of real images: classes, boxes in image pixels and heatmaps in one forward pass.

:class:`Localizer` wraps a CAM network (a pretrained name such as ``"efficientnet_lite0"``, a
:func:`~wsol.models.loading.save_model_checkpoint` file or a :class:`~wsol.models.base.CAMNet`):

1. **Preprocessing** — the *whole* image is resized (no crop, aspect ratio not kept) to the network input
   ``(h_in, w_in)`` (default ``model.pretrained_cfg["input_size"]``) with antialiased ``F.interpolate``
   (the cfg's ``interpolation``, bilinear by default; clamped to ``[0, 1]``), then ``(x − mean) / std``
   (cfg ``mean``/``std``; ``0``/``1`` when absent). One-channel models get the ITU-R 601 luma
   ``0.299 R + 0.587 G + 0.114 B`` (Pillow's ``"L"``).
2. **One forward pass per batch** gives ``(logits, cams)``. Class scores are ``softmax(logits)`` for
   single-label models and ``sigmoid(logits)`` for one-class or multi-label models (``score="auto"``:
   sigmoid iff the model has one class; force either with ``score``). The top-``k`` classes are taken and
   **only their CAMs** are gathered (``(B, k, h, w)``), upsampled in one batched
   :func:`wsol.localize.upsample_cams` (bilinear, ``align_corners=False``) to the input size and min-max
   normalized per map (:func:`wsol.localize.normalize_map`'s rule).
3. **Boxes** come from :func:`wsol.localize.build_box_strategy` (``zhou``, ``moreaux``, ``otsu``,
   ``multi_contour`` on the normalized input-size maps; ``gudi`` on the raw feature-resolution CAMs,
   backprojected through the model's receptive field, :func:`wsol.localize.receptive_field_chain`).
   A box ``[x0, y0, x1, y1]`` (inclusive pixels of the ``w_in × h_in`` input) is mapped back to the
   ``W × H`` original as

   .. math:: X_0 = \lfloor x_0 W / w_{in} \rfloor,\quad X_1 = \lceil (x_1 + 1) W / w_{in} \rceil - 1

   (same for ``y`` with ``H / h_in``), i.e. the original pixels covered by the input pixels of the box,
   clipped to the image. Its **box score** is the mean of the normalized CAM (``[0, 1]``, input resolution)
   inside the box. Maps that are constant or non-finite give no box (counted in :attr:`Localizer.stats`).
4. :class:`Prediction` keeps the top-``k`` raw CAMs at feature resolution (small) and renders a heatmap at
   any size on demand (:meth:`Prediction.heatmap`); :func:`draw_overlay` draws it with the boxes.

Generic localizable features (Zhou et al. 2016 §4): :func:`fit_linear_head` fits a linear classifier
(logistic regression, or Zhou's linear SVM) on the GAP features of a backbone; :class:`LinearHead` saves it
as tensors + plain python (loadable with ``torch.load(weights_only=True)``); ``Localizer(linear_head=...)``
uses its weights as a Zhou head, :math:`M_c = \sum_k w_k^c f_k`, :math:`S_c = \sum_k w_k^c \mathrm{GAP}(f_k) + b_c`.

Writers: :func:`predictions_json`, :func:`voc_xml` (Pascal VOC, 1-based pixel coordinates) and
:func:`coco_detections` (COCO images / categories / scored annotations).
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from wsol.heads import ZhouHead
from wsol.io import load_image, to_rgb
from wsol.localize import (
    MapStats,
    ReceptiveField,
    available_box_strategies,
    boxes_to_original,
    build_box_strategy,
    normalize_map,
    receptive_field_chain,
    upsample_cams,
)
from wsol.models.base import CAMNet
from wsol.models.loading import load_model, read_weights_file

__all__ = [
    "LINEAR_HEAD_FORMAT",
    "ClassPrediction",
    "LinearHead",
    "Localizer",
    "Prediction",
    "coco_detections",
    "draw_overlay",
    "fit_linear_head",
    "parse_device",
    "predictions_json",
    "short_name",
    "voc_xml",
    "with_linear_head",
]

PathLike = str | os.PathLike[str]
ImageLike = Image.Image | np.ndarray | str | os.PathLike[str]
ScoreKind = Literal["auto", "softmax", "sigmoid"]

LINEAR_HEAD_FORMAT = "wsol-linear-head"
_LINEAR_HEAD_VERSION = 1
#: cfg interpolation → F.interpolate mode ("nearest-exact" samples at pixel centres, like Pillow's NEAREST)
_TORCH_MODES = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest-exact", "area": "area"}


# ----------------------------------------------------------------------------------------------
# predictions
# ----------------------------------------------------------------------------------------------


@dataclass
class ClassPrediction:
    """One of the top-k classes of an image.

    Attributes:
        class_id: index in the model's classes.
        name: class name.
        score: softmax probability (single-label) or sigmoid (one-class / multi-label), see :class:`Localizer`.
        boxes: ``(K, 4)`` int64 ``[x0, y0, x1, y1]`` inclusive pixels of the *original* image.
        box_scores: ``(K,)`` mean normalized CAM inside each box, in ``[0, 1]``.
    """

    class_id: int
    name: str
    score: float
    boxes: np.ndarray
    box_scores: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"class_id", "name", "score", "boxes": [{"box": [x0, y0, x1, y1], "score"}]}``."""
        return {
            "class_id": self.class_id,
            "name": self.name,
            "score": round(self.score, 6),
            "boxes": [
                {"box": [int(v) for v in b], "score": round(float(s), 6)}
                for b, s in zip(self.boxes, self.box_scores, strict=True)
            ],
        }


@dataclass
class Prediction:
    """Everything :class:`Localizer` says about one image.

    Attributes:
        image_size: ``(height, width)`` of the original image.
        input_size: ``(height, width)`` the image was resized to for the network.
        classes: the top-k classes, best first.
        cams: ``(k, h, w)`` float32 raw CAMs of those classes at feature resolution (for overlays).
        score_kind: ``"softmax"`` or ``"sigmoid"``.
        source: the file, when the image came from one.
    """

    image_size: tuple[int, int]
    input_size: tuple[int, int]
    classes: list[ClassPrediction]
    cams: np.ndarray
    score_kind: str = "softmax"
    source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def top1(self) -> ClassPrediction:
        return self.classes[0]

    def heatmap(self, rank: int = 0, size: tuple[int, int] | None = None) -> np.ndarray:
        """Normalized CAM of the ``rank``-th class as a float32 ``[0, 1]`` map of ``size`` (default the image size).

        The same map the boxes came from: bilinear upsampling (half-pixel centres) to the input size,
        min-max normalization, then a bilinear resize to ``size``. A degenerate map is all zeros.
        """
        if not 0 <= rank < len(self.classes):
            raise ValueError(f"rank must be in [0, {len(self.classes)}), got {rank!r}")
        h_in, w_in = self.input_size
        up = cv2.resize(
            np.ascontiguousarray(self.cams[rank], dtype=np.float32), (w_in, h_in), interpolation=cv2.INTER_LINEAR
        )
        stats = MapStats()
        norm = normalize_map(up, stats=stats)
        h, w = self.image_size if size is None else size
        return np.clip(cv2.resize(norm, (int(w), int(h)), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no CAM): image, width, height, score kind and the classes with their boxes."""
        return {
            "image": self.source,
            "width": self.image_size[1],
            "height": self.image_size[0],
            "score": self.score_kind,
            "classes": [c.to_dict() for c in self.classes],
            **self.extra,
        }


# ----------------------------------------------------------------------------------------------
# linear heads (Zhou et al. 2016 §4)
# ----------------------------------------------------------------------------------------------


@dataclass
class LinearHead:
    r"""A linear classifier on GAP features, usable as a Zhou CAM head: :math:`M_c = \sum_k w_k^c f_k`.

    Attributes:
        weight: ``(C, K)`` float32.
        bias: ``(C,)`` float32.
        class_names: ``C`` names.
        model: the model it was fitted on (name or checkpoint path, as given).
        backbone: that model's ``model_spec["name"]`` (checked when the head is attached), or ``None``.
        input_size: ``(height, width)`` the features were extracted at.
        classifier: ``"logreg"`` or ``"svm"``.
        train_accuracy: accuracy on the fitting images.
    """

    weight: np.ndarray
    bias: np.ndarray
    class_names: list[str]
    model: str = ""
    backbone: str | None = None
    input_size: tuple[int, int] | None = None
    classifier: str = "logreg"
    train_accuracy: float = float("nan")

    def __post_init__(self) -> None:
        w = np.asarray(self.weight, dtype=np.float32)
        b = np.asarray(self.bias, dtype=np.float32)
        if w.ndim != 2 or b.shape != (w.shape[0],):
            raise ValueError(f"linear head: weight must be (C, K) and bias (C,), got {w.shape} and {b.shape}")
        if w.shape[0] < 1 or w.shape[1] < 1 or not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise ValueError("linear head: weight/bias must be non-empty and finite")
        if len(self.class_names) != w.shape[0]:
            raise ValueError(f"linear head: {len(self.class_names)} class names for {w.shape[0]} classes")
        self.weight, self.bias = w, b
        self.class_names = [str(n) for n in self.class_names]

    @property
    def num_classes(self) -> int:
        return int(self.weight.shape[0])

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    def save(self, path: PathLike) -> None:
        """Atomically write tensors + plain python (``torch.load(weights_only=True)`` reads it)."""
        from wsol.trainer import atomic_torch_save

        payload = {
            "format": LINEAR_HEAD_FORMAT,
            "format_version": _LINEAR_HEAD_VERSION,
            "weight": torch.from_numpy(self.weight.copy()),
            "bias": torch.from_numpy(self.bias.copy()),
            "class_names": list(self.class_names),
            "model": str(self.model),
            "backbone": self.backbone,
            "input_size": list(self.input_size) if self.input_size is not None else None,
            "classifier": self.classifier,
            "train_accuracy": float(self.train_accuracy),
        }
        atomic_torch_save(payload, path)

    @classmethod
    def load(cls, path: PathLike) -> LinearHead:
        """Read a file written by :meth:`save` (safely: ``weights_only=True``).

        Raises:
            ValueError: missing / unsafe / corrupt file, or not a linear head (reason given).
        """
        obj = read_weights_file(path)
        where = str(path)
        if not isinstance(obj, Mapping) or obj.get("format") != LINEAR_HEAD_FORMAT:
            raise ValueError(f"{where!r} is not a wsol linear head (written by 'wsol fit-linear')")
        if obj.get("format_version") != _LINEAR_HEAD_VERSION:
            raise ValueError(f"{where!r}: unsupported linear head format_version {obj.get('format_version')!r}")
        weight, bias, names = obj.get("weight"), obj.get("bias"), obj.get("class_names")
        if not isinstance(weight, torch.Tensor) or not isinstance(bias, torch.Tensor) or not isinstance(names, list):
            raise ValueError(f"{where!r}: linear head lacks weight / bias tensors or class_names")
        size, backbone = obj.get("input_size"), obj.get("backbone")
        if backbone is not None and not isinstance(backbone, str):
            raise ValueError(f"{where!r}: linear head 'backbone' must be a string or None")
        try:
            return cls(
                weight.float().numpy(),
                bias.float().numpy(),
                names,
                model=str(obj.get("model", "")),
                backbone=backbone,
                input_size=(int(size[0]), int(size[1])) if size else None,
                classifier=str(obj.get("classifier", "")),
                train_accuracy=float(obj.get("train_accuracy", float("nan"))),
            )
        except ValueError as err:
            raise ValueError(f"{where!r}: {err}") from None


def with_linear_head(model: CAMNet, head: LinearHead) -> CAMNet:
    """A new :class:`CAMNet` sharing ``model``'s backbone, with ``head`` as a GAP + FC Zhou head.

    Raises:
        ValueError: not a CAMNet, feature count or backbone name differing from the head's.
    """
    if not isinstance(model, CAMNet):
        raise ValueError(f"a linear head needs a CAMNet (backbone + head), got {type(model).__name__}")
    k = model.head.in_channels
    if head.in_features != k:
        raise ValueError(
            f"linear head has {head.in_features} input features, the model's backbone gives {k} "
            f"(head fitted on {head.model or 'another model'!r})"
        )
    spec = dict(model.model_spec or {})
    if head.backbone and spec.get("name") and head.backbone != spec["name"]:
        raise ValueError(f"linear head was fitted on backbone {head.backbone!r}, the model is {spec['name']!r}")
    device = next(model.parameters()).device
    zhou = ZhouHead(k, head.num_classes, pooling="gap").to(device)
    with torch.no_grad():
        zhou.fc.weight.copy_(torch.from_numpy(head.weight))
        zhou.fc.bias.copy_(torch.from_numpy(head.bias))
    out = CAMNet(model.backbone, zhou).eval()
    out.pretrained_cfg = dict(model.pretrained_cfg)
    out.class_names = list(head.class_names)
    if spec:
        spec.update(head="zhou", num_classes=head.num_classes, pooling="gap", head_kwargs={})
        out.model_spec = spec
    return out


def fit_linear_head(
    features: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
    classifier: Literal["logreg", "svm"] = "logreg",
    C: float = 1.0,
) -> LinearHead:
    r"""Fit a linear classifier on GAP features (Zhou et al. 2016 §4: "train a linear SVM on the output of the
    GAP layer") and express it as CAM weights.

    The classifier is ``LogisticRegression`` (multinomial, so ``softmax`` of the head's logits is its
    ``predict_proba``) or Zhou's one-vs-rest ``LinearSVC``, fitted on the *raw* features as in the paper.
    (Standardizing first and folding ``1/σ`` back into the weights gives the same decisions but a CAM
    dominated by low-variance channels: on the synthetic test set it moved the CAM peaks off the objects.)
    A binary problem (one weight vector ``w``) becomes two classes ``(−w/2, −b/2)`` and ``(w/2, b/2)``: their
    softmax is ``sigmoid(w·x + b)``, the binary classifier's probability, and each class's CAM is the
    evidence for it against the other.

    Args:
        features: ``(N, K)`` GAP features.
        labels: ``N`` class indices in ``[0, C)``; every class needs at least one example.
        class_names: ``C`` names.
        classifier: ``"logreg"`` or ``"svm"``.
        C: inverse regularization strength.

    Raises:
        ValueError: shapes, non-finite features, fewer than two classes, a class without example, bad ``C``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    names = [str(n) for n in class_names]
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"features must be (N, K) and labels (N,), got {x.shape} and {y.shape}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or inf")
    if len(names) < 2:
        raise ValueError(f"a linear head needs at least 2 classes, got {len(names)}")
    if not np.issubdtype(y.dtype, np.integer) or y.min(initial=0) < 0 or y.max(initial=0) >= len(names):
        raise ValueError(f"labels must be class indices in [0, {len(names)})")
    counts = np.bincount(y, minlength=len(names))
    if (counts == 0).any():
        raise ValueError(f"class {names[int(np.argmin(counts))]!r} has no example")
    if not (isinstance(C, int | float) and math.isfinite(C) and C > 0):
        raise ValueError(f"C must be a positive number, got {C!r}")
    if classifier not in ("logreg", "svm"):
        raise ValueError(f"classifier must be 'logreg' or 'svm', got {classifier!r}")
    clf = LogisticRegression(C=C, max_iter=5000) if classifier == "logreg" else LinearSVC(C=C, max_iter=50000)
    clf.fit(x, y)
    weight, bias = clf.coef_.astype(np.float64), np.atleast_1d(clf.intercept_).astype(np.float64)
    if weight.shape[0] == 1:  # binary: one vector for class 1 → symmetric two-class head
        weight = np.concatenate([-weight / 2, weight / 2])
        bias = np.concatenate([-bias / 2, bias / 2])
    accuracy = float(np.mean(np.argmax(x @ weight.T + bias, axis=1) == y))
    return LinearHead(weight, bias, names, classifier=classifier, train_accuracy=accuracy)


# ----------------------------------------------------------------------------------------------
# the localizer
# ----------------------------------------------------------------------------------------------


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _as_size(value: Any, name: str) -> tuple[int, int]:
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        value = (value, value)
    try:
        h, w = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an int or a (height, width) pair, got {value!r}") from None
    return _positive_int(h, name), _positive_int(w, name)


def parse_device(device: str | torch.device) -> torch.device:
    """``torch.device`` of ``device``, or a ValueError naming it when it is invalid or not available here."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"invalid device {device!r}: {err}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use --device cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} requested but MPS is not available")
    return dev


def _in_chans(model: nn.Module) -> int:
    spec = getattr(model, "model_spec", None) or {}
    if isinstance(spec.get("in_chans"), int):
        return int(spec["in_chans"])
    size = (getattr(model, "pretrained_cfg", None) or {}).get("input_size")
    if size and len(size) == 3:
        return int(size[0])
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return int(m.in_channels)
    raise ValueError("cannot tell the model's input channels (no model_spec, no Conv2d)")


def short_name(name: str) -> str:
    """First synonym of an ImageNet-style name (``"suit, suit of clothes"`` → ``"suit"``)."""
    return name.split(",")[0].strip() or name


class Localizer:
    """Classify and localize real images with a CAM network (details in the module docstring).

    Args:
        model: a pretrained name (:func:`wsol.models.pretrained.list_pretrained`), a model checkpoint path
            (:func:`~wsol.models.loading.save_model_checkpoint`), or a model returning ``(logits, cams)``
            (moved to ``device`` and put in eval mode).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        topk: number of classes reported per image (at most the number of classes).
        box_strategy: ``zhou`` | ``moreaux`` | ``otsu`` | ``multi_contour`` | ``gudi``.
        strategy_kwargs: arguments of the strategy, e.g. ``{"threshold": 0.2}`` (a fraction of the
            normalized map for zhou / moreaux / multi_contour; raw CAM units for gudi). gudi defaults:
            ``threshold=0`` (peaks must be positive evidence), ``relative_floor=0.5`` (mountains above half of
            the map's maximum), ``ratio = 1 − S/K`` (each CAM pixel backprojects to about its own stride cell
            instead of its whole receptive field ``K``), ``rf`` / ``image_size`` derived from the model.
        input_size: network input ``(height, width)`` or one int; default the linear head's, else
            ``model.pretrained_cfg["input_size"]``.
        batch_size: images per forward pass.
        linear_head: a :class:`LinearHead` or its file: replaces the model's classifier (Zhou §4).
        score: ``"auto"`` (sigmoid iff one class), ``"softmax"`` or ``"sigmoid"``.

    Raises:
        ValueError: unknown model name (valid names listed), unsafe / corrupt / mismatched checkpoint or
            linear head, bad strategy arguments, unknown input size, unavailable device.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | nn.Module = "efficientnet_lite0",
        *,
        device: str | torch.device = "cpu",
        topk: int = 5,
        box_strategy: str = "zhou",
        strategy_kwargs: Mapping[str, Any] | None = None,
        input_size: int | tuple[int, int] | None = None,
        batch_size: int = 32,
        linear_head: LinearHead | PathLike | None = None,
        score: ScoreKind = "auto",
    ) -> None:
        self.device = parse_device(device)
        self.topk = _positive_int(topk, "topk")
        self.batch_size = _positive_int(batch_size, "batch_size")
        if score not in ("auto", "softmax", "sigmoid"):
            raise ValueError(f"score must be 'auto', 'softmax' or 'sigmoid', got {score!r}")
        if box_strategy not in available_box_strategies():
            valid = ", ".join(available_box_strategies())
            raise ValueError(f"unknown box strategy {box_strategy!r}; available: {valid}")
        if isinstance(model, nn.Module):
            net, self.model_name = model.to(self.device).eval(), type(model).__name__
        elif isinstance(model, str | os.PathLike):
            net, self.model_name = load_model(model, device=self.device), str(model)
        else:
            raise ValueError(f"model must be a name, a checkpoint path or a torch module, got {type(model).__name__}")
        head: LinearHead | None = None
        if linear_head is not None:
            head = linear_head if isinstance(linear_head, LinearHead) else LinearHead.load(linear_head)
            net = with_linear_head(net, head).to(self.device)
        self.linear_head = head
        self.model = net
        num = self._num_classes()
        names = getattr(net, "class_names", None)
        self.class_names: list[str] = list(names) if names and len(names) == num else [f"class_{i}" for i in range(num)]
        self.score_kind = ("sigmoid" if num == 1 else "softmax") if score == "auto" else score
        self.in_chans = _in_chans(net)
        cfg = dict(getattr(net, "pretrained_cfg", None) or {})
        if input_size is not None:
            self.input_size = _as_size(input_size, "input_size")
        elif head is not None and head.input_size is not None:
            self.input_size = head.input_size
        elif cfg.get("input_size"):
            self.input_size = _as_size(tuple(cfg["input_size"])[-2:], "pretrained_cfg input_size")
        else:
            raise ValueError("the model has no pretrained_cfg['input_size']: give input_size (--input-size)")
        mean = tuple(cfg.get("mean", (0.0,) * self.in_chans))
        std = tuple(cfg.get("std", (1.0,) * self.in_chans))
        if len(mean) != self.in_chans or len(std) != self.in_chans or not all(s > 0 for s in std):
            raise ValueError(f"pretrained_cfg mean/std {mean}/{std} do not fit a {self.in_chans}-channel input")
        self._mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.interpolation = _TORCH_MODES.get(str(cfg.get("interpolation", "bilinear")), "bilinear")
        self.box_strategy = box_strategy
        self.strategy_kwargs, self.rf = self._strategy_arguments(box_strategy, dict(strategy_kwargs or {}))
        self._strategy = build_box_strategy(box_strategy, **self.strategy_kwargs)
        self.stats = MapStats()

    # --- setup helpers ---------------------------------------------------------------------------

    def _num_classes(self) -> int:
        n = getattr(self.model, "num_classes", None)
        if isinstance(n, int):
            return n
        raise ValueError("model has no num_classes attribute (expected a CAMNet)")

    def _strategy_arguments(self, name: str, kwargs: dict[str, Any]) -> tuple[dict[str, Any], ReceptiveField | None]:
        if name != "gudi":
            return kwargs, None
        rf = kwargs.get("rf")
        if rf is None:
            rf = receptive_field_chain(self.model, self.input_size, self.in_chans)
        kwargs["rf"] = rf
        kwargs["image_size"] = self.input_size
        kwargs.setdefault("threshold", 0.0)
        kwargs.setdefault("relative_floor", 0.5)
        if "ratio" not in kwargs:
            kwargs["ratio"] = max(0.0, 1.0 - max(rf.stride) / max(1, min(rf.size)))
        return kwargs, rf

    def describe(self) -> dict[str, Any]:
        """JSON-ready settings (model, score kind, input size, strategy and its plain arguments)."""
        args = {k: v for k, v in self.strategy_kwargs.items() if isinstance(v, int | float | str | bool | None)}
        out: dict[str, Any] = {
            "model": self.model_name,
            "num_classes": len(self.class_names),
            "score": self.score_kind,
            "input_size": list(self.input_size),
            "resize": "whole image resized to input_size (no crop); boxes scaled back by W/w_in, H/h_in",
            "box_strategy": self.box_strategy,
            "strategy_kwargs": args,
            "box_score": "mean normalized CAM inside the box",
        }
        if self.rf is not None:
            out["receptive_field"] = {"stride": list(self.rf.stride), "padding": list(self.rf.padding),
                                      "size": list(self.rf.size), "method": self.rf.method}  # fmt: skip
        if self.linear_head is not None:
            out["linear_head"] = {"model": self.linear_head.model, "classifier": self.linear_head.classifier}
        return out

    # --- preprocessing ---------------------------------------------------------------------------

    @staticmethod
    def _as_array(image: Any, index: int) -> tuple[np.ndarray, str | None]:
        if isinstance(image, str | os.PathLike):
            return np.asarray(load_image(image)), str(image)
        if isinstance(image, Image.Image):
            return np.asarray(to_rgb(image)), None
        if isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
                raise ValueError(
                    f"image {index}: expected an RGB uint8 array (H, W, 3) or (H, W), got {image.dtype} {image.shape}"
                )
            if image.shape[0] == 0 or image.shape[1] == 0:
                raise ValueError(f"image {index}: empty array of shape {image.shape}")
            return (np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image), None
        raise ValueError(f"image {index}: expected a PIL.Image, a uint8 array or a path, got {type(image).__name__}")

    def preprocess(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """RGB uint8 arrays ``(H, W, 3)`` → the normalized ``(B, C, h_in, w_in)`` network input.

        Frames of one size are resized together (one ``F.interpolate`` call); uint8 data moves to the device
        before the float conversion.
        """
        h, w = self.input_size
        out: list[torch.Tensor | None] = [None] * len(frames)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, f in enumerate(frames):
            groups.setdefault(tuple(f.shape), []).append(i)
        for shape, idx in groups.items():
            batch = torch.from_numpy(np.stack([frames[i] for i in idx])).to(self.device)
            x = batch.permute(0, 3, 1, 2).float().div_(255.0)
            if shape[:2] != (h, w):
                aa = self.interpolation in ("bilinear", "bicubic")
                align = False if aa else None
                x = F.interpolate(x, size=(h, w), mode=self.interpolation, align_corners=align, antialias=aa)
                x = x.clamp_(0.0, 1.0)
            for j, i in enumerate(idx):
                out[i] = x[j]
        x = torch.stack(out)  # type: ignore[arg-type]
        if self.in_chans == 1:
            x = (x * torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
        elif self.in_chans != 3:
            raise ValueError(f"the model takes {self.in_chans}-channel input; only 1 or 3 channels are supported")
        dtype = next(self.model.parameters()).dtype
        return ((x - self._mean) / self._std).to(dtype)

    # --- inference -------------------------------------------------------------------------------

    def predict(self, images: Sequence[ImageLike]) -> list[Prediction]:
        """Predictions for a sequence of PIL images, RGB uint8 arrays or file paths (one per image, in order).

        Raises:
            ValueError: a single image instead of a sequence, an unsupported image, a file that cannot be
                loaded (:class:`wsol.io.ImageLoadError`), non-finite model outputs.
        """
        if isinstance(images, str | os.PathLike | Image.Image | np.ndarray) and not (
            isinstance(images, np.ndarray) and images.ndim == 4
        ):
            raise ValueError("images must be a sequence of images; wrap a single image in a list")
        arrays, sources = [], []
        for i, img in enumerate(images):
            arr, src = self._as_array(img, i)
            arrays.append(arr)
            sources.append(src)
        return self.predict_arrays(arrays, sources=sources)

    def predict_arrays(
        self, frames: Sequence[np.ndarray], sources: Sequence[str | None] | None = None
    ) -> list[Prediction]:
        """Predictions for RGB uint8 arrays ``(H, W, 3)`` (e.g. video frames), ``batch_size`` per forward pass."""
        frames = list(frames)
        for i, f in enumerate(frames):
            if not isinstance(f, np.ndarray) or f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3 or 0 in f.shape:
                desc = f"{f.dtype} {f.shape}" if isinstance(f, np.ndarray) else type(f).__name__
                raise ValueError(f"frame {i}: expected an RGB uint8 array (H, W, 3), got {desc}")
        srcs = list(sources) if sources is not None else [None] * len(frames)
        if len(srcs) != len(frames):
            raise ValueError(f"{len(srcs)} sources for {len(frames)} frames")
        out: list[Prediction] = []
        for start in range(0, len(frames), self.batch_size):
            chunk = frames[start : start + self.batch_size]
            out.extend(self._predict_batch(chunk, srcs[start : start + self.batch_size], start))
        return out

    @torch.inference_mode()
    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        output = self.model(x)
        if not (isinstance(output, tuple | list) and len(output) >= 2):
            raise ValueError(f"the model must return (logits, cams), got {type(output).__name__}")
        logits, cams = output[0], output[1]
        if logits.ndim != 2 or cams.ndim != 4 or cams.shape[:2] != logits.shape:
            raise ValueError(f"the model returned logits {tuple(logits.shape)} and cams {tuple(cams.shape)}")
        return logits, cams

    @torch.inference_mode()
    def features(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """GAP features ``(N, K)`` of the backbone (the input of a Zhou head), ``batch_size`` per pass."""
        backbone = getattr(self.model, "backbone", None)
        if backbone is None:
            raise ValueError("features need a CAMNet (a model with a .backbone)")
        chunks = []
        for start in range(0, len(frames), self.batch_size):
            f = backbone(self.preprocess(frames[start : start + self.batch_size]))
            chunks.append(f.float().mean(dim=(2, 3)).cpu().numpy())
        return np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)

    @torch.inference_mode()
    def _forward_topk(self, x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits (B, C), top-k class ids (B, k) and their CAMs (B, k, h, w) from one forward pass.

        A :class:`~wsol.models.CAMNet` computes only the ``k`` maps it needs (``CAMNet.topk_cams``); other models
        return all maps and the top-k are gathered. Ranking by logits = ranking by softmax / sigmoid.
        """
        if self.device.type == "cpu" and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)  # oneDNN's NHWC convolutions are faster on CPU
        if callable(getattr(self.model, "topk_cams", None)):
            logits, ids, sel = self.model.topk_cams(x, k)
            return logits, ids, sel
        logits, cams = self._forward(x)
        ids = logits.float().topk(k, dim=1).indices
        b, _, h, w = cams.shape
        return logits, ids, cams.gather(1, ids[:, :, None, None].expand(b, k, h, w))

    def _predict_batch(self, frames: list[np.ndarray], sources: list[str | None], offset: int) -> list[Prediction]:
        k = min(self.topk, self._num_classes())
        logits, top_i, sel = self._forward_topk(self.preprocess(frames), k)
        logits = logits.float()
        bad = (~torch.isfinite(logits).all(dim=1)).nonzero().flatten().tolist()
        if bad:
            which = ", ".join(str(sources[i] or f"image {offset + i}") for i in bad)
            raise ValueError(f"the model produced non-finite logits for {which}")
        probs = torch.softmax(logits, dim=1) if self.score_kind == "softmax" else torch.sigmoid(logits)
        top_p = probs.gather(1, top_i)
        b, _, h, w = sel.shape
        sel = sel.float()  # only the top-k CAMs
        norm, constant, nonfinite = self._normalized(upsample_cams(sel, self.input_size))
        norm_np = norm.reshape(b * k, *self.input_size).cpu().numpy()
        sel_np = sel.cpu().numpy()
        maps = sel_np.reshape(b * k, h, w) if self.box_strategy == "gudi" else norm_np
        boxes = self._strategy(maps, stats=MapStats())  # degenerate maps are counted below, once
        constant_np, nonfinite_np = constant.reshape(-1).cpu().numpy(), nonfinite.reshape(-1).cpu().numpy()
        degenerate_np = constant_np | nonfinite_np
        base = self.stats.n_maps
        self.stats.constant.extend(base + int(j) for j in np.flatnonzero(constant_np))
        self.stats.nonfinite.extend(base + int(j) for j in np.flatnonzero(nonfinite_np))
        self.stats.n_maps += b * k
        top_p_l, top_i_l = top_p.cpu().tolist(), top_i.cpu().tolist()
        preds = []
        for i, frame in enumerate(frames):
            size = (int(frame.shape[0]), int(frame.shape[1]))
            classes = []
            for r in range(k):
                j = i * k + r
                bx = np.zeros((0, 4), dtype=np.int64) if degenerate_np[j] else np.asarray(boxes[j], dtype=np.int64)
                scores = _box_means(norm_np[j], bx)
                c = int(top_i_l[i][r])
                cls_score = float(top_p_l[i][r])
                classes.append(ClassPrediction(c, self.class_names[c], cls_score, self._to_image(bx, size), scores))
            preds.append(Prediction(size, self.input_size, classes, sel_np[i], self.score_kind, sources[i]))
        return preds

    @staticmethod
    def _normalized(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Min-max normalization per map of ``(B, k, H, W)`` (degenerate maps → zeros), and the masks ``(B, k)``
        of constant and of non-finite maps (:func:`wsol.localize.normalize_map`'s rule, batched in torch)."""
        flat = maps.flatten(2)
        finite = torch.isfinite(flat).all(dim=2)
        flat = torch.where(finite[..., None], flat, torch.zeros_like(flat))
        lo = flat.amin(dim=2, keepdim=True)
        rng = flat.amax(dim=2, keepdim=True) - lo
        constant = finite & (rng[..., 0] <= 0)
        norm = (flat - lo) / torch.where(rng > 0, rng, torch.ones_like(rng))
        degenerate = constant | ~finite
        norm = torch.where(degenerate[..., None], torch.zeros_like(norm), norm).clamp_(0.0, 1.0)
        return norm.view_as(maps), constant, ~finite

    def _to_image(self, boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Input-pixel boxes → original-pixel boxes (:func:`wsol.localize.boxes_to_original`)."""
        return boxes_to_original(boxes, self.input_size, size)


def _box_means(norm: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Mean of ``norm`` inside each inclusive box (empty boxes score 0)."""
    out = np.zeros(len(boxes), dtype=np.float64)
    for n, (x0, y0, x1, y1) in enumerate(boxes):
        region = norm[max(y0, 0) : y1 + 1, max(x0, 0) : x1 + 1]
        out[n] = float(region.mean()) if region.size else 0.0
    return out


# ----------------------------------------------------------------------------------------------
# overlays
# ----------------------------------------------------------------------------------------------


def _ascii(text: str) -> str:
    """OpenCV's Hershey fonts draw ASCII only."""
    return text.encode("ascii", "replace").decode("ascii")


def _label(canvas: np.ndarray, text: str, org: tuple[int, int], scale: float, color: tuple[int, int, int]) -> None:
    thick = max(1, round(scale * 1.5))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    x, y = org
    y = max(y, th + base + 2)
    cv2.rectangle(canvas, (x, y - th - base - 2), (x + tw + 4, y + 2), color, -1)
    cv2.putText(canvas, text, (x + 2, y - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)


def draw_overlay(
    image: ImageLike,
    prediction: Prediction,
    out_path: PathLike | None = None,
    *,
    alpha: float = 0.45,
    max_side: int | None = None,
) -> np.ndarray:
    """Heatmap of the top-1 CAM (OpenCV ``COLORMAP_JET``) blended on the image, its boxes and the top-k labels.

    ``out = (1 − alpha)·image + alpha·colormap(heatmap)``; boxes of the top-1 class are drawn with
    ``"name score"`` labels and the top-k classes are listed in the lower-left corner.

    Args:
        image: the image the prediction was made on (PIL, RGB uint8 array or path).
        prediction: its :class:`Prediction`.
        out_path: where to write the PNG (folders created), or ``None``.
        alpha: heatmap weight in ``[0, 1]``.
        max_side: downscale so that the longer side is at most this (``None`` = original size).

    Returns:
        The overlay, RGB uint8 ``(H, W, 3)``.

    Raises:
        ValueError: image size differing from ``prediction.image_size``, bad ``alpha`` / ``max_side``, or a
            file that cannot be written.
    """
    arr, _ = Localizer._as_array(image, 0)
    if (arr.shape[0], arr.shape[1]) != tuple(prediction.image_size):
        raise ValueError(f"image is {arr.shape[1]}×{arr.shape[0]}, the prediction is for {prediction.image_size[1]}×"
                         f"{prediction.image_size[0]} (width×height)")  # fmt: skip
    if not (isinstance(alpha, int | float) and 0.0 <= alpha <= 1.0):
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    h, w = arr.shape[:2]
    scale = 1.0
    if max_side is not None:
        scale = min(1.0, _positive_int(max_side, "max_side") / max(h, w))
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    if scale < 1.0:
        arr = cv2.resize(arr, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    heat = prediction.heatmap(0, size)
    color = cv2.applyColorMap(np.rint(heat * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    canvas = np.ascontiguousarray(np.rint((1 - alpha) * arr + alpha * color).astype(np.uint8))
    font = max(0.4, min(size) / 600)
    thick = max(2, round(min(size) / 200))
    top = prediction.top1
    for box in top.boxes:
        x0, y0, x1, y1 = (round(float(v) * scale) for v in box)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), (0, 255, 0), thick)
        _label(canvas, _ascii(f"{short_name(top.name)} {top.score:.2f}"), (x0, y0), font, (0, 128, 0))
    line = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, font, max(1, round(font * 1.5)))
    step = line[0][1] + line[1] + 6
    y = size[0] - 4 - step * (len(prediction.classes) - 1)  # legend in the lower-left corner
    for rank, c in enumerate(prediction.classes):
        _label(canvas, _ascii(f"{rank + 1}. {short_name(c.name)} {c.score:.3f}"), (4, y), font, (40, 40, 40))
        y += step
    if out_path is not None:
        path = Path(out_path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            ok = cv2.imwrite(str(path), canvas[..., ::-1])
        except (OSError, cv2.error) as err:
            raise ValueError(f"cannot write overlay {str(path)!r}: {err}") from None
        if not ok:
            raise ValueError(f"cannot write overlay {str(path)!r} (OpenCV refused the path or format)")
    return canvas


# ----------------------------------------------------------------------------------------------
# output formats
# ----------------------------------------------------------------------------------------------


def predictions_json(
    predictions: Sequence[Prediction], settings: Mapping[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    """``{**settings, "images": [prediction.to_dict(), ...], **extra}`` (e.g. ``extra`` = ``skipped`` files)."""
    return {**dict(settings or {}), "images": [p.to_dict() for p in predictions], **extra}


def voc_xml(prediction: Prediction, filename: str, folder: str = "") -> str:
    """Pascal VOC annotation XML of one image: one ``<object>`` per box of every reported class.

    VOC coordinates are 1-based inclusive: ``xmin = x0 + 1``, ..., ``xmax = x1 + 1``. Each object also
    carries the non-standard ``<score>`` (class score × box score) and ``<class_score>``.
    """
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = folder
    ET.SubElement(root, "filename").text = filename
    src = ET.SubElement(root, "source")
    ET.SubElement(src, "annotation").text = "wsol localize (class activation maps)"
    size = ET.SubElement(root, "size")
    ET.SubElement(size, "width").text = str(prediction.image_size[1])
    ET.SubElement(size, "height").text = str(prediction.image_size[0])
    ET.SubElement(size, "depth").text = "3"
    ET.SubElement(root, "segmented").text = "0"
    for c in prediction.classes:
        for box, s in zip(c.boxes, c.box_scores, strict=True):
            obj = ET.SubElement(root, "object")
            ET.SubElement(obj, "name").text = c.name
            ET.SubElement(obj, "pose").text = "Unspecified"
            ET.SubElement(obj, "truncated").text = "0"
            ET.SubElement(obj, "difficult").text = "0"
            ET.SubElement(obj, "score").text = f"{c.score * float(s):.6f}"
            ET.SubElement(obj, "class_score").text = f"{c.score:.6f}"
            bnd = ET.SubElement(obj, "bndbox")
            for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True):
                ET.SubElement(bnd, tag).text = str(int(v) + 1)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def coco_detections(
    predictions: Sequence[Prediction], file_names: Sequence[str], class_names: Sequence[str]
) -> dict[str, Any]:
    """COCO-format detections: ``{"images", "categories", "annotations"}``.

    ``images[i] = {"id": i + 1, "file_name", "width", "height"}``; ``categories[c] = {"id": c + 1, "name"}``
    (COCO ids start at 1: category id = class index + 1); one annotation per box with ``bbox = [x, y, w, h]``
    = ``[x0, y0, x1 − x0 + 1, y1 − y0 + 1]``, ``area = w·h``, ``iscrowd = 0`` and ``score`` = class score ×
    box score, so ``annotations`` is also a valid detection-results list (``COCO.loadRes``).
    """
    if len(file_names) != len(predictions):
        raise ValueError(f"{len(file_names)} file names for {len(predictions)} predictions")
    images, annotations = [], []
    for i, (p, name) in enumerate(zip(predictions, file_names, strict=True)):
        images.append({"id": i + 1, "file_name": name, "width": p.image_size[1], "height": p.image_size[0]})
        for c in p.classes:
            for box, s in zip(c.boxes, c.box_scores, strict=True):
                x0, y0, x1, y1 = (int(v) for v in box)
                bw, bh = x1 - x0 + 1, y1 - y0 + 1
                annotations.append({
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": c.class_id + 1,
                    "bbox": [x0, y0, bw, bh],
                    "area": bw * bh,
                    "iscrowd": 0,
                    "score": round(c.score * float(s), 6),
                })  # fmt: skip
    categories = [{"id": c + 1, "name": n} for c, n in enumerate(class_names)]
    return {"images": images, "categories": categories, "annotations": annotations}
