"""PxAP — pixel average precision of Choe et al. (CVPR 2020), numerically identical to their reference.

"Evaluating Weakly Supervised Object Localization Methods Right", §4 ("PxAP"), evaluates score maps
against GT *masks* (OpenImages30k) threshold-free: with the CAM thresholds
:math:`\\tau \\in \\{0, \\Delta, \\dots\\} \\cap [0, 1)` (``np.arange(0, 1, Δ)``), pixel precision and
recall over the whole data set are

.. math:: \\mathrm{PxPrec}(\\tau) = \\frac{|\\{s \\ge \\tau\\} \\cap T|}{|\\{s \\ge \\tau\\}|}, \\qquad
          \\mathrm{PxRec}(\\tau) = \\frac{|\\{s \\ge \\tau\\} \\cap T|}{|T|},

where :math:`T` are the foreground pixels and "ignore" pixels (the ignore region minus the
foreground) are left out, and

.. math:: \\mathrm{PxAP} = 100 \\sum_l \\mathrm{PxPrec}(\\tau_l)
          (\\mathrm{PxRec}(\\tau_l) - \\mathrm{PxRec}(\\tau_{l+1})).

As in ``wsolevaluation`` (``MaskEvaluator``) the counts come from data-set-pooled histograms of the
foreground / background scores with bin edges ``thresholds + [1, 2, 3]`` (``np.histogram``), the
cumulative sums run from the top bin, and the sum is the step sum ``(precision[1:] * diff(recall))``
over the operating points with a positive prediction, without interpolation. Masks are loaded as the
reference ``get_mask``: each mask PNG read in grayscale, resized to 224 with nearest neighbour,
``> 0.5``; the union over an image's instance masks is the foreground.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from wsol.localize import DegenerateMapWarning
from wsol.metrics.boxacc import RESIZE_LENGTH, cam_thresholds, prepare_scoremap

__all__ = ["PxAPEvaluator", "PxAPResult", "compute_pxap", "load_gt_mask", "pxap_from_histograms"]

IGNORE_VALUE = 255


def _read_mask_png(path: Path, resize: int) -> np.ndarray:
    """``cv2.imread`` (grayscale) → float32 → nearest resize to ``resize × resize`` → ``> 0.5``."""
    if not path.is_file():
        raise ValueError(f"mask file {str(path)!r} does not exist")
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError(f"mask file {str(path)!r} is not a readable image")
    mask = cv2.resize(np.float32(image), (resize, resize), interpolation=cv2.INTER_NEAREST)
    return mask > 0.5


def load_gt_mask(
    mask_root: str | os.PathLike[str],
    mask_paths: Sequence[str],
    ignore_path: str | None,
    resize: int = RESIZE_LENGTH,
) -> np.ndarray:
    """GT mask of one image as the reference ``get_mask``: 1 = foreground, 255 = ignore, 0 = background.

    Args:
        mask_root: folder the metadata's mask paths are relative to.
        mask_paths: the image's instance-mask PNGs (their union is the foreground), at least one.
        ignore_path: the image's ignore-region PNG; ``None`` or ``""`` for no ignore region (the
            reference requires one; its absence is accepted here and means "ignore nothing").
        resize: side of the evaluation frame.

    Returns:
        ``(resize, resize)`` uint8 array with values in {0, 1, 255}; ignore = ignore region minus foreground.

    Raises:
        ValueError: no mask path, or a file that is missing or not an image (the message names it).
    """
    if len(mask_paths) == 0:
        raise ValueError("an image needs at least one mask path")
    root = Path(mask_root)
    foreground = np.zeros((resize, resize), dtype=bool)
    for p in mask_paths:
        foreground |= _read_mask_png(root / p, resize)
    ignore = np.zeros_like(foreground)
    if ignore_path:
        ignore = _read_mask_png(root / ignore_path, resize) & ~foreground
    return foreground.astype(np.uint8) + IGNORE_VALUE * ignore.astype(np.uint8)


@dataclass(frozen=True)
class PxAPResult:
    """Pixel precision–recall curve and its area.

    Attributes:
        pxap: area under the curve in % (the reference step sum).
        precision: ``(B,)`` precision at the operating points, from the highest bin edge down
            (NaN where nothing is predicted positive).
        recall: ``(B,)`` recall at the same points.
        thresholds: ``(B,)`` score threshold of each operating point (``score >= threshold``).
        num_foreground: foreground pixels counted.
        num_background: background pixels counted (ignore pixels excluded).
    """

    pxap: float
    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray
    num_foreground: int
    num_background: int

    def to_dict(self, include_curve: bool = False) -> dict[str, Any]:
        """JSON-ready dict (``precision``/``recall`` lists only with ``include_curve``; NaN → ``None``)."""
        out: dict[str, Any] = {
            "value": self.pxap,
            "num_foreground_pixels": self.num_foreground,
            "num_background_pixels": self.num_background,
        }
        if include_curve:
            out["thresholds"] = self.thresholds.tolist()
            out["precision"] = [None if np.isnan(p) else float(p) for p in self.precision]
            out["recall"] = self.recall.tolist()
        return out


def pxap_from_histograms(fg_hist: npt.ArrayLike, bg_hist: npt.ArrayLike, bin_right_edges: npt.ArrayLike) -> PxAPResult:
    """PxAP from pooled score histograms (reference ``MaskEvaluator.compute``).

    With ``tp = cumsum(fg_hist[::-1])``, ``fp = cumsum(bg_hist[::-1])`` (counts of pixels whose score
    is at least each bin's left edge, from the top), ``precision = tp / (tp + fp)`` and
    ``recall = tp / #fg``, the result is ``100 * sum((precision[1:] * diff(recall))[tp + fp > 0])``.

    Args:
        fg_hist: ``(B,)`` histogram of foreground scores.
        bg_hist: ``(B,)`` histogram of background scores.
        bin_right_edges: ``(B + 1,)`` histogram edges (``thresholds + [1, 2, 3]``).

    Raises:
        ValueError: shapes disagree, no foreground pixel, or no positive prediction at any threshold.
    """
    fg = np.asarray(fg_hist, dtype=np.float64)
    bg = np.asarray(bg_hist, dtype=np.float64)
    edges = np.asarray(bin_right_edges, dtype=np.float64)
    if fg.ndim != 1 or fg.shape != bg.shape or edges.shape != (fg.size + 1,):
        raise ValueError(
            f"histograms must be 1-D of equal length B with B + 1 edges, got {fg.shape}, {bg.shape}, {edges.shape}"
        )
    num_fg = fg.sum()
    tp = fg[::-1].cumsum()
    fn = num_fg - tp
    fp = bg[::-1].cumsum()
    if ((tp + fn) <= 0).all():
        raise ValueError("no foreground (positive) pixel in the evaluated masks: PxAP is undefined")
    if ((tp + fp) <= 0).all():
        raise ValueError("no positive prediction at any threshold: PxAP is undefined")
    positive = (tp + fp) != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = tp / (tp + fp)
        recall = tp / (tp + fn)
    auc = (precision[1:] * np.diff(recall))[positive[1:]].sum() * 100
    return PxAPResult(
        pxap=float(auc),
        precision=precision,
        recall=recall,
        thresholds=edges[:-1][::-1].copy(),
        num_foreground=int(num_fg),
        num_background=int(bg.sum()),
    )


@dataclass
class PxAPEvaluator:
    """Accumulator of PxAP over a data set, like the reference ``MaskEvaluator``.

    Args:
        cam_curve_interval: CAM threshold spacing Δ (0.001).
        resize: side of the evaluation frame (224); maps of another size are bicubic-resized.
        normalize: min-max normalize each map (protocol); ``False`` requires maps in ``[0, 1]``.
    """

    cam_curve_interval: float = 0.001
    resize: int = RESIZE_LENGTH
    normalize: bool = True
    bin_edges: np.ndarray = field(init=False, repr=False)
    fg_hist: np.ndarray = field(init=False, repr=False)
    bg_hist: np.ndarray = field(init=False, repr=False)
    num_images: int = field(init=False, default=0)
    degenerate: list[tuple[str, str]] = field(init=False, default_factory=list, repr=False)

    def __post_init__(self) -> None:
        thresholds = cam_thresholds(self.cam_curve_interval)
        # Bins [0, Δ), ..., [1 - Δ, 1), [1, 2), [2, 3]: right edges = thresholds + [1, 2, 3].
        self.bin_edges = np.append(thresholds, [1.0, 2.0, 3.0])
        self.fg_hist = np.zeros(len(thresholds) + 2, dtype=np.float64)
        self.bg_hist = np.zeros(len(thresholds) + 2, dtype=np.float64)

    def accumulate(self, scoremap: npt.ArrayLike, gt_mask: npt.ArrayLike, image_id: str | None = None) -> None:
        """Add one image.

        Args:
            scoremap: ``(h, w)`` score map (resized/normalized like :func:`prepare_scoremap`).
            gt_mask: ``(resize, resize)`` mask with 1 = foreground, 255 = ignore, 0 = background
                (see :func:`load_gt_mask`); a boolean mask means foreground/background only.
            image_id: name used in warnings and error messages.

        Raises:
            ValueError: bad map, or a mask of the wrong shape or with other values.
        """
        name = image_id if image_id is not None else f"#{self.num_images}"
        try:
            s, reason = prepare_scoremap(scoremap, self.resize, self.normalize)
        except ValueError as err:
            raise ValueError(f"image {name}: {err}") from None
        mask = np.asarray(gt_mask)
        if mask.shape != s.shape:
            raise ValueError(f"image {name}: gt_mask must have shape {s.shape}, got {mask.shape}")
        if mask.dtype != np.bool_:
            values = np.unique(mask)
            if not np.isin(values, (0, 1, IGNORE_VALUE)).all():
                raise ValueError(f"image {name}: gt_mask values must be 0, 1 or 255, got {values[:10].tolist()}")
        if reason is not None:
            self.degenerate.append((name, reason))
            warnings.warn(f"score map of image {name} is {reason}; evaluated as all zeros", DegenerateMapWarning, 2)
        fg_scores = s[mask == 1]
        bg_scores = s[mask == 0]
        self.fg_hist += np.histogram(fg_scores, bins=self.bin_edges)[0]
        self.bg_hist += np.histogram(bg_scores, bins=self.bin_edges)[0]
        self.num_images += 1

    def compute(self) -> PxAPResult:
        """PxAP and the pooled precision–recall curve (see :func:`pxap_from_histograms`)."""
        if self.num_images == 0:
            raise ValueError("no image accumulated: cannot compute PxAP of an empty set")
        return pxap_from_histograms(self.fg_hist, self.bg_hist, self.bin_edges)


def compute_pxap(
    scoremaps: Sequence[npt.ArrayLike] | np.ndarray,
    gt_masks: Sequence[npt.ArrayLike] | np.ndarray,
    *,
    cam_curve_interval: float = 0.001,
    resize: int = RESIZE_LENGTH,
    normalize: bool = True,
) -> PxAPResult:
    """One-shot PxAP of ``N`` maps and their GT masks (see :class:`PxAPEvaluator`)."""
    if len(scoremaps) != len(gt_masks):
        raise ValueError(f"{len(scoremaps)} score maps but {len(gt_masks)} masks")
    ev = PxAPEvaluator(cam_curve_interval, resize, normalize)
    for i, (s, m) in enumerate(zip(scoremaps, gt_masks, strict=True)):
        ev.accumulate(s, m, image_id=f"#{i}")
    return ev.compute()
