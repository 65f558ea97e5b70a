"""Real CNN backbones with the papers' CAM surgery, built from timm / torchvision without downloading anything.

Every factory is registered with :func:`wsol.models.base.register_model` (``create_model(name, ...)``) and
builds the network with random weights (``pretrained=False``); weights come from local files through
:func:`wsol.models.loading.load_weights`. Module names are those of the uncut timm / torchvision model, so
their state dicts load directly (the cut layers' keys are reported as *skipped*, the added layers as *new*).

Surgery and mapping resolution (the size of the last convolutional maps, Zhou et al. 2016 §3.1) at the
default input size; ``S`` = stride (jump), ``K`` = receptive-field size and ``P`` = offset of the field of
CAM pixel 0 (CAM pixel ``x`` sees input pixels ``[x·S − P, x·S − P + K − 1]``, union over the parallel
branches), as :func:`wsol.localize.receptive_field_chain` derives them:

============  =========================  ====================================  =====  =====  =====  ==  =========
name          built on                   surgery                               input  maps   chans  S   K (P)
============  =========================  ====================================  =====  =====  =====  ==  =========
vgg16         timm ``vgg16``             pool5 removed, + conv3×3 1024 + ReLU  224    14×14  1024   16  228 (106)
googlenet     torchvision ``googlenet``  cut after inception4e (before         224    14×14  1024   16  267 (119)
                                         maxpool4), + conv3×3 1024 + ReLU
inception_v3  timm ``inception_v3``      cut after Mixed_6e                    299    17×17  768    16  927 (442)
resnet50      timm ``resnet50``          ``output_stride=16``: layer4 stride   224    14×14  2048   16  427 (213)
                                         1, dilation 2 after its first block
alexnet       torchvision ``alexnet``    cut after conv5 + ReLU (pool5         224    13×13  1024   16  195 (82)
                                         removed), + conv3×3 1024 + ReLU
lenet5        :mod:`wsol.models.lenet`   FC layers removed                     128    29×29  50     4   16 (0)
timm:<name>   any timm model             ``forward_features`` or ``stage=i``   timm's
============  =========================  ====================================  =====  =====  =====  ==  =========

Mapping resolution as a function of the input height ``H`` (same for the width), from PyTorch's
``⌊(n + 2p − k)/s⌋ + 1`` per layer: vgg16 ``⌊H/16⌋``; googlenet ``⌊⌈H/2⌉/8⌋`` (its pools use
``ceil_mode``); resnet50 ``⌈H/16⌉``; alexnet ``a = ⌊(H − 3)/4⌋, b = ⌊(a − 1)/2⌋, ⌊(b − 1)/2⌋``;
inception_v3 ``a = ⌊(H − 1)/2⌋ − 2, b = ⌊(a − 1)/2⌋ − 2, ⌊(⌊(b − 1)/2⌋ − 1)/2⌋``.

The added ``conv3×3, stride 1, pad 1, 1024 units`` (+ ReLU) of Zhou et al. §3.1 is the ``extra_conv``
argument; ``None`` removes it (alexnet with ``None`` is Qiu's CaffeNet, "remove the layers after conv5").
inception_v3 defaults to ``None`` because Moreaux's GAP-m head (``head="gapm"``) brings its own conv 3×3;
``extra_conv=1024`` with ``head="zhou"`` is their Inception-GAP-Zhou baseline (Moreaux et al. 2018 §3.1).

Each backbone carries ``default_cfg`` (``input_size``, ``mean``, ``std``, ``interpolation``, ``crop_pct``:
the preprocessing the usual weights of that architecture expect; :class:`~wsol.models.base.CAMNet` copies
it to ``model.pretrained_cfg``), ``out_channels``, ``reduction`` (the stride) and ``source_keys``
(:class:`SourceKeys`: how its state dict relates to the uncut model's).

GoogLeNet / Inception-v3 note: torchvision's weights for both were trained on ``(x − 0.5)/0.5`` inputs
(their ``transform_input`` turns ImageNet-normalized input into that); the backbones here omit that layer and
record ``mean = std = (0.5, 0.5, 0.5)`` instead, as timm does for ``inception_v3.tv_in1k``.
"""

