"""The model container (backbone + CAM head) and the ``create_model`` registry (timm style).

Besides registered names, ``create_model`` accepts prefixed names whose prefix was registered with
:func:`register_model_prefix`, e.g. ``"timm:resnet18"`` (any timm model, see :mod:`wsol.models.backbones`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

from torch import Tensor, nn

from wsol.heads import CAMOutput, _CAMHead, build_head

__all__ = ["CAMNet", "create_model", "list_models", "register_model", "register_model_prefix"]

#: name → factory(in_chans, **kwargs) returning (backbone module, its output channels)
_BACKBONES: dict[str, Callable[..., tuple[nn.Module, int]]] = {}
#: prefix → factory(model_name, in_chans, **kwargs) for families such as ``"timm:"``
_PREFIXES: dict[str, Callable[..., tuple[nn.Module, int]]] = {}


class CAMNet(nn.Module):
    """``backbone`` → ``head``: one forward pass gives ``CAMOutput(logits, cams)``.

    Args:
        backbone: module mapping images (B, C_in, H, W) to features (B, K, h, w).
        head: a CAM head from :mod:`wsol.heads` with ``in_channels == K``.

    Attributes:
        pretrained_cfg: preprocessing the weights expect — ``input_size`` (C, H, W), ``mean``, ``std``
            (per channel, on images scaled to [0, 1]) and where known ``interpolation`` / ``crop_pct``;
            copied from ``backbone.default_cfg`` (``{}`` when the backbone has none).
        class_names: one name per class, or ``None``.
        model_spec: how :func:`create_model` built the model (``name``, ``head``, ``num_classes``,
            ``pooling``, ``in_chans``, ``backbone_kwargs``, ``head_kwargs``), or ``None``; saved with the
            weights by :func:`wsol.models.loading.save_model_checkpoint`.
    """

    def __init__(self, backbone: nn.Module, head: _CAMHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.pretrained_cfg: dict[str, Any] = dict(getattr(backbone, "default_cfg", None) or {})
        self.class_names: list[str] | None = None
        self.model_spec: dict[str, Any] | None = None

    def forward(self, x: Tensor) -> CAMOutput:
        if x.ndim != 4:
            raise ValueError(f"input must be a (B, C, H, W) image batch, got shape {tuple(x.shape)}")
        return self.head(self.backbone(x))

    def topk_cams(self, x: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
        """Logits (B, C), the ids of the ``k`` best classes (B, k) and their CAMs (B, k, h, w), one pass.

        Heads with a cheaper way (``ZhouHead.topk_cams``: only ``k`` maps are computed) use it; otherwise the
        full forward pass is gathered.
        """
        features = self.backbone(x)
        if hasattr(self.head, "topk_cams"):
            return self.head.topk_cams(features, k)
        logits, cams = self.head(features)
        ids = logits.topk(min(int(k), logits.shape[1]), dim=1).indices
        b, _, h, w = cams.shape
        return logits, ids, cams.gather(1, ids[:, :, None, None].expand(b, ids.shape[1], h, w))

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters frozen by ``freeze_backbone_epochs`` (Moreaux et al. 2018 §4)."""
        return self.backbone.parameters()

    @property
    def num_classes(self) -> int:
        return self.head.num_classes


def register_model(name: str) -> Callable[[Callable[..., tuple[nn.Module, int]]], Callable[..., Any]]:
    """Decorator registering a backbone factory ``fn(in_chans=3, **kw) -> (module, out_channels)``."""

    def wrap(fn: Callable[..., tuple[nn.Module, int]]) -> Callable[..., tuple[nn.Module, int]]:
        if name in _BACKBONES:
            raise ValueError(f"model {name!r} is already registered")
        _BACKBONES[name] = fn
        return fn

    return wrap


def register_model_prefix(prefix: str) -> Callable[[Callable[..., tuple[nn.Module, int]]], Callable[..., Any]]:
    """Decorator registering a backbone family: ``create_model(prefix + model_name)`` calls
    ``fn(model_name, in_chans=3, **kw) -> (module, out_channels)`` (e.g. ``"timm:"``)."""

    def wrap(fn: Callable[..., tuple[nn.Module, int]]) -> Callable[..., tuple[nn.Module, int]]:
        if prefix in _PREFIXES:
            raise ValueError(f"model prefix {prefix!r} is already registered")
        _PREFIXES[prefix] = fn
        return fn

    return wrap


def list_models() -> list[str]:
    """Names accepted by :func:`create_model` (plus ``"<prefix><name>"`` for each registered prefix)."""
    return sorted(_BACKBONES)


def _backbone_factory(name: str) -> Callable[..., tuple[nn.Module, int]]:
    if name in _BACKBONES:
        return _BACKBONES[name]
    for prefix, fn in _PREFIXES.items():
        if name.startswith(prefix) and len(name) > len(prefix):
            return functools.partial(fn, name[len(prefix) :])
    families = "".join(f", or '{p}<model name>'" for p in sorted(_PREFIXES))
    raise ValueError(f"unknown model {name!r}; valid names: {', '.join(list_models())}{families}")


def create_model(
    name: str,
    head: str = "cam",
    num_classes: int = 1000,
    pooling: str | None = None,
    in_chans: int = 3,
    backbone_kwargs: dict[str, Any] | None = None,
    **head_kwargs: Any,
) -> CAMNet:
    """Compose backbone + head + pooling, e.g. ``create_model("lenet5", head="cam", pooling="spam")``.

    Args:
        name: backbone name (:func:`list_models`) or ``"<prefix><name>"`` (e.g. ``"timm:resnet18"``).
        head: head name (:func:`wsol.heads.list_heads`).
        num_classes: number of classes ``C``.
        pooling: pooling name for heads that take one (``zhou``, ``cam``); ``None`` = head default.
        in_chans: input image channels.
        backbone_kwargs: extra arguments of the backbone factory.
        **head_kwargs: extra arguments of the head (e.g. ``m`` for ``gapm``, ``kernel_sizes``).

    Raises:
        ValueError: unknown model/head/pooling name (the message lists the valid ones).
    """
    factory = _backbone_factory(name)
    spec = {
        "name": name,
        "head": head,
        "num_classes": num_classes,
        "pooling": pooling,
        "in_chans": in_chans,
        "backbone_kwargs": dict(backbone_kwargs or {}),
        "head_kwargs": dict(head_kwargs),
    }
    backbone, channels = factory(in_chans=in_chans, **(backbone_kwargs or {}))
    if pooling is not None:
        head_kwargs["pooling"] = pooling
    model = CAMNet(backbone, build_head(head, channels, num_classes, **head_kwargs))
    model.model_spec = spec
    return model
