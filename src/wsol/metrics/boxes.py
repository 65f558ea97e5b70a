"""Box geometry shared by every metric: IoU in the field's inclusive pixel convention.

Boxes are ``[x0, y0, x1, y1]`` with *inclusive* corners, as in the reference protocol of
Choe et al. (CVPR 2020, "Evaluating WSOL Right") and the PASCAL VOC devkit: a box covering the
single pixel (3, 4) is ``[3, 4, 3, 4]`` and has area 1, hence the ``+ 1`` on widths and heights.
"""

from __future__ import annotations

import numpy as np

__all__ = ["box_area", "box_iou", "validate_boxes"]


def validate_boxes(boxes: np.ndarray | list, name: str = "boxes") -> np.ndarray:
    """Return ``boxes`` as a float64 ``(N, 4)`` array, raising ``ValueError`` on bad input.

    Args:
        boxes: ``(N, 4)`` or ``(4,)`` array-like of ``[x0, y0, x1, y1]``.
        name: name used in error messages.

    Raises:
        ValueError: wrong shape, non-finite values, or ``x1 < x0`` / ``y1 < y0``.
    """
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim == 1 and arr.shape[0] == 4:
        arr = arr[None]
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4) as [x0, y0, x1, y1], got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf coordinates")
    bad = (arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{i}] = {arr[i].tolist()} has x1 < x0 or y1 < y0")
    return arr


def box_area(boxes: np.ndarray) -> np.ndarray:
    """Inclusive area ``(x1 - x0 + 1) * (y1 - y0 + 1)`` of ``(N, 4)`` boxes."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return (b[:, 2] - b[:, 0] + 1.0) * (b[:, 3] - b[:, 1] + 1.0)


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Pairwise IoU with the inclusive convention: ``IoU = |A ∩ B| / (|A| + |B| - |A ∩ B|)``.

    Intersection width is ``min(x1) - max(x0) + 1`` clipped at 0 (same for height), exactly as the
    reference ``calculate_multiple_iou`` of Choe et al. (2020).

    Args:
        boxes_a: ``(N, 4)`` boxes.
        boxes_b: ``(M, 4)`` boxes.

    Returns:
        ``(N, M)`` float64 IoU matrix.
    """
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix1 - ix0 + 1.0, 0.0, None) * np.clip(iy1 - iy0 + 1.0, 0.0, None)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return inter / np.maximum(union, np.finfo(np.float64).tiny)
