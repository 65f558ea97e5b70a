"""Evaluate a CAM model on a dataset split: every classification and localization metric that applies.

:func:`evaluate_model` streams a :class:`wsol.data.records.RecordDataset` through a model that returns
``(logits, cams)`` and accumulates, batch by batch (no score map is kept after its batch):

* **classification** — single-label: top-1 / top-5 accuracy (Zhou et al. 2016, §3, Table 1);
  multi-label: per-class AP and mAP (area under the PR curve and VOC 2007 11-point; Moreaux et al. 2018,
  Table 3; Qiu et al., Table I) and precision / recall of the sigmoid at 0.5 (Moreaux et al. §4);
* **box localization** (records with boxes) — with Zhou et al.'s box: the largest connected component
  of the map above ``cam_threshold`` (20 %) of its min-max range (§3.2):

  - top-1 localization: top-1 class right *and* ``IoU >= 0.5``; top-5: the GT class is among the 5 best
    *and* ``IoU >= 0.5``; GT-known: ``IoU >= 0.5`` with the map of the GT class (Zhou et al. §4,
    Choe et al. 2020 §4) — computed by :func:`wsol.metrics.localization.localization_accuracy`;
  - localization accuracy as a function of the IoU threshold δ, ``acc(δ) = (1/N) Σ 1[IoU_i >= δ]``;
  - Moreaux et al. 2018 (§4.4): centre-of-mass accuracy (Table 4, "based on the ground truth" and
    "prediction only") and accuracy / mean IoU versus the box threshold of the smallest rectangle around
    the pixels above a fraction of the maximum (Fig. 4,
    :func:`wsol.metrics.localization.localization_accuracy_vs_threshold`);
  - pointing game: the map maximum lies in a GT box (Gudi et al. 2017 §4.1, Zhang et al. 2016);
  - MaxBoxAcc and MaxBoxAccV2 (Choe et al. 2020 §4: all CAM thresholds, δ ∈ {30, 50, 70}, all contours)
    and their top-1 variants (:class:`wsol.metrics.boxacc.BoxAccEvaluator`);
  - multi-label datasets: the units are (image, present class) pairs; CorLoc (per-class fraction of
    positive images localized, then the class mean) replaces top-k localization;
* **PxAP** (records with masks; Choe et al. 2020 §4, :class:`wsol.metrics.pxap.PxAPEvaluator`);
* **detection AP** — hook: pass ``detector`` (:data:`Detector`; e.g. the ``detect_from_cams`` method of
  ``wsol.detection.cam_detector.CAMDetector``) to get VOC AP (:func:`wsol.metrics.detection.evaluate_detections`,
  VOC07 11-point and all-point) from CAM detections, in original image pixels.

Protocol (stated in every report): the image goes through the dataset's own (eval) transform, the model
runs on it, the CAM of the class to evaluate (the GT class; the top-1 class of an unlabeled image) is
upsampled to the *input* size ``H × W`` with bicubic interpolation (``cv2.INTER_CUBIC``, as Choe et al.
do at 224 × 224) and the GT boxes are the ones the transform produced, truncated to integers (Choe et al.'s
``resize_bbox``). Every metric then works in that frame; MaxBoxAcc / PxAP use it directly when it is
square (``resize = H``) and rescale it to 224 × 224 otherwise.

Bad items are never turned into numbers: an image that cannot be decoded, or whose logits or evaluated map
contain NaN / inf, is left out of every metric and listed (id and reason) in :attr:`EvaluationReport.skipped`;
constant maps are legitimate (they give the empty box ``[0, 0, 0, 0]``) and are counted.
"""

from __future__ import annotations

import inspect
import json
import math
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from wsol.atomic import atomic_write
from wsol.data.records import RecordDataset
from wsol.localize import DegenerateMapWarning, MapStats, multiscale_cams, normalize_map, upsample_map, zhou_boxes
from wsol.metrics.boxacc import (
    DEFAULT_IOU_THRESHOLDS,
    RESIZE_LENGTH,
    BoxAccEvaluator,
    BoxAccReport,
)
from wsol.metrics.boxes import box_iou
from wsol.metrics.classification import mean_average_precision, precision_recall
from wsol.metrics.detection import evaluate_detections
from wsol.metrics.localization import (
    center_of_mass_accuracy,
    corloc,
    localization_accuracy,
    localization_accuracy_vs_threshold,
    pointing_game,
)
from wsol.metrics.pxap import PxAPEvaluator, PxAPResult, load_gt_mask

__all__ = [
    "DEFAULT_BOX_THRESHOLDS",
    "DEFAULT_IOU_CURVE",
    "Detector",
    "EvaluationReport",
    "MoreauxThresholdBoxes",
    "evaluate_model",
    "export_map",
]

#: Box thresholds of the Moreaux et al. (2018, Fig. 4) curve: 5 %, 10 %, …, 95 % of the map's range.
DEFAULT_BOX_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 20))
#: IoU thresholds δ of the accuracy-versus-IoU curve: 0, 0.05, …, 1.
DEFAULT_IOU_CURVE: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(21))

#: ``detector(raw cams (B, C, h, w), input_size (H, W), original_sizes [(H_i, W_i)]) -> [(boxes, scores, labels)]``:
#: one ``((K, 4) boxes in original image pixels, (K,) scores, (K,) class ids)`` per image. The hook for VOC
#: detection AP from CAM detections; ``wsol.detection.cam_detector.CAMDetector(model).detect_from_cams`` fits it.
Detector = Callable[
    [torch.Tensor, tuple[int, int], Sequence[tuple[int, int]]], Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]
]

_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area")


