"""Maps → boxes: every box-extraction strategy of the papers lives in this module.

Box convention: ``[x0, y0, x1, y1]`` integer pixel coordinates with inclusive corners
(see :mod:`wsol.metrics.boxes`). Size arguments are always ``(height, width)``, the order of
numpy shapes and of ``torch.nn.functional.interpolate``.

Pipeline::

    cams (N, C, h, w) ──upsample_map / upsample_cams──▶ (N, H, W) ──extract_boxes(strategy)──▶ boxes

Every numpy function accepts a single map ``(H, W)`` or a batch ``(N, H, W)`` (torch tensors are
converted); a single map gives one result, a batch gives a list with one result per map.

Strategies (:func:`extract_boxes` names) — fraction thresholds ``t`` apply to the min-max
normalized map (:func:`normalize_map`) and are strict (``> t``):

    ``zhou``           box of the largest connected component of ``map > t`` (Zhou et al. 2016 §3.2).
    ``moreaux``        smallest rectangle containing every pixel ``> t`` (Moreaux et al. 2018 §4.4).
    ``otsu``           Otsu binarization, then largest component (Qiu §IV-B).
    ``multi_contour``  one box per contour of ``map > t`` (Choe et al. 2020's MaxBoxAccV2 boxes).
    ``gudi``           peaks above a raw CAM threshold → flood-filled mountains → fast backprojection
                       (Algorithm 1) → contour boxes, scored by peak height (Gudi et al. 2017 §3.1.1).
"""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, TypeVar

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn
from torch.overrides import TorchFunctionMode

__all__ = [
    "ZHOU_ILSVRC_KINDS",
    "DegenerateMapWarning",
    "Detections",
    "IlsvrcBoxes",
    "LayerGeometry",
    "MapStats",
    "ReceptiveField",
    "affine_decision_threshold",
    "available_box_strategies",
    "boxes_to_original",
    "build_box_strategy",
    "contour_boxes",
    "extract_boxes",
    "fast_backprojection",
    "find_peaks",
    "gradient_support",
    "gudi_boxes",
    "gudi_detect",
    "moreaux_boxes",
    "mountain_labels",
    "multi_contour_boxes",
    "multiscale_cams",
    "normalize_map",
    "otsu_boxes",
    "otsu_mask",
    "otsu_threshold",
    "receptive_field_chain",
    "tf_same_padding",
    "threshold_mask",
    "upsample_cams",
    "upsample_map",
    "zhou_boxes",
    "zhou_ilsvrc_boxes",
]

MapLike = np.ndarray | torch.Tensor
Interpolation = Literal["nearest", "bilinear", "bicubic", "area"]
T = TypeVar("T")


