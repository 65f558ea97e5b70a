"""Object detection.

Single-shot weakly supervised detection of Gudi et al. 2017 (SPAM-CAM): :mod:`wsol.detection.cam_detector`
(:class:`CAMDetector`, :func:`evaluate_cam_detector`) and :mod:`wsol.detection.bench_single_shot` (the CPU bench
shaped like Gudi Table 2).

Semi-supervised multi-task detection of Qiu §III-D (R-FCN + class-specific GWAP): :mod:`wsol.detection.rfcn`
(model), :mod:`wsol.detection.semi` (boxed / label-only mixing, losses, training, :func:`detect`, VOC
evaluation), :mod:`wsol.detection.config` (``task: detection`` YAML configs) and :mod:`wsol.detection.bench_semi`
(the CPU bench shaped like Qiu Table V).
"""

from wsol.detection.cam_detector import CAMDetector, DegenerateCAMWarning, evaluate_cam_detector
from wsol.detection.rfcn import RFCN, RFCNSpec, build_rfcn
from wsol.detection.semi import (
    MixingBatchSampler,
    SemiSupervisedDataset,
    SemiTrainConfig,
    detect,
    evaluate_detector,
    select_boxed,
    train_semi,
)

__all__ = [
    "RFCN",
    "CAMDetector",
    "DegenerateCAMWarning",
    "MixingBatchSampler",
    "RFCNSpec",
    "SemiSupervisedDataset",
    "SemiTrainConfig",
    "build_rfcn",
    "detect",
    "evaluate_cam_detector",
    "evaluate_detector",
    "select_boxed",
    "train_semi",
]
