"""Models: a backbone composed with a CAM head and a pooling, built by :func:`create_model`.

Example::

    model = wsol.create_model("lenet5", head="cam", pooling="spam", num_classes=1, in_chans=1)
    logits, cams = model(x)
"""

from __future__ import annotations

from wsol.models import backbones
from wsol.models.base import CAMNet, create_model, list_models, register_model, register_model_prefix
from wsol.models.lenet import LeNet5Features
from wsol.models.loading import LoadReport, load_model, load_weights, save_model_checkpoint
from wsol.models.pretrained import efficientnet_lite0_cam, list_pretrained, preprocess_image

__all__ = [
    "CAMNet",
    "LeNet5Features",
    "LoadReport",
    "backbones",
    "create_model",
    "efficientnet_lite0_cam",
    "list_models",
    "list_pretrained",
    "load_model",
    "load_weights",
    "preprocess_image",
    "register_model",
    "register_model_prefix",
    "save_model_checkpoint",
]