def contour_boxes(mask: np.ndarray, largest_only: bool = False) -> np.ndarray:
    """Boxes of the contours of a binary mask, exactly as the reference protocol of Choe et al. (2020).

    Contours come from ``cv2.findContours(mask, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)``; each
    contour's ``cv2.boundingRect`` ``(x, y, w, h)`` becomes ``[x, y, x + w, y + h]`` clipped to
    ``W - 1`` / ``H - 1``. With ``largest_only`` only the contour of largest ``cv2.contourArea`` is kept
    (MaxBoxAcc V1, and Zhou et al. 2016's "largest connected component").

    Args:
        mask: ``(H, W)`` boolean or uint8 mask (non-zero = foreground).
        largest_only: keep only the largest contour.

    Returns:
        ``(K, 4)`` int64 array; ``[[0, 0, 0, 0]]`` when the mask is empty, as the reference does.
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    binary = np.ascontiguousarray(mask != 0, dtype=np.uint8)
    contours, _ = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
    if len(contours) == 0:
        return np.zeros((1, 4), dtype=np.int64)
    if largest_only:
        contours = [max(contours, key=cv2.contourArea)]
    h, w = binary.shape
    out = np.empty((len(contours), 4), dtype=np.int64)
    for i, contour in enumerate(contours):
        x, y, bw, bh = cv2.boundingRect(contour)
        out[i] = (x, y, min(x + bw, w - 1), min(y + bh, h - 1))
    return out


# ----------------------------------------------------------------------------------------------
# Input checks and map post-processing
# ----------------------------------------------------------------------------------------------


class DegenerateMapWarning(UserWarning):
    """A constant or non-finite map was replaced by zeros (only emitted when no ``MapStats`` is given)."""


@dataclass
class MapStats:
    """Counter of degenerate maps met by :func:`normalize_map` and the strategies.

    Pass one instance to every call of an evaluation loop; a map is *constant* when
    ``max == min`` (after the optional ReLU) and *non-finite* when any value is NaN or ±inf. Both are
    replaced by all-zero maps (the reference behaviour of Choe et al. 2020), and counted here
    instead of emitting a :class:`DegenerateMapWarning`. Indices are positions in the stream of
    maps this counter has seen (``n_maps`` before the call + index in the batch), so they map back
    to image ids when the caller iterates a dataset in order.

    Attributes:
        n_maps: maps seen so far.
        constant: stream indices of constant maps.
        nonfinite: stream indices of maps with NaN/inf values.
    """

    n_maps: int = 0
    constant: list[int] = field(default_factory=list)
    nonfinite: list[int] = field(default_factory=list)

    @property
    def n_constant(self) -> int:
        return len(self.constant)

    @property
    def n_nonfinite(self) -> int:
        return len(self.nonfinite)

    @property
    def n_degenerate(self) -> int:
        return self.n_constant + self.n_nonfinite

    def summary(self) -> str:
        """One line, e.g. ``"2 of 100 maps degenerate (1 constant, 1 non-finite)"``."""
        return (
            f"{self.n_degenerate} of {self.n_maps} maps degenerate "
            f"({self.n_constant} constant, {self.n_nonfinite} non-finite)"
        )


def _record(stats: MapStats | None, n: int, constant: np.ndarray, nonfinite: np.ndarray) -> None:
    """Count degenerate maps in ``stats``, or warn when the caller passed no counter."""
    c_idx = np.flatnonzero(constant).tolist()
    f_idx = np.flatnonzero(nonfinite).tolist()
    if stats is not None:
        base = stats.n_maps
        stats.constant.extend(base + i for i in c_idx)
        stats.nonfinite.extend(base + i for i in f_idx)
        stats.n_maps += n
    elif c_idx or f_idx:
        warnings.warn(
            f"{len(c_idx)} constant and {len(f_idx)} non-finite map(s) out of {n} were set to zeros "
            f"(batch indices: constant {c_idx[:10]}, non-finite {f_idx[:10]}); "
            "pass stats=MapStats() to count them instead",
            DegenerateMapWarning,
            stacklevel=3,
        )


def _as_numpy(value: Any, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        if t.dtype not in (torch.float32, torch.float64):
            t = t.float()
        return t.numpy()
    arr = np.asarray(value)
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"{name} must be a numeric array or tensor, got dtype {arr.dtype}")
    return arr


def _as_maps(score_map: MapLike, name: str = "score_map") -> tuple[np.ndarray, bool]:
    """``(N, H, W)`` view of a map or batch, and whether the input was a batch."""
    arr = _as_numpy(score_map, name)
    if arr.ndim not in (2, 3):
        raise ValueError(f"{name} must be a map (H, W) or a batch of maps (N, H, W), got shape {arr.shape}")
    if arr.shape[-1] == 0 or arr.shape[-2] == 0:
        raise ValueError(f"{name} has an empty spatial dimension: shape {arr.shape}")
    return (arr, True) if arr.ndim == 3 else (arr[None], False)


def _check_fraction(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    v = float(value)
    if not 0.0 <= v <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1] (a fraction of the normalized map), got {value!r}")
    return v


def _check_finite_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def _check_size(size: Any, name: str) -> tuple[int, int]:
    try:
        h, w = size
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (height, width) pair, got {size!r}") from None
    for v in (h, w):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v <= 0:
            raise ValueError(f"{name} must be two positive ints (height, width), got {size!r}")
    return int(h), int(w)


def boxes_to_original(
    boxes: np.ndarray, input_size: tuple[int, int], original_size: tuple[int, int]
) -> np.ndarray:
    r"""Map inclusive boxes on a resized ``input_size = (h_in, w_in)`` image back to ``original_size = (H, W)``.

    :math:`X_0 = \lfloor x_0 W / w_{in} \rfloor`, :math:`X_1 = \lceil (x_1 + 1) W / w_{in} \rceil - 1` (and the
    same for ``y`` with ``H / h_in``): the original pixels covered by the input pixels of the box, clipped to
    the image. The identity when the sizes are equal.

    Returns:
        ``(K, 4)`` int64 array.
    """
    b = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    (h_in, w_in), (h, w) = _check_size(input_size, "input_size"), _check_size(original_size, "original_size")
    if (h_in, w_in) == (h, w) or b.size == 0:
        return b.copy()
    sx, sy = w / w_in, h / h_in
    out = np.empty_like(b)
    out[:, 0] = np.floor(b[:, 0] * sx + 1e-9)
    out[:, 1] = np.floor(b[:, 1] * sy + 1e-9)
    out[:, 2] = np.ceil((b[:, 2] + 1) * sx - 1e-9) - 1
    out[:, 3] = np.ceil((b[:, 3] + 1) * sy - 1e-9) - 1
    out[:, 0::2] = np.clip(out[:, 0::2], 0, w - 1)
    out[:, 1::2] = np.clip(out[:, 1::2], 0, h - 1)
    return out


def normalize_map(score_map: MapLike, relu: bool = False, *, stats: MapStats | None = None) -> np.ndarray:
    r"""Min-max normalize each map to ``[0, 1]``: :math:`\hat M = (M - \min M) / (\max M - \min M)`.

    This is the ``normalize_scoremap`` step of the reference protocol (Choe et al. 2020) used before
    any thresholding here. With ``relu`` the map is first clipped at zero (:math:`\max(M, 0)`), so
    ``normalize_map(M, relu=True) > t`` is exactly Zhou et al.'s "above ``t`` of the max value" rule
    whenever the map has a non-positive value (§3.2).

    Degenerate maps — constant (``max == min``) or containing NaN/inf — become all zeros (never NaN,
    never a number computed from NaN) and are counted in ``stats``; without ``stats`` a
    :class:`DegenerateMapWarning` is emitted. Maps are rescaled by their largest magnitude first so
    ranges near the float limits do not overflow (min-max is invariant to that rescaling).

    Args:
        score_map: ``(H, W)`` map or ``(N, H, W)`` batch (numpy or torch); each map is normalized on its own.
        relu: clip negative values to zero before normalizing.
        stats: optional counter of degenerate maps.

    Returns:
        Array of the input shape; float64 if the input is float64, else float32.
    """
    maps, batched = _as_maps(score_map)
    out_dtype = np.float64 if maps.dtype == np.float64 else np.float32
    x = maps.astype(np.float64, copy=True)
    finite = np.isfinite(x).all(axis=(1, 2))
    x[~finite] = 0.0
    if relu:
        np.maximum(x, 0.0, out=x)
    scale = np.abs(x).max(axis=(1, 2), keepdims=True)
    x /= np.where(scale > 0, scale, 1.0)
    lo = x.min(axis=(1, 2), keepdims=True)
    rng = x.max(axis=(1, 2), keepdims=True) - lo
    constant = finite & (rng[:, 0, 0] <= 0)
    x = (x - lo) / np.where(rng > 0, rng, 1.0)
    x[~finite | constant] = 0.0
    _record(stats, len(maps), constant, ~finite)
    out = np.clip(x, 0.0, 1.0).astype(out_dtype)
    return out if batched else out[0]


_CV2_INTERP = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
}


def upsample_map(score_map: MapLike, size: tuple[int, int], interpolation: Interpolation = "bilinear") -> np.ndarray:
    """Resize a map ``(h, w)`` or batch ``(N, h, w)`` to ``size = (height, width)`` with OpenCV.

    ``"bilinear"`` (default, ``cv2.INTER_LINEAR``) is half-pixel-centred and equals
    ``F.interpolate(..., mode="bilinear", align_corners=False)``; use it for display and boxes.
    ``"bicubic"`` (``cv2.INTER_CUBIC``) is what the evaluation protocol of Choe et al. (2020) applies
    to CAMs before :func:`normalize_map`; it can overshoot the input range, so normalize *after*
    resizing. Non-finite values propagate (they are counted later by :func:`normalize_map`).

    Args:
        score_map: map or batch (numpy or torch).
        size: output ``(height, width)`` — note: *not* OpenCV's ``(width, height)``.
        interpolation: ``"nearest"``, ``"bilinear"``, ``"bicubic"`` or ``"area"``.

    Returns:
        float32 (float64 for float64 input) array ``(H, W)`` or ``(N, H, W)``.
    """
    maps, batched = _as_maps(score_map)
    h, w = _check_size(size, "size")
    if interpolation not in _CV2_INTERP:
        raise ValueError(f"interpolation must be one of {sorted(_CV2_INTERP)}, got {interpolation!r}")
    dtype = np.float64 if maps.dtype == np.float64 else np.float32
    flag = _CV2_INTERP[interpolation]
    out = np.stack([cv2.resize(np.ascontiguousarray(m, dtype=dtype), (w, h), interpolation=flag) for m in maps])
    return out if batched else out[0]


def upsample_cams(cams: torch.Tensor, size: tuple[int, int], mode: Interpolation = "bilinear") -> torch.Tensor:
    """Batched torch resize of CAMs ``(N, C, h, w)`` (or ``(N, h, w)``) to ``size = (height, width)``.

    Uses ``F.interpolate`` with ``align_corners=False`` for ``"bilinear"``/``"bicubic"`` (identical
    pixel-centre convention to :func:`upsample_map`), so it stays on the GPU and differentiable.
    """
    if not isinstance(cams, torch.Tensor) or cams.ndim not in (3, 4):
        shape = tuple(cams.shape) if isinstance(cams, torch.Tensor) else type(cams).__name__
        raise ValueError(f"cams must be a tensor (N, C, h, w) or (N, h, w), got {shape}")
    h, w = _check_size(size, "size")
    if mode not in _CV2_INTERP:
        raise ValueError(f"mode must be one of {sorted(_CV2_INTERP)}, got {mode!r}")
    x = cams[:, None] if cams.ndim == 3 else cams
    if not x.is_floating_point():
        x = x.float()
    align = False if mode in ("bilinear", "bicubic") else None
    out = F.interpolate(x, size=(h, w), mode=mode, align_corners=align)
    return out[:, 0] if cams.ndim == 3 else out


def _per_map(
    score_map: MapLike,
    fn: Callable[[np.ndarray], T],
    *,
    relu: bool,
    stats: MapStats | None,
    normalize: bool = True,
) -> T | list[T]:
    """Apply ``fn`` to every (normalized) map; a single map gives one result, a batch a list."""
    maps, batched = _as_maps(score_map)
    if normalize:
        maps = normalize_map(maps, relu=relu, stats=stats)
    results = [fn(m) for m in maps]
    return results if batched else results[0]


def threshold_mask(
    score_map: MapLike, threshold: float, *, relu: bool = False, stats: MapStats | None = None
) -> np.ndarray:
    """Binary mask ``normalize_map(map) > threshold`` (strict, as ``cv2.THRESH_TOZERO`` in Choe et al.)."""
    t = _check_fraction(threshold, "threshold")
    maps, batched = _as_maps(score_map)
    mask = normalize_map(maps, relu=relu, stats=stats) > t
    return mask if batched else mask[0]


# ----------------------------------------------------------------------------------------------
# Single-box and contour strategies
# ----------------------------------------------------------------------------------------------


def zhou_boxes(
    score_map: MapLike, threshold: float = 0.2, *, relu: bool = False, stats: MapStats | None = None
) -> np.ndarray | list[np.ndarray]:
    """Zhou et al. 2016 §3.2: "segment the regions of which the value is above 20% of the max value
    of the CAM, then take the bounding box that covers the largest connected component".

    Rule: ``mask = normalize_map(map) > threshold`` (strict ">" for "above"), then
    ``contour_boxes(mask, largest_only=True)`` (largest contour area). On the min-max normalized map
    "fraction of the max" is exact when the map minimum is 0 (see :func:`normalize_map`'s ``relu``).

    Args:
        score_map: ``(H, W)`` map or ``(N, H, W)`` batch.
        threshold: fraction ``t`` in ``[0, 1]`` (paper: 0.2).
        relu: clip the map at zero before normalizing.
        stats: degenerate-map counter.

    Returns:
        ``(1, 4)`` int64 box per map (``[[0, 0, 0, 0]]`` for an empty mask); a list for a batch.
    """
    t = _check_fraction(threshold, "threshold")
    return _per_map(score_map, lambda m: contour_boxes(m > t, largest_only=True), relu=relu, stats=stats)


def _tight_box(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return np.zeros((1, 4), dtype=np.int64)
    return np.array([[xs.min(), ys.min(), xs.max(), ys.max()]], dtype=np.int64)


def moreaux_boxes(
    score_map: MapLike, threshold: float = 0.2, *, relu: bool = False, stats: MapStats | None = None
) -> np.ndarray | list[np.ndarray]:
    """Moreaux et al. 2018 §4.4: threshold the CAM "by a given percentage of its maximum value and
    consider the bounding box to be the smallest rectangle surrounding all these points".

    Rule: ``[min x, min y, max x, max y]`` of the pixels with ``normalize_map(map) > threshold`` —
    tight and inclusive. Note: the contour-based strategies inherit the reference ``x + w``
    convention of :func:`contour_boxes` (one pixel past the last foreground column/row, clipped),
    so on the same mask this box can be one pixel smaller than ``zhou``'s.

    Returns:
        ``(1, 4)`` int64 box per map (``[[0, 0, 0, 0]]`` when no pixel passes); a list for a batch.
    """
    t = _check_fraction(threshold, "threshold")
    return _per_map(score_map, lambda m: _tight_box(m > t), relu=relu, stats=stats)


def multi_contour_boxes(
    score_map: MapLike, threshold: float = 0.2, *, relu: bool = False, stats: MapStats | None = None
) -> np.ndarray | list[np.ndarray]:
    """One box per contour of ``normalize_map(map) > threshold`` (Choe et al. 2020 MaxBoxAccV2 boxes).

    Uses :func:`contour_boxes` (``RETR_TREE``: contours of holes give boxes too, as the reference does).

    Returns:
        ``(K, 4)`` int64 boxes per map (``[[0, 0, 0, 0]]`` for an empty mask); a list for a batch.
    """
    t = _check_fraction(threshold, "threshold")
    return _per_map(score_map, lambda m: contour_boxes(m > t), relu=relu, stats=stats)


def _to_uint8(normalized: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(normalized * 255.0), 0, 255).astype(np.uint8)


def _otsu_single(normalized: np.ndarray) -> tuple[float, np.ndarray]:
    t, binary = cv2.threshold(_to_uint8(normalized), 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    return float(t) / 255.0, binary > 0


def otsu_threshold(score_map: MapLike, *, relu: bool = False, stats: MapStats | None = None) -> float | list[float]:
    """Otsu's threshold (Qiu §IV-B) of the normalized map, in ``[0, 1]`` units.

    The map is min-max normalized, rounded to uint8 (``rint(255·m)``) and passed to
    ``cv2.threshold(..., cv2.THRESH_BINARY | cv2.THRESH_OTSU)``; the returned value is that uint8
    threshold divided by 255. Foreground is ``uint8 map > threshold``.
    """
    return _per_map(score_map, lambda m: _otsu_single(m)[0], relu=relu, stats=stats)


def otsu_mask(score_map: MapLike, *, relu: bool = False, stats: MapStats | None = None) -> np.ndarray:
    """Otsu binarization of the normalized map (Qiu §IV-B, used for the F-measure): bool ``(H, W)``/``(N, H, W)``.

    A constant or degenerate map gives an empty mask.
    """
    maps, batched = _as_maps(score_map)
    norm = normalize_map(maps, relu=relu, stats=stats)
    mask = np.stack([_otsu_single(m)[1] for m in norm])
    return mask if batched else mask[0]


def otsu_boxes(
    score_map: MapLike, *, relu: bool = False, stats: MapStats | None = None
) -> np.ndarray | list[np.ndarray]:
    """Otsu binarization (Qiu §IV-B) then the box of the largest connected component (Qiu §V, as Zhou).

    Returns:
        ``(1, 4)`` int64 box per map; a list for a batch.
    """
    return _per_map(score_map, lambda m: contour_boxes(_otsu_single(m)[1], largest_only=True), relu=relu, stats=stats)


# ----------------------------------------------------------------------------------------------
# Zhou et al.'s ILSVRC heuristic
# ----------------------------------------------------------------------------------------------

#: kind of each of the 5 boxes returned by :func:`zhou_ilsvrc_boxes`, in order.
ZHOU_ILSVRC_KINDS: tuple[str, ...] = ("tight", "loose", "tight", "loose", "loose")


class IlsvrcBoxes(NamedTuple):
    """Five guesses per image: ``labels`` ``(5,)``/``(N, 5)``, ``boxes`` ``(5, 4)``/``(N, 5, 4)``."""

    labels: np.ndarray
    boxes: np.ndarray
    kinds: tuple[str, ...] = ZHOU_ILSVRC_KINDS


def zhou_ilsvrc_boxes(
    cams: MapLike,
    scores: MapLike,
    *,
    tight_threshold: float = 100.0 / 255.0,
    loose_threshold: float = 0.2,
    relu: bool = False,
    stats: MapStats | None = None,
) -> IlsvrcBoxes:
    """Zhou et al. 2016 §3.2 (ILSVRC test set): "two bounding boxes (one tight and one loose) from the
    class activation map of the top 1st and 2nd predicted classes and one loose bounding box from the
    top 3rd predicted class" — five (label, box) guesses for the top-5 localization metric.

    The paper gives no numbers for "tight"/"loose". Decision: a box is :func:`zhou_boxes` (largest
    component of ``normalized map > t``); *loose* uses ``loose_threshold = 0.2``, the paper's own
    single-box rule, and *tight* ``tight_threshold = 100/255 ≈ 0.39``, the middle threshold of the
    released box generator (``zhoubolei/CAM``, ``ILSVRC_evaluate_bbox.m``: ``bbox_threshold = [20,
    100, 110]`` on the 0–255 heatmap). A higher threshold keeps fewer pixels, hence a tighter box.
    Order: top-1 tight, top-1 loose, top-2 tight, top-2 loose, top-3 loose (:data:`ZHOU_ILSVRC_KINDS`).
    Ties in ``scores`` are broken by the lower class index.

    Args:
        cams: ``(C, H, W)`` maps of one image or ``(N, C, H, W)``, at the resolution boxes are wanted in.
        scores: ``(C,)`` or ``(N, C)`` class scores (logits or probabilities), ``C >= 3``.
        tight_threshold: fraction for the tight boxes; must exceed ``loose_threshold``.
        loose_threshold: fraction for the loose boxes.
        relu: clip the maps at zero before normalizing.
        stats: degenerate-map counter (only the three maps used per image are normalized).
    """
    tight = _check_fraction(tight_threshold, "tight_threshold")
    loose = _check_fraction(loose_threshold, "loose_threshold")
    if tight <= loose:
        raise ValueError(f"tight_threshold ({tight}) must be larger than loose_threshold ({loose})")
    c = _as_numpy(cams, "cams")
    s = _as_numpy(scores, "scores").astype(np.float64)
    batched = c.ndim == 4
    if c.ndim == 3:
        c, s = c[None], s[None]
    if c.ndim != 4:
        raise ValueError(f"cams must be (C, H, W) or (N, C, H, W), got shape {c.shape}")
    if s.shape != c.shape[:2]:
        raise ValueError(f"scores must have shape {c.shape[:2] if batched else c.shape[1:2]}, got {s.shape}")
    if c.shape[1] < 3:
        raise ValueError(f"cams need at least 3 classes for the top-3 heuristic, got C={c.shape[1]}")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or inf")
    labels = np.argsort(-s, axis=1, kind="stable")[:, :3]
    out_labels = labels[:, [0, 0, 1, 1, 2]]
    out_boxes = np.empty((len(c), 5, 4), dtype=np.int64)
    for i in range(len(c)):
        norm = normalize_map(c[i, labels[i]], relu=relu, stats=stats)
        for j, (cls_rank, kind) in enumerate(zip([0, 0, 1, 1, 2], ZHOU_ILSVRC_KINDS, strict=True)):
            t = tight if kind == "tight" else loose
            out_boxes[i, j] = contour_boxes(norm[cls_rank] > t, largest_only=True)[0]
    if not batched:
        return IlsvrcBoxes(out_labels[0], out_boxes[0])
    return IlsvrcBoxes(out_labels, out_boxes)


# ----------------------------------------------------------------------------------------------
# Receptive-field geometry and fast backprojection (Gudi et al. 2017, Algorithm 1)
# ----------------------------------------------------------------------------------------------


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, tuple | list):
        return (int(v[0]), int(v[1])) if len(v) == 2 else (int(v[0]), int(v[0]))
    return int(v), int(v)


@dataclass(frozen=True)
class LayerGeometry:
    """Geometry of one spatial layer, per axis in ``(height, width)`` order.

    Attributes:
        name: module name (from ``named_modules``) or a label.
        kernel: *effective* kernel ``d·(k − 1) + 1`` (dilation folded in).
        stride: stride ``s``.
        padding: padding before the first pixel (top/left), ``p`` of Algorithm 1.
        pad_total: top + bottom (left + right) padding, only used to predict output sizes.
        ceil_mode: pooling ``ceil_mode`` (changes the output size, not the receptive field).
    """

    name: str
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    pad_total: tuple[int, int] | None = None
    ceil_mode: bool = False

    def output_size(self, in_size: tuple[int, int]) -> tuple[int, int]:
        """PyTorch's output size ``⌊(n + pad − k)/s⌋ + 1`` (``⌈·⌉`` with ceil_mode, last window kept in range)."""
        pads = self.pad_total if self.pad_total is not None else (2 * self.padding[0], 2 * self.padding[1])
        out = []
        for n, k, s, p0, pt in zip(in_size, self.kernel, self.stride, self.padding, pads, strict=True):
            span = n + pt - k
            o = (-(-span // s) if self.ceil_mode else span // s) + 1
            if self.ceil_mode and (o - 1) * s >= n + p0:
                o -= 1
            out.append(o)
        return out[0], out[1]


@functools.cache
def _tf_same_types() -> tuple[type, ...]:
    """timm's TensorFlow-"SAME" layers: ``nn.Conv2d`` / ``nn.MaxPool2d`` / ``nn.AvgPool2d`` subclasses whose
    ``forward`` pads the input with ``F.pad`` (an amount that depends on the input size) and then runs the
    op with ``padding=0`` (``Conv2dSame``, ``Conv2dSameExport``, ``MaxPool2dSame``, ``AvgPool2dSame``; built by
    ``timm.layers.create_conv2d`` / ``create_pool2d`` with ``padding='same'`` whenever the padding cannot be
    static, e.g. in every ``tf_`` EfficientNet). Empty when timm is not installed."""
    found: list[type] = []
    for module, names in (
        ("timm.layers.conv2d_same", ("Conv2dSame", "Conv2dSameExport")),
        ("timm.layers.pool2d_same", ("MaxPool2dSame", "AvgPool2dSame")),
    ):
        try:
            mod = importlib.import_module(module)
        except ImportError:  # pragma: no cover - timm is a dependency
            continue
        found.extend(getattr(mod, n) for n in names if hasattr(mod, n))
    return tuple(found)


def tf_same_padding(size: int, kernel: int, stride: int) -> int:
    """Total TF-"SAME" padding of one axis: ``max((⌈n/s⌉ − 1)·s + k − n, 0)`` with ``k`` the effective kernel
    ``(k − 1)·d + 1``; ``total // 2`` goes before the first pixel and the rest after the last
    (``timm.layers.padding.get_same_padding``). The output then has ``⌈n/s⌉`` pixels."""
    return max((-(-size // stride) - 1) * stride + kernel - size, 0)


def _layer_geometry(module: nn.Module, name: str, in_hw: tuple[int, int] | None = None) -> LayerGeometry:
    """Geometry of a Conv2d / MaxPool2d / AvgPool2d module (tuple params, dilation, ``padding='same'``).

    For timm's TF-"SAME" layers (:func:`_tf_same_types`) the padding depends on the input size ``in_hw``:
    :func:`tf_same_padding` per axis, ``total // 2`` on the top/left.
    """
    if in_hw is not None and isinstance(module, _tf_same_types()):
        k = _pair(module.kernel_size)
        s = _pair(module.stride if module.stride is not None else module.kernel_size)
        d = _pair(getattr(module, "dilation", 1))
        k_eff = (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1)
        total = (tf_same_padding(in_hw[0], k_eff[0], s[0]), tf_same_padding(in_hw[1], k_eff[1], s[1]))
        ceil = bool(getattr(module, "ceil_mode", False))
        return LayerGeometry(name, k_eff, s, (total[0] // 2, total[1] // 2), total, ceil_mode=ceil)
    if isinstance(module, nn.Conv2d):
        k, s, d = _pair(module.kernel_size), _pair(module.stride), _pair(module.dilation)
        k_eff = (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1)
        if isinstance(module.padding, str):
            total = (0, 0) if module.padding == "valid" else (k_eff[0] - 1, k_eff[1] - 1)
            return LayerGeometry(name, k_eff, s, (total[0] // 2, total[1] // 2), total)
        p = _pair(module.padding)
        return LayerGeometry(name, k_eff, s, p)
    if isinstance(module, nn.MaxPool2d):
        k, d, p = _pair(module.kernel_size), _pair(module.dilation), _pair(module.padding)
        s = _pair(module.stride if module.stride is not None else module.kernel_size)
        k_eff = (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1)
        return LayerGeometry(name, k_eff, s, p, ceil_mode=bool(module.ceil_mode))
    if isinstance(module, nn.AvgPool2d):
        k, p = _pair(module.kernel_size), _pair(module.padding)
        s = _pair(module.stride if module.stride is not None else module.kernel_size)
        return LayerGeometry(name, k, s, p, ceil_mode=bool(module.ceil_mode))
    raise TypeError(f"no geometry for {type(module).__name__}")  # pragma: no cover - guarded by callers


@dataclass(frozen=True)
class ReceptiveField:
    """Composite geometry from the input image to the CAM grid, per axis ``(height, width)``.

    CAM pixel ``x`` sees input pixels ``[x·S − P, x·S − P + K − 1]`` (before clipping): unrolling
    Algorithm 1's per-layer updates ``x0 ← x0·s − p``, ``x1 ← x1·s − p + k − 1`` from the CAM layer to
    the input gives, with ``J_i = s_1···s_{i−1}`` (``J_1 = 1``)::

        S = Π s_i,   P = Σ p_i·J_i,   K − 1 = Σ (k_i − 1)·J_i.

    Attributes:
        stride: jump ``S``.
        padding: offset ``P``.
        size: receptive-field size ``K``.
        method: ``"layers"`` (composed from given layers), ``"hooks"``, ``"gradient"`` or ``"identity"``.
        layers: the layers feeding the CAMs in input → CAM (topological) order; empty for the gradient probe.
        input_size / cam_size: sizes of the probe run, when known.
        sequential: ``True`` when ``layers`` is a single chain (then ``from_layers(layers)`` reproduces
            this field); ``False`` when parallel paths were merged (union over paths, see
            :func:`receptive_field_chain`).
    """

    stride: tuple[int, int]
    padding: tuple[int, int]
    size: tuple[int, int]
    method: str = "layers"
    layers: tuple[LayerGeometry, ...] = ()
    input_size: tuple[int, int] | None = None
    cam_size: tuple[int, int] | None = None
    sequential: bool = True

    @classmethod
    def from_layers(cls, layers: Iterable[LayerGeometry], **kwargs: Any) -> ReceptiveField:
        """Compose layers given in input → CAM order (formula in the class docstring)."""
        layers = tuple(layers)
        jump = [1, 1]
        pad = [0, 0]
        extent = [0, 0]  # K − 1
        for layer in layers:
            for a in range(2):
                pad[a] += layer.padding[a] * jump[a]
                extent[a] += (layer.kernel[a] - 1) * jump[a]
                jump[a] *= layer.stride[a]
        return cls((jump[0], jump[1]), (pad[0], pad[1]), (extent[0] + 1, extent[1] + 1), layers=layers, **kwargs)

    @classmethod
    def identity(cls) -> ReceptiveField:
        """``S = 1, P = 0, K = 1``: backprojection onto the map's own grid."""
        return cls((1, 1), (0, 0), (1, 1), method="identity")

    def project(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Unclipped input boxes ``(x0, y0, x1, y1)`` of CAM pixels ``(xs, ys)`` (int64 arrays)."""
        xs = np.asarray(xs, dtype=np.int64)
        ys = np.asarray(ys, dtype=np.int64)
        (sy, sx), (py, px), (ky, kx) = self.stride, self.padding, self.size
        x0 = xs * sx - px
        y0 = ys * sy - py
        return x0, y0, x0 + kx - 1, y0 + ky - 1


def _check_ratio(ratio: Any) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, int | float | np.floating | np.integer):
        raise ValueError(f"ratio must be a number in [0, 1], got {ratio!r}")
    r = float(ratio)
    if not 0.0 <= r <= 1.0:
        raise ValueError(f"ratio must be in [0, 1] (fraction of each receptive field removed), got {ratio!r}")
    return r


def _shrink(a0: np.ndarray, a1: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric shrink of Algorithm 1 lines 7–10: both ends move inward by ``⌊(a1 − a0)·r/2⌋``.

    The paper prints line 10 as ``x1 ← x1 + (x1 − x0)·r/2`` (a sign typo: it would *grow* the box
    while line 9 shrinks it from the left, shifting it right). We move ``x1`` left by the same amount
    as ``x0`` moves right, keeping a fraction ``≈ 1 − r`` of each receptive field centred on it. The
    offset is floored to whole pixels (a tiny epsilon absorbs float error) so the kept interval stays
    symmetric and never empties: ``r = 1`` keeps the centre pixel (two for even sizes).
    """
    if ratio == 0.0:
        return a0, a1
    d = np.floor((a1 - a0) * ratio / 2.0 + 1e-9).astype(np.int64)
    return a0 + d, a1 - d


def fast_backprojection(
    xs: Sequence[int] | np.ndarray,
    ys: Sequence[int] | np.ndarray,
    rf: ReceptiveField,
    image_size: tuple[int, int],
    ratio: float = 0.0,
) -> np.ndarray:
    """Gudi et al. 2017 Algorithm 1 (fast backprojection), vectorized over many CAM pixels.

    For each CAM pixel ``(x, y)``: input box ``x0 = x·S − P``, ``x1 = x0 + K − 1`` (the per-layer loop of
    lines 3–6 composed into ``rf``, see :class:`ReceptiveField`); if ``ratio`` ≠ 0 both ends move
    inward by ``⌊(x1 − x0)·r/2⌋`` (lines 7–10 with the sign typo of line 10 fixed, see
    :func:`_shrink`); the box is clipped to the image and filled (line 11; ``x1`` is read as
    inclusive since line 5 computes the last pixel of the kernel). All boxes are filled at once with
    a 2-D difference array (``np.add.at`` + two cumsums), O(N + H·W) instead of N slice writes.

    Args:
        xs: CAM column indices (ints ``>= 0``).
        ys: CAM row indices, same length as ``xs``.
        rf: composite geometry (:func:`receptive_field_chain` or :meth:`ReceptiveField.from_layers`).
        image_size: ``(height, width)`` of the input image.
        ratio: ``r`` in ``[0, 1]``, fraction of each receptive field removed (0 = full field).

    Returns:
        bool ``(H, W)`` mask of the backprojection ("bpImage").
    """
    h, w = _check_size(image_size, "image_size")
    r = _check_ratio(ratio)
    if not isinstance(rf, ReceptiveField):
        raise ValueError(f"rf must be a ReceptiveField, got {type(rf).__name__}")
    xs_a = np.asarray(xs).ravel()
    ys_a = np.asarray(ys).ravel()
    if xs_a.shape != ys_a.shape:
        raise ValueError(f"xs and ys must have the same length, got {xs_a.size} and {ys_a.size}")
    if xs_a.size == 0:
        return np.zeros((h, w), dtype=bool)
    for arr, name in ((xs_a, "xs"), (ys_a, "ys")):
        if not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0:
            raise ValueError(f"{name} must be non-negative integer CAM indices")
    x0, y0, x1, y1 = rf.project(xs_a, ys_a)
    x0, x1 = _shrink(x0, x1, r)
    y0, y1 = _shrink(y0, y1, r)
    x0, y0 = np.maximum(x0, 0), np.maximum(y0, 0)
    x1, y1 = np.minimum(x1, w - 1), np.minimum(y1, h - 1)
    keep = (x0 <= x1) & (y0 <= y1)
    x0, y0, x1, y1 = x0[keep], y0[keep], x1[keep], y1[keep]
    diff = np.zeros((h + 1, w + 1), dtype=np.int64)
    np.add.at(diff, (y0, x0), 1)
    np.add.at(diff, (y0, x1 + 1), -1)
    np.add.at(diff, (y1 + 1, x0), -1)
    np.add.at(diff, (y1 + 1, x1 + 1), 1)
    return diff.cumsum(axis=0).cumsum(axis=1)[:h, :w] > 0


# --- receptive field of a model ----------------------------------------------------------------

_GEOMETRY_MODULES = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
#: autograd node names of spatial ops that forward hooks on the modules above cannot describe
_SPATIAL_NODE_HINTS = ("Convolution", "Pool", "Upsample", "Pad", "Im2Col", "Col2Im", "Roll", "Flip", "Shuffle")


class _NotAChain(Exception):
    """The hooked layers do not form a single chain from the input to the CAMs."""


def _cams_of(output: Any) -> torch.Tensor:
    if isinstance(output, tuple | list) and len(output) >= 2 and isinstance(output[1], torch.Tensor):
        cams = output[1]
        if cams.ndim == 4:
            return cams
        raise ValueError(f"model must return (logits, cams) with cams (B, C, h, w), got cams {tuple(cams.shape)}")
    raise ValueError(f"model must return (logits, cams) (e.g. wsol.heads.CAMOutput), got {type(output).__name__}")


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for p in model.parameters():
        if p.is_floating_point():
            return p.device, p.dtype
    return torch.device("cpu"), torch.float32


def _check_model(model: Any) -> None:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        raise ValueError("model has no nn.Conv2d layer: cannot derive a receptive field (argument 'model')")


def _frontier(
    start: Any, stop: dict[Any, Any], x: torch.Tensor, absorbed: dict[Any, str] | None = None
) -> tuple[list[Any], bool]:
    """Recorded layer nodes reachable from ``start`` without crossing another recorded node.

    Returns the nodes found and whether the input ``x`` itself is reachable on such a path. Raises
    :class:`_NotAChain` when an unrecorded spatial op (name in ``_SPATIAL_NODE_HINTS``) is crossed;
    ``absorbed`` nodes (the ``F.pad`` of a TF-"SAME" layer, already part of that layer's geometry) are
    crossed freely.
    """
    absorbed = absorbed or {}
    found: list[Any] = []
    reaches_input = False
    seen: dict[int, Any] = {}  # keeps the node wrappers alive so their ids stay unique
    stack = [nxt for nxt, _ in start.next_functions]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen[id(node)] = node
        if node in stop:
            found.append(node)
            continue
        if hasattr(node, "variable"):  # AccumulateGrad: a leaf (the input or a parameter)
            reaches_input |= node.variable is x
            continue
        name = type(node).__name__
        if node not in absorbed and any(hint in name for hint in _SPATIAL_NODE_HINTS):
            raise _NotAChain(f"unhooked spatial operation {name} on the path to the CAMs")
        stack.extend(nxt for nxt, _ in node.next_functions)
    return found, reaches_input


_Geo = tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]  # S, P, E = K − 1 − P, size


def _merge_paths(parts: list[_Geo], where: str) -> _Geo:
    """Union of the receptive fields of parallel paths meeting at one tensor (concat/add).

    All paths must have the same jump ``S`` and output size; the union interval of CAM pixel ``x`` is
    ``[x·S − max P, x·S + max E]`` with ``E = K − 1 − P`` the extent right of ``x·S``.
    """
    strides = {p[0] for p in parts}
    sizes = {p[3] for p in parts}
    if len(strides) != 1 or len(sizes) != 1:
        raise _NotAChain(f"paths with strides {sorted(strides)} / sizes {sorted(sizes)} merge at {where}")
    pad = (max(p[1][0] for p in parts), max(p[1][1] for p in parts))
    ext = (max(p[2][0] for p in parts), max(p[2][1] for p in parts))
    return parts[0][0], pad, ext, parts[0][3]


def _hook_graph(model: nn.Module, input_size: tuple[int, int], in_channels: int) -> ReceptiveField:
    """One dummy forward with forward hooks; the autograd graph of the CAMs connects the recorded layers.

    Walking back from the CAMs, the frontier of a tensor is the set of recorded layers (and possibly
    the input) reached without crossing another recorded layer. A sequential network has exactly one
    element in every frontier; parallel branches (inception concatenations, residual additions) are
    merged by :func:`_merge_paths`. Every layer's recorded input size must equal the output size of
    its frontier and PyTorch's size formula must reproduce its recorded output size.
    """
    records: dict[Any, tuple[LayerGeometry, tuple[int, int], tuple[int, int]]] = {}
    absorbed: dict[Any, str] = {}  # F.pad nodes inside TF-"SAME" layers (their padding is in the geometry)
    tf_same = _tf_same_types()

    def make_hook(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            out = output[0] if isinstance(output, tuple) else output
            if isinstance(out, torch.Tensor) and out.grad_fn is not None and inputs:
                in_hw = (int(inputs[0].shape[-2]), int(inputs[0].shape[-1]))
                geometry = _layer_geometry(module, name, in_hw)
                records[out.grad_fn] = (geometry, in_hw, (int(out.shape[-2]), int(out.shape[-1])))
                if isinstance(module, tf_same):
                    first = out.grad_fn.next_functions[0][0] if out.grad_fn.next_functions else None
                    if first is not None and "Pad" in type(first).__name__:
                        absorbed[first] = name

        return hook

    handles = [
        m.register_forward_hook(make_hook(n)) for n, m in model.named_modules() if isinstance(m, _GEOMETRY_MODULES)
    ]
    modes = {m: m.training for m in model.modules()}
    device, dtype = _model_device_dtype(model)
    x = torch.zeros(1, in_channels, *input_size, device=device, dtype=dtype, requires_grad=True)
    try:
        model.eval()
        with torch.enable_grad():
            cams = _cams_of(model(x))
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    if cams.grad_fn is None:
        raise _NotAChain("the CAMs do not depend on the input")

    memo: dict[Any, _Geo] = {}
    order: list[LayerGeometry] = []  # post-order = topological order, input → CAM
    sequential = True

    def geometry_below(node: Any, where: str) -> _Geo:
        nonlocal sequential
        found, reaches = _frontier(node, records, x, absorbed)
        parts = [geometry_of(n) for n in found]
        if reaches:
            parts.append(((1, 1), (0, 0), (0, 0), input_size))
        if not parts:
            raise _NotAChain(f"{where} does not depend on the input")
        sequential &= len(parts) == 1
        return _merge_paths(parts, where)

    def geometry_of(node: Any) -> _Geo:
        if node in memo:
            return memo[node]
        layer, in_hw, out_hw = records[node]
        (s_in, p_in, e_in, hw) = geometry_below(node, f"the input of layer {layer.name!r}")
        if hw != in_hw or layer.output_size(in_hw) != out_hw:
            raise _NotAChain(
                f"layer {layer.name!r} sees {in_hw} → {out_hw}, the graph predicts {hw} → "
                f"{layer.output_size(hw)} (a spatial op outside Conv2d/MaxPool2d/AvgPool2d?)"
            )
        s = (s_in[0] * layer.stride[0], s_in[1] * layer.stride[1])
        p = (p_in[0] + layer.padding[0] * s_in[0], p_in[1] + layer.padding[1] * s_in[1])
        e = tuple(e_in[a] + (layer.kernel[a] - 1 - layer.padding[a]) * s_in[a] for a in range(2))
        memo[node] = (s, p, (e[0], e[1]), out_hw)
        order.append(layer)
        return memo[node]

    root = cams.grad_fn
    if root in records:
        stride, pad, ext, hw = geometry_of(root)
    else:
        name = type(root).__name__
        if any(hint in name for hint in _SPATIAL_NODE_HINTS):
            raise _NotAChain(f"unhooked spatial operation {name} produces the CAMs")
        stride, pad, ext, hw = geometry_below(root, "the CAMs")
    if not order:
        raise _NotAChain("no Conv2d/MaxPool2d/AvgPool2d layer lies between the input and the CAMs")
    cam_hw = (int(cams.shape[-2]), int(cams.shape[-1]))
    if hw != cam_hw:
        raise _NotAChain(f"the layers predict CAMs of size {hw}, the model returns {cam_hw}")
    size = (pad[0] + ext[0] + 1, pad[1] + ext[1] + 1)
    return ReceptiveField(
        stride,
        pad,
        size,
        method="hooks",
        layers=tuple(order),
        input_size=input_size,
        cam_size=cam_hw,
        sequential=sequential,
    )


def _avg_for_max_pool2d(
    input: torch.Tensor,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Any:
    """Average (sum, if dilated) pooling with the geometry of a max pooling call."""
    k = _pair(kernel_size)
    s = _pair(stride) if stride not in (None, [], ()) else k
    p, d = _pair(padding), _pair(dilation)
    if d == (1, 1):
        out = F.avg_pool2d(input, k, s, p, ceil_mode=ceil_mode, count_include_pad=True)
    elif not ceil_mode:
        weight = input.new_ones(input.shape[1], 1, *k)
        out = F.conv2d(input, weight, None, s, p, d, groups=input.shape[1])
    else:
        raise ValueError("the gradient probe cannot emulate a dilated max pooling with ceil_mode=True")
    return (out, torch.zeros_like(out, dtype=torch.long)) if return_indices else out


def _unsaturated(name: str, args: Any, kwargs: dict[str, Any]) -> torch.Tensor:
    """Saturating activation ``name`` without its upper bound (its gradient never vanishes for large inputs).

    ``hardtanh(x, lo, hi)`` → ``max(x, lo)`` (also ``nn.ReLU6``, which calls it with ``(0, 6)``),
    ``relu6`` → ``relu``, ``hardsigmoid(x) = relu6(x + 3)/6`` → ``max(x/6 + 1/2, 0)``.
    """
    x = args[0]
    if name == "hardtanh":
        lo = args[1] if len(args) > 1 else kwargs.get("min_val", -1.0)
        return torch.clamp(x, min=lo)
    if name == "relu6":
        return torch.relu(x)
    return torch.clamp(x / 6.0 + 0.5, min=0.0)  # hardsigmoid


class _MaxAsAvgPool(TorchFunctionMode):
    """The gradient probe's mode: every 2-D max pooling (``nn.MaxPool2d``, ``F.max_pool2d``,
    ``torch.max_pool2d``) runs as an average pooling of the same geometry — a max routes the gradient to
    one pixel per window, an average to all of them — the saturating activations ``hardtanh`` /
    ``ReLU6`` / ``hardsigmoid`` lose their upper bound (:func:`_unsaturated`): with the probe's positive
    weights activations grow along residual additions, and a ReLU6 above 6 has zero gradient (which
    emptied the support of timm's ``tf_efficientnet_lite0``) — and ``F.pad`` with ``±inf`` (timm's
    ``MaxPool2dSame``, whose ``-inf`` border would spread through the averaged pooling and zero the
    gradients of the last rows/columns) pads with 0. So the gradient support becomes the full
    receptive field."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "").strip("_")
        if name in ("max_pool2d", "max_pool2d_with_indices"):
            return _avg_for_max_pool2d(*args, **kwargs)
        if name in ("hardtanh", "relu6", "hardsigmoid"):
            return _unsaturated(name, args, kwargs)
        if name == "pad":
            value = args[3] if len(args) > 3 else kwargs.get("value")
            if value is not None and not math.isfinite(value):  # MaxPool2dSame pads with -inf: use 0 instead
                args, kwargs = args[:3], {**kwargs, "value": 0.0}
        return func(*args, **kwargs)


def _positive_copy(model: nn.Module) -> nn.Module:
    """Deterministic float64 copy in which every unit is active, for the input-gradient probe.

    Weights are set to ``1/fan_in`` (positive), biases to 0 and batch norms to identity; the probe
    runs under :class:`_MaxAsAvgPool` (max pooling as average pooling, ReLU6/hardtanh/hardsigmoid without
    their upper bound). With a positive input every pre-activation is positive, so no ReLU kills the
    gradient and its support is the full receptive field. Limitations: layers that can turn positive
    inputs negative (layer norm, subtraction of a mean) may still zero some gradients.
    """
    probe = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for name, p in probe.named_parameters():
            p.requires_grad_(False)
            if name.endswith("bias"):
                p.zero_()
            else:
                p.fill_(1.0 / max(1, p[0].numel()) if p.ndim >= 2 else 1.0)
        for m in probe.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
    return probe


def _gradient_supports(
    probe: nn.Module, input_size: tuple[int, int], in_channels: int, points: Sequence[tuple[int, int]], cls: int
) -> tuple[list[np.ndarray], tuple[int, int]]:
    device, _ = _model_device_dtype(probe)
    n = len(points)
    x = torch.ones(n, in_channels, *input_size, device=device, dtype=torch.float64, requires_grad=True)
    with torch.enable_grad(), _MaxAsAvgPool():
        cams = _cams_of(probe(x))
        h, w = int(cams.shape[-2]), int(cams.shape[-1])
        for y, xx in points:
            if not (0 <= y < h and 0 <= xx < w):
                raise ValueError(f"CAM pixel (y={y}, x={xx}) is outside the CAM grid {(h, w)}")
        if not 0 <= cls < cams.shape[1]:
            raise ValueError(f"class_index {cls} is outside the {cams.shape[1]} CAM channels")
        total = sum(cams[i, cls, y, xx] for i, (y, xx) in enumerate(points))
        (grad,) = torch.autograd.grad(total, x)
    support = (grad.abs().sum(dim=1) > 0).cpu().numpy()
    return [support[i] for i in range(n)], (h, w)


def gradient_support(
    model: nn.Module,
    input_size: tuple[int, int],
    cam_yx: tuple[int, int],
    in_channels: int = 3,
    class_index: int = 0,
) -> np.ndarray:
    """Input pixels whose gradient w.r.t. CAM pixel ``cam_yx = (y, x)`` is non-zero (empirical receptive field).

    Computed on a deterministic positive-weight float64 copy of ``model`` (see :func:`_positive_copy`;
    the model itself is untouched), so the support is the whole receptive field clipped to the image
    — the ground truth Algorithm 1 approximates with boxes.

    Returns:
        bool ``(H, W)`` mask.
    """
    _check_model(model)
    size = _check_size(input_size, "input_size")
    (mask,), _ = _gradient_supports(_positive_copy(model), size, in_channels, [tuple(cam_yx)], class_index)
    return mask


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(mask)
    return None if xs.size == 0 else (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))


def _gradient_probe(model: nn.Module, input_size: tuple[int, int], in_channels: int) -> ReceptiveField:
    """Receptive field from the input-gradient supports of the centre CAM pixel and its right/lower neighbours.

    ``K`` = support extent, ``S`` = shift of the support between neighbours, ``P = x·S − x0``. Valid for
    translation-equivariant networks; the supports must not touch the image border (else the probe
    cannot tell clipping from the true extent) — pass a larger ``input_size`` then.
    """
    probe = _positive_copy(model)
    device, _ = _model_device_dtype(probe)
    with torch.no_grad(), _MaxAsAvgPool():
        cams = _cams_of(probe(torch.ones(1, in_channels, *input_size, device=device, dtype=torch.float64)))
    h, w = int(cams.shape[-2]), int(cams.shape[-1])
    if h < 2 or w < 2:
        raise ValueError(f"input_size {input_size} gives a {h}×{w} CAM; the gradient probe needs at least 2×2")
    cy, cx = (h - 1) // 2, (w - 1) // 2
    masks, _ = _gradient_supports(probe, input_size, in_channels, [(cy, cx), (cy, cx + 1), (cy + 1, cx)], 0)
    boxes = [_bbox(m) for m in masks]
    big_h, big_w = input_size
    for b in boxes:
        if b is None:
            raise ValueError("the CAM does not depend on the input (empty gradient support)")
        if b[0] == 0 or b[1] == 0 or b[2] == big_w - 1 or b[3] == big_h - 1:
            raise ValueError(
                f"input_size {input_size} is too small for the gradient probe: the receptive field of the "
                "centre CAM pixel reaches the image border; pass a larger input_size"
            )
    c, right, down = (b for b in boxes if b is not None)
    sx, sy = right[0] - c[0], down[1] - c[1]
    if sx <= 0 or sy <= 0 or right[2] - c[2] != sx or down[3] - c[3] != sy:
        raise ValueError("the gradient supports of neighbouring CAM pixels are not translates of each other")
    kx, ky = c[2] - c[0] + 1, c[3] - c[1] + 1
    return ReceptiveField(
        (sy, sx),
        (cy * sy - c[1], cx * sx - c[0]),
        (ky, kx),
        method="gradient",
        input_size=input_size,
        cam_size=(h, w),
    )


def receptive_field_chain(
    model: nn.Module,
    input_size: tuple[int, int],
    in_channels: int = 3,
    *,
    method: Literal["auto", "hooks", "gradient"] = "auto",
) -> ReceptiveField:
    """Derive the input → CAM geometry of ``model`` automatically (for Gudi et al.'s Algorithm 1).

    ``"hooks"``: one dummy forward (eval mode, training flags restored afterwards) with forward hooks on
    every leaf ``Conv2d``/``MaxPool2d``/``AvgPool2d`` records each call's geometry (tuple parameters,
    dilation → effective kernel ``d(k − 1) + 1``, ``padding='same'``, ``ceil_mode``, and the
    input-size-dependent TF-"SAME" padding of timm's ``Conv2dSame`` / ``MaxPool2dSame`` / ``AvgPool2dSame``,
    see :func:`tf_same_padding`) and its input/output sizes. The autograd graph of the CAMs gives the
    connectivity (layers that do not feed the CAMs, e.g. an auxiliary classifier, are ignored). For a chain
    the layers compose into ``(S, P, K)`` as in :class:`ReceptiveField`; where parallel paths merge
    (inception concatenation, residual addition) the field is the union over the paths (same jump ``S``, the
    widest extent on each side), i.e. every input pixel that can influence the CAM pixel, and ``sequential``
    is False. The graph is verified: each layer's input size equals the output size of what feeds it,
    PyTorch's size formula reproduces each recorded output, the result matches the CAM size, and no other
    spatial op (functional pooling, interpolation, padding) lies on a path to the CAMs.

    ``"gradient"``: empirical probe — input-gradient supports of the centre CAM pixel and its
    neighbours on a deterministic positive-weight copy (:func:`gradient_support`); works for any
    translation-equivariant network, but costs a float64 forward/backward and needs an
    ``input_size`` larger than the receptive field.

    ``"auto"`` (default) uses the hooks and falls back to the gradient probe when the hooked layers
    cannot be verified; ``result.method`` tells which was used.

    Args:
        model: returns ``(logits, cams)`` with cams ``(B, C, h, w)``.
        input_size: probe image ``(height, width)``.
        in_channels: image channels.
        method: ``"auto"``, ``"hooks"`` or ``"gradient"``.

    Raises:
        ValueError: ``model`` has no ``Conv2d``; bad ``input_size``/``in_channels``/``method``;
            ``method="hooks"`` when the geometry cannot be verified; a gradient probe that fails.
    """
    _check_model(model)
    size = _check_size(input_size, "input_size")
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels <= 0:
        raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
    if method not in ("auto", "hooks", "gradient"):
        raise ValueError(f"method must be 'auto', 'hooks' or 'gradient', got {method!r}")
    hooks_failure = ""
    if method != "gradient":
        try:
            return _hook_graph(model, size, in_channels)
        except _NotAChain as err:
            if method == "hooks":
                msg = f"cannot derive the geometry of model from hooks: {err}; use method='gradient'"
                raise ValueError(msg) from None
            hooks_failure = str(err)
    try:
        return _gradient_probe(model, size, in_channels)
    except ValueError as err:
        if not hooks_failure:
            raise
        raise ValueError(f"{err} (the hooks could not be used either: {hooks_failure})") from None


# ----------------------------------------------------------------------------------------------
# Gudi et al. 2017 §3.1.1: single-shot extraction
# ----------------------------------------------------------------------------------------------


class Detections(NamedTuple):
    """Scored boxes of one map: ``boxes`` ``(K, 4)`` int64, ``scores`` ``(K,)`` float64, best first."""

    boxes: np.ndarray
    scores: np.ndarray


def affine_decision_threshold(weight: Any, bias: Any) -> float | np.ndarray:
    """CAM threshold from the output layer (Gudi §3.1.1: "computed based on the ratio of biases/weights").

    For a per-class affine output ``logit = w·s + b`` the decision boundary ``logit = 0`` lies at
    ``s* = −b/w``. For Gudi's two-class softmax (present/absent logits ``w₁s + b₁`` and ``w₀s + b₀``)
    pass ``w = w₁ − w₀`` and ``b = b₁ − b₀``. Broadcasts over arrays (one threshold per class).

    Raises:
        ValueError: a zero or non-finite ``weight``, or a non-finite ``bias``.
    """
    w = _as_numpy(weight, "weight").astype(np.float64)
    b = _as_numpy(bias, "bias").astype(np.float64)
    if not np.isfinite(w).all() or np.any(w == 0):
        raise ValueError("weight must be finite and non-zero (the boundary −b/w is undefined for w = 0)")
    if not np.isfinite(b).all():
        raise ValueError("bias must be finite")
    t = -b / w
    return float(t) if t.ndim == 0 else t


def find_peaks(cam: np.ndarray, threshold: float, size: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima above ``threshold``: ``cam == max_filter_{size×size}(cam)`` and ``cam > threshold``.

    ``scipy.ndimage.maximum_filter`` with ``-inf`` outside the map; plateau pixels all count (they
    fall in one mountain and are merged by :func:`gudi_detect`).

    Returns:
        ``(ys, xs)`` int arrays.
    """
    m = _as_numpy(cam, "cam").astype(np.float64)
    if m.ndim != 2:
        raise ValueError(f"cam must be 2-D (H, W), got shape {m.shape}")
    t = _check_finite_number(threshold, "threshold")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    local_max = ndimage.maximum_filter(m, size=size, mode="constant", cval=-np.inf)
    return np.nonzero((m == local_max) & (m > t))


_EIGHT = np.ones((3, 3), dtype=bool)


def mountain_labels(cam: np.ndarray, floor: float) -> tuple[np.ndarray, int]:
    """8-connected components of ``cam > floor`` (``scipy.ndimage.label``): the "mountains".

    A peak's mountain is its component — the flood fill of Gudi §3.1.1 from the peak over every
    pixel above the floor, including those below the CAM threshold.
    """
    m = _as_numpy(cam, "cam")
    if m.ndim != 2:
        raise ValueError(f"cam must be 2-D (H, W), got shape {m.shape}")
    labels, n = ndimage.label(m > _check_finite_number(floor, "floor"), structure=_EIGHT)
    return labels, int(n)


def _gudi_single(
    m: np.ndarray,
    threshold: float,
    floor: float,
    rf: ReceptiveField,
    image_size: tuple[int, int],
    ratio: float,
    peak_size: int,
) -> Detections:
    ys, xs = find_peaks(m, threshold, peak_size)
    if ys.size == 0:
        return Detections(np.zeros((0, 4), dtype=np.int64), np.zeros(0))
    labels, _ = mountain_labels(m, floor)
    boxes, scores = [], []
    for lab in np.unique(labels[ys, xs]):  # peaks sharing a mountain are merged
        if lab == 0:  # a peak not above the floor has no mountain
            continue
        region = labels == lab
        mys, mxs = np.nonzero(region)
        box = _bbox(fast_backprojection(mxs, mys, rf, image_size, ratio))
        if box is not None:
            boxes.append(box)
            scores.append(float(m[region].max()))
    if not boxes:
        return Detections(np.zeros((0, 4), dtype=np.int64), np.zeros(0))
    b, s = np.asarray(boxes, dtype=np.int64), np.asarray(scores)
    order = np.argsort(-s, kind="stable")
    return Detections(b[order], s[order])


def gudi_detect(
    score_map: MapLike,
    threshold: float,
    *,
    floor: float | None = None,
    rf: ReceptiveField | None = None,
    image_size: tuple[int, int] | None = None,
    ratio: float = 0.0,
    peak_size: int = 3,
    stats: MapStats | None = None,
    relative_floor: float | None = None,
) -> Detections | list[Detections]:
    """Gudi et al. 2017 §3.1.1 single-shot localization: several scored boxes per raw CAM.

    1. Peaks: local maxima (``peak_size × peak_size`` max filter) strictly above ``threshold`` — in raw
       CAM units, e.g. :func:`affine_decision_threshold` of the output layer.
    2. Mountains: flood fill from each peak over the 8-connected pixels ``> floor`` (including those
       below the threshold); peaks in the same mountain are merged, score = the highest peak.
    3. Fast backprojection (Algorithm 1, :func:`fast_backprojection`) of each mountain's CAM pixels
       onto the input image through ``rf`` with ratio ``r``.
    4. Contours of each backprojection → boxes (:func:`contour_boxes`, nested hole boxes dropped),
       each with its mountain's score; sorted by decreasing score.

    The map is *not* normalized (the threshold is in CAM units). A map with NaN/inf gives no boxes
    and is counted in ``stats`` (warning without it).

    Args:
        score_map: raw CAM ``(h, w)`` or batch ``(N, h, w)``.
        threshold: CAM threshold for peaks.
        floor: mountain floor, ``<= threshold``; default ``min(0, threshold)`` ("activated" pixels).
        rf: CAM → input geometry; ``None`` = identity (boxes on the CAM grid).
        image_size: ``(height, width)`` of the input; required with ``rf``, default the map size.
        ratio: Algorithm 1's ``r`` in ``[0, 1]``.
        peak_size: size of the max filter defining local maxima.
        stats: degenerate-map counter.
        relative_floor: if given, in ``[0, 1)``, each map's floor is ``relative_floor · max(map)`` instead of
            ``floor`` (and peaks must also exceed it): a scale-free floor, tuned on validation data like ``r``,
            for CAMs whose background level is not 0.

    Returns:
        :class:`Detections` per map (empty when no peak passes); a list for a batch.
    """
    t = _check_finite_number(threshold, "threshold")
    fl = min(0.0, t) if floor is None else _check_finite_number(floor, "floor")
    if fl > t:
        raise ValueError(f"floor ({fl}) must not exceed threshold ({t})")
    r = _check_ratio(ratio)
    if isinstance(peak_size, bool) or not isinstance(peak_size, int) or peak_size < 1:
        raise ValueError(f"peak_size must be a positive int, got {peak_size!r}")
    maps, batched = _as_maps(score_map)
    if rf is None:
        geometry = ReceptiveField.identity()
        size = maps.shape[1:] if image_size is None else _check_size(image_size, "image_size")
    else:
        if not isinstance(rf, ReceptiveField):
            raise ValueError(f"rf must be a ReceptiveField, got {type(rf).__name__}")
        if image_size is None:
            raise ValueError("image_size (height, width) is required when rf is given")
        geometry, size = rf, _check_size(image_size, "image_size")
    if relative_floor is not None:
        rel = _check_fraction(relative_floor, "relative_floor")
        if rel >= 1.0:
            raise ValueError(f"relative_floor must be in [0, 1), got {relative_floor!r}")
    nonfinite = ~np.isfinite(maps).all(axis=(1, 2))
    _record(stats, len(maps), np.zeros(len(maps), dtype=bool), nonfinite)
    empty = Detections(np.zeros((0, 4), dtype=np.int64), np.zeros(0))
    hw = (int(size[0]), int(size[1]))
    results = []
    for m, bad in zip(maps, nonfinite, strict=True):
        if bad:
            results.append(empty)
            continue
        m = m.astype(np.float64)
        map_floor = fl if relative_floor is None else rel * float(m.max())
        results.append(_gudi_single(m, max(t, map_floor), map_floor, geometry, hw, r, peak_size))
    return results if batched else results[0]


def gudi_boxes(
    score_map: MapLike,
    threshold: float,
    *,
    floor: float | None = None,
    rf: ReceptiveField | None = None,
    image_size: tuple[int, int] | None = None,
    ratio: float = 0.0,
    peak_size: int = 3,
    stats: MapStats | None = None,
    relative_floor: float | None = None,
) -> np.ndarray | list[np.ndarray]:
    """Boxes of :func:`gudi_detect` (best score first), without the scores: ``(K, 4)`` per map."""
    det = gudi_detect(
        score_map, threshold, floor=floor, rf=rf, image_size=image_size, ratio=ratio, peak_size=peak_size, stats=stats,
        relative_floor=relative_floor,
    )
    return [d.boxes for d in det] if isinstance(det, list) else det.boxes


# ----------------------------------------------------------------------------------------------
# Multi-scale maps (Qiu §V)
# ----------------------------------------------------------------------------------------------


def _minmax_torch(maps: torch.Tensor, stats: MapStats | None) -> torch.Tensor:
    """Per-(image, class) min-max normalization of ``(B, K, H, W)``; degenerate maps → zeros, counted."""
    flat = maps.reshape(maps.shape[0] * maps.shape[1], -1).double()
    finite = torch.isfinite(flat).all(dim=1)
    flat = torch.where(finite[:, None], flat, torch.zeros_like(flat))
    lo = flat.min(dim=1, keepdim=True).values
    rng = flat.max(dim=1, keepdim=True).values - lo
    constant = finite & (rng[:, 0] <= 0)
    out = (flat - lo) / torch.where(rng > 0, rng, torch.ones_like(rng))
    out[~finite | constant] = 0.0
    _record(stats, flat.shape[0], constant.cpu().numpy(), (~finite).cpu().numpy())
    return out.reshape(maps.shape).to(maps.dtype)


def multiscale_cams(
    model: nn.Module,
    images: torch.Tensor,
    scales: Sequence[float] = (1.0, 2.0, 3.0),
    out_size: tuple[int, int] | None = None,
    *,
    mode: Interpolation = "bilinear",
    normalize: bool = True,
    select: Callable[[Any], torch.Tensor] | None = None,
    stats: MapStats | None = None,
) -> torch.Tensor:
    """Average of the maps computed at several input sizes (Qiu §V, multi-scale localization).

    Qiu feeds 224, 448 and 672 pixel inputs (scales 1, 2, 3 of a 224 image) and "simply averages"
    the resulting maps. For each scale ``s`` the batch is resized to ``round(s·H) × round(s·W)``
    (bilinear, ``align_corners=False``; no resize at ``s = 1``), passed through ``model`` under
    ``torch.no_grad()`` (the model's train/eval mode is left as the caller set it), its maps resized
    to ``out_size`` with ``mode``, and — with ``normalize`` (default) — min-max normalized per
    (image, class) so that every scale weighs the same (GWAP weight maps sum to one, so their raw
    magnitude shrinks with the map size). Degenerate maps become zeros and are counted in ``stats``.

    Args:
        model: returns ``(logits, cams)``.
        images: ``(B, C, H, W)`` float tensor.
        scales: positive resize factors.
        out_size: ``(height, width)`` of the result; default ``(H, W)`` of ``images``.
        mode: interpolation of the maps.
        normalize: min-max normalize each map before averaging.
        select: picks the maps from the model output, default the CAMs (``output[1]``); e.g.
            ``lambda out: out.extras["alpha"]`` for GWAP weight maps.
        stats: degenerate-map counter.

    Returns:
        ``(B, K, out_h, out_w)`` tensor.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a float tensor (B, C, H, W), got {shape}")
    scales = tuple(scales)
    if not scales:
        raise ValueError("scales must not be empty")
    for s in scales:
        if isinstance(s, bool) or not isinstance(s, int | float) or not (math.isfinite(s) and s > 0):
            raise ValueError(f"scales must be positive numbers, got {scales!r}")
    h, w = images.shape[-2:]
    size = (int(h), int(w)) if out_size is None else _check_size(out_size, "out_size")
    pick = select if select is not None else _cams_of
    total: torch.Tensor | None = None
    with torch.no_grad():
        for s in scales:
            hw = (max(1, round(s * h)), max(1, round(s * w)))
            x = images if hw == (h, w) else F.interpolate(images, size=hw, mode="bilinear", align_corners=False)
            maps = pick(model(x))
            if not isinstance(maps, torch.Tensor) or maps.ndim != 4:
                raise ValueError("select must return a (B, K, h, w) tensor")
            maps = upsample_cams(maps, size, mode)
            if normalize:
                maps = _minmax_torch(maps, stats)
            total = maps if total is None else total + maps
    assert total is not None
    return total / len(scales)


# ----------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------

_STRATEGIES: dict[str, Callable[..., Any]] = {
    "zhou": zhou_boxes,
    "moreaux": moreaux_boxes,
    "otsu": otsu_boxes,
    "multi_contour": multi_contour_boxes,
    "gudi": gudi_boxes,
}


def available_box_strategies() -> tuple[str, ...]:
    """Names accepted by :func:`build_box_strategy` / :func:`extract_boxes`."""
    return tuple(_STRATEGIES)


def build_box_strategy(name: str, **kwargs: Any) -> Callable[[MapLike], np.ndarray | list[np.ndarray]]:
    """Bind a strategy's parameters once: ``fn = build_box_strategy("zhou", threshold=0.3); fn(maps)``.

    Unknown names, unknown or missing keyword arguments, and invalid values (fractions outside
    ``[0, 1]``, ``ratio`` outside ``[0, 1]``, non-finite Gudi thresholds) raise ``ValueError`` here,
    before any map is processed.

    Returns:
        Callable mapping a map ``(H, W)`` to ``(K, 4)`` boxes or a batch ``(N, H, W)`` to a list.
    """
    if name not in _STRATEGIES:
        raise ValueError(f"unknown box strategy {name!r}; available: {', '.join(_STRATEGIES)}")
    fn = _STRATEGIES[name]
    params = dict(list(inspect.signature(fn).parameters.items())[1:])
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ValueError(f"strategy {name!r} got unknown argument(s) {unknown}; accepted: {sorted(params)}")
    missing = [p for p, v in params.items() if v.default is inspect.Parameter.empty and p not in kwargs]
    if missing:
        raise ValueError(f"strategy {name!r} requires argument(s) {missing}")
    if name == "gudi":
        t = _check_finite_number(kwargs["threshold"], "threshold")
        if kwargs.get("floor") is not None and _check_finite_number(kwargs["floor"], "floor") > t:
            raise ValueError(f"floor ({kwargs['floor']}) must not exceed threshold ({t})")
        _check_ratio(kwargs.get("ratio", 0.0))
    elif "threshold" in kwargs:
        _check_fraction(kwargs["threshold"], "threshold")
    return functools.partial(fn, **kwargs)


def extract_boxes(score_map: MapLike, strategy: str = "zhou", **kwargs: Any) -> np.ndarray | list[np.ndarray]:
    """Boxes of ``score_map`` (``(H, W)`` → ``(K, 4)``; ``(N, H, W)`` → list) with a named strategy.

    Equivalent to ``build_box_strategy(strategy, **kwargs)(score_map)``; see the module docstring
    for the rule of each strategy.
    """
    return build_box_strategy(strategy, **kwargs)(score_map)