# ----------------------------------------------------------------------------------------------------------
# Data: the dataset's transform, plus the transformed boxes and the reason of every unreadable image
# ----------------------------------------------------------------------------------------------------------
class _EvalItems(Dataset):
    """Items ``("ok", i, image, boxes_in_frame, full_frame_box | None, (H, W) original)`` or ``("bad", i, reason)``.

    :class:`RecordDataset` drops the transformed boxes and only warns about unreadable images (in the
    worker process); evaluation needs both, so this wrapper reuses its ``load`` and ``transform``.
    The full-image box is passed through the transform too (records with masks only) so that a
    transform that crops or flips — for which the 224 × 224 masks would not line up — is detected.
    """

    def __init__(self, dataset: RecordDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        from wsol.io import ImageLoadError

        record = self.dataset.index.records[i]
        try:
            array = self.dataset.load(i)
        except ImageLoadError as err:
            return ("bad", i, str(err))
        boxes = record.boxes
        with_frame = bool(record.mask_paths)
        if with_frame:
            h, w = array.shape[:2]
            boxes = np.concatenate([boxes, [[0.0, 0.0, w - 1.0, h - 1.0]]])
        image, out_boxes = self.dataset.transform(array, boxes)
        out_boxes = np.asarray(out_boxes, dtype=np.float64).reshape(-1, 4)
        if not np.isfinite(out_boxes).all():
            raise ValueError(
                f"{record.image_id}: the dataset transform cut a box away (NaN row); an evaluation transform must "
                "keep every box (resize, no random crop)"
            )
        if out_boxes.shape[0] != boxes.shape[0]:
            raise ValueError(
                f"{record.image_id}: the dataset transform returned {out_boxes.shape[0]} boxes for "
                f"{boxes.shape[0]}; an evaluation transform must keep every box (resize, no random crop)"
            )
        frame = out_boxes[-1] if with_frame else None
        return ("ok", i, image, out_boxes[:-1] if with_frame else out_boxes, frame, tuple(array.shape[:2]))


def _collate(items: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return list(items)


# ----------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------
def _json_safe(value: Any) -> Any:
    """Plain JSON types; NaN / inf → ``None`` (``json`` would otherwise write invalid ``NaN`` tokens)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        v = float(value)
        return v if math.isfinite(v) else None
    return value


_LABELS = {
    "top1_accuracy": "top-1 accuracy",
    "top5_accuracy": "top-5 accuracy",
    "mAP": "mAP (area under the PR curve)",
    "mAP_voc07": "mAP (VOC 2007 11-point)",
    "macro_precision@0.5": "macro precision, sigmoid > 0.5",
    "macro_recall@0.5": "macro recall, sigmoid > 0.5",
    "top1_loc": "top-1 localization",
    "top5_loc": "top-5 localization",
    "gt_known_loc": "GT-known localization",
    "mean_iou_gt_known": "mean IoU × 100, GT class",
}


def _pct(x: float | None) -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.2f}"


@dataclass
class EvaluationReport:
    """Everything :func:`evaluate_model` measured. Accuracies are in **percent**.

    Attributes:
        dataset: name, root, split, class count, multi-label flag, number of records.
        protocol: how the numbers were obtained (frame, interpolation, thresholds, scales, …).
        counts: ``items`` (records), ``evaluated`` (images with a usable output), ``unreadable``,
            ``nonfinite``, ``unlabeled``, ``without_boxes``, ``constant_maps``, ``mask_problems``.
        skipped: ``{"image_id", "kind", "reason"}`` of every item left out (kind ``"unreadable"``,
            ``"nonfinite"`` or ``"mask"`` — the latter only leaves PxAP).
        classification: top-k accuracies or (multi-label) AP / mAP / precision / recall; None if no label.
        localization: top-k / GT-known localization, pointing game, centre of mass, CorLoc and curves; None
            without boxes.
        boxacc: MaxBoxAcc / MaxBoxAccV2 (:class:`~wsol.metrics.boxacc.BoxAccReport`), or None.
        pxap: PxAP (:class:`~wsol.metrics.pxap.PxAPResult`), or None.
        detection: VOC detection AP from the ``detector`` hook, or None.
        per_image: one dict per record (id, status, labels, predictions, IoU and hits).
        notes: why a metric is missing, protocol remarks.
        source: where the model and data came from (filled by ``wsol evaluate``: checkpoint, epoch, config).
    """

    dataset: dict[str, Any]
    protocol: dict[str, Any]
    counts: dict[str, int]
    skipped: list[dict[str, str]] = field(default_factory=list)
    classification: dict[str, Any] | None = None
    localization: dict[str, Any] | None = None
    boxacc: BoxAccReport | None = None
    pxap: PxAPResult | None = None
    detection: dict[str, Any] | None = None
    per_image: list[dict[str, Any]] = field(default_factory=list, repr=False)
    notes: list[str] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def has_skipped(self) -> bool:
        """Whether some item was left out of a metric (the CLI then exits with 1)."""
        return bool(self.skipped)

    def to_dict(self, include_curves: bool = False, include_per_image: bool = False) -> dict[str, Any]:
        """JSON-ready dict (NaN → ``None``). The small curves (IoU, box threshold) are always included; the
        1000-point MaxBoxAcc / PxAP curves only with ``include_curves``."""
        out: dict[str, Any] = {
            "units": "percent",
            "source": self.source,
            "dataset": self.dataset,
            "protocol": self.protocol,
            "counts": self.counts,
            "skipped": self.skipped,
            "classification": self.classification,
            "localization": self.localization,
            "boxacc": None if self.boxacc is None else self.boxacc.to_dict(include_curves),
            "pxap": None if self.pxap is None else self.pxap.to_dict(include_curves),
            "detection": self.detection,
            "notes": self.notes,
        }
        if include_per_image:
            out["per_image"] = self.per_image
        return _json_safe(out)

    def to_json(self, include_curves: bool = False, include_per_image: bool = False) -> str:
        """:meth:`to_dict` as indented JSON text (strict: no ``NaN`` tokens)."""
        return json.dumps(self.to_dict(include_curves, include_per_image), indent=2, allow_nan=False) + "\n"

    # -- Markdown ----------------------------------------------------------------------------------------
    def to_markdown(self) -> str:
        """A human-readable report: dataset, protocol, headline tables, skipped items, notes."""
        d = self.dataset
        lines = [
            f"# Evaluation: {d.get('name')} / {d.get('split')}",
            "",
            f"{self.counts['evaluated']} of {self.counts['items']} images evaluated "
            f"({d.get('num_classes')} classes{', multi-label' if d.get('multilabel') else ''}). "
            "All accuracies in %.",
            "",
            *[f"- {k}: {v}" for k, v in self.source.items() if v not in (None, [], "")],
            *([""] if self.source else []),
            "## Protocol",
            "",
        ]
        lines += [f"- {k}: {v}" for k, v in self.protocol.items() if k != "description"]
        lines += ["", str(self.protocol.get("description", "")), ""]
        lines += self._md_classification() + self._md_localization() + self._md_boxacc()
        if self.pxap is not None:
            lines += ["## PxAP (Choe et al. 2020)", "", f"PxAP = **{self.pxap.pxap:.2f}**", ""]
        if self.detection is not None:
            lines += [
                "## Detection (VOC AP from CAM detections)",
                "",
                f"mAP = **{_pct(self.detection.get('mAP'))}**",
                "",
            ]
        lines += self._md_counts()
        if self.notes:
            lines += ["## Notes", "", *[f"- {n}" for n in self.notes], ""]
        return "\n".join(lines).rstrip() + "\n"

    def _md_classification(self) -> list[str]:
        c = self.classification
        if c is None:
            return []
        rows = [(k, v) for k, v in c.items() if isinstance(v, float | int) and k != "num_images"]
        lines = ["## Classification", "", "| metric | value |", "|---|---|"]
        lines += [f"| {_LABELS.get(k, k)} (`{k}`) | {_pct(float(v))} |" for k, v in rows]
        per_class = c.get("per_class_AP")
        if per_class:
            lines += ["", "| class | AP |", "|---|---|", *[f"| {n} | {_pct(ap)} |" for n, ap in per_class.items()]]
        return [*lines, ""]

    def _md_localization(self) -> list[str]:
        loc = self.localization
        if loc is None:
            return []
        lines = ["## Localization", "", "| metric | value |", "|---|---|"]
        for key in ("top1_loc", "top5_loc", "gt_known_loc", "mean_iou_gt_known"):
            if key in loc:
                lines.append(f"| {_LABELS[key]} (`{key}`) | {_pct(loc[key])} |")
        if "corloc" in loc:
            lines.append(f"| CorLoc (class mean) | {_pct(loc['corloc']['mean'])} |")
        pg = loc["pointing_game"]
        lines.append(f"| pointing game (tolerance {pg['tolerance']} px) | {_pct(pg['accuracy'])} |")
        lines.append(f"| pointing game, class mean | {_pct(pg['mean_class_accuracy'])} |")
        com = loc["center_of_mass"]
        lines.append(f"| centre of mass in box, GT class | {_pct(com['gt_known'])} |")
        if com.get("top1") is not None:
            lines.append(f"| centre of mass in box, prediction only | {_pct(com['top1'])} |")
        tc = loc["threshold_curve"]
        lines.append(
            f"| best box threshold (Moreaux) | {tc['best_threshold']:.2f} → {_pct(max(tc['gt_known_accuracy']))} |"
        )
        curve = loc["iou_curve"]
        lines += [
            "",
            "Localization accuracy vs IoU threshold δ (GT-known" + (", top-1" if "top1" in curve else "") + "):",
            "",
            "| δ | " + " | ".join(f"{t:.2f}" for t in curve["iou_thresholds"][::2]) + " |",
            "|---" * (1 + len(curve["iou_thresholds"][::2])) + "|",
            "| GT-known | " + " | ".join(_pct(v) for v in curve["gt_known"][::2]) + " |",
        ]
        if "top1" in curve:
            lines.append("| top-1 | " + " | ".join(_pct(v) for v in curve["top1"][::2]) + " |")
        return [*lines, ""]

    def _md_boxacc(self) -> list[str]:
        b = self.boxacc
        if b is None:
            return []
        lines = ["## MaxBoxAcc (Choe et al. 2020)", "", "| metric | GT-known | top-1 |", "|---|---|---|"]
        lines.append(f"| MaxBoxAcc (δ = 50, largest contour) | {_pct(b.maxboxacc)} | {_pct(b.top1_maxboxacc)} |")
        lines.append(
            f"| MaxBoxAccV2 (mean over δ, all contours) | {_pct(b.maxboxacc_v2)} | {_pct(b.top1_maxboxacc_v2)} |"
        )
        for delta in b.iou_thresholds:
            top1 = None if b.top1_multi is None else b.top1_multi.max_accuracy[delta]
            lines.append(
                f"| V2 at δ = {delta} (best CAM threshold {b.multi.best_threshold[delta]:.3f}) "
                f"| {_pct(b.multi.max_accuracy[delta])} | {_pct(top1)} |"
            )
        return [*lines, ""]

    def _md_counts(self) -> list[str]:
        lines = ["## Items", "", "| count | value |", "|---|---|", *[f"| {k} | {v} |" for k, v in self.counts.items()]]
        if self.skipped:
            lines += ["", "Skipped items:", ""]
            lines += [f"- `{s['image_id']}` ({s['kind']}): {s['reason']}" for s in self.skipped[:50]]
            if len(self.skipped) > 50:
                lines.append(f"- … and {len(self.skipped) - 50} more (see report.json)")
        return [*lines, ""]

    # -- plots -------------------------------------------------------------------------------------------
    def plots(self, out_dir: str | Path) -> list[Path]:
        """Write PNG plots (matplotlib Agg, atomic) and return their paths.

        ``iou_curve.png`` (accuracy vs IoU threshold δ; accuracy and mean IoU vs Moreaux's box threshold),
        ``boxacc_curve.png`` (BoxAcc vs CAM threshold for each δ, both contour modes) and ``pxap_pr.png``
        (pixel precision–recall curve) when the metrics exist.
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []

        def save(fig: Figure, name: str) -> None:
            FigureCanvasAgg(fig)
            fig.tight_layout()
            written.append(atomic_write(out / name, lambda fh: fig.savefig(fh, format="png", dpi=100)))

        if self.localization is not None:
            fig = Figure(figsize=(12, 4.5))
            self._plot_iou_curves(fig.subplots(1, 2))
            save(fig, "iou_curve.png")
        if self.boxacc is not None:
            fig = Figure(figsize=(7, 4.5))
            self._plot_boxacc(fig.subplots(1, 1))
            save(fig, "boxacc_curve.png")
        if self.pxap is not None:
            fig = Figure(figsize=(5.5, 4.5))
            ax = fig.subplots(1, 1)
            ax.plot(self.pxap.recall, self.pxap.precision, "b-")
            ax.set(
                xlabel="pixel recall",
                ylabel="pixel precision",
                title=f"PxAP {self.pxap.pxap:.2f}",
                xlim=(0, 1),
                ylim=(0, 1.02),
            )
            ax.grid(alpha=0.3)
            save(fig, "pxap_pr.png")
        return written

    def _plot_iou_curves(self, axes: Any) -> None:
        assert self.localization is not None
        curve, tc = self.localization["iou_curve"], self.localization["threshold_curve"]
        ax = axes[0]
        ax.plot(curve["iou_thresholds"], curve["gt_known"], "o-", label="GT-known")
        if "top1" in curve:
            ax.plot(curve["iou_thresholds"], curve["top1"], "s--", label="top-1")
        ax.axvline(self.protocol["loc_iou"], color="grey", lw=0.8)
        ax.set(
            xlabel="IoU threshold δ",
            ylabel="localization accuracy (%)",
            xlim=(0, 1),
            ylim=(0, 101),
            title=f"Zhou box ({self.protocol['cam_threshold']:.0%} of max)",
        )
        ax.grid(alpha=0.3)
        ax.legend()
        ax = axes[1]
        ax.plot(tc["thresholds"], tc["gt_known_accuracy"], "o-", label="accuracy, GT class (IoU ≥ 0.5)")
        if tc.get("top1_accuracy") is not None:
            ax.plot(tc["thresholds"], tc["top1_accuracy"], "s--", label="accuracy, prediction")
        ax.plot(tc["thresholds"], tc["mean_iou"], "^:", label="mean IoU × 100")
        ax.set(
            xlabel="box threshold (fraction of the map range)",
            ylabel="%",
            xlim=(0, 1),
            ylim=(0, 101),
            title="Moreaux et al. 2018, Fig. 4",
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)

    def _plot_boxacc(self, ax: Any) -> None:
        b = self.boxacc
        assert b is not None
        t = b.multi.cam_thresholds
        for delta in b.iou_thresholds:
            ax.plot(t, b.multi.accuracy[delta], label=f"all contours, δ={delta}: {b.multi.max_accuracy[delta]:.2f}")
        ax.plot(t, b.largest.accuracy[50], "k--", label=f"largest contour, δ=50: {b.maxboxacc:.2f}")
        ax.set(
            xlabel="CAM threshold",
            ylabel="box accuracy (%)",
            xlim=(0, 1),
            ylim=(0, 101),
            title=f"MaxBoxAcc {b.maxboxacc:.2f}, MaxBoxAccV2 {b.maxboxacc_v2:.2f}",
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)


# ----------------------------------------------------------------------------------------------------------
# Moreaux boxes at many thresholds
# ----------------------------------------------------------------------------------------------------------
class MoreauxThresholdBoxes:
    """``box_fn(map, t)`` equal to :func:`wsol.localize.moreaux_boxes` ``(map, t)``, fast over many ``t``.

    Moreaux et al. 2018 (§4.4, Fig. 4): the smallest rectangle around the pixels of the normalized map
    ``n`` above ``t``. Its rows are those with ``max_x n(x, y) > t`` and its columns those with
    ``max_y n(x, y) > t``, so the box at every threshold follows from the row and column maxima, computed
    once per map (the last map is cached by identity, as
    :func:`wsol.metrics.localization.localization_accuracy_vs_threshold` calls ``box_fn`` threshold after
    threshold on the same array). Written here because ``moreaux_boxes`` re-normalizes and scans the whole
    map at each threshold (19 times per image for the default curve). Empty → ``[[0, 0, 0, 0]]`` as there.
    """

    def __init__(self) -> None:
        self._map: np.ndarray | None = None
        self._rows = self._cols = np.zeros(0)

    def __call__(self, score_map: np.ndarray, threshold: float) -> np.ndarray:
        if score_map is not self._map:
            norm = normalize_map(score_map, stats=MapStats())  # degenerate maps → zeros (counted elsewhere)
            self._map, self._rows, self._cols = score_map, norm.max(axis=1), norm.max(axis=0)
        ys = np.flatnonzero(self._rows > threshold)
        xs = np.flatnonzero(self._cols > threshold)
        if ys.size == 0:
            return np.zeros((1, 4), dtype=np.int64)
        return np.array([[xs[0], ys[0], xs[-1], ys[-1]]], dtype=np.int64)


# ----------------------------------------------------------------------------------------------------------
# Map export
# ----------------------------------------------------------------------------------------------------------
def export_map(export_dir: str | Path, name: str, score_map: np.ndarray) -> Path:
    """Atomically write ``<export_dir>/<name>.npy`` (``name`` keeps the id's extension and sub-folders).

    This is the layout ``wsol evaluate-maps --scoremaps`` reads (Choe et al.'s ``wsolevaluation``).

    Raises:
        ValueError: ``name`` escapes ``export_dir`` (absolute, or with ``..``).
    """
    root = Path(export_dir)
    path = root / f"{name}.npy"
    if Path(name).is_absolute() or ".." in Path(name).parts:
        raise ValueError(f"image id {name!r} would write outside the export folder {str(root)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.ascontiguousarray(score_map, dtype=np.float32)
    return atomic_write(path, lambda fh: np.save(fh, array, allow_pickle=False))


# ----------------------------------------------------------------------------------------------------------
# Accumulation
# ----------------------------------------------------------------------------------------------------------
@dataclass
class _Unit:
    """One localization unit: an image (single-label) or an (image, class) pair (multi-label)."""

    pos: int  # record index
    cls: int
    map: np.ndarray  # (H, W) in the input frame
    gt: np.ndarray  # (G, 4) int boxes in the input frame
    rank: int | None  # rank of cls among the predictions (single-label), None for multi-label


def _check_fractions(values: Sequence[float], name: str) -> tuple[float, ...]:
    out = tuple(float(v) for v in values)
    if not out:
        raise ValueError(f"{name} must not be empty")
    if not all(0.0 <= v <= 1.0 for v in out):  # also rejects NaN
        raise ValueError(f"{name} must lie in [0, 1], got {values!r}")
    return out


class _Evaluator:
    """The running state of one evaluation (counts, per-unit results, metric accumulators)."""

    def __init__(self, dataset: RecordDataset, opts: dict[str, Any]) -> None:
        self.index = dataset.index
        self.transform = dataset.transform
        self.opts = opts
        self.multilabel = bool(self.index.multilabel)
        self.num_classes = self.index.num_classes
        self.has_boxes = any(r.boxes.shape[0] > 0 for r in self.index.records)
        self.has_masks = (not self.multilabel) and any(r.mask_paths for r in self.index.records)
        self.skipped: list[dict[str, str]] = []
        self.per_image: list[dict[str, Any] | None] = [None] * len(self.index)
        self.counts = dict.fromkeys(
            (
                "items",
                "evaluated",
                "unreadable",
                "nonfinite",
                "unlabeled",
                "without_boxes",
                "constant_maps",
                "mask_problems",
            ),
            0,
        )
        self.counts["items"] = len(self.index)
        self.notes: list[str] = []
        self.frame: tuple[int, int] | None = None
        self.map_stats = MapStats()
        # classification
        self.ranks: list[int] = []  # single-label: rank of the GT class
        self.scores: list[np.ndarray] = []  # multi-label: (C,) logits
        self.targets: list[np.ndarray] = []
        # localization (per unit)
        self.unit_cls: list[int] = []
        self.unit_iou: list[float] = []
        self.unit_correct: list[bool] = []  # class right (top-1); multi-label: always True
        self.unit_top1_loc: list[bool] = []
        self.unit_top5_loc: list[bool] = []
        self.unit_pointing: list[bool] = []
        self.unit_com: list[bool] = []
        # per unit, best IoU at each Moreaux box threshold (a few floats per image; summed at the end so that
        # the result does not depend on the batch size)
        self.curve_ious: list[np.ndarray] = []
        self.corloc_pred: dict[int, dict[int, np.ndarray]] = {}
        self.corloc_gt: dict[int, dict[int, np.ndarray]] = {}
        self.boxacc: BoxAccEvaluator | None = None
        self.pxap: PxAPEvaluator | None = None
        self.pxap_disabled: str | None = None
        self.detections: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.det_gt: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.boxacc_resize = RESIZE_LENGTH
        self.boxacc_image_size: tuple[int, int] | None = None
        self._pending: list[_Unit] = []

    # -- bookkeeping ---------------------------------------------------------------------------------------
    def skip(self, pos: int, kind: str, reason: str) -> None:
        image_id = self.index.records[pos].image_id
        self.skipped.append({"image_id": image_id, "kind": kind, "reason": reason})
        if kind != "mask":
            self.counts[kind] += 1
            self.per_image[pos] = {"image_id": image_id, "status": kind, "reason": reason}
        else:
            self.counts["mask_problems"] += 1
        if self.opts["verbose"]:
            print(f"wsol evaluate: skipped {image_id} ({kind}): {reason}", file=sys.stderr)

    def set_frame(self, h: int, w: int) -> None:
        if self.frame is None:
            self.frame = (h, w)
            # A square frame is the protocol frame itself; another shape is rescaled to 224 x 224 (maps bicubic,
            # boxes by rescale_boxes from the (width, height) frame size).
            resize = h if h == w else RESIZE_LENGTH
            self.boxacc_resize = resize
            self.boxacc_image_size = None if h == w else (w, h)
            if self.has_boxes and not self.multilabel:
                self.boxacc = BoxAccEvaluator(
                    resize=resize,
                    cam_curve_interval=self.opts["cam_curve_interval"],
                    iou_thresholds=self.opts["iou_thresholds"],
                    method=self.opts["boxacc_method"],
                )
            if self.has_masks:
                self.pxap = PxAPEvaluator(cam_curve_interval=self.opts["cam_curve_interval"], resize=resize)
        elif self.frame != (h, w):
            raise ValueError(
                f"input images have different sizes ({self.frame} then {(h, w)}): an evaluation transform must "
                "resize every image to one size"
            )

    # -- one batch -----------------------------------------------------------------------------------------
    def process(self, model: nn.Module, items: list[tuple[Any, ...]], device: torch.device) -> None:
        good = []
        for item in items:
            if item[0] == "bad":
                self.skip(item[1], "unreadable", item[2])
            else:
                good.append(item)
        if not good:
            return
        images = torch.stack([g[2] for g in good]).to(device)
        self.set_frame(int(images.shape[-2]), int(images.shape[-1]))
        with torch.no_grad():
            logits, cams = _split_output(model(images))
        if logits.shape[1] != self.num_classes:
            raise ValueError(f"the model has {logits.shape[1]} classes but the dataset has {self.num_classes}")
        logits_np = logits.detach().float().cpu().numpy().astype(np.float64)
        order = torch.argsort(-logits.detach().float(), dim=1, stable=True).cpu().numpy()
        # classes whose maps are evaluated: the GT class(es), or the top-1 prediction of an unlabeled image
        wanted = [self._wanted_classes(int(g[1]), order[b]) for b, g in enumerate(good)]
        maps, bad_maps = self._maps(model, images, cams, wanted)
        dets = None
        if self.opts["detector"] is not None and self.has_boxes:
            dets = self.opts["detector"](cams.detach(), self.frame, [g[5] for g in good])
        for b, g in enumerate(good):
            pos = int(g[1])
            if not np.isfinite(logits_np[b]).all():
                self.skip(pos, "nonfinite", "the model's logits contain NaN or inf")
                continue
            if b in bad_maps:
                self.skip(pos, "nonfinite", f"the score map of class {bad_maps[b]} contains NaN or inf")
                continue
            # GT boxes in the input frame, truncated to integers as Choe et al.'s resize_bbox
            gt = np.floor(np.asarray(g[3], dtype=np.float64))
            self._one_image(pos, logits_np[b], order[b], wanted[b], maps[b], gt, g[4])
            if dets is not None and self.index.records[pos].labels:
                self._detection(pos, dets[b])
        self._flush_units()

    def _wanted_classes(self, pos: int, order: np.ndarray) -> list[int]:
        labels = self.index.records[pos].labels
        if not labels:
            return [int(order[0])]
        return sorted(set(labels)) if self.multilabel else [labels[0]]

    def _maps(
        self, model: nn.Module, images: torch.Tensor, cams: torch.Tensor, wanted: list[list[int]]
    ) -> tuple[list[np.ndarray], dict[int, int]]:
        """Per image, the ``(K_b, H, W)`` float32 maps of its wanted classes in the input frame; and the
        images whose map is non-finite (→ first such class)."""
        h, w = self.frame  # type: ignore[misc]
        scales = self.opts["multiscale"]
        flat = [(b, c) for b, cls in enumerate(wanted) for c in cls]
        bi = torch.tensor([b for b, _ in flat], device=cams.device)
        ci = torch.tensor([c for _, c in flat], device=cams.device)
        if scales is None:
            picked = cams.detach()[bi, ci].float().cpu().numpy()
            up = upsample_map(picked, (h, w), self.opts["interpolation"])
        else:
            stats = MapStats()
            k = max(len(c) for c in wanted)
            pad = torch.tensor([c + [c[0]] * (k - len(c)) for c in wanted], device=images.device)

            def select(out: Any) -> torch.Tensor:
                c = _split_output(out)[1]
                return c[torch.arange(c.shape[0], device=c.device)[:, None], pad.to(c.device)]

            ms = multiscale_cams(
                model, images, scales, (h, w), mode=self.opts["interpolation"], select=select, stats=stats
            )
            slot = [[j for j in range(len(c))] for c in wanted]
            up = torch.cat([ms[b, slot[b]] for b in range(len(wanted))]).float().cpu().numpy()
            per_scale = len(wanted) * k
            for idx in stats.nonfinite:  # stream index → (scale, image, slot); padded slots repeat slot 0
                b, j = divmod(idx % per_scale, k)
                up[sum(len(c) for c in wanted[:b]) + min(j, len(wanted[b]) - 1)] = np.nan
        out, start, bad = [], 0, {}
        for b, cls in enumerate(wanted):
            m = up[start : start + len(cls)]
            start += len(cls)
            finite = np.isfinite(m).all(axis=(1, 2))
            if not finite.all():
                bad[b] = cls[int(np.flatnonzero(~finite)[0])]
            out.append(m)
        return out, bad

    def _one_image(
        self,
        pos: int,
        logits: np.ndarray,
        order: np.ndarray,
        wanted: list[int],
        maps: np.ndarray,
        gt: np.ndarray,
        frame_box: np.ndarray | None,
    ) -> None:
        record = self.index.records[pos]
        info: dict[str, Any] = {
            "image_id": record.image_id,
            "status": "ok",
            "labels": list(record.labels),
            "top5": [int(c) for c in order[:5]],
        }
        self.per_image[pos] = info
        self.counts["evaluated"] += 1
        if self.opts["export_maps_dir"] is not None:
            self._export(record.image_id, wanted, maps, labeled=bool(record.labels))
        if not record.labels:
            self.counts["unlabeled"] += 1
            info["status"] = "unlabeled"
            return
        if self.multilabel:
            self.scores.append(logits)
            t = np.zeros(self.num_classes)
            t[list(record.labels)] = 1.0
            self.targets.append(t)
        else:
            rank = int(np.flatnonzero(order == record.labels[0])[0])
            self.ranks.append(rank)
            info["gt_rank"] = rank
        if self.pxap is not None and record.mask_paths:
            self._accumulate_pxap(pos, maps[0], frame_box)
        if not self.has_boxes:
            return
        if record.boxes.shape[0] == 0:
            self.counts["without_boxes"] += 1
            return
        for j, c in enumerate(wanted):
            gt_c = gt if not self.multilabel else gt[record.box_labels == c]
            if gt_c.shape[0] == 0:
                continue
            rank = None if self.multilabel else info["gt_rank"]
            self._pending.append(_Unit(pos, c, maps[j], gt_c, rank))

    def _export(self, image_id: str, wanted: list[int], maps: np.ndarray, labeled: bool) -> None:
        root = self.opts["export_maps_dir"]
        if self.multilabel and labeled:
            for j, c in enumerate(wanted):
                export_map(root, f"{image_id}.cls{c}", maps[j])
        else:
            export_map(root, image_id, maps[0])

    def _detection(self, pos: int, det: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        """Keep one image's detections (original pixels) and its original GT boxes for VOC AP."""
        record = self.index.records[pos]
        boxes, scores, labels = det
        self.detections.append((np.asarray(boxes), np.asarray(scores), np.asarray(labels)))
        self.det_gt.append((record.boxes, record.box_labels, record.difficult))

    def _accumulate_pxap(self, pos: int, score_map: np.ndarray, frame_box: np.ndarray | None) -> None:
        assert self.pxap is not None
        record = self.index.records[pos]
        h, w = self.frame  # type: ignore[misc]
        if frame_box is not None and np.abs(frame_box - [0, 0, w - 1, h - 1]).max() > 1.0:
            self.pxap_disabled = (
                f"the evaluation transform does not map the whole image onto the input frame (image "
                f"{record.image_id}: full-image box → {np.round(frame_box, 1).tolist()}), so the masks resized "
                "to the frame would not line up with the maps"
            )
            self.pxap = None
            return
        try:
            mask = load_gt_mask(
                ".",  # record mask paths are full paths (relative ones are relative to the working folder)
                [str(p) for p in record.mask_paths],
                str(record.ignore_path) if record.ignore_path else None,
                self.boxacc_resize,
            )
        except ValueError as err:
            self.skip(pos, "mask", str(err))
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DegenerateMapWarning)  # constant maps are counted by map_stats
            self.pxap.accumulate(score_map, mask, image_id=record.image_id)

    # -- localization of the batch's units -------------------------------------------------------------------
    def _flush_units(self) -> None:
        units, self._pending = self._pending, []
        if not units:
            return
        maps = np.stack([u.map for u in units])
        gts = [u.gt for u in units]
        boxes = zhou_boxes(maps, self.opts["cam_threshold"], stats=self.map_stats)
        if self.multilabel:
            ious = np.array([float(box_iou(p, g).max()) for p, g in zip(boxes, gts, strict=True)])
            correct = np.ones(len(units), dtype=bool)
            top1_loc = top5_loc = ious >= self.opts["loc_iou"]
        else:
            # Top-k localization needs, for each rank j whose class is the GT class, the box of that class's
            # map; only the GT class can match, so every rank gets the GT-class box (identical result).
            k = min(5, self.num_classes)
            ranks = np.array([u.rank for u in units])
            labels = np.array([u.cls for u in units])
            topk = np.where(np.arange(k)[None, :] == ranks[:, None], labels[:, None], -1)
            la = localization_accuracy(
                [[bx] * k for bx in boxes], gts, topk, labels, iou=self.opts["loc_iou"], ks=(1, k)
            )
            ious = la.best_iou[:, 0]
            correct = ranks == 0
            top1_loc, top5_loc = la.correct[:, 0], la.correct.any(axis=1)
        pg = pointing_game(maps, gts, tolerance=self.opts["pointing_tolerance"])
        com = center_of_mass_accuracy(maps, gts)
        curve = localization_accuracy_vs_threshold(
            maps, gts, self.opts["box_thresholds"], MoreauxThresholdBoxes(), self.opts["loc_iou"]
        )
        self.curve_ious.extend(curve.best_iou)
        for i, u in enumerate(units):
            self.unit_cls.append(u.cls)
            self.unit_iou.append(float(ious[i]))
            self.unit_correct.append(bool(correct[i]))
            self.unit_top1_loc.append(bool(top1_loc[i]))
            self.unit_top5_loc.append(bool(top5_loc[i]))
            self.unit_pointing.append(bool(pg.hits[i]))
            self.unit_com.append(bool(com.hits[i]))
            info = self.per_image[u.pos]
            assert info is not None
            entry = {
                "iou": float(ious[i]),
                "box": boxes[i][0].tolist(),
                "gt_known": bool(ious[i] >= self.opts["loc_iou"]),
                "pointing": bool(pg.hits[i]),
                "center_of_mass": bool(com.hits[i]),
            }
            if self.multilabel:
                info.setdefault("classes", {})[str(u.cls)] = entry
                self.corloc_pred.setdefault(u.pos, {})[u.cls] = boxes[i]
                self.corloc_gt.setdefault(u.pos, {})[u.cls] = u.gt
            else:
                info.update(entry)
                if self.boxacc is not None:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", DegenerateMapWarning)  # counted by map_stats
                        self.boxacc.accumulate(
                            u.map,
                            u.gt,
                            self.boxacc_image_size,
                            correct_class=bool(correct[i]),
                            image_id=info["image_id"],
                        )

    # -- results ---------------------------------------------------------------------------------------------
    def classification(self) -> dict[str, Any] | None:
        if self.multilabel:
            if not self.scores:
                return None
            s, t = np.stack(self.scores), np.stack(self.targets)
            area = mean_average_precision(s, t, method="area")
            voc07 = mean_average_precision(s, t, method="voc07")
            pr = precision_recall(1.0 / (1.0 + np.exp(-s)), t, threshold=0.5)
            names = self.index.class_names
            if area.skipped:
                self.notes.append(f"AP undefined (no positive image) for classes {[names[c] for c in area.skipped]}")
            return {
                "num_images": len(s),
                "mAP": 100 * area.mean_ap,
                "mAP_voc07": 100 * voc07.mean_ap,
                "macro_precision@0.5": 100 * pr.macro_precision,
                "macro_recall@0.5": 100 * pr.macro_recall,
                "per_class_AP": {names[c]: 100 * float(area.ap[c]) for c in range(len(names))},
                "per_class_AP_voc07": {names[c]: 100 * float(voc07.ap[c]) for c in range(len(names))},
            }
        if not self.ranks:
            return None
        ranks = np.array(self.ranks)
        out: dict[str, Any] = {"num_images": len(ranks), "top1_accuracy": 100 * float(np.mean(ranks < 1))}
        if self.num_classes >= 5:
            out["top5_accuracy"] = 100 * float(np.mean(ranks < 5))
        else:
            self.notes.append(f"top-5 accuracy / localization not reported: only {self.num_classes} classes")
        return out

    def localization(self) -> dict[str, Any] | None:
        if not self.unit_iou:
            return None
        iou = np.array(self.unit_iou)
        cls = np.array(self.unit_cls)
        correct = np.array(self.unit_correct)
        hit = iou >= self.opts["loc_iou"]
        pointing = np.array(self.unit_pointing)
        com = np.array(self.unit_com)
        n = len(iou)
        deltas = np.array(self.opts["iou_curve"])
        out: dict[str, Any] = {
            "num_units": n,
            "unit": "(image, class) pair" if self.multilabel else "image",
            "gt_known_loc": 100 * float(hit.mean()),
            "mean_iou_gt_known": 100 * float(iou.mean()),
        }
        if not self.multilabel:
            out["top1_loc"] = 100 * float(np.mean(self.unit_top1_loc))
            if self.num_classes >= 5:
                out["top5_loc"] = 100 * float(np.mean(self.unit_top5_loc))
        out["pointing_game"] = {
            "tolerance": self.opts["pointing_tolerance"],
            "accuracy": 100 * float(pointing.mean()),
            "mean_class_accuracy": 100 * float(np.mean([pointing[cls == c].mean() for c in np.unique(cls)])),
        }
        out["center_of_mass"] = {
            "gt_known": 100 * float(com.mean()),
            "top1": None if self.multilabel else 100 * float((com & correct).mean()),
        }
        out["iou_curve"] = {
            "iou_thresholds": deltas.tolist(),
            "gt_known": (100 * (iou[:, None] >= deltas[None]).mean(axis=0)).tolist(),
        }
        if not self.multilabel:
            out["iou_curve"]["top1"] = (100 * ((iou[:, None] >= deltas[None]) & correct[:, None]).mean(axis=0)).tolist()
        curve_iou = np.stack(self.curve_ious)
        curve_hit = curve_iou >= self.opts["loc_iou"]
        acc = 100 * curve_hit.mean(axis=0)
        out["threshold_curve"] = {
            "thresholds": list(self.opts["box_thresholds"]),
            "gt_known_accuracy": acc.tolist(),
            "top1_accuracy": None if self.multilabel else (100 * (curve_hit & correct[:, None]).mean(axis=0)).tolist(),
            "mean_iou": (100 * curve_iou.mean(axis=0)).tolist(),
            "best_threshold": float(self.opts["box_thresholds"][int(np.argmax(acc))]),
        }
        if self.multilabel:
            positions = sorted(self.corloc_gt)
            res = corloc(
                [self.corloc_pred[p] for p in positions],
                [self.corloc_gt[p] for p in positions],
                iou=self.opts["loc_iou"],
            )
            names = self.index.class_names
            out["corloc"] = {
                "mean": 100 * res.mean,
                "per_class": {names[c]: 100 * v for c, v in res.per_class.items()},
                "num_images": {names[c]: v for c, v in res.num_images.items()},
            }
        return out

    def detection(self) -> dict[str, Any] | None:
        if self.opts["detector"] is None or not self.detections:
            return None
        names = self.index.class_names
        out: dict[str, Any] = {}
        for key, use07 in (("mAP", True), ("mAP_all_point", False)):
            res = evaluate_detections(self.detections, self.det_gt, self.num_classes, iou=0.5, use_07_metric=use07)
            out[key] = 100 * res.mean_ap
            out[f"per_class_AP{'' if use07 else '_all_point'}"] = {
                names[c]: 100 * float(res.ap[c]) for c in range(len(names))
            }
        return out


def _split_output(out: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits (B, C), cams (B, C, h, w))`` from a ``CAMOutput`` or a plain tuple, checked."""
    if not isinstance(out, tuple | list) or len(out) < 2:
        raise ValueError(f"the model must return (logits, cams), got {type(out).__name__}")
    logits, cams = out[0], out[1]
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        raise ValueError(f"the model's logits must be a (B, C) tensor, got {getattr(logits, 'shape', logits)!r}")
    if not isinstance(cams, torch.Tensor) or cams.ndim != 4 or tuple(cams.shape[:2]) != tuple(logits.shape):
        raise ValueError(
            f"the model's cams must be (B, C, h, w) matching logits {tuple(logits.shape)}, "
            f"got {tuple(getattr(cams, 'shape', ()))}"
        )
    return logits, cams


def _protocol(ev: _Evaluator, opts: dict[str, Any]) -> dict[str, Any]:
    h, w = ev.frame if ev.frame is not None else (None, None)
    scales = opts["multiscale"]
    description = (
        f"Each image goes through the dataset's evaluation transform (input frame {h}×{w}); the CAM of the "
        "ground-truth class (of each present class for multi-label data; of the top-1 class for an unlabeled "
        f"image) is upsampled to the input frame ({opts['interpolation']}) "
        + (
            f"at scales {list(scales)} (each scale min-max normalized, then averaged; logits from scale 1) "
            if scales
            else ""
        )
        + "and compared with the GT boxes as scaled by the transform, truncated to integers (Choe et al. 2020). "
        f"Zhou's box: largest connected component of the map above {opts['cam_threshold']:.0%} of its min-max "
        f"range; a localization is correct when IoU ≥ {opts['loc_iou']} (inclusive-pixel IoU). MaxBoxAcc / "
        f"MaxBoxAccV2 / PxAP: maps in a {ev.boxacc_resize}² frame (bicubic if "
        "resized), min-max normalized, CAM thresholds every "
        f"{opts['cam_curve_interval']}, δ ∈ {list(opts['iou_thresholds'])} % for V2."
        + (
            " Detection AP: the detector's boxes in original image pixels against the original GT boxes (VOC "
            "protocol, difficult boxes ignored)."
            if opts["detector"] is not None
            else ""
        )
    )
    transform = ev.transform
    return {
        "transform": transform.__qualname__ if inspect.isfunction(transform) else repr(transform),
        "box_scaling": getattr(transform, "box_scaling", None),
        "input_frame": [h, w],
        "interpolation": opts["interpolation"],
        "multiscale": None if scales is None else list(scales),
        "cam_threshold": opts["cam_threshold"],
        "loc_iou": opts["loc_iou"],
        "boxacc_frame": ev.boxacc_resize if ev.frame is not None else None,
        "cam_curve_interval": opts["cam_curve_interval"],
        "maxboxacc_iou_thresholds": list(opts["iou_thresholds"]),
        "pointing_tolerance_px": opts["pointing_tolerance"],
        "description": description,
    }


# ----------------------------------------------------------------------------------------------------------
# Public entry point
# ----------------------------------------------------------------------------------------------------------
def evaluate_model(
    model: nn.Module,
    dataset: RecordDataset,
    *,
    batch_size: int = 32,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    multiscale: Sequence[float] | None = None,
    export_maps_dir: str | Path | None = None,
    cam_threshold: float = 0.2,
    loc_iou: float = 0.5,
    iou_thresholds: Sequence[int] = DEFAULT_IOU_THRESHOLDS,
    cam_curve_interval: float = 0.001,
    box_thresholds: Sequence[float] = DEFAULT_BOX_THRESHOLDS,
    iou_curve: Sequence[float] = DEFAULT_IOU_CURVE,
    pointing_tolerance: float = 0.0,
    interpolation: str = "bicubic",
    boxacc_method: str = "fast",
    detector: Detector | None = None,
    progress: bool = False,
    verbose: bool = False,
) -> EvaluationReport:
    """Evaluate ``model`` on every item of ``dataset``; see the module docstring for metrics and protocol.

    Args:
        model: ``model(x) -> (logits (B, C), cams (B, C, h, w))`` (a ``CAMOutput`` or a plain tuple). It is
            put in eval mode for the run (its previous mode is restored) and moved to ``device`` if given.
        dataset: the split with its *evaluation* transform (a resize: every image the same size, every box
            kept). ``return_index`` is not needed: items are read through ``dataset.load`` / ``transform``.
        batch_size, num_workers: the ``DataLoader``'s.
        device: where to run (default: where the model's parameters are).
        multiscale: scales for :func:`wsol.localize.multiscale_cams` (Qiu et al. §V), e.g. ``(0.5, 1, 1.5)``;
            None = the single input size.
        export_maps_dir: write each evaluated map as ``<image_id>.npy`` there (``<image_id>.cls<c>.npy`` per
            present class for multi-label data), atomically — the ``wsol evaluate-maps`` layout.
        cam_threshold: Zhou's box threshold (fraction of the normalized map).
        loc_iou: IoU threshold of top-k / GT-known localization, CorLoc and the Moreaux curve.
        iou_thresholds: δ of MaxBoxAccV2, in percent.
        cam_curve_interval: CAM threshold spacing of MaxBoxAcc / PxAP.
        box_thresholds: thresholds of the Moreaux accuracy-vs-box-threshold curve.
        iou_curve: IoU thresholds δ of the accuracy-vs-IoU curve.
        pointing_tolerance: pointing-game tolerance in input pixels (0 = inside the box; Zhang et al.: 15).
        interpolation: upsampling of the maps (``"bicubic"``, as Choe et al.; or ``"bilinear"``, …).
        boxacc_method: ``"fast"`` or ``"reference"`` (identical numbers).
        detector: optional :data:`Detector` hook giving VOC detection AP (needs boxes).
        progress: tqdm progress bar on stderr.
        verbose: print each skipped item on stderr.

    Returns:
        :class:`EvaluationReport`.

    Raises:
        ValueError: bad arguments (named), a model output of the wrong form or class count, images of
            different sizes, an empty dataset.
    """
    if not isinstance(dataset, RecordDataset):
        raise ValueError(f"dataset must be a wsol.data.records.RecordDataset, got {type(dataset).__name__}")
    if len(dataset) == 0:
        raise ValueError("dataset is empty: nothing to evaluate")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not 0.0 <= cam_threshold <= 1.0:
        raise ValueError(f"cam_threshold must lie in [0, 1], got {cam_threshold!r}")
    if not 0.0 < loc_iou <= 1.0:
        raise ValueError(f"loc_iou must lie in (0, 1], got {loc_iou!r}")
    if pointing_tolerance < 0:
        raise ValueError(f"pointing_tolerance must be >= 0, got {pointing_tolerance!r}")
    if multiscale is not None:
        multiscale = tuple(float(s) for s in multiscale)
        if not multiscale or not all(math.isfinite(s) and s > 0 for s in multiscale):
            raise ValueError(f"multiscale must be positive scales, got {multiscale!r}")
    opts: dict[str, Any] = {
        "multiscale": multiscale,
        "export_maps_dir": None if export_maps_dir is None else Path(export_maps_dir),
        "cam_threshold": float(cam_threshold),
        "loc_iou": float(loc_iou),
        "iou_thresholds": tuple(iou_thresholds),
        "cam_curve_interval": float(cam_curve_interval),
        "box_thresholds": _check_fractions(box_thresholds, "box_thresholds"),
        "iou_curve": _check_fractions(iou_curve, "iou_curve"),
        "pointing_tolerance": float(pointing_tolerance),
        "interpolation": interpolation,
        "boxacc_method": boxacc_method,
        "detector": detector,
        "verbose": verbose,
    }
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {_INTERPOLATIONS}, got {interpolation!r}")
    # checks cam_curve_interval, iou_thresholds and boxacc_method before any image is read
    BoxAccEvaluator(cam_curve_interval=cam_curve_interval, iou_thresholds=iou_thresholds, method=boxacc_method)
    if device is not None:
        model.to(torch.device(device))
    run_device = next((p.device for p in model.parameters()), torch.device("cpu"))
    ev = _Evaluator(dataset, opts)
    loader = DataLoader(
        _EvalItems(dataset), batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=_collate
    )
    was_training = model.training
    model.eval()
    try:
        batches: Any = loader
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(loader, desc="evaluate", unit="batch", file=sys.stderr)
        for items in batches:
            ev.process(model, items, run_device)
    finally:
        model.train(was_training)
    return _finish(ev, opts)


def _finish(ev: _Evaluator, opts: dict[str, Any]) -> EvaluationReport:
    ev.counts["constant_maps"] = ev.map_stats.n_constant
    idx = ev.index
    if not ev.has_boxes:
        ev.notes.append("the records have no boxes: no localization metric")
    if ev.multilabel and ev.has_boxes:
        ev.notes.append(
            "multi-label data: localization units are (image, present class) pairs; top-k localization and "
            "MaxBoxAcc (single-label protocols) are not reported; CorLoc is"
        )
    if ev.pxap_disabled:
        ev.notes.append(f"PxAP not reported: {ev.pxap_disabled}")
    if ev.counts["nonfinite"]:
        ev.notes.append(
            f"{ev.counts['nonfinite']} image(s) with NaN/inf logits or maps were left out of every metric "
            "(listed under skipped)"
        )
    boxacc = ev.boxacc.compute() if ev.boxacc is not None and ev.boxacc.num_images else None
    pxap = None
    if ev.pxap is not None and ev.pxap.num_images:
        try:
            pxap = ev.pxap.compute()
        except ValueError as err:
            ev.notes.append(f"PxAP not reported: {err}")
    report = EvaluationReport(
        dataset={
            "name": idx.name,
            "root": str(idx.root),
            "split": idx.split,
            "num_classes": idx.num_classes,
            "multilabel": bool(idx.multilabel),
            "num_records": len(idx),
        },
        protocol=_protocol(ev, opts),
        counts=ev.counts,
        skipped=ev.skipped,
        classification=ev.classification(),
        localization=ev.localization(),
        boxacc=boxacc,
        pxap=pxap,
        detection=ev.detection(),
        per_image=[p for p in ev.per_image if p is not None],
        notes=ev.notes,
    )
    return report
