"""The model container (backbone + CAM head) and the ``create_model`` registry (timm style)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from torch import Tensor, nn

from wsol.heads import CAMOutput, _CAMHead, build_head

__all__ = ["CAMNet", "create_model", "list_models", "register_model"]

#: name → factory(in_chans, **kwargs) returning (backbone module, its output channels)
_BACKBONES: dict[str, Callable[..., tuple[nn.Module, int]]] = {}


class CAMNet(nn.Module):
    """``backbone`` → ``head``: one forward pass gives ``CAMOutput(logits, cams)``.

    Args:
        backbone: module mapping images (B, C_in, H, W) to features (B, K, h, w).
        head: a CAM head from :mod:`wsol.heads` with ``in_channels == K``.
    """

    def __init__(self, backbone: nn.Module, head: _CAMHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: Tensor) -> CAMOutput:
        if x.ndim != 4:
            raise ValueError(f"input must be a (B, C, H, W) image batch, got shape {tuple(x.shape)}")
        return self.head(self.backbone(x))

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


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return sorted(_BACKBONES)


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
        name: backbone name (:func:`list_models`).
        head: head name (:func:`wsol.heads.list_heads`).
        num_classes: number of classes ``C``.
        pooling: pooling name for heads that take one (``zhou``, ``cam``); ``None`` = head default.
        in_chans: input image channels.
        backbone_kwargs: extra arguments of the backbone factory.
        **head_kwargs: extra arguments of the head (e.g. ``m`` for ``gapm``, ``kernel_sizes``).

    Raises:
        ValueError: unknown model/head/pooling name (the message lists the valid ones).
    """
    try:
        factory = _BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(list_models())}") from None
    backbone, channels = factory(in_chans=in_chans, **(backbone_kwargs or {}))
    if pooling is not None:
        head_kwargs["pooling"] = pooling
    return CAMNet(backbone, build_head(head, channels, num_classes, **head_kwargs))