from __future__ import annotations

import difflib
import itertools
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from wsol.models.base import register_model, register_model_prefix

__all__ = [
    "MAPPING_RESOLUTION",
    "CutBackbone",
    "SourceKeys",
    "TimmBackbone",
    "mapping_resolution",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)

#: name → (default input (H, W), mapping resolution (h, w), stride) — the table of the module docstring
MAPPING_RESOLUTION: dict[str, tuple[tuple[int, int], tuple[int, int], int]] = {
    "vgg16": ((224, 224), (14, 14), 16),
    "googlenet": ((224, 224), (14, 14), 16),
    "inception_v3": ((299, 299), (17, 17), 16),
    "resnet50": ((224, 224), (14, 14), 16),
    "alexnet": ((224, 224), (13, 13), 16),
    "lenet5": ((128, 128), (29, 29), 4),
}


@dataclass(frozen=True)
class SourceKeys:
    """How a cut backbone's state-dict keys relate to the state dict of the uncut timm / torchvision model.

    Own key ``k`` ↔ source key ``k[len(prefix):]`` (own keys carry ``prefix``, e.g. ``"model."`` for a
    wrapped timm model). Source keys of layers the surgery removed (``removed_prefixes`` / ``removed_keys``)
    are expected to be unused; own keys under ``new_prefixes`` are layers the surgery added (no source).

    Attributes:
        prefix: prefix of every own key that has a source key.
        removed_prefixes: source-key prefixes of removed layers (both timm and torchvision names).
        removed_keys: exact source keys of removed layers.
        new_prefixes: own-key prefixes of added layers.
    """

    prefix: str = ""
    removed_prefixes: tuple[str, ...] = ()
    removed_keys: frozenset[str] = field(default_factory=frozenset)
    new_prefixes: tuple[str, ...] = ()

    def is_new(self, own_key: str) -> bool:
        return own_key.startswith(self.new_prefixes) if self.new_prefixes else False

    def source_key(self, own_key: str) -> str | None:
        """Source key of ``own_key``; ``None`` for added layers (or keys outside ``prefix``)."""
        if self.is_new(own_key) or not own_key.startswith(self.prefix):
            return None
        return own_key[len(self.prefix) :]

    def is_removed(self, source_key: str) -> bool:
        if source_key in self.removed_keys:
            return True
        return source_key.startswith(self.removed_prefixes) if self.removed_prefixes else False


def _cfg(
    input_size: tuple[int, int, int],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    interpolation: str = "bilinear",
    crop_pct: float = 0.875,
) -> dict[str, Any]:
    return {
        "input_size": tuple(input_size),
        "mean": tuple(mean),
        "std": tuple(std),
        "interpolation": interpolation,
        "crop_pct": crop_pct,
    }


def _channel_cfg(cfg: dict[str, Any], in_chans: int) -> dict[str, Any]:
    """Adapt mean/std/input_size to ``in_chans`` (the channel average for a grayscale input)."""
    if in_chans == len(cfg["mean"]):
        return cfg
    out = dict(cfg)
    out["mean"] = (sum(cfg["mean"]) / len(cfg["mean"]),) * in_chans
    out["std"] = (sum(cfg["std"]) / len(cfg["std"]),) * in_chans
    out["input_size"] = (in_chans, *cfg["input_size"][1:])
    return out


