r"""SPAM-CAM: the weakly supervised single-shot detector of Gudi et al. 2017 (§3, §4.2, Table 2).

**Training** (§3, Fig. 3): a fully convolutional backbone, one CAM per class (a 1×1 convolution,
:class:`wsol.heads.CAMLayerHead`), a global pooling (SPAM, GMP or GAP) and a *two-way softmax per class*.
A two-class softmax on one pooled score :math:`s_c` is :math:`\sigma((a_1 - a_0) s_c + (d_1 - d_0))`, i.e. one
scale and one bias per class (the head's ``output_affine``) followed by a sigmoid, so the loss of a multi-label
image is the sigmoid binary cross-entropy summed over classes (``TrainConfig(loss="bce")``)::

    model = create_model("lenet5", head="cam", pooling="spam", num_classes=10, in_chans=1, output_affine=True)

Only image-level labels are used.

**Inference** (§3.1.1, Fig. 4) — :class:`CAMDetector`, one forward pass per image, no region proposals. For
every class ``c`` of every image:

1. peaks: local maxima of the raw CAM :math:`M_c` above the CAM threshold :math:`t_c = -d_c / a_c` of the
   output layer (:meth:`wsol.heads.CAMLayerHead.cam_thresholds`, "computed based on the ratio of
   biases/weights of the output layer");
2. flood fill of each peak's "mountain" (8-connected pixels above a floor, also below :math:`t_c`);
3. fast backprojection of each mountain onto the input (Algorithm 1, ratio ``r``) through the receptive
   field of the network (:func:`wsol.localize.receptive_field_chain`);
4. one box per mountain, scored by its peak height :math:`\max M_c` ("the height of the peak is related to
   network confidence").

Steps 1–4 are :func:`wsol.localize.gudi_detect`. Then, per class, non-maximum suppression
(``torchvision.ops.batched_nms``, IoU in the inclusive ``+1`` box convention) and a cap of ``max_detections``
boxes per image. Boxes are ``[x0, y0, x1, y1]`` inclusive pixels of the *original* image: when the detector
resizes its inputs (``input_size``) they are mapped back with
:math:`X_0 = \lfloor x_0 W / w_{in} \rfloor`, :math:`X_1 = \lceil (x_1 + 1) W / w_{in} \rceil - 1` (the
original pixels covered by the input pixels of the box; same rule as :class:`wsol.localizer.Localizer`).

:func:`evaluate_cam_detector` scores a detector on a dataset with the PASCAL VOC protocol
(:func:`wsol.metrics.detection.evaluate_detections`: VOC07 11-point AP per class and mAP, all-point "area" AP,
``difficult`` boxes ignored) and CorLoc (:func:`wsol.metrics.localization.corloc`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms

from wsol.localize import MapStats, ReceptiveField, boxes_to_original, gudi_detect, receptive_field_chain
from wsol.metrics.detection import evaluate_detections
from wsol.metrics.localization import corloc

__all__ = [
    "CAMDetector",
    "DegenerateCAMWarning",
    "Detection",
    "boxes_to_original",
    "evaluate_cam_detector",
]

#: one image's detections: ``(boxes (K, 4) int64, scores (K,) float64, labels (K,) int64)``
Detection = tuple[np.ndarray, np.ndarray, np.ndarray]
ScoreKind = Literal["peak", "prob"]


class DegenerateCAMWarning(UserWarning):
    """A class activation map with NaN/inf values: it gives no box (and is counted in ``CAMDetector.stats``)."""


def _empty_detection() -> Detection:
    return np.zeros((0, 4), dtype=np.int64), np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.int64)


def _check_size(value: Any, name: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    try:
        h, w = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an int or a (height, width) pair, got {value!r}") from None
    for v in (h, w):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v <= 0:
            raise ValueError(f"{name} must be positive ints (height, width), got {value!r}")
    return int(h), int(w)


def _check_unit(value: Any, name: str, *, upper_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    v = float(value)
    if not (0.0 <= v < 1.0 if upper_open else 0.0 <= v <= 1.0):
        raise ValueError(f"{name} must be in [0, 1{')' if upper_open else ']'}, got {value!r}")
    return v


def _in_channels(model: nn.Module) -> int:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return int(m.in_channels)
    raise ValueError("model has no nn.Conv2d layer; pass in_channels= explicitly")


def _device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for p in model.parameters():
        if p.is_floating_point():
            return p.device, p.dtype
    return torch.device("cpu"), torch.float32


def _as_image_list(images: Any) -> list[torch.Tensor]:
    """A ``(B, C, H, W)`` tensor or a sequence of ``(C, H, W)`` tensors → list of ``(C, H, W)`` float tensors."""
    if isinstance(images, torch.Tensor):
        if images.ndim == 3:
            raise ValueError(
                f"images must be a batch (B, C, H, W) or a list of (C, H, W) tensors, got one image of shape "
                f"{tuple(images.shape)}; wrap it in a list or add a batch dimension"
            )
        if images.ndim != 4:
            raise ValueError(f"images must be a (B, C, H, W) tensor, got shape {tuple(images.shape)}")
        items: list[Any] = list(images)
    elif isinstance(images, Sequence) and not isinstance(images, str | bytes):
        items = list(images)
    else:
        raise ValueError(f"images must be a (B, C, H, W) tensor or a list of (C, H, W) tensors, got {type(images)}")
    for i, x in enumerate(items):
        if not isinstance(x, torch.Tensor) or x.ndim != 3:
            desc = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"images[{i}] must be a (C, H, W) tensor, got {desc}")
        if not x.is_floating_point():
            raise ValueError(f"images[{i}] must be a float tensor (the model input), got dtype {x.dtype}")
        if x.shape[1] == 0 or x.shape[2] == 0:
            raise ValueError(f"images[{i}] is empty: shape {tuple(x.shape)}")
    return items


class CAMDetector:
    """Gudi et al. 2017 §3.1.1 single-shot detector on a CAM network (details in the module docstring).

    Args:
        model: returns ``(logits (B, C), cams (B, C, h, w))`` (a :class:`wsol.heads.CAMOutput` or a plain tuple),
            one raw CAM per class; put in eval mode.
        thresholds: CAM threshold per class (raw CAM units): ``None`` = the output layer's ``-d_c / a_c``
            (``model.head.cam_thresholds()``), a number for every class, or a sequence of ``C`` numbers.
        ratio: Algorithm 1's ``r`` in ``[0, 1]`` (fraction of each receptive field removed).
        relative_floor: mountain floor as a fraction ``[0, 1)`` of each map's maximum (tuned on validation data);
            ``None`` uses ``floor``.
        floor: absolute mountain floor (raw CAM units), at most each class's threshold (clipped to it); default
            ``min(0, t_c)`` ("all activated pixels"). Ignored when ``relative_floor`` is given.
        peak_size: size of the max filter defining a peak.
        nms_iou: per-class NMS IoU threshold (inclusive convention) in ``(0, 1]``; ``1`` disables NMS.
        max_detections: at most this many boxes per image (highest scores), ``None`` = no cap.
        score: ``"peak"`` — the mountain's peak height in raw CAM units (Gudi); ``"prob"`` —
            ``sigmoid(a_c · peak + d_c)``, the probability the output layer gives a pooled score equal to the
            peak (a monotone map of ``"peak"`` per class when ``a_c > 0``, so it leaves per-class AP unchanged).
        input_size: resize every image to ``(height, width)`` (bilinear, antialiased) before the network and map
            the boxes back to the original pixels; ``None`` runs each image at its own size.
        normalize: apply ``(x − mean) / std`` with ``model.pretrained_cfg`` after resizing (images in ``[0, 1]``).
        rf: receptive field of the CAMs; ``None`` derives it per input size (:func:`receptive_field_chain`).
        in_channels: image channels (default: those of the first convolution).
        channels_last: use the NHWC memory format on the CPU (oneDNN convolutions are faster).

    Attributes:
        stats: :class:`wsol.localize.MapStats` counting the non-finite maps met (stream index = image · C + class).

    Raises:
        ValueError: a bad argument (named), thresholds that cannot be derived or are not finite.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        thresholds: float | Sequence[float] | np.ndarray | torch.Tensor | None = None,
        ratio: float = 0.0,
        relative_floor: float | None = None,
        floor: float | None = None,
        peak_size: int = 3,
        nms_iou: float = 0.5,
        max_detections: int | None = 100,
        score: ScoreKind = "peak",
        input_size: int | tuple[int, int] | None = None,
        normalize: bool = False,
        rf: ReceptiveField | None = None,
        in_channels: int | None = None,
        channels_last: bool = True,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model.eval()
        self.ratio = _check_unit(ratio, "ratio")
        self.relative_floor = None if relative_floor is None else _check_unit(
            relative_floor, "relative_floor", upper_open=True
        )
        if floor is not None and not (isinstance(floor, int | float) and math.isfinite(floor)):
            raise ValueError(f"floor must be a finite number or None, got {floor!r}")
        self.floor = None if floor is None else float(floor)
        if isinstance(peak_size, bool) or not isinstance(peak_size, int) or peak_size < 1:
            raise ValueError(f"peak_size must be a positive int, got {peak_size!r}")
        self.peak_size = peak_size
        if isinstance(nms_iou, bool) or not isinstance(nms_iou, int | float) or not 0.0 < nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be in (0, 1], got {nms_iou!r}")
        self.nms_iou = float(nms_iou)
        if max_detections is not None and (
            isinstance(max_detections, bool) or not isinstance(max_detections, int) or max_detections < 1
        ):
            raise ValueError(f"max_detections must be a positive int or None, got {max_detections!r}")
        self.max_detections = max_detections
        if score not in ("peak", "prob"):
            raise ValueError(f"score must be 'peak' or 'prob', got {score!r}")
        self.score = score
        self.input_size = None if input_size is None else _check_size(input_size, "input_size")
        if rf is not None and not isinstance(rf, ReceptiveField):
            raise ValueError(f"rf must be a wsol.localize.ReceptiveField, got {type(rf).__name__}")
        self._rf_fixed = rf
        self._rf_cache: dict[tuple[int, int], ReceptiveField] = {}
        if in_channels is None:
            in_channels = _in_channels(model)
        elif isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
        self.in_channels = in_channels
        self.device, self.dtype = _device_dtype(model)
        self.channels_last = bool(channels_last) and self.device.type == "cpu"
        self.num_classes = self._num_classes()
        self.thresholds = self._thresholds(thresholds)
        self._affine = self._output_affine() if score == "prob" else None
        self.normalize = bool(normalize)
        self._mean = self._std = None
        if self.normalize:
            cfg = dict(getattr(model, "pretrained_cfg", None) or {})
            mean = tuple(cfg.get("mean", (0.0,) * in_channels))
            std = tuple(cfg.get("std", (1.0,) * in_channels))
            if len(mean) != in_channels or len(std) != in_channels or not all(s > 0 for s in std):
                raise ValueError(f"pretrained_cfg mean/std {mean}/{std} do not fit a {in_channels}-channel input")
            self._mean = torch.tensor(mean, dtype=self.dtype, device=self.device).view(1, -1, 1, 1)
            self._std = torch.tensor(std, dtype=self.dtype, device=self.device).view(1, -1, 1, 1)
        self.stats = MapStats()

    # --- setup -----------------------------------------------------------------------------------

    def _num_classes(self) -> int:
        n = getattr(self.model, "num_classes", None)
        if isinstance(n, int) and n > 0:
            return n
        head = getattr(self.model, "head", None)
        n = getattr(head, "num_classes", None)
        if isinstance(n, int) and n > 0:
            return n
        raise ValueError("model has no num_classes attribute; use a wsol CAMNet (wsol.models.create_model)")

    def _thresholds(self, thresholds: Any) -> np.ndarray:
        c = self.num_classes
        if thresholds is None:
            head = getattr(self.model, "head", None)
            if not callable(getattr(head, "cam_thresholds", None)):
                raise ValueError(
                    "thresholds=None needs a model whose head has cam_thresholds() (a wsol CAM head); "
                    "pass thresholds= explicitly"
                )
            t = head.cam_thresholds().detach().cpu().double().numpy()
            source = "the output layer's -d/a"
        elif isinstance(thresholds, int | float) and not isinstance(thresholds, bool):
            t, source = np.full(c, float(thresholds)), "thresholds"
        else:
            if isinstance(thresholds, torch.Tensor):
                thresholds = thresholds.detach().cpu().double().numpy()
            t, source = np.asarray(thresholds, dtype=np.float64).reshape(-1), "thresholds"
        if t.shape != (c,):
            raise ValueError(f"thresholds must be one number or {c} numbers (one per class), got shape {t.shape}")
        bad = np.flatnonzero(~np.isfinite(t))
        if bad.size:
            raise ValueError(
                f"{source} is not finite for class(es) {bad.tolist()} (an output scale a_c = 0?); pass thresholds="
            )
        return t

    def _output_affine(self) -> tuple[np.ndarray, np.ndarray]:
        head = getattr(self.model, "head", None)
        scale, bias = getattr(head, "scale", None), getattr(head, "bias", None)
        if not isinstance(scale, torch.Tensor) or not isinstance(bias, torch.Tensor):
            raise ValueError("score='prob' needs a CAM head with output_affine=True (per-class scale and bias)")
        return scale.detach().cpu().double().numpy(), bias.detach().cpu().double().numpy()

    def receptive_field(self, input_size: tuple[int, int]) -> ReceptiveField:
        """The CAM → input geometry for network inputs of ``input_size`` (derived once per size, cached)."""
        if self._rf_fixed is not None:
            return self._rf_fixed
        key = (int(input_size[0]), int(input_size[1]))
        if key not in self._rf_cache:
            self._rf_cache[key] = receptive_field_chain(self.model, key, self.in_channels)
        return self._rf_cache[key]

    def describe(self) -> dict[str, Any]:
        """JSON-ready settings of the detector."""
        return {
            "thresholds": [float(t) for t in self.thresholds],
            "ratio": self.ratio,
            "relative_floor": self.relative_floor,
            "floor": self.floor,
            "peak_size": self.peak_size,
            "nms_iou": self.nms_iou,
            "max_detections": self.max_detections,
            "score": self.score,
            "input_size": None if self.input_size is None else list(self.input_size),
            "normalize": self.normalize,
        }

    # --- inference -------------------------------------------------------------------------------

    def _prepare(self, image: torch.Tensor) -> torch.Tensor:
        x = image.to(self.device, self.dtype)[None]
        if x.shape[1] != self.in_channels:
            raise ValueError(f"the model takes {self.in_channels}-channel images, got {x.shape[1]} channels")
        if self.input_size is not None and tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False, antialias=True)
        if self._mean is not None:
            x = (x - self._mean) / self._std
        return x

    @torch.inference_mode()
    def forward_cams(self, x: torch.Tensor) -> torch.Tensor:
        """Raw CAMs ``(B, C, h, w)`` (float32, CPU) of a prepared network input ``(B, C_in, H, W)``."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        output = self.model(x)
        if not (isinstance(output, tuple | list) and len(output) >= 2 and isinstance(output[1], torch.Tensor)):
            raise ValueError(f"the model must return (logits, cams), got {type(output).__name__}")
        cams = output[1]
        if cams.ndim != 4 or cams.shape[0] != x.shape[0] or cams.shape[1] != self.num_classes:
            raise ValueError(
                f"the model returned cams of shape {tuple(cams.shape)}; "
                f"expected ({x.shape[0]}, {self.num_classes}, h, w)"
            )
        return cams.float().cpu()

    def detect(self, images: torch.Tensor | Sequence[torch.Tensor]) -> list[Detection]:
        """Detections of every image: ``(boxes (K, 4) int64, scores (K,) float64, labels (K,) int64)``, best first.

        Args:
            images: a ``(B, C, H, W)`` float batch or a list of ``(C, H, W)`` float tensors (sizes may differ);
                the model's input values (or ``[0, 1]`` images with ``normalize=True``).

        Returns:
            One tuple per image; boxes are inclusive pixels of that image. ``K = 0`` when nothing is found.
        """
        items = _as_image_list(images)
        out: list[Detection | None] = [None] * len(items)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, x in enumerate(items):
            groups.setdefault(tuple(x.shape), []).append(i)
        for idx in groups.values():
            x = torch.cat([self._prepare(items[i]) for i in idx])
            cams = self.forward_cams(x)
            sizes = [(int(items[i].shape[1]), int(items[i].shape[2])) for i in idx]
            for i, det in zip(idx, self.detect_from_cams(cams, (int(x.shape[2]), int(x.shape[3])), sizes), strict=True):
                out[i] = det
        return out  # type: ignore[return-value]

    def detect_from_cams(
        self,
        cams: torch.Tensor | np.ndarray,
        input_size: tuple[int, int],
        original_sizes: Sequence[tuple[int, int]] | None = None,
        *,
        image_offset: int = 0,
    ) -> list[Detection]:
        """Steps 1–4 + NMS on precomputed raw CAMs ``(B, C, h, w)`` of network inputs of ``input_size``.

        Lets the extraction settings be tuned without running the network again. ``original_sizes`` (one
        ``(H, W)`` per image) maps the boxes back to the original pixels; default ``input_size``.
        ``image_offset`` only numbers the images in warnings.
        """
        maps = cams.detach().cpu().numpy() if isinstance(cams, torch.Tensor) else np.asarray(cams)
        if maps.ndim != 4 or maps.shape[1] != self.num_classes:
            raise ValueError(f"cams must have shape (B, {self.num_classes}, h, w), got {maps.shape}")
        b = maps.shape[0]
        size = _check_size(input_size, "input_size")
        sizes = [size] * b if original_sizes is None else [_check_size(s, "original_sizes") for s in original_sizes]
        if len(sizes) != b:
            raise ValueError(f"{len(sizes)} original_sizes for {b} images")
        rf = self.receptive_field(size)
        finite = np.isfinite(maps).all(axis=(2, 3))  # (B, C)
        self._count_nonfinite(finite, image_offset)
        per_image: list[list[tuple[np.ndarray, np.ndarray, int]]] = [[] for _ in range(b)]
        for c in range(self.num_classes):
            dets = gudi_detect(
                maps[:, c],
                float(self.thresholds[c]),
                floor=self.floor if self.floor is None else min(self.floor, float(self.thresholds[c])),
                rf=rf,
                image_size=size,
                ratio=self.ratio,
                peak_size=self.peak_size,
                relative_floor=self.relative_floor,
                stats=MapStats(),  # non-finite maps are counted (and warned about) above, once per image/class
            )
            for i, d in enumerate(dets):
                if len(d.boxes):
                    per_image[i].append((d.boxes, d.scores, c))
        return [self._finish(parts, size, sizes[i]) for i, parts in enumerate(per_image)]

    def _count_nonfinite(self, finite: np.ndarray, image_offset: int) -> None:
        b, c = finite.shape
        bad = np.argwhere(~finite)
        base = self.stats.n_maps
        self.stats.nonfinite.extend(base + int(i) * c + int(k) for i, k in bad)
        self.stats.n_maps += b * c
        if bad.size:
            where = ", ".join(f"image {image_offset + int(i)} class {int(k)}" for i, k in bad[:10])
            more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
            warnings.warn(
                f"CAMDetector: {len(bad)} class activation map(s) contain NaN/inf ({where}{more}); "
                "they give no boxes (counted in detector.stats)",
                DegenerateCAMWarning,
                stacklevel=3,
            )

    def _finish(
        self, parts: list[tuple[np.ndarray, np.ndarray, int]], input_size: tuple[int, int], size: tuple[int, int]
    ) -> Detection:
        if not parts:
            return _empty_detection()
        boxes = np.concatenate([p[0] for p in parts]).astype(np.int64)
        scores = np.concatenate([p[1] for p in parts]).astype(np.float64)
        labels = np.concatenate([np.full(len(p[0]), p[2], dtype=np.int64) for p in parts])
        if self.score == "prob":
            assert self._affine is not None
            a, d = self._affine
            scores = 1.0 / (1.0 + np.exp(-(a[labels] * scores + d[labels])))
        keep = self._nms(boxes, scores, labels)
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        return boxes_to_original(boxes, input_size, size), scores, labels

    def _nms(self, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Indices kept by per-class NMS, best first, at most ``max_detections``.

        ``batched_nms`` computes IoU with areas ``(x1 − x0)(y1 − y0)``; passing ``x1 + 1, y1 + 1`` makes it the
        inclusive-pixel IoU of :func:`wsol.metrics.boxes.box_iou`. Stable order for equal scores.
        """
        if self.nms_iou >= 1.0:
            keep = np.argsort(-scores, kind="stable")
        else:
            t_boxes = torch.from_numpy(boxes.astype(np.float64))
            t_boxes[:, 2:] += 1.0
            keep = batched_nms(
                t_boxes, torch.from_numpy(scores), torch.from_numpy(labels), self.nms_iou
            ).numpy()
            # batched_nms sorts by score; re-sort stably so ties keep the extraction order on every platform
            keep = keep[np.argsort(-scores[keep], kind="stable")]
        return keep if self.max_detections is None else keep[: self.max_detections]


