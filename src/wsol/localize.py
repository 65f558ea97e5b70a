"""Maps → boxes: every box-extraction strategy of the papers lives in this module.

Box convention: ``[x0, y0, x1, y1]`` integer pixel coordinates with inclusive corners
(see :mod:`wsol.metrics.boxes`).
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["contour_boxes"]


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