class CutBackbone(nn.Sequential):
    """A surgically cut CNN: named stages (the uncut model's module names) applied in order.

    Attributes:
        out_channels: channels of the output features.
        reduction: stride of the output features w.r.t. the input.
        default_cfg: preprocessing of the usual weights (``input_size``, ``mean``, ``std``, ...).
        source_keys: :class:`SourceKeys` for loading the uncut model's state dict.
    """

    def __init__(
        self,
        stages: OrderedDict[str, nn.Module],
        out_channels: int | None = None,
        reduction: int | None = None,
        default_cfg: dict[str, Any] | None = None,
        source_keys: SourceKeys | None = None,
    ) -> None:
        # defaults only for nn.Sequential's slicing (``backbone[:-1]``), which calls ``cls(OrderedDict)``
        super().__init__(stages)
        self.out_channels = out_channels
        self.reduction = reduction
        self.default_cfg = dict(default_cfg or {})
        self.source_keys = source_keys if source_keys is not None else SourceKeys()


def _check_extra_conv(extra_conv: Any) -> int | None:
    if extra_conv is None or extra_conv == 0:
        return None
    if isinstance(extra_conv, bool) or not isinstance(extra_conv, int) or extra_conv < 0:
        raise ValueError(f"extra_conv must be a positive int (channels of the added conv) or None, got {extra_conv!r}")
    return extra_conv


def _check_in_chans(in_chans: Any) -> int:
    if isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans <= 0:
        raise ValueError(f"in_chans must be a positive int, got {in_chans!r}")
    return in_chans


def _kaiming_init(modules: Iterable[nn.Module]) -> None:
    """He-normal (fan-out, ReLU) convs and zero biases, the init of timm's and torchvision's VGG."""
    for m in modules:
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _extra_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """Zhou et al. §3.1: "a convolutional layer of size 3×3, stride 1, pad 1 with 1024 units", + ReLU."""
    block = nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride=1, padding=1), nn.ReLU(inplace=True))
    _kaiming_init(block)
    return block


def _with_extra(
    stages: OrderedDict[str, nn.Module], channels: int, extra_conv: int | None
) -> tuple[OrderedDict[str, nn.Module], int, tuple[str, ...]]:
    if extra_conv is None:
        return stages, channels, ()
    stages["extra"] = _extra_conv(channels, extra_conv)
    return stages, extra_conv, ("extra.",)


# ----------------------------------------------------------------------------------------------
# VGG16 (Zhou §3.1: "removed the layers after conv5-3 (i.e., pool5 to prob)")
# ----------------------------------------------------------------------------------------------


@register_model("vgg16")
def vgg16(in_chans: int = 3, extra_conv: int | None = 1024, pool5: bool = False) -> tuple[nn.Module, int]:
    """timm ``vgg16`` conv layers up to conv5_3 + ReLU (``features.0``–``features.29``; pool5 = ``features.30``
    removed), then Zhou's conv3×3 ``extra_conv`` + ReLU. Maps ``⌊H/16⌋``, 14×14 at 224.

    ``pool5=True`` keeps pool5 (stride 32, 7×7 at 224): the network of Gudi et al. 2017 §4.2, whose CAM layer
    replaces only the fully connected layers.

    The model is instantiated on the ``meta`` device (its 120 M-parameter classifier is never allocated);
    the kept convs are then materialized with the VGG init (He-normal fan-out, zero bias).
    """
    import timm

    in_chans = _check_in_chans(in_chans)
    extra = _check_extra_conv(extra_conv)
    with torch.device("meta"):
        full = timm.create_model("vgg16", pretrained=False, in_chans=in_chans)
    if not isinstance(pool5, bool):
        raise ValueError(f"pool5 must be True or False, got {pool5!r}")
    features = full.features[: 31 if pool5 else 30].to_empty(device="cpu")  # index 30 = pool5
    _kaiming_init(features.modules())
    stages, channels, new = _with_extra(OrderedDict(features=features), 512, extra)
    cfg = _channel_cfg(_cfg((3, 224, 224), IMAGENET_MEAN, IMAGENET_STD, "bilinear", 0.875), in_chans)
    keys = SourceKeys(removed_prefixes=("classifier.", "pre_logits.", "head."), new_prefixes=new)
    return CutBackbone(stages, channels, 32 if pool5 else 16, cfg, keys), channels