# ----------------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------------


def _ground_truth_item(dataset: Any, i: int, box_kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(boxes, labels, difficult)`` of image ``i`` from an MNIST128-like ``annotation(i)`` or a RecordDataset."""
    annotation = getattr(dataset, "annotation", None)
    if callable(annotation):
        ann = annotation(i)
        boxes = ann.boxes(box_kind) if callable(getattr(ann, "boxes", None)) else ann.boxes
        labels = np.asarray(ann.labels, dtype=np.int64)
        return np.asarray(boxes).reshape(-1, 4), labels, np.zeros(len(labels), dtype=bool)
    index = getattr(dataset, "index", None)
    records = getattr(index, "records", None)
    if records is not None:
        r = records[i]
        return r.boxes, r.box_labels, r.difficult
    raise ValueError(
        f"cannot read ground-truth boxes from {type(dataset).__name__} (no annotation(i) and no index.records); "
        "pass ground_truth="
    )


def evaluate_cam_detector(
    detector: CAMDetector,
    dataset: Any,
    *,
    ground_truth: Sequence[tuple[Any, ...]] | None = None,
    batch_size: int = 32,
    iou: float = 0.5,
    box_kind: Literal["ink", "placement"] = "ink",
    max_images: int | None = None,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """PASCAL VOC detection metrics of ``detector`` on ``dataset`` (Gudi et al. 2017 Table 2's protocol).

    * ``map`` / ``ap``: VOC 2007 11-point AP per class and their mean over classes with a GT box;
    * ``map_area`` / ``ap_area``: all-point (VOC 2010+) AP;
    * ``corloc``: per class, the fraction of images containing it whose top-scoring box of that class has
      IoU ≥ ``iou`` with one of its GT boxes, averaged over classes.

    Matching follows :func:`wsol.metrics.detection.evaluate_detections` (IoU ≥ ``iou`` in the inclusive
    convention; ``difficult`` GT boxes are ignored: neither TP nor FP). All values are fractions in ``[0, 1]``.

    Args:
        detector: the detector.
        dataset: items ``(image (C, H, W), target, ...)``; ``None`` items (unreadable images of a
            :class:`wsol.data.records.RecordDataset`) are skipped together with their ground truth. Boxes come
            from ``ground_truth``, else ``dataset.annotation(i)`` (MNIST128: ``box_kind`` boxes) or
            ``dataset.index.records[i]`` (boxes, box labels, difficult flags), in the image's pixels.
        ground_truth: per image ``(boxes, labels)`` or ``(boxes, labels, difficult)``.
        batch_size: images per :meth:`CAMDetector.detect` call.
        iou: IoU threshold.
        box_kind: MNIST128 GT boxes: the tight ink box (default) or the 28×28 placement box.
        max_images: evaluate only the first images.
        class_names: names for the per-class entries (default ``dataset.class_names`` / ``index.class_names``).

    Returns:
        dict with ``map``, ``map_area``, ``corloc``, ``ap`` / ``ap_area`` / ``corloc_per_class`` (per class name,
        NaN → None), ``num_images``, ``skipped_images``, ``num_detections``, ``num_gt``, ``nonfinite_maps``.

    Raises:
        ValueError: empty dataset, missing ground truth, mismatched lengths, bad boxes (from the metrics).
    """
    if not isinstance(detector, CAMDetector):
        raise ValueError(f"detector must be a CAMDetector, got {type(detector).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    n = len(dataset) if max_images is None else min(len(dataset), int(max_images))
    if n == 0:
        raise ValueError("dataset is empty: nothing to evaluate")
    if ground_truth is not None and len(ground_truth) < n:
        raise ValueError(f"ground_truth has {len(ground_truth)} entries for {n} images")
    c = detector.num_classes
    names = list(class_names or getattr(dataset, "class_names", None) or
                 getattr(getattr(dataset, "index", None), "class_names", None) or [str(k) for k in range(c)])
    if len(names) != c:
        raise ValueError(f"{len(names)} class names for a {c}-class detector")
    nonfinite_before = detector.stats.n_nonfinite
    detections: list[Detection] = []
    gts: list[tuple[Any, ...]] = []
    skipped: list[int] = []
    batch: list[torch.Tensor] = []
    batch_ids: list[int] = []

    def flush() -> None:
        if batch:
            detections.extend(detector.detect(batch))
            batch.clear()
            batch_ids.clear()

    for i in range(n):
        item = dataset[i]
        if item is None:
            skipped.append(i)
            continue
        image = item[0] if isinstance(item, tuple | list) else item
        batch.append(image)
        batch_ids.append(i)
        gts.append(tuple(ground_truth[i]) if ground_truth is not None else _ground_truth_item(dataset, i, box_kind))
        if len(batch) == batch_size:
            flush()
    flush()
    if not detections:
        raise ValueError(f"none of the {n} images could be read: nothing to evaluate")
    voc07 = evaluate_detections(detections, gts, c, iou=iou, use_07_metric=True)
    area = evaluate_detections(detections, gts, c, iou=iou, use_07_metric=False)
    preds, gt_maps = [], []
    for (boxes, _scores, labels), gt in zip(detections, gts, strict=True):
        g_boxes, g_labels = np.asarray(gt[0]).reshape(-1, 4), np.asarray(gt[1]).reshape(-1)
        difficult = np.asarray(gt[2], dtype=bool).reshape(-1) if len(gt) > 2 and np.asarray(gt[2]).size else None
        keep = ~difficult if difficult is not None else np.ones(len(g_labels), dtype=bool)
        gt_maps.append({int(k): g_boxes[keep & (g_labels == k)] for k in np.unique(g_labels[keep])})
        # detections are sorted by score, so the first box of a class is its top-scoring one
        preds.append({int(k): boxes[labels == k][:1] for k in np.unique(labels)})
    has_gt = any(len(m) for m in gt_maps)
    cl = corloc(preds, gt_maps, iou=iou) if has_gt else None

    def named(values: np.ndarray) -> dict[str, float | None]:
        return {names[k]: (None if math.isnan(v) else float(v)) for k, v in enumerate(values)}

    corloc_per_class = np.full(c, np.nan)
    if cl is not None:
        for k, v in cl.per_class.items():
            corloc_per_class[k] = v
    return {
        "map": voc07.mean_ap,
        "map_area": area.mean_ap,
        "corloc": float("nan") if cl is None else cl.mean,
        "ap": named(voc07.ap),
        "ap_area": named(area.ap),
        "corloc_per_class": named(corloc_per_class),
        "num_images": len(detections),
        "skipped_images": skipped,
        "num_detections": int(sum(len(d[0]) for d in detections)),
        "num_gt": int(voc07.num_positives.sum()),
        "nonfinite_maps": detector.stats.n_nonfinite - nonfinite_before,
        "iou": iou,
        "detector": detector.describe(),
    }
