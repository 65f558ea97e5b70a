"""Models: a backbone composed with a CAM head and a pooling, built by :func:`create_model`.

Example::

    model = wsol.create_model("lenet5", head="cam", pooling="spam", num_classes=1, in_chans=1)
    logits, cams = model(x)
"""

from __future__ import annotations

from wsol.models.base import CAMNet, create_model, list_models, register_model
from wsol.models.lenet import LeNet5Features

__all__ = ["CAMNet", "LeNet5Features", "create_model", "list_models", "register_model"]