# ----------------------------------------------------------------------------------------------
# GoogLeNet (Zhou §3.1: "removed the layers after inception4e (i.e., pool4 to prob)")
# ----------------------------------------------------------------------------------------------

_GOOGLENET_KEPT = (
    "conv1",
    "maxpool1",
    "conv2",
    "conv3",
    "maxpool2",
    "inception3a",
    "inception3b",
    "maxpool3",
    "inception4a",
    "inception4b",
    "inception4c",
    "inception4d",
    "inception4e",
)


@register_model("googlenet")
def googlenet(in_chans: int = 3, extra_conv: int | None = 1024) -> tuple[nn.Module, int]:
    """torchvision ``googlenet`` (no aux heads) cut after ``inception4e`` (832 channels), + Zhou's conv.

    torchvision's ``maxpool4`` (2×2/2, ``ceil_mode``) sits *after* inception4e and is removed with
    inception5a/5b, so the maps keep stride 16: ``⌊⌈H/2⌉/8⌋``, 14×14 at 224.
    """
    import torchvision

    in_chans = _check_in_chans(in_chans)
    extra = _check_extra_conv(extra_conv)
    full = torchvision.models.googlenet(weights=None, aux_logits=False, transform_input=False, init_weights=True)
    if in_chans != 3:
        old = full.conv1.conv
        full.conv1.conv = nn.Conv2d(in_chans, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
    stages = OrderedDict((name, getattr(full, name)) for name in _GOOGLENET_KEPT)
    stages, channels, new = _with_extra(stages, 832, extra)
    cfg = _channel_cfg(_cfg((3, 224, 224), INCEPTION_MEAN, INCEPTION_STD, "bilinear", 0.875), in_chans)
    keys = SourceKeys(
        removed_prefixes=("inception5a.", "inception5b.", "aux1.", "aux2.", "fc."), new_prefixes=new
    )
    return CutBackbone(stages, channels, 16, cfg, keys), channels


# ----------------------------------------------------------------------------------------------
# Inception-v3 (Moreaux §3: "we cut InceptionV3 to the Inception2-5 layer ... 17×17×k")
# ----------------------------------------------------------------------------------------------


class InceptionBranches(nn.Module):
    """An Inception-v3 block (timm / torchvision ``InceptionA``/``B``/``C``) with its pooling as a module.

    Same children (hence same state-dict keys) and the same computation as the original block, whose
    ``forward`` calls ``F.avg_pool2d`` / ``F.max_pool2d``; here the pooling branch is an ``nn.AvgPool2d`` /
    ``nn.MaxPool2d`` module so that :func:`wsol.localize.receptive_field_chain` can hook every spatial layer.
    Output: ``torch.cat([branch_1, ..., branch_n, pool_branch], 1)`` as in the original.

    Args:
        block: the original block (its children are adopted, not copied).
        branches: child names of each convolution chain, in output order.
        pool: the pooling of the last branch.
        pool_conv: child applied after the pooling (``None`` for ``InceptionB``).
    """

    def __init__(
        self, block: nn.Module, branches: list[list[str]], pool: nn.Module, pool_conv: str | None
    ) -> None:
        super().__init__()
        for name, child in block.named_children():
            self.add_module(name, child)
        self.pool = pool
        self.branches = [list(b) for b in branches]
        self.pool_conv = pool_conv

    def forward(self, x: Tensor) -> Tensor:
        outputs = []
        for chain in self.branches:
            y = x
            for name in chain:
                y = getattr(self, name)(y)
            outputs.append(y)
        y = self.pool(x)
        if self.pool_conv is not None:
            y = getattr(self, self.pool_conv)(y)
        outputs.append(y)
        return torch.cat(outputs, 1)


def _hookable_inception(block: nn.Module) -> InceptionBranches:
    kind = type(block).__name__
    if kind == "InceptionA":
        chains = [["branch1x1"], ["branch5x5_1", "branch5x5_2"], [f"branch3x3dbl_{i}" for i in (1, 2, 3)]]
        return InceptionBranches(block, chains, nn.AvgPool2d(3, stride=1, padding=1), "branch_pool")
    if kind == "InceptionB":
        chains = [["branch3x3"], [f"branch3x3dbl_{i}" for i in (1, 2, 3)]]
        return InceptionBranches(block, chains, nn.MaxPool2d(3, stride=2), None)
    if kind == "InceptionC":
        chains = [["branch1x1"], [f"branch7x7_{i}" for i in (1, 2, 3)], [f"branch7x7dbl_{i}" for i in range(1, 6)]]
        return InceptionBranches(block, chains, nn.AvgPool2d(3, stride=1, padding=1), "branch_pool")
    raise TypeError(f"unexpected Inception block {kind}")  # pragma: no cover - fixed architecture


_INCEPTION_STEM = (
    "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Pool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3", "Pool2"
)
_INCEPTION_MIXED = ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e")


@register_model("inception_v3")
def inception_v3(in_chans: int = 3, extra_conv: int | None = None) -> tuple[nn.Module, int]:
    """timm ``inception_v3`` cut after ``Mixed_6e`` (768 channels; 17×17 at 299), Moreaux et al. §3.

    ``extra_conv=1024`` gives the backbone of Inception-GAP-Zhou (Moreaux §3.1). Key names are shared by
    timm and torchvision (``Pool1``/``maxpool1`` have no parameters).
    """
    import timm

    in_chans = _check_in_chans(in_chans)
    extra = _check_extra_conv(extra_conv)
    full = timm.create_model("inception_v3", pretrained=False, in_chans=in_chans, aux_logits=False)
    stages = OrderedDict((name, getattr(full, name)) for name in _INCEPTION_STEM)
    stages.update((name, _hookable_inception(getattr(full, name))) for name in _INCEPTION_MIXED)
    stages, channels, new = _with_extra(stages, 768, extra)
    cfg = _channel_cfg(_cfg((3, 299, 299), INCEPTION_MEAN, INCEPTION_STD, "bicubic", 0.875), in_chans)
    keys = SourceKeys(removed_prefixes=("Mixed_7a.", "Mixed_7b.", "Mixed_7c.", "AuxLogits.", "fc."), new_prefixes=new)
    return CutBackbone(stages, channels, 16, cfg, keys), channels


# ----------------------------------------------------------------------------------------------
# ResNet-50 (layer4 with stride 1: 14×14 maps at 224)
# ----------------------------------------------------------------------------------------------


@register_model("resnet50")
def resnet50(in_chans: int = 3, output_stride: int = 16) -> tuple[nn.Module, int]:
    """timm ``resnet50`` up to ``layer4`` with ``output_stride=16``: layer4's stride is 1 and its convs after
    the first block are dilated by 2 (torchvision's ``replace_stride_with_dilation=[False, False, True]``),
    so the pretrained filters keep their spacing. Maps ``⌈H/16⌉``, 14×14 at 224; ``output_stride`` 8 or 32
    are accepted too.
    """
    import timm

    in_chans = _check_in_chans(in_chans)
    if output_stride not in (8, 16, 32):
        raise ValueError(f"resnet50: output_stride must be 8, 16 or 32, got {output_stride!r}")
    full = timm.create_model("resnet50", pretrained=False, in_chans=in_chans, output_stride=output_stride)
    names = ("conv1", "bn1", "act1", "maxpool", "layer1", "layer2", "layer3", "layer4")
    stages = OrderedDict((name, getattr(full, name)) for name in names)
    cfg = _channel_cfg(_cfg((3, 224, 224), IMAGENET_MEAN, IMAGENET_STD, "bicubic", 0.95), in_chans)
    return CutBackbone(stages, 2048, output_stride, cfg, SourceKeys(removed_prefixes=("fc.",))), 2048


# ----------------------------------------------------------------------------------------------
# AlexNet (Zhou §3.1: "removed the layers after conv5 (i.e., pool5 to prob)"; Qiu §IV-A CaffeNet)
# ----------------------------------------------------------------------------------------------


@register_model("alexnet")
def alexnet(in_chans: int = 3, extra_conv: int | None = 1024) -> tuple[nn.Module, int]:
    """torchvision ``alexnet`` ``features[:12]`` (conv1–conv5 with their ReLUs; pool5 = ``features.12``
    removed), then Zhou's conv. Maps 13×13 at 224. ``extra_conv=None`` is Qiu's CaffeNet cut.

    timm has no AlexNet. The model is instantiated on the ``meta`` device (its 58 M-parameter classifier is
    never allocated); the kept convs get PyTorch's default init, as in torchvision's AlexNet.
    """
    import torchvision

    in_chans = _check_in_chans(in_chans)
    extra = _check_extra_conv(extra_conv)
    with torch.device("meta"):
        full = torchvision.models.alexnet(weights=None)
        if in_chans != 3:
            full.features[0] = nn.Conv2d(in_chans, 64, kernel_size=11, stride=4, padding=2)
    features = full.features[:12].to_empty(device="cpu")
    for m in features:
        if isinstance(m, nn.Conv2d):
            m.reset_parameters()
    stages, channels, new = _with_extra(OrderedDict(features=features), 256, extra)
    cfg = _channel_cfg(_cfg((3, 224, 224), IMAGENET_MEAN, IMAGENET_STD, "bilinear", 0.875), in_chans)
    keys = SourceKeys(removed_prefixes=("classifier.",), new_prefixes=new)
    return CutBackbone(stages, channels, 16, cfg, keys), channels


# ----------------------------------------------------------------------------------------------
# any timm model: "timm:<name>"
# ----------------------------------------------------------------------------------------------


class TimmBackbone(nn.Module):
    """A timm model used as a feature extractor (keys ``model.<timm key>``).

    ``stage=None``: ``model.forward_features(x)`` — the features timm's own classifier pools (for
    EfficientNet this includes ``conv_head``/``bn2``); the classifier is removed (``reset_classifier(0)``).
    ``stage=i``: ``model.forward_intermediates(x, indices=[i])`` after ``prune_intermediate_layers`` —
    the output of ``model.feature_info[i]`` (the same indexing as timm's ``features_only`` ``out_indices``;
    negative counts from the end), everything after it removed. Module names stay timm's.
    """

    def __init__(self, model: nn.Module, model_name: str, stage: int | None, removed: frozenset[str]) -> None:
        super().__init__()
        self.model = model
        self.model_name = model_name
        self.stage = stage
        info = getattr(model, "feature_info", None) or []
        if stage is None:
            self.out_channels = int(model.num_features)
            self.reduction = int(info[-1]["reduction"]) if info else None
        else:
            self.out_channels = int(info[stage]["num_chs"])
            self.reduction = int(info[stage]["reduction"])
        cfg = dict(getattr(model, "pretrained_cfg", None) or {})
        self.default_cfg = {k: cfg[k] for k in ("input_size", "mean", "std", "interpolation", "crop_pct") if k in cfg}
        self.source_keys = SourceKeys(prefix="model.", removed_keys=removed)

    def forward(self, x: Tensor) -> Tensor:
        if self.stage is None:
            out = self.model.forward_features(x)
        else:
            out = self.model.forward_intermediates(x, indices=[self.stage], intermediates_only=True, stop_early=True)
            out = out[0]
        if not isinstance(out, Tensor) or out.ndim != 4:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"timm model {self.model_name!r} gives features {shape}, not (B, C, H, W) maps; "
                "pass backbone_kwargs={'stage': i} to take an intermediate feature map"
            )
        return out


