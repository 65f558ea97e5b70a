"""Every metric of the field in one package.

* :mod:`wsol.metrics.boxes` — inclusive-convention IoU shared by all.
* :mod:`wsol.metrics.classification` — top-k error, accuracy, precision/recall, AP, mAP.
* :mod:`wsol.metrics.localization` — top-k / GT-known localization, pointing game, pin-pointing AP,
  centre of mass, F-measure, accuracy vs threshold, CorLoc.
* :mod:`wsol.metrics.boxacc` — MaxBoxAcc / MaxBoxAccV2 (Choe et al. 2020), exact and fast.
* :mod:`wsol.metrics.pxap` — PxAP (Choe et al. 2020).
* :mod:`wsol.metrics.detection` — VOC detection AP / mAP (11-point and area).
"""

from wsol.metrics.boxacc import BoxAccEvaluator, BoxAccReport, compute_boxacc
from wsol.metrics.boxes import box_area, box_iou, validate_boxes
from wsol.metrics.classification import (
    accuracy,
    average_precision,
    mean_average_precision,
    precision_recall,
    topk_accuracy,
    topk_error,
)
from wsol.metrics.detection import evaluate_detections, voc_ap
from wsol.metrics.localization import (
    center_of_mass_accuracy,
    corloc,
    f_measure,
    localization_accuracy,
    localization_accuracy_vs_threshold,
    pinpointing_average_precision,
    pointing_game,
)
from wsol.metrics.pxap import PxAPEvaluator, compute_pxap

__all__ = [
    "BoxAccEvaluator",
    "BoxAccReport",
    "PxAPEvaluator",
    "accuracy",
    "average_precision",
    "box_area",
    "box_iou",
    "center_of_mass_accuracy",
    "compute_boxacc",
    "compute_pxap",
    "corloc",
    "evaluate_detections",
    "f_measure",
    "localization_accuracy",
    "localization_accuracy_vs_threshold",
    "mean_average_precision",
    "pinpointing_average_precision",
    "pointing_game",
    "precision_recall",
    "topk_accuracy",
    "topk_error",
    "validate_boxes",
    "voc_ap",
]
