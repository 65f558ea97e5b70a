"""MaxBoxAcc and MaxBoxAccV2 of Choe et al. (CVPR 2020), numerically identical to their reference code.

"Evaluating Weakly Supervised Object Localization Methods Right" (Choe, Oh, Lee, Chun, Akata, Shim;
CVPR 2020, §4 "Evaluation protocol", and the journal version's MaxBoxAccV2) evaluates a score map
:math:`s` by the *best* CAM threshold over the whole data set instead of a hand-picked one. The
protocol, step by step, as in ``wsolevaluation`` (``inference.py``, ``evaluation.py``):

1. the map is resized to ``224 × 224`` with bicubic interpolation (``cv2.INTER_CUBIC``) and min-max
   normalized, :math:`\\hat s = (s - \\min s) / (\\max s - \\min s)`; constant or NaN maps become zeros;
2. it is quantized, :math:`q = \\lfloor 255 \\hat s \\rfloor` (``(s * 255).astype(np.uint8)``);
3. for every CAM threshold :math:`\\tau \\in \\{0, \\Delta, 2\\Delta, \\dots\\} \\cap [0, 1)`
   (``np.arange(0, 1, Δ)``, :math:`\\Delta = 0.001`) the mask is
   :math:`M_\\tau = \\{q > \\lfloor \\tau \\max q \\rfloor\\}` (``cv2.threshold``, ``THRESH_BINARY``);
4. the contours of :math:`M_\\tau` (``cv2.findContours``, ``RETR_TREE``) give boxes
   ``[x, y, x + w, y + h]`` clipped to ``223`` (:func:`wsol.localize.contour_boxes`); an empty mask
   gives the box ``[0, 0, 0, 0]``. *V1* keeps the contour of largest ``cv2.contourArea``, *V2*
   ("multi-contour") keeps all of them;
5. GT boxes are rescaled to the 224 frame, :math:`x' = \\lfloor x \\cdot 224 / W \\rfloor`
   (:math:`y` with :math:`H`), and the image scores
   :math:`\\mathrm{IoU}_\\tau = \\max_{b \\in \\text{pred}, g \\in \\text{GT}} \\mathrm{IoU}(b, g)`
   (inclusive ``+1`` IoU, :func:`wsol.metrics.boxes.box_iou`);
6. :math:`\\mathrm{BoxAcc}(\\tau, \\delta) = \\frac{100}{N} \\sum_n [\\mathrm{IoU}_\\tau^{(n)} \\ge \\delta/100]`
   and :math:`\\mathrm{MaxBoxAcc}(\\delta) = \\max_\\tau \\mathrm{BoxAcc}(\\tau, \\delta)`.

**MaxBoxAcc** (V1) is :math:`\\mathrm{MaxBoxAcc}(50)` with the largest contour; **MaxBoxAccV2** is
:math:`\\frac{1}{3} \\sum_{\\delta \\in \\{30, 50, 70\\}} \\mathrm{MaxBoxAcc}(\\delta)` with all contours.
The *top-1* variant (not in the reference code) counts an image only when its predicted class is
also correct, which gives the "top-1 localization" counterpart of the GT-known MaxBoxAcc.

Two implementations give identical per-image IoU curves (tested on random, blob, ring and tiny maps):
``method="reference"`` runs the per-threshold loop above; ``method="fast"`` (default) evaluates
each *distinct* quantized level :math:`\\lfloor \\tau \\max q \\rfloor` once (at most 256 of them for
1000 thresholds) and runs ``findContours`` on the mask cropped to its bounding box, which returns the
same contours in the same order (the crop only removes empty rows and columns).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import cv2
import numpy as np
import numpy.typing as npt

try:  # optional accelerator of method="fast" (a pure-OpenCV path is used without it)
    import numba as _numba
except ImportError:  # pragma: no cover - depends on the environment
    _numba = None

from wsol.localize import DegenerateMapWarning, contour_boxes
from wsol.metrics.boxes import box_iou

__all__ = [
    "DEFAULT_IOU_THRESHOLDS",
    "RESIZE_LENGTH",
    "BoxAccCurve",
    "BoxAccEvaluator",
    "BoxAccReport",
    "ThresholdIoUs",
    "cam_thresholds",
    "compute_boxacc",
    "normalize_scoremap",
    "prepare_scoremap",
    "quantize_scoremap",
    "rescale_boxes",
    "scoremap_ious",
]

RESIZE_LENGTH = 224
DEFAULT_IOU_THRESHOLDS: tuple[int, ...] = (30, 50, 70)
Method = Literal["fast", "reference"]
_METHODS = ("fast", "reference")


# ----------------------------------------------------------------------------------------------
# Protocol building blocks
# ----------------------------------------------------------------------------------------------


def cam_thresholds(interval: float = 0.001) -> np.ndarray:
    """CAM thresholds of the protocol, ``np.arange(0, 1, interval)`` (Choe et al. 2020, §4).

    Args:
        interval: spacing ``Δ`` of the thresholds, ``0 < Δ < 1`` (reference default ``0.001``).

    Returns:
        float64 array ``[0, Δ, 2Δ, ...]`` of the values below 1, exactly as the reference builds it.
    """
    if isinstance(interval, bool) or not isinstance(interval, int | float | np.integer | np.floating):
        raise ValueError(f"cam_curve_interval must be a number in (0, 1), got {interval!r}")
    if not 0.0 < float(interval) < 1.0:  # also rejects NaN
        raise ValueError(f"cam_curve_interval must be in (0, 1), got {interval!r}")
    return np.arange(0, 1, interval)


def normalize_scoremap(scoremap: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Min-max normalization of the reference ``normalize_scoremap``: ``(s - min s) / (max s - min s)``.

    The arithmetic is the reference's (float64, ``s -= s.min(); s /= s.max()``) so the quantized map is
    bit-identical. Unlike :func:`wsol.localize.normalize_map` there is no pre-scaling.

    Args:
        scoremap: ``(H, W)`` float array (not modified).

    Returns:
        ``(normalized float64 map, reason)`` where ``reason`` is ``None``, ``"non-finite"`` (NaN or
        inf values) or ``"constant"``; degenerate maps are returned as zeros, as the reference does
        for NaN and constant maps (an inf map would make the reference fail; here it is zeroed too).
    """
    cam = np.array(scoremap, dtype=np.float64, copy=True)
    if not np.isfinite(cam).all():
        return np.zeros_like(cam), "non-finite"
    if cam.min() == cam.max():
        return np.zeros_like(cam), "constant"
    cam -= cam.min()
    cam /= cam.max()
    return cam, None