def _unknown_timm_model(model_name: str) -> ValueError:
    import timm

    close = difflib.get_close_matches(model_name, timm.list_models(), n=5)
    hint = f"; close matches: {', '.join(close)}" if close else "; see timm.list_models()"
    return ValueError(f"unknown timm model {model_name!r}{hint}")


@register_model_prefix("timm:")
def timm_backbone(
    model_name: str, in_chans: int = 3, stage: int | None = None, **timm_kwargs: Any
) -> tuple[nn.Module, int]:
    """``create_model("timm:<name>", backbone_kwargs={"stage": i, **timm_kwargs})``: any timm model.

    Args:
        model_name: a timm model name (``timm.list_models()``), built with ``pretrained=False``.
        in_chans: input channels.
        stage: ``None`` = ``forward_features``; an int = index into ``model.feature_info``.
        **timm_kwargs: passed to ``timm.create_model`` (e.g. ``output_stride=16``, ``drop_path_rate``).

    Raises:
        ValueError: unknown model, ``pretrained`` requested, stage out of range or unsupported.
    """
    import timm

    in_chans = _check_in_chans(in_chans)
    for bad in ("pretrained", "features_only", "num_classes"):
        if bad in timm_kwargs:
            raise ValueError(
                f"timm:{model_name}: {bad!r} is not accepted (nothing is downloaded; load weights from a local file "
                "with wsol.models.loading.load_weights; the CAM head sets the classes)"
            )
    if not timm.is_model(model_name):
        raise _unknown_timm_model(model_name)
    model = timm.create_model(model_name, pretrained=False, in_chans=in_chans, **timm_kwargs)
    before = set(model.state_dict())
    if stage is None:
        model.reset_classifier(0)
    else:
        info = getattr(model, "feature_info", None) or []
        if isinstance(stage, bool) or not isinstance(stage, int) or not -len(info) <= stage < len(info):
            raise ValueError(
                f"timm:{model_name}: stage must be an int in [{-len(info)}, {len(info)}) (index into feature_info: "
                f"{[f.get('module') for f in info]}), got {stage!r}"
            )
        stage %= len(info)
        if not hasattr(model, "prune_intermediate_layers"):
            raise ValueError(f"timm:{model_name} has no forward_intermediates: only stage=None is supported")
        model.prune_intermediate_layers(indices=[stage], prune_norm=False, prune_head=True)
    removed = frozenset(before - set(model.state_dict()))
    backbone = TimmBackbone(model, model_name, stage, removed)
    backbone.default_cfg = _channel_cfg(backbone.default_cfg, in_chans) if "mean" in backbone.default_cfg else {}
    return backbone, backbone.out_channels


