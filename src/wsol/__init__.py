"""wsol: weakly supervised object localization — poolings, CAM heads, box extraction and metrics."""

from wsol.heads import CAMOutput, activity_regularization, build_head, list_heads
from wsol.models import create_model, list_models
from wsol.pooling import build_pooling, list_poolings

__version__ = "0.1.0"

__all__ = [
    "CAMOutput",
    "__version__",
    "activity_regularization",
    "build_head",
    "build_pooling",
    "create_model",
    "list_heads",
    "list_models",
    "list_poolings",
]