def _check_resize(resize: Any) -> int:
    if isinstance(resize, bool) or not isinstance(resize, int | np.integer) or resize < 1:
        raise ValueError(f"resize must be a positive int, got {resize!r}")
    return int(resize)


def prepare_scoremap(
    scoremap: npt.ArrayLike, resize: int = RESIZE_LENGTH, normalize: bool = True
) -> tuple[np.ndarray, str | None]:
    """Bring a score map to the protocol's frame: bicubic resize to ``resize × resize``, then normalize.

    This is ``CAMComputer.compute_and_evaluate_cams`` of the reference: ``cv2.resize(cam, (224, 224),
    interpolation=cv2.INTER_CUBIC)`` on the float64 map (a no-op when it is already ``224 × 224``),
    then :func:`normalize_scoremap`. One deliberate difference: a map that is constant (or non-finite)
    *before* resizing is zeroed at once, whereas the reference would normalize the floating-point
    ripples that bicubic resizing leaves on a constant map.

    Args:
        scoremap: ``(h, w)`` numeric array.
        resize: side of the evaluation frame (224 in the protocol).
        normalize: min-max normalize (protocol default). With ``False`` the (resized) map must
            already lie in ``[0, 1]``, as ``check_scoremap_validity`` of the reference demands.

    Returns:
        ``(float64 (resize, resize) map in [0, 1], reason)``; ``reason`` is ``None`` or why the map
        was replaced by zeros (``"non-finite"`` or ``"constant"``).

    Raises:
        ValueError: not a non-empty 2-D numeric array, or (``normalize=False``) values outside [0, 1].
    """
    resize = _check_resize(resize)
    arr = np.asarray(scoremap)
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"scoremap must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"scoremap must be 2-D (H, W), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"scoremap has an empty dimension: shape {arr.shape}")
    cam = arr.astype(np.float64)
    if normalize:
        # Checked before resizing too: bicubic weights do not sum to exactly 1 in floating point, so a
        # constant map comes out of cv2.resize with ~1e-16 ripples that normalization would blow up to
        # [0, 1] noise (the reference evaluates that noise; here such a map is a constant map).
        _, reason = normalize_scoremap(cam)
        if reason is not None:
            return np.zeros((resize, resize)), reason
    if cam.shape != (resize, resize):
        cam = cv2.resize(cam, (resize, resize), interpolation=cv2.INTER_CUBIC)
    if normalize:
        return normalize_scoremap(cam)
    if not np.isfinite(cam).all():
        raise ValueError("scoremap contains NaN or inf values (pass normalize=True to zero such maps)")
    if cam.min() < 0.0 or cam.max() > 1.0:
        raise ValueError(f"scoremap must lie in [0, 1] when normalize=False, got min {cam.min()!r}, max {cam.max()!r}")
    return cam, None


def quantize_scoremap(scoremap01: np.ndarray) -> np.ndarray:
    """The reference quantization ``(s * 255).astype(np.uint8)`` of a map in ``[0, 1]``."""
    return (np.asarray(scoremap01, dtype=np.float64) * 255).astype(np.uint8)