# ----------------------------------------------------------------------------------------------
# shape pass
# ----------------------------------------------------------------------------------------------


def _first_conv_in_channels(model: nn.Module) -> int:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    raise ValueError("model has no nn.Conv2d: pass in_chans")


def mapping_resolution(model: nn.Module, input_size: tuple[int, int], in_chans: int | None = None) -> tuple[int, int]:
    """Spatial size ``(h, w)`` of the features (backbone) or CAMs (a model returning ``(logits, cams)``)
    for an ``input_size = (H, W)`` image, from a shape-only pass on the ``meta`` device (no computation,
    no copy of the weights; the model is left untouched).

    Raises:
        ValueError: bad ``input_size`` or an input too small for the network.
    """
    if (
        not isinstance(input_size, tuple | list)
        or len(input_size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in input_size)
    ):
        raise ValueError(f"input_size must be (height, width) positive ints, got {input_size!r}")
    chans = in_chans if in_chans is not None else _first_conv_in_channels(model)
    tensors = {
        name: torch.empty_like(t, device="meta")
        for name, t in itertools.chain(model.named_parameters(), model.named_buffers())
    }
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            x = torch.empty(1, chans, *input_size, device="meta")
            out = torch.func.functional_call(model, tensors, (x,))
    except RuntimeError as err:
        raise ValueError(f"input_size {tuple(input_size)} is too small for this network: {err}") from None
    finally:
        for m, mode in modes.items():
            m.training = mode
    if isinstance(out, tuple | list):
        out = out[1]
    return int(out.shape[-2]), int(out.shape[-1])