def rescale_boxes(boxes: npt.ArrayLike, image_size: tuple[int, int] | None, resize: int = RESIZE_LENGTH) -> np.ndarray:
    """GT boxes of a ``W × H`` image in the ``resize × resize`` frame: ``int(x * resize / W)``, ``int(y * resize / H)``.

    Same float operations and truncation as the reference ``resize_bbox``.

    Args:
        boxes: ``(K, 4)`` or ``(4,)`` ``[x0, y0, x1, y1]`` in original image pixels, ``K >= 1``.
        image_size: ``(width, height)`` of the original image (metadata order), or ``None`` when the
            boxes are already in the ``resize`` frame (then they are only checked and cast to int).
        resize: side of the evaluation frame.

    Returns:
        ``(K, 4)`` int64 boxes.

    Raises:
        ValueError: wrong shape, no box, non-finite or negative coordinates, ``x1 < x0``/``y1 < y0``, or
            a non-positive image size.
    """
    resize = _check_resize(resize)
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim == 1 and arr.shape[0] == 4:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 4 or arr.shape[0] == 0:
        raise ValueError(f"gt_boxes must have shape (K, 4) with K >= 1, got {np.shape(boxes)}")
    if not np.isfinite(arr).all():
        raise ValueError("gt_boxes contains NaN or inf coordinates")
    if (arr < 0).any():
        raise ValueError(f"gt_boxes must be non-negative (reference check_box_convention), got {arr.tolist()}")
    if ((arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1])).any():
        raise ValueError(f"gt_boxes must satisfy x0 <= x1 and y0 <= y1, got {arr.tolist()}")
    if image_size is None:
        return arr.astype(np.int64)
    try:
        width, height = (float(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be a (width, height) pair, got {image_size!r}") from None
    if not (width > 0 and height > 0 and math.isfinite(width) and math.isfinite(height)):
        raise ValueError(f"image_size must be two positive numbers (width, height), got {image_size!r}")
    # (x * new_w) / w in this order, like the reference's float arithmetic, then int() truncation.
    out = arr * float(resize) / np.array([width, height, width, height])
    return out.astype(np.int64)


# ----------------------------------------------------------------------------------------------
# Per-image IoU curves
# ----------------------------------------------------------------------------------------------


class ThresholdIoUs(NamedTuple):
    """Per-CAM-threshold best IoU of one image (each is a max over the GT boxes).

    Attributes:
        largest: ``(T,)`` IoU of the box of the largest contour (MaxBoxAcc V1).
        multi: ``(T,)`` max IoU over the boxes of all contours (MaxBoxAccV2).
    """

    largest: np.ndarray
    multi: np.ndarray


def _reference_ious(q: np.ndarray, gt: np.ndarray, thresholds: np.ndarray) -> ThresholdIoUs:
    """The straightforward loop: threshold + ``findContours`` once per CAM threshold (reference protocol)."""
    qmax = np.max(q)
    largest = np.empty(len(thresholds))
    multi = np.empty(len(thresholds))
    for i, t in enumerate(thresholds):
        _, mask = cv2.threshold(q, int(t * qmax), 255, cv2.THRESH_BINARY)
        multi[i] = box_iou(contour_boxes(mask), gt).max()
        largest[i] = box_iou(contour_boxes(mask, largest_only=True), gt).max()
    return ThresholdIoUs(largest, multi)


def _level_bboxes(q: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, ...]:
    """Bounding box rows/cols ``(y0, y1, x0, x1)`` of ``{q > L}`` for every level (all non-empty)."""
    rowmax = q.max(axis=1)
    colmax = q.max(axis=0)
    above_r = rowmax[None, :] > levels[:, None]
    above_c = colmax[None, :] > levels[:, None]
    y0 = above_r.argmax(axis=1)
    y1 = q.shape[0] - 1 - above_r[:, ::-1].argmax(axis=1)
    x0 = above_c.argmax(axis=1)
    x1 = q.shape[1] - 1 - above_c[:, ::-1].argmax(axis=1)
    return y0, y1, x0, x1


def _contour_stats(contours: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``boundingRect`` and twice the ``contourArea`` of many contours at once, exactly.

    Vectorized over the concatenated points (a Python loop over thousands of contours of noisy maps
    would dominate the run time). For integer points ``boundingRect`` is ``(min x, min y, max x - min x
    + 1, max y - min y + 1)`` and ``contourArea`` is half the absolute shoelace sum
    :math:`|\\sum_i x_i y_{i+1} - x_{i+1} y_i|`; the sum is computed in int64, so it is exact and
    compares exactly like OpenCV's (exact, since the coordinates are small integers) double result.

    Returns:
        ``(K, 4)`` int64 ``[min x, min y, max x, max y]`` and ``(K,)`` int64 ``2 * area``.
    """
    lengths = np.fromiter(map(len, contours), dtype=np.int64, count=len(contours))
    pts = np.concatenate(contours).reshape(-1, 2).astype(np.int64)
    starts = np.zeros(len(contours), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    x, y = pts[:, 0], pts[:, 1]
    bounds = np.stack(
        [np.minimum.reduceat(x, starts), np.minimum.reduceat(y, starts), np.maximum.reduceat(x, starts),
         np.maximum.reduceat(y, starts)],
        axis=1,
    )  # fmt: skip
    nxt = np.arange(1, len(pts) + 1)
    nxt[starts + lengths - 1] = starts  # close each polygon
    twice_area = np.abs(np.add.reduceat(x * y[nxt] - x[nxt] * y, starts))
    return bounds, twice_area


# ----------------------------------------------------------------------------------------------
# Level sweep (numba): all distinct levels of one map in one union-find pass over its pixels
# ----------------------------------------------------------------------------------------------
# Hand-written because no library computes, for *every* threshold of a map at once, the boxes of the
# connected components and holes plus the contour areas; re-running findContours / connectedComponents
# per level is what the sweep avoids. The correspondences it relies on (checked against cv2.findContours
# by the exhaustive and hypothesis tests of tests/test_metrics_boxacc.py) are:
#
# * outer borders (RETR_TREE, 8-connectivity) <-> 8-connected foreground components; their
#   boundingRect is the pixel bounding box of the component;
# * hole borders <-> 4-connected background components that do not touch the image border (OpenCV pads
#   the image with zeros); the border runs on the foreground pixels around the hole, so its boundingRect
#   is the hole's pixel box grown by one pixel on each side;
# * contourArea of an outer border of a hole-free component is (2 n(Q4) + n(Q3)) / 2 over the 2 × 2
#   windows ("bit quads", Gray 1971) with 4 / 3 foreground corners; a hole border's area never exceeds
#   the area of the outer border of its component (which comes first in findContours order), so the
#   largest contour (MaxBoxAcc V1) is always an outer border; the number of holes is 1 - Euler number,
#   E = (n(Q1) - n(Q3) - 2 n(QD)) / 4 (8-connectivity). Both quad sums are additive over components
#   (all foreground pixels of a 2 × 2 window are 8-connected), so they are kept per component;
# * components with holes get their exact area from a Suzuki & Abe (1985) outer-border trace (the
#   algorithm behind findContours) when, and only when, a cheap bound leaves the largest one undecided;
#   exact ties at the maximum (order of findContours decides) are left to findContours.


def _quad_tables() -> tuple[np.ndarray, np.ndarray]:
    """Change of ``2 n(Q4) + n(Q3)`` and of ``4 E`` when a pixel with 8-neighbourhood bits ``nb`` is added.

    Neighbour bit ``k`` is at ``(dy, dx)`` = ``_NEIGHBOURS[k]``; the four 2 × 2 windows containing the
    pixel are scored before and after it is set.
    """

    def area2(bits: int) -> int:
        return {3: 1, 4: 2}.get(bin(bits).count("1"), 0)

    def euler4(bits: int) -> int:  # 4 x the Euler-number contribution of a window, 8-connectivity
        c = bin(bits).count("1")
        return int(c == 1) - int(c == 3) - 2 * int(bits in (0b1001, 0b0110))

    d_area = np.zeros(256, np.int64)
    d_euler = np.zeros(256, np.int64)
    for nb in range(256):
        n = [(nb >> k) & 1 for k in range(8)]
        # (corners before, bit of the new pixel) for windows with the pixel at BR, BL, TR, TL
        windows = (
            (n[0] | n[1] << 1 | n[3] << 2, 8),
            (n[1] | n[2] << 1 | n[4] << 3, 4),
            (n[3] | n[5] << 2 | n[6] << 3, 2),
            (n[4] << 1 | n[6] << 2 | n[7] << 3, 1),
        )
        for before, bit in windows:
            d_area[nb] += area2(before | bit) - area2(before)
            d_euler[nb] += euler4(before | bit) - euler4(before)
    return d_area, d_euler


_NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def _union_tables() -> tuple[np.ndarray, np.ndarray]:
    """For each 8-neighbourhood ``nb``: one neighbour per group of mutually 8-connected present neighbours.

    Neighbours of one group are already in one component, so a new pixel needs one union per group.
    """
    reps = np.zeros((256, 4), np.int64)
    nrep = np.zeros(256, np.int64)
    for nb in range(256):
        present = [k for k in range(8) if nb >> k & 1]
        group = {k: k for k in present}

        def root(k: int, group: dict[int, int] = group) -> int:
            while group[k] != k:
                k = group[k]
            return k

        for a in present:
            for b in present:
                (ya, xa), (yb, xb) = _NEIGHBOURS[a], _NEIGHBOURS[b]
                if max(abs(ya - yb), abs(xa - xb)) == 1:
                    group[root(a)] = root(b)
        roots = sorted({root(k) for k in present})
        nrep[nb] = len(roots)
        reps[nb, : len(roots)] = roots
    return reps, nrep


def _iou_gt(b0: float, b1: float, b2: float, b3: float, gt: np.ndarray) -> float:
    """``box_iou([b], gt).max()`` with the same float64 operations (so bit-identical)."""
    best = 0.0
    for k in range(gt.shape[0]):
        g0, g1, g2, g3 = gt[k, 0], gt[k, 1], gt[k, 2], gt[k, 3]
        inter = max(min(b2, g2) - max(b0, g0) + 1.0, 0.0) * max(min(b3, g3) - max(b1, g1) + 1.0, 0.0)
        union = (b2 - b0 + 1.0) * (b3 - b1 + 1.0) + (g2 - g0 + 1.0) * (g3 - g1 + 1.0) - inter
        v = inter / max(union, 2.2250738585072014e-308)
        if k == 0 or v > best:
            best = v
    return best


def _find(parent: np.ndarray, i: int) -> int:
    """Union-find root with path halving."""
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def _trace_twice_area(inside: np.ndarray, start: int, pw: int, dirs: np.ndarray) -> int:
    """Twice the ``contourArea`` of the outer border starting at the raster-first pixel ``start``.

    Border following of Suzuki & Abe (1985), steps 3.1–3.5 (what ``cv2.findContours`` runs), on the
    zero-padded flat mask ``inside`` of row pitch ``pw``; ``dirs[k]`` is the flat offset of direction
    ``k`` (0 = right, counter-clockwise). Returns ``|sum x_i y_{i+1} - x_{i+1} y_i|`` over the border.
    """
    i1 = -1
    for t in range(8):  # 3.1: clockwise around start, from its (background) left neighbour
        c = start + dirs[(4 - t) % 8]
        if inside[c]:
            i1 = c
            break
    if i1 < 0:  # isolated pixel
        return 0
    i2, i3, acc = i1, start, 0
    while True:
        d = 0
        for k in range(8):
            if dirs[k] == i2 - i3:
                d = k
                break
        i4 = i2
        for t in range(1, 9):  # 3.3: counter-clockwise around i3, starting after i2
            c = i3 + dirs[(d + t) % 8]
            if inside[c]:
                i4 = c
                break
        y3, y4 = i3 // pw, i4 // pw
        acc += (i3 - y3 * pw) * y4 - (i4 - y4 * pw) * y3
        if i4 == start and i3 == i1:  # 3.5: back at the start
            break
        i2, i3 = i3, i4
    return abs(acc)


# Component records of the sweep: one row of 16 int32 fields (64 bytes, about one cache line) per
# component, rows allocated densely in creation order, and the union-find runs on these component ids.
# A pixel only stores its component id (``lab``), so a pixel joining an existing component writes one
# word instead of initializing a whole record. The pixels are visited in value order, i.e. scattered
# over the map; one record per component instead of one array per field (indexed by pixel) keeps the
# sweep in cache, which made it about 2.5x faster.
_SIZE, _X0, _Y0, _X1, _Y1, _FIRST, _EULER, _QUAD, _AREA2, _EXACT, _DIRTY, _POS = range(12)
_NFIELDS = 16


def _new_component(rec: np.ndarray, parent: np.ndarray, c: int, x: int, y: int, p: int) -> None:
    """Record of a one-pixel component ``c`` at ``(x, y)`` (flat padded index ``p``)."""
    parent[c] = c
    rec[c, _SIZE] = 1
    rec[c, _X0] = x
    rec[c, _X1] = x
    rec[c, _Y0] = y
    rec[c, _Y1] = y
    rec[c, _FIRST] = p
    rec[c, _EULER] = 0
    rec[c, _QUAD] = 0
    rec[c, _POS] = -1


def _merge(rec: np.ndarray, parent: np.ndarray, r: int, s: int, live: np.ndarray, nlive: int) -> tuple[int, int]:
    """Union by size of the roots ``r != s``; the absorbed root leaves ``live``. Returns ``(root, nlive)``."""
    if rec[s, _SIZE] > rec[r, _SIZE]:
        r, s = s, r
    parent[s] = r
    rec[r, _SIZE] += rec[s, _SIZE]
    rec[r, _X0] = min(rec[r, _X0], rec[s, _X0])
    rec[r, _Y0] = min(rec[r, _Y0], rec[s, _Y0])
    rec[r, _X1] = max(rec[r, _X1], rec[s, _X1])
    rec[r, _Y1] = max(rec[r, _Y1], rec[s, _Y1])
    rec[r, _FIRST] = min(rec[r, _FIRST], rec[s, _FIRST])
    rec[r, _EULER] += rec[s, _EULER]
    rec[r, _QUAD] += rec[s, _QUAD]
    j = rec[s, _POS]
    if j >= 0:
        nlive -= 1
        last = live[nlive]
        live[j] = last
        rec[last, _POS] = j
        rec[s, _POS] = -1
    return r, nlive


def _sweep_levels_py(
    q: np.ndarray, levels: np.ndarray, gt: np.ndarray, d_area: np.ndarray, d_euler: np.ndarray,
    reps: np.ndarray, nrep: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """All-contour and largest-contour IoU of ``{q > L}`` for every level ``L`` (ascending, all < max q).

    Foreground pass (levels high to low, pixels added by decreasing value): union-find over 8-connected
    components keeping their box, ``2 n(Q4) + n(Q3)``, ``4 E`` and raster-first pixel; after each level
    the components that changed get their IoU recomputed and the live ones give the outer-border boxes
    and the largest contour. Background pass (levels low to high, pixels added by increasing value):
    union-find over 4-connected components, the zero padding being one pre-added component; live
    components not merged with it are the holes.

    Returns:
        ``(multi, largest, tied)``: per-level IoUs, and the levels whose largest contour is tied in area
        (their ``largest`` entry is not set; the caller asks ``findContours``).
    """
    h, w = q.shape
    n = h * w
    pw = w + 2
    npad = (h + 2) * pw
    nl = levels.shape[0]
    flat = q.ravel()
    # counting sort of the pixels by value (flat indices in the zero-padded frame)
    start = np.zeros(257, np.int64)
    for i in range(n):
        start[flat[i] + 1] += 1
    for v in range(256):
        start[v + 1] += start[v]
    order = np.empty(n, np.int32)
    value = np.empty(n, np.uint8)
    for y in range(h):
        for x in range(w):
            v = flat[y * w + x]
            k = start[v]
            order[k] = (y + 1) * pw + x + 1
            value[k] = v
            start[v] = k + 1

    multi = np.full(nl, -1.0)
    largest = np.full(nl, -1.0)
    tied = np.zeros(nl, np.bool_)
    lab = np.empty(npad, np.int32)  # component id of each pixel already added
    inside = np.zeros(npad, np.bool_)
    parent = np.empty(n + 1, np.int32)
    rec = np.empty((n + 1, _NFIELDS), np.int32)  # _AREA2: _QUAD = 2 n(Q4) + n(Q3), or the traced area
    iou = np.empty(n + 1, np.float64)
    changed = np.empty(n + 1, np.int32)  # components (roots or not) touched since the last level
    live = np.empty(n + 1, np.int32)
    nlive = 0
    ncomp = 0
    fw = float(w - 1)
    fh = float(h - 1)
    offs = np.array([-pw - 1, -pw, -pw + 1, -1, 1, pw - 1, pw, pw + 1])  # order of _NEIGHBOURS
    dirs = np.array([1, -pw + 1, -pw, -pw - 1, -1, pw - 1, pw, pw + 1])  # Suzuki directions 0..7

    # ---- foreground: 8-connected components of {q > L}, L from high to low
    ptr = n - 1
    for li in range(nl - 1, -1, -1):
        lev = levels[li]
        nchanged = 0
        while ptr >= 0 and value[ptr] > lev:
            p = order[ptr]
            ptr -= 1
            y = p // pw - 1
            x = p - (y + 1) * pw - 1
            nb = 0
            for k in range(8):
                if inside[p + offs[k]]:
                    nb |= 1 << k
            inside[p] = True
            m = nrep[nb]
            if m == 0:
                r = ncomp
                ncomp += 1
                _new_component(rec, parent, r, x, y, p)
                live[nlive] = r
                rec[r, _POS] = nlive
                nlive += 1
            else:
                c = p + offs[reps[nb, 0]]
                r = _find(parent, lab[c])
                lab[c] = r  # shortcut for the next pixels next to c
                for t in range(1, m):
                    c = p + offs[reps[nb, t]]
                    s = _find(parent, lab[c])
                    lab[c] = s
                    if s != r:
                        r, nlive = _merge(rec, parent, r, s, live, nlive)
                rec[r, _SIZE] += 1
                rec[r, _X0] = min(rec[r, _X0], x)
                rec[r, _Y0] = min(rec[r, _Y0], y)
                rec[r, _X1] = max(rec[r, _X1], x)
                rec[r, _Y1] = max(rec[r, _Y1], y)
                rec[r, _FIRST] = min(rec[r, _FIRST], p)
            lab[p] = r
            rec[r, _QUAD] += d_area[nb]
            rec[r, _EULER] += d_euler[nb]
            if rec[r, _DIRTY] != 1 or m == 0:  # m == 0: a fresh record, _DIRTY not yet set
                rec[r, _DIRTY] = 1
                changed[nchanged] = r
                nchanged += 1
        if nlive == 0:  # not reached for levels < max q; the reference box of an empty mask
            multi[li] = largest[li] = _iou_gt(0.0, 0.0, 0.0, 0.0, gt)
            continue
        for j in range(nchanged):  # only components that grew or merged need a new IoU
            r = changed[j]
            if rec[r, _DIRTY] == 1 and parent[r] == r:
                rec[r, _AREA2] = rec[r, _QUAD]
                rec[r, _EXACT] = rec[r, _EULER] == 4  # no hole: the quad area is the contour area
                bx1, by1 = min(float(rec[r, _X1] + 1), fw), min(float(rec[r, _Y1] + 1), fh)
                iou[r] = _iou_gt(float(rec[r, _X0]), float(rec[r, _Y0]), bx1, by1, gt)
            rec[r, _DIRTY] = 0
        best = -1.0
        arg = -1
        lb = -1
        for j in range(nlive):
            r = live[j]
            best = max(best, iou[r])
            if rec[r, _AREA2] > lb:  # a lower bound of the contour area (exact without holes)
                lb = rec[r, _AREA2]
                arg = r
        multi[li] = best
        decided = True
        for j in range(nlive):  # upper bound with holes: the box spanned by the pixel centres
            r = live[j]
            bound = rec[r, _AREA2] if rec[r, _EXACT] else 2 * (rec[r, _X1] - rec[r, _X0]) * (rec[r, _Y1] - rec[r, _Y0])
            if r != arg and bound >= lb:
                decided = False
                break
        if decided:
            largest[li] = iou[arg]
            continue
        if not rec[arg, _EXACT]:
            rec[arg, _AREA2] = _trace_twice_area(inside, rec[arg, _FIRST], pw, dirs)
            rec[arg, _EXACT] = 1
        top = rec[arg, _AREA2]
        for j in range(nlive):  # every component that may reach the area of `arg` gets its exact area
            r = live[j]
            if not rec[r, _EXACT] and 2 * (rec[r, _X1] - rec[r, _X0]) * (rec[r, _Y1] - rec[r, _Y0]) >= rec[arg, _AREA2]:
                rec[r, _AREA2] = _trace_twice_area(inside, rec[r, _FIRST], pw, dirs)
                rec[r, _EXACT] = 1
            if rec[r, _EXACT]:
                top = max(top, rec[r, _AREA2])
        win = -1
        for j in range(nlive):
            r = live[j]
            if rec[r, _EXACT] and rec[r, _AREA2] == top:
                win = r if win == -1 else -2
        if win >= 0:
            largest[li] = iou[win]
        else:
            tied[li] = True

    # ---- background: 4-connected components of {q <= L}, L from low to high; the padding is component 0
    inside[:] = False
    for y in range(h + 2):
        for x in range(w + 2):
            if y == 0 or x == 0 or y == h + 1 or x == w + 1:
                inside[y * pw + x] = True
                lab[y * pw + x] = 0
    _new_component(rec, parent, 0, 0, 0, 0)
    rec[0, _SIZE] = npad  # never absorbed by a hole (union by size), never live
    rec[0, _DIRTY] = 0
    ncomp = 1
    nlive = 0
    ptr = 0
    for li in range(nl):
        lev = levels[li]
        nchanged = 0
        while ptr < n and value[ptr] <= lev:
            p = order[ptr]
            ptr += 1
            y = p // pw - 1
            x = p - (y + 1) * pw - 1
            r = -1
            for k in (1, 3, 4, 6):
                c = p + offs[k]
                if not inside[c] or lab[c] == r:
                    continue
                s = _find(parent, lab[c])
                lab[c] = s  # shortcut for the next pixels next to c
                if r == -1:
                    r = s
                elif s != r:
                    r, nlive = _merge(rec, parent, r, s, live, nlive)
            inside[p] = True
            if r == -1:
                r = ncomp
                ncomp += 1
                _new_component(rec, parent, r, x, y, p)
                live[nlive] = r
                rec[r, _POS] = nlive
                nlive += 1
                rec[r, _DIRTY] = 0
            else:
                rec[r, _SIZE] += 1
                rec[r, _X0] = min(rec[r, _X0], x)
                rec[r, _Y0] = min(rec[r, _Y0], y)
                rec[r, _X1] = max(rec[r, _X1], x)
                rec[r, _Y1] = max(rec[r, _Y1], y)
            lab[p] = r
            if rec[r, _DIRTY] == 0:
                rec[r, _DIRTY] = 1
                changed[nchanged] = r
                nchanged += 1
        for j in range(nchanged):  # holes: boundingRect of the hole border = hole box grown by 1
            r = changed[j]
            if parent[r] == r and rec[r, _POS] >= 0:
                bx1, by1 = min(float(rec[r, _X1] + 2), fw), min(float(rec[r, _Y1] + 2), fh)
                iou[r] = _iou_gt(float(rec[r, _X0] - 1), float(rec[r, _Y0] - 1), bx1, by1, gt)
            rec[r, _DIRTY] = 0
        for j in range(nlive):
            multi[li] = max(multi[li], iou[live[j]])
    return multi, largest, tied


_SWEEP_TABLES = (*_quad_tables(), *_union_tables())
if _numba is None:  # pragma: no cover - exercised only without numba
    _sweep_levels = None
else:
    _iou_gt = _numba.njit(cache=True)(_iou_gt)
    _find = _numba.njit(cache=True)(_find)
    _new_component = _numba.njit(cache=True)(_new_component)
    _merge = _numba.njit(cache=True)(_merge)
    _trace_twice_area = _numba.njit(cache=True)(_trace_twice_area)
    _sweep_levels = _numba.njit(cache=True)(_sweep_levels_py)


def _contour_level_ious(q: np.ndarray, gt: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Largest-contour and all-contour IoU of ``{q > L}`` for each (non-empty) level, via ``findContours``.

    The mask is cropped to its bounding box before ``findContours``: OpenCV pads the image with zeros,
    so the crop (which removes only empty rows/columns) yields the same contours in the same raster
    order, shifted. Boxes and areas of all contours of all levels are computed at once
    (:func:`_contour_stats`), the largest contour of a level is its first contour of maximal area
    (like ``max(key=contourArea)``), and all IoUs come from one vectorized :func:`box_iou` call.

    Returns:
        ``(largest, multi)``, one IoU per level.
    """
    h, w = q.shape
    y0, y1, x0, x1 = _level_bboxes(q, levels)
    contours: list[np.ndarray] = []
    counts = np.empty(len(levels), dtype=np.int64)
    find, tree, simple = cv2.findContours, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE
    for i, (level, a, b, c, d) in enumerate(
        zip(levels.tolist(), y0.tolist(), y1.tolist(), x0.tolist(), x1.tolist(), strict=True)
    ):
        found = find((q[a : b + 1, c : d + 1] > level).view(np.uint8), tree, simple)[0]
        counts[i] = len(found)
        contours.extend(found)
    bounds, twice_area = _contour_stats(contours)
    owner = np.repeat(np.arange(len(levels)), counts)
    boxes = bounds + np.stack([x0, y0, x0, y0], axis=1)[owner]
    boxes[:, 2:] += 1  # boundingRect: x + w = max x + 1, then clipped like the reference
    np.minimum(boxes[:, 2], w - 1, out=boxes[:, 2])
    np.minimum(boxes[:, 3], h - 1, out=boxes[:, 3])
    box_best = box_iou(boxes, gt).max(axis=1)
    starts = np.zeros(len(levels), dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    multi = np.maximum.reduceat(box_best, starts)
    is_max = twice_area == np.maximum.reduceat(twice_area, starts)[owner]
    first_max = np.minimum.reduceat(np.where(is_max, np.arange(len(owner)), len(owner)), starts)
    return box_best[first_max], multi


def _fast_ious(q: np.ndarray, gt: np.ndarray, thresholds: np.ndarray) -> ThresholdIoUs:
    """Same result as :func:`_reference_ious`, each *distinct* quantized level evaluated once.

    ``int(t * max q)`` takes at most ``max q <= 255`` values over the thresholds, and the mask only
    depends on it, so each level is processed once and its result is broadcast back. With numba the
    levels are swept by :func:`_sweep_levels` (one union-find pass over the pixels, see there), which
    asks for ``findContours`` (:func:`_contour_level_ious`) only on levels where the largest contour
    is tied; without numba every level goes through :func:`_contour_level_ious`.
    """
    qmax = int(q.max())
    levels = (thresholds * qmax).astype(np.int64)  # == int(t * np.max(q)) of the reference
    if qmax == 0:  # every mask is empty: the reference box [0, 0, 0, 0]
        iou = float(box_iou(np.zeros((1, 4)), gt).max())
        return ThresholdIoUs(np.full(len(thresholds), iou), np.full(len(thresholds), iou))
    uniq, inverse = np.unique(levels, return_inverse=True)
    if _sweep_levels is None:
        largest, multi = _contour_level_ious(q, gt, uniq)
    else:
        multi, largest, tied = _sweep_levels(np.ascontiguousarray(q), uniq, np.ascontiguousarray(gt), *_SWEEP_TABLES)
        if tied.any():
            largest[tied] = _contour_level_ious(q, gt, uniq[tied])[0]
    return ThresholdIoUs(largest[inverse], multi[inverse])


def scoremap_ious(
    scoremap01: np.ndarray, gt_boxes: np.ndarray, thresholds: np.ndarray, method: Method = "fast"
) -> ThresholdIoUs:
    """Best IoU per CAM threshold of one prepared map (steps 2–5 of the protocol).

    Args:
        scoremap01: ``(H, W)`` map in ``[0, 1]`` already in the evaluation frame (see :func:`prepare_scoremap`).
        gt_boxes: ``(K, 4)`` GT boxes in the same frame (see :func:`rescale_boxes`).
        thresholds: CAM thresholds in ``[0, 1)`` (see :func:`cam_thresholds`).
        method: ``"fast"`` (distinct levels, cropped masks) or ``"reference"`` (per-threshold loop);
            both return identical arrays.

    Returns:
        :class:`ThresholdIoUs` with one value per threshold for the largest contour and for all contours.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    s = np.asarray(scoremap01, dtype=np.float64)
    if s.ndim != 2 or s.size == 0:
        raise ValueError(f"scoremap01 must be a non-empty 2-D map, got shape {s.shape}")
    if not np.isfinite(s).all() or s.min() < 0.0 or s.max() > 1.0:
        raise ValueError("scoremap01 must be finite and lie in [0, 1] (use prepare_scoremap first)")
    gt = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    if gt.shape[0] == 0:
        raise ValueError("gt_boxes must contain at least one box")
    t = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if t.size == 0 or not np.isfinite(t).all() or t.min() < 0.0 or t.max() >= 1.0:
        raise ValueError("thresholds must be a non-empty array of values in [0, 1)")
    q = quantize_scoremap(s)
    return _fast_ious(q, gt, t) if method == "fast" else _reference_ious(q, gt, t)


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BoxAccCurve:
    """Box accuracy (%) against the CAM threshold for one contour mode, at several IoU thresholds δ.

    Attributes:
        mode: ``"largest"`` (MaxBoxAcc V1 boxes) or ``"multi"`` (all contours, MaxBoxAccV2 boxes).
        cam_thresholds: ``(T,)`` CAM thresholds.
        accuracy: δ (in %) → ``(T,)`` accuracy in %, ``100 · #correct / N``.
        max_accuracy: δ → :math:`\\max_\\tau` accuracy (the reference ``compute()``).
        best_threshold: δ → the first CAM threshold reaching the maximum.
    """

    mode: str
    cam_thresholds: np.ndarray
    accuracy: dict[int, np.ndarray]
    max_accuracy: dict[int, float]
    best_threshold: dict[int, float]

    @classmethod
    def from_counts(
        cls, mode: str, thresholds: np.ndarray, num_correct: dict[int, np.ndarray], num_images: int
    ) -> BoxAccCurve:
        """Accuracy curves ``num_correct * 100. / float(num_images)`` as in the reference ``compute``."""
        acc = {d: c * 100.0 / float(num_images) for d, c in num_correct.items()}
        best = {d: int(np.argmax(a)) for d, a in acc.items()}
        return cls(
            mode=mode,
            cam_thresholds=thresholds,
            accuracy=acc,
            max_accuracy={d: float(acc[d][i]) for d, i in best.items()},
            best_threshold={d: float(thresholds[i]) for d, i in best.items()},
        )

    def mean_max_accuracy(self, iou_thresholds: Sequence[int]) -> float:
        """Mean of :attr:`max_accuracy` over ``iou_thresholds`` (the MaxBoxAccV2 average)."""
        return float(np.mean([self.max_accuracy[d] for d in iou_thresholds]))

    def to_dict(self, include_curves: bool = False) -> dict[str, Any]:
        """JSON-ready dict: per-δ maximum and best threshold (and the curves when asked)."""
        out: dict[str, Any] = {
            "per_iou": {
                str(d): {"max_accuracy": self.max_accuracy[d], "best_cam_threshold": self.best_threshold[d]}
                for d in sorted(self.max_accuracy)
            }
        }
        if include_curves:
            out["cam_thresholds"] = self.cam_thresholds.tolist()
            out["accuracy"] = {str(d): self.accuracy[d].tolist() for d in sorted(self.accuracy)}
        return out


@dataclass(frozen=True)
class BoxAccReport:
    """MaxBoxAcc (V1), MaxBoxAccV2 and their top-1 (class-aware) counterparts over a data set.

    Attributes:
        num_images: images accumulated.
        iou_thresholds: the δ list of MaxBoxAccV2 (in %).
        largest: curves with the largest-contour box (V1); always contains δ = 50.
        multi: curves with all contour boxes (V2).
        top1_largest, top1_multi: the same counting an image only when its predicted class is correct
            (``None`` when no ``correct_class`` was given).
        degenerate: ``(image_id or index, reason)`` of maps replaced by zeros (constant / non-finite).
    """

    num_images: int
    iou_thresholds: tuple[int, ...]
    largest: BoxAccCurve
    multi: BoxAccCurve
    top1_largest: BoxAccCurve | None = None
    top1_multi: BoxAccCurve | None = None
    degenerate: tuple[tuple[str, str], ...] = ()

    @property
    def maxboxacc(self) -> float:
        """MaxBoxAcc (V1): largest contour, IoU ≥ 0.5, best CAM threshold (Choe et al. 2020, §4)."""
        return self.largest.max_accuracy[50]

    @property
    def maxboxacc_v2(self) -> float:
        """MaxBoxAccV2: all contours, mean over δ of the best-threshold accuracy."""
        return self.multi.mean_max_accuracy(self.iou_thresholds)

    @property
    def top1_maxboxacc(self) -> float | None:
        """Top-1 (class-aware) MaxBoxAcc, or ``None`` without class predictions."""
        return None if self.top1_largest is None else self.top1_largest.max_accuracy[50]

    @property
    def top1_maxboxacc_v2(self) -> float | None:
        """Top-1 (class-aware) MaxBoxAccV2, or ``None`` without class predictions."""
        return None if self.top1_multi is None else self.top1_multi.mean_max_accuracy(self.iou_thresholds)

    def to_dict(self, include_curves: bool = False) -> dict[str, Any]:
        """JSON-ready summary (headline numbers, per-δ values, best thresholds, optional curves)."""
        out: dict[str, Any] = {
            "num_images": self.num_images,
            "iou_thresholds": list(self.iou_thresholds),
            "MaxBoxAcc": {"value": self.maxboxacc, "iou_threshold": 50, **self.largest.to_dict(include_curves)},
            "MaxBoxAccV2": {"value": self.maxboxacc_v2, **self.multi.to_dict(include_curves)},
            "num_degenerate_maps": len(self.degenerate),
        }
        if self.top1_largest is not None and self.top1_multi is not None:
            out["top1"] = {
                "MaxBoxAcc": {
                    "value": self.top1_maxboxacc,
                    "iou_threshold": 50,
                    **self.top1_largest.to_dict(include_curves),
                },
                "MaxBoxAccV2": {"value": self.top1_maxboxacc_v2, **self.top1_multi.to_dict(include_curves)},
            }
        return out


# ----------------------------------------------------------------------------------------------
# Accumulator
# ----------------------------------------------------------------------------------------------


def _check_iou_thresholds(iou_thresholds: Sequence[int]) -> tuple[int, ...]:
    try:
        values = tuple(iou_thresholds)
    except TypeError:
        raise ValueError(f"iou_thresholds must be a sequence of ints in (0, 100], got {iou_thresholds!r}") from None
    if not values:
        raise ValueError("iou_thresholds must not be empty")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or not 0 < v <= 100:
            raise ValueError(f"iou_thresholds must be ints in (0, 100] (percent), got {iou_thresholds!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"iou_thresholds has duplicates: {iou_thresholds!r}")
    return tuple(int(v) for v in values)


@dataclass
class BoxAccEvaluator:
    """Accumulator of MaxBoxAcc / MaxBoxAccV2 over a data set, like the reference ``BoxEvaluator``.

    Call :meth:`accumulate` once per image (any order, any batch loop), then :meth:`compute`. Both
    contour modes (largest contour = V1, all contours = V2) are tracked in one pass.

    Args:
        resize: side of the evaluation frame (224).
        cam_curve_interval: CAM threshold spacing Δ (0.001).
        iou_thresholds: δ list in percent for MaxBoxAccV2 ((30, 50, 70)); δ = 50 is always tracked
            too, for MaxBoxAcc (V1).
        method: ``"fast"`` or ``"reference"`` (identical results).
        normalize: min-max normalize each map (protocol). ``False`` requires maps in ``[0, 1]``.
    """

    resize: int = RESIZE_LENGTH
    cam_curve_interval: float = 0.001
    iou_thresholds: Sequence[int] = DEFAULT_IOU_THRESHOLDS
    method: Method = "fast"
    normalize: bool = True
    thresholds: np.ndarray = field(init=False, repr=False)
    num_images: int = field(init=False, default=0)
    degenerate: list[tuple[str, str]] = field(init=False, default_factory=list, repr=False)
    _deltas: tuple[int, ...] = field(init=False, repr=False)
    _counts: dict[str, dict[int, np.ndarray]] = field(init=False, repr=False)
    _class_aware: bool | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        self.resize = _check_resize(self.resize)
        self.thresholds = cam_thresholds(self.cam_curve_interval)
        self.iou_thresholds = _check_iou_thresholds(self.iou_thresholds)
        if self.method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {self.method!r}")
        self._deltas = tuple(sorted(set(self.iou_thresholds) | {50}))
        t = len(self.thresholds)
        self._counts = {
            key: {d: np.zeros(t, dtype=np.int64) for d in self._deltas}
            for key in ("largest", "multi", "top1_largest", "top1_multi")
        }

    def accumulate(
        self,
        scoremap: npt.ArrayLike,
        gt_boxes: npt.ArrayLike,
        image_size: tuple[int, int] | None = None,
        correct_class: bool | None = None,
        image_id: str | None = None,
    ) -> ThresholdIoUs:
        """Add one image.

        Args:
            scoremap: ``(h, w)`` score map of the image's (GT or predicted) class, any size.
            gt_boxes: ``(K, 4)`` GT boxes ``[x0, y0, x1, y1]`` in original image pixels.
            image_size: ``(width, height)`` of the original image; ``None`` if ``gt_boxes`` are
                already in the ``resize × resize`` frame.
            correct_class: whether the predicted class is correct (top-1 variant). Give it for every
                image or for none.
            image_id: name used in warnings and in :attr:`BoxAccReport.degenerate`.

        Returns:
            The image's :class:`ThresholdIoUs`.

        Raises:
            ValueError: bad map, boxes or size, or ``correct_class`` given for some images only.
        """
        name = image_id if image_id is not None else f"#{self.num_images}"
        if correct_class is not None and not isinstance(correct_class, bool | np.bool_):
            raise ValueError(f"correct_class must be a bool or None for image {name}, got {correct_class!r}")
        aware = correct_class is not None
        if self._class_aware is not None and aware != self._class_aware:
            raise ValueError(
                f"correct_class given for some images but not for image {name}: pass it for all images or none"
            )
        try:
            s, reason = prepare_scoremap(scoremap, self.resize, self.normalize)
            gt = rescale_boxes(gt_boxes, image_size, self.resize)
        except ValueError as err:
            raise ValueError(f"image {name}: {err}") from None
        if reason is not None:
            self.degenerate.append((name, reason))
            warnings.warn(f"score map of image {name} is {reason}; evaluated as all zeros", DegenerateMapWarning, 2)
        ious = scoremap_ious(s, gt, self.thresholds, self.method)
        self._class_aware = aware
        for d in self._deltas:
            cut = d / 100
            hit_l = ious.largest >= cut
            hit_m = ious.multi >= cut
            self._counts["largest"][d] += hit_l
            self._counts["multi"][d] += hit_m
            if correct_class:
                self._counts["top1_largest"][d] += hit_l
                self._counts["top1_multi"][d] += hit_m
        self.num_images += 1
        return ious

    def compute(self) -> BoxAccReport:
        """Accuracy curves, maxima and best thresholds for both modes (and top-1 when available).

        Raises:
            ValueError: no image was accumulated.
        """
        if self.num_images == 0:
            raise ValueError("no image accumulated: cannot compute MaxBoxAcc of an empty set")
        curve = {
            key: BoxAccCurve.from_counts(key.removeprefix("top1_"), self.thresholds, counts, self.num_images)
            for key, counts in self._counts.items()
        }
        return BoxAccReport(
            num_images=self.num_images,
            iou_thresholds=tuple(self.iou_thresholds),
            largest=curve["largest"],
            multi=curve["multi"],
            top1_largest=curve["top1_largest"] if self._class_aware else None,
            top1_multi=curve["top1_multi"] if self._class_aware else None,
            degenerate=tuple(self.degenerate),
        )


def compute_boxacc(
    scoremaps: Sequence[npt.ArrayLike] | np.ndarray,
    gt_boxes: Sequence[npt.ArrayLike],
    image_sizes: Sequence[tuple[int, int]] | None = None,
    correct_classes: Sequence[bool] | None = None,
    *,
    resize: int = RESIZE_LENGTH,
    cam_curve_interval: float = 0.001,
    iou_thresholds: Sequence[int] = DEFAULT_IOU_THRESHOLDS,
    method: Method = "fast",
    normalize: bool = True,
) -> BoxAccReport:
    """One-shot MaxBoxAcc / MaxBoxAccV2 of a list of maps (see :class:`BoxAccEvaluator`).

    Args:
        scoremaps: ``N`` maps ``(h, w)`` or an ``(N, h, w)`` array.
        gt_boxes: ``N`` arrays ``(K_n, 4)`` of GT boxes in original image pixels.
        image_sizes: ``N`` ``(width, height)`` pairs, or ``None`` if the boxes are in the resize frame.
        correct_classes: ``N`` bools for the top-1 variant, or ``None``.
        resize, cam_curve_interval, iou_thresholds, method, normalize: see :class:`BoxAccEvaluator`.

    Returns:
        :class:`BoxAccReport`.
    """
    n = len(scoremaps)
    for name, seq in (("gt_boxes", gt_boxes), ("image_sizes", image_sizes), ("correct_classes", correct_classes)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"{name} has {len(seq)} entries but there are {n} score maps")
    ev = BoxAccEvaluator(resize, cam_curve_interval, iou_thresholds, method=method, normalize=normalize)
    for i in range(n):
        ev.accumulate(
            scoremaps[i],
            gt_boxes[i],
            None if image_sizes is None else image_sizes[i],
            None if correct_classes is None else bool(correct_classes[i]),
            image_id=f"#{i}",
        )
    return ev.compute()
