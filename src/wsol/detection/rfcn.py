"""R-FCN with optional weakly supervised GAP / class-specific GWAP branches (Qiu §III-D, Fig. 5; Dai et al. 2016).

One fully convolutional network, two kinds of branches on the same backbone features ``F`` (B, K, h, w):

* **detection** (R-FCN, Dai et al. 2016): ``R = ReLU(conv1×1(F))`` (the 1024-d reduction of R-FCN), a region
  proposal network on ``R`` (torchvision's :class:`~torchvision.models.detection.rpn.RegionProposalNetwork`
  with a lighter 3×3 head), ``k²(C + 1)`` position-sensitive score maps and ``4k²`` class-agnostic box maps
  (1×1 convs on ``R``). For a RoI, bin ``(i, j)`` of class ``c`` reads only score map ``(c, i, j)``
  (position-sensitive RoI pooling, :func:`torchvision.ops.ps_roi_align` or ``ps_roi_pool``), the ``k²`` bins
  vote by averaging (R-FCN eq. 1–2): ``r_c = (1/k²) Σ_{i,j} pool_{c,i,j}``, softmax over ``C + 1``;
* **weak** (image labels only): ``"gwap"`` = :class:`wsol.heads.CAMLayerHead` with the class-specific GWAP of
  :class:`wsol.pooling.ClassSpecificGWAP` (Qiu eq. 6–9), ``"gap"`` = the same head with global average
  pooling. Both give image logits (B, C) for the multi-label sigmoid cross-entropy and class score maps
  ``S`` (B, C, h, w) for the local object-region regularizer (:mod:`wsol.detection.semi`).

Variants (Qiu Table V rows): ``"rfcn"`` (no weak branch), ``"rfcn+gap"``, ``"rfcn+gwap"``, ``"rfcn+gwap+gap"``.

Geometry: boxes inside the model are *continuous* ``[x0, y0, x1, y1]`` in input pixels (torchvision's
convention; the inclusive pixel box ``[a, b, c, d]`` is ``[a, b, c + 1, d + 1]``). Feature cell ``j`` is
centred at input coordinate ``j·S + c0`` where ``S`` is the stride and ``c0 = K/2 − P`` the centre of the
receptive field of cell 0 (``P`` offset, ``K`` size, :func:`wsol.localize.receptive_field_chain`). Anchors
are centred there and RoIs are shifted before PS-RoI pooling (:meth:`RFCN.roi_outputs`) so that a RoI pools
the cells whose receptive fields it covers. (For LeNet-5, whose convolutions are unpadded,
``c0 = 8`` px = 2 cells: ignoring it would shift every bin by two cells.)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.ops import batched_nms, box_iou, clip_boxes_to_image, ps_roi_align, ps_roi_pool

from wsol.heads import CAMOutput, build_head

__all__ = [
    "RFCN",
    "VARIANTS",
    "WEAK_HEADS",
    "RFCNSpec",
    "build_rfcn",
    "position_sensitive_pool",
    "position_sensitive_vote",
]

Variant = Literal["rfcn", "rfcn+gap", "rfcn+gwap", "rfcn+gwap+gap"]
#: variant → weak branches it adds to R-FCN (Qiu Table V rows)
WEAK_HEADS: dict[str, tuple[str, ...]] = {
    "rfcn": (),
    "rfcn+gap": ("gap",),
    "rfcn+gwap": ("gwap",),
    "rfcn+gwap+gap": ("gwap", "gap"),
}
VARIANTS = tuple(WEAK_HEADS)


@dataclass
class RFCNSpec:
    """Architecture of an :class:`RFCN` (the ``model`` section of a detection config).

    Attributes:
        backbone: a :func:`wsol.models.create_model` backbone name (``resnet50``, ``lenet5``, ``timm:<name>``).
        backbone_kwargs: arguments of the backbone factory.
        in_chans: image channels.
        variant: ``rfcn``, ``rfcn+gap``, ``rfcn+gwap`` or ``rfcn+gwap+gap``.
        weights: local file with backbone weights (timm / torchvision state dict or a wsol checkpoint), or None.
        ps_bins: ``k`` of the ``k × k`` position-sensitive bins (R-FCN: 7).
        ps_mode: ``"align"`` (bilinear sampling, :func:`torchvision.ops.ps_roi_align`) or ``"pool"`` (average
            over integer bins, :func:`torchvision.ops.ps_roi_pool`, the original R-FCN operator).
        sampling_ratio: sampling points per bin side for ``"align"``.
        reduce_channels: channels of the 1×1 reduction before the score maps (R-FCN: 1024).
        rpn_channels: channels of the RPN's 3×3 conv.
        anchor_sizes / aspect_ratios: anchors (side in pixels, height/width).
        rpn_*: RPN sampling / proposal settings (Faster R-CNN defaults).
        roi_batch_size_per_image / roi_positive_fraction / roi_fg_iou: RoI sampling for the R-FCN head.
        bbox_reg_weights: weights of the head's box coder (Faster R-CNN's 10, 10, 5, 5).
        feature_stride / feature_offset: ``S`` and ``c0`` of the module docstring; None = derived from the
            backbone's receptive field.
        freeze_bn: keep the backbone's BatchNorm layers in eval mode (R-FCN trains with frozen BN statistics).
        pixel_mean / pixel_std: input normalization applied inside the model to images in [0, 1]; None = the
            backbone's ``default_cfg`` (ImageNet statistics for resnet50), else 0 / 1.
    """

    backbone: str = "resnet50"
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    in_chans: int = 3
    variant: Variant = "rfcn+gwap"
    weights: str | None = None
    ps_bins: int = 7
    ps_mode: Literal["align", "pool"] = "align"
    sampling_ratio: int = 2
    reduce_channels: int = 1024
    rpn_channels: int = 512
    anchor_sizes: list[float] = field(default_factory=lambda: [128.0, 256.0, 512.0])
    aspect_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    rpn_fg_iou: float = 0.7
    rpn_bg_iou: float = 0.3
    rpn_batch_size_per_image: int = 256
    rpn_positive_fraction: float = 0.5
    rpn_pre_nms_top_n_train: int = 6000
    rpn_post_nms_top_n_train: int = 300
    rpn_pre_nms_top_n_test: int = 6000
    rpn_post_nms_top_n_test: int = 300
    rpn_nms_thresh: float = 0.7
    roi_batch_size_per_image: int = 128
    roi_positive_fraction: float = 0.25
    roi_fg_iou: float = 0.5
    bbox_reg_weights: list[float] = field(default_factory=lambda: [10.0, 10.0, 5.0, 5.0])
    feature_stride: int | None = None
    feature_offset: float | None = None
    freeze_bn: bool = True
    pixel_mean: list[float] | None = None
    pixel_std: list[float] | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid field."""
        if self.variant not in WEAK_HEADS:
            raise ValueError(f"variant must be one of {list(WEAK_HEADS)}, got {self.variant!r}")
        if self.ps_mode not in ("align", "pool"):
            raise ValueError(f"ps_mode must be 'align' or 'pool', got {self.ps_mode!r}")
        for name in ("in_chans", "ps_bins", "sampling_ratio", "reduce_channels", "rpn_channels",
                     "rpn_batch_size_per_image", "rpn_pre_nms_top_n_train", "rpn_post_nms_top_n_train",
                     "rpn_pre_nms_top_n_test", "rpn_post_nms_top_n_test", "roi_batch_size_per_image"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        for name in ("rpn_fg_iou", "rpn_bg_iou", "rpn_positive_fraction", "rpn_nms_thresh", "roi_positive_fraction",
                     "roi_fg_iou"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and 0.0 < v <= 1.0):
                raise ValueError(f"{name} must be a number in (0, 1], got {v!r}")
        if self.rpn_bg_iou > self.rpn_fg_iou:
            raise ValueError(f"rpn_bg_iou ({self.rpn_bg_iou}) must not exceed rpn_fg_iou ({self.rpn_fg_iou})")
        for name in ("anchor_sizes", "aspect_ratios"):
            v = list(getattr(self, name))
            if not v or not all(isinstance(a, int | float) and math.isfinite(a) and a > 0 for a in v):
                raise ValueError(f"{name} must be a non-empty list of positive numbers, got {v!r}")
        if len(self.bbox_reg_weights) != 4 or not all(w > 0 for w in self.bbox_reg_weights):
            raise ValueError(f"bbox_reg_weights must be 4 positive numbers, got {self.bbox_reg_weights!r}")
        if self.feature_stride is not None and (isinstance(self.feature_stride, bool) or self.feature_stride < 1):
            raise ValueError(f"feature_stride must be a positive int or null, got {self.feature_stride!r}")
        if self.feature_offset is not None and not math.isfinite(self.feature_offset):
            raise ValueError(f"feature_offset must be finite or null, got {self.feature_offset!r}")
        for name in ("pixel_mean", "pixel_std"):
            v = getattr(self, name)
            if v is not None and len(v) != self.in_chans:
                raise ValueError(f"{name} needs in_chans={self.in_chans} values, got {v!r}")
        if self.pixel_std is not None and not all(s > 0 for s in self.pixel_std):
            raise ValueError(f"pixel_std must be positive, got {self.pixel_std!r}")

    @property
    def weak_heads(self) -> tuple[str, ...]:
        return WEAK_HEADS[self.variant]


# ----------------------------------------------------------------------------------------------------------
# Position-sensitive RoI pooling
# ----------------------------------------------------------------------------------------------------------
def position_sensitive_pool(
    maps: Tensor,
    rois: Tensor | list[Tensor],
    k: int,
    spatial_scale: float = 1.0,
    mode: Literal["align", "pool"] = "align",
    sampling_ratio: int = 2,
) -> Tensor:
    r"""Position-sensitive RoI pooling (R-FCN eq. 1): ``(R, n, k, k)`` from ``maps`` (B, k²·n, h, w).

    .. math:: r_c(i, j) = \frac{1}{|\text{bin}(i, j)|} \sum_{(x, y) \in \text{bin}(i, j)} z_{(c·k + i)·k + j}(x, y)

    i.e. output channel ``c`` at bin ``(i, j)`` (row ``i``, column ``j``) reads input channel ``(c·k + i)·k + j``
    (torchvision's channel layout). ``"align"`` samples bilinearly (``sampling_ratio²`` points per bin);
    ``"pool"`` averages the integer cells of each bin.

    Args:
        maps: (B, k²·n, h, w) score maps.
        rois: (R, 5) ``[batch_index, x0, y0, x1, y1]`` or one (L, 4) tensor per image, in the coordinates that
            ``spatial_scale`` maps onto the feature grid.
        k: bins per side.
        spatial_scale: feature cells per RoI unit.
        mode: ``"align"`` or ``"pool"``.
        sampling_ratio: for ``"align"``.

    Raises:
        ValueError: ``maps`` channels not divisible by ``k²``, bad ``rois`` shape or mode.
    """
    if not isinstance(maps, Tensor) or maps.ndim != 4:
        raise ValueError(f"maps must be a (B, k*k*n, h, w) tensor, got {getattr(maps, 'shape', type(maps))}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if maps.shape[1] % (k * k):
        raise ValueError(f"maps have {maps.shape[1]} channels, not a multiple of k*k = {k * k}")
    if isinstance(rois, Tensor):
        if rois.ndim != 2 or rois.shape[1] != 5:
            raise ValueError(f"rois must be (R, 5) [batch_index, x0, y0, x1, y1], got {tuple(rois.shape)}")
    elif len(rois) != maps.shape[0]:
        raise ValueError(f"got RoIs for {len(rois)} images but maps for {maps.shape[0]}")
    if mode == "align":
        return ps_roi_align(maps, rois, k, spatial_scale=spatial_scale, sampling_ratio=sampling_ratio)
    if mode == "pool":
        return ps_roi_pool(maps, rois, k, spatial_scale=spatial_scale)
    raise ValueError(f"mode must be 'align' or 'pool', got {mode!r}")


def position_sensitive_vote(pooled: Tensor) -> Tensor:
    r"""R-FCN eq. 2, voting by averaging: ``r_c = (1/k²) Σ_{i,j} r_c(i, j)``; (R, n, k, k) → (R, n)."""
    return pooled.mean(dim=(2, 3))


# ----------------------------------------------------------------------------------------------------------
# Anchors and RPN head
# ----------------------------------------------------------------------------------------------------------
class _CentredAnchors(AnchorGenerator):
    """torchvision anchors on the known grid: cell ``(y, x)`` centred at ``(y·S + c0, x·S + c0)``.

    torchvision's own generator infers the stride as ``image_size // grid_size`` (15 instead of 16 for a
    600-px image on a ``⌈H/16⌉`` grid) and centres anchors at ``x·S``; both are fixed here.
    """

    def __init__(self, sizes: Sequence[float], ratios: Sequence[float], stride: int, offset: float) -> None:
        super().__init__(sizes=(tuple(float(s) for s in sizes),), aspect_ratios=(tuple(float(r) for r in ratios),))
        self.stride = int(stride)
        self.offset = float(offset)

    def forward(self, image_list: ImageList, feature_maps: list[Tensor]) -> list[Tensor]:
        fmap = feature_maps[0]
        s = torch.tensor(self.stride, dtype=torch.int64, device=fmap.device)
        self.set_cell_anchors(fmap.dtype, fmap.device)
        anchors = self.grid_anchors([list(fmap.shape[-2:])], [[s, s]])[0] + self.offset
        return [anchors for _ in range(len(image_list.image_sizes))]


class _RPNHead(nn.Module):
    """3×3 conv (``mid`` channels) + ReLU, then 1×1 objectness (A) and 1×1 deltas (4A), as torchvision's
    ``RPNHead`` but with its own width (torchvision keeps the input width: 2048² × 9 weights on ResNet-50)."""

    def __init__(self, in_channels: int, mid_channels: int, num_anchors: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, mid_channels, 3, padding=1)
        self.cls_logits = nn.Conv2d(mid_channels, num_anchors, 1)
        self.bbox_pred = nn.Conv2d(mid_channels, 4 * num_anchors, 1)
        for layer in (self.conv, self.cls_logits, self.bbox_pred):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, x: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        t = [F.relu(self.conv(f)) for f in x]
        return [self.cls_logits(f) for f in t], [self.bbox_pred(f) for f in t]


# ----------------------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------------------
class RFCN(nn.Module):
    """R-FCN detector with optional weak GAP / class-specific GWAP branches on the shared backbone features.

    Use :func:`build_rfcn` to build one from an :class:`RFCNSpec`. Images are float tensors in [0, 1]
    (normalized inside with ``pixel_mean`` / ``pixel_std``).

    Args:
        backbone: images (B, in_chans, H, W) → features (B, K, h, w).
        channels: ``K``.
        num_classes: object classes ``C`` (background excluded).
        spec: the architecture; ``feature_stride`` and ``feature_offset`` must be resolved (not None).
        pixel_mean / pixel_std: normalization constants, one per input channel.

    Attributes:
        weak: ``nn.ModuleDict`` name → weak head (``"gwap"`` / ``"gap"``), empty for plain R-FCN.
        spec: the resolved :class:`RFCNSpec`.
    """

    def __init__(
        self,
        backbone: nn.Module,
        channels: int,
        num_classes: int,
        spec: RFCNSpec,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
    ) -> None:
        super().__init__()
        if spec.feature_stride is None or spec.feature_offset is None:
            raise ValueError("RFCN needs a resolved spec (feature_stride and feature_offset); use build_rfcn")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.spec = spec
        self.num_classes = num_classes
        self.stride = int(spec.feature_stride)
        self.offset = float(spec.feature_offset)
        self.k = spec.ps_bins
        self.backbone = backbone
        self.register_buffer("pixel_mean", torch.tensor(list(pixel_mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(list(pixel_std), dtype=torch.float32).view(1, -1, 1, 1))
        d = spec.reduce_channels
        self.reduce = nn.Conv2d(channels, d, 1)
        self.cls_maps = nn.Conv2d(d, spec.ps_bins**2 * (num_classes + 1), 1)
        self.bbox_maps = nn.Conv2d(d, spec.ps_bins**2 * 4, 1)
        nn.init.kaiming_normal_(self.reduce.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.reduce.bias)
        nn.init.normal_(self.cls_maps.weight, std=0.01)
        nn.init.normal_(self.bbox_maps.weight, std=0.001)
        nn.init.zeros_(self.cls_maps.bias)
        nn.init.zeros_(self.bbox_maps.bias)
        anchors = _CentredAnchors(spec.anchor_sizes, spec.aspect_ratios, self.stride, self.offset)
        self.rpn = RegionProposalNetwork(
            anchors,
            _RPNHead(d, spec.rpn_channels, anchors.num_anchors_per_location()[0]),
            fg_iou_thresh=spec.rpn_fg_iou,
            bg_iou_thresh=spec.rpn_bg_iou,
            batch_size_per_image=spec.rpn_batch_size_per_image,
            positive_fraction=spec.rpn_positive_fraction,
            pre_nms_top_n={"training": spec.rpn_pre_nms_top_n_train, "testing": spec.rpn_pre_nms_top_n_test},
            post_nms_top_n={"training": spec.rpn_post_nms_top_n_train, "testing": spec.rpn_post_nms_top_n_test},
            nms_thresh=spec.rpn_nms_thresh,
        )
        self.box_coder = det_utils.BoxCoder(tuple(float(w) for w in spec.bbox_reg_weights))
        self.matcher = det_utils.Matcher(spec.roi_fg_iou, spec.roi_fg_iou, allow_low_quality_matches=False)
        self.sampler = det_utils.BalancedPositiveNegativeSampler(
            spec.roi_batch_size_per_image, spec.roi_positive_fraction
        )
        heads = {}
        for name in spec.weak_heads:
            if name == "gwap":
                heads[name] = build_head("gwap_cs", channels, num_classes)
            else:
                heads[name] = build_head("cam", channels, num_classes, pooling="gap")
        self.weak = nn.ModuleDict(heads)

    # -- modes ----------------------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> RFCN:
        """``nn.Module.train``, keeping the backbone's BatchNorm layers in eval mode when ``spec.freeze_bn``."""
        super().train(mode)
        if mode and self.spec.freeze_bn:
            for m in self.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    # -- shared features ------------------------------------------------------------------------------------
    def features(self, images: Tensor) -> Tensor:
        """Backbone features (B, K, h, w) of images (B, in_chans, H, W) in [0, 1]."""
        if not isinstance(images, Tensor) or images.ndim != 4:
            raise ValueError(f"images must be a (B, C, H, W) tensor, got {getattr(images, 'shape', type(images))}")
        if images.shape[1] != self.pixel_mean.shape[1]:
            raise ValueError(f"images have {images.shape[1]} channels, the model expects {self.pixel_mean.shape[1]}")
        return self.backbone((images - self.pixel_mean) / self.pixel_std)

    def weak_outputs(self, features: Tensor) -> dict[str, CAMOutput]:
        """Each weak head's ``CAMOutput(logits (B, C), cams S (B, C, h, w))`` (empty for plain R-FCN)."""
        return {name: head(features) for name, head in self.weak.items()}

    def _reduced(self, features: Tensor) -> Tensor:
        return F.relu(self.reduce(features))

    # -- R-FCN head -----------------------------------------------------------------------------------------
    def roi_outputs(self, reduced: Tensor, rois: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Class logits (R, C + 1) and class-agnostic box deltas (R, 4) of RoIs (continuous input pixels).

        torchvision's PS-RoI operators put feature cell ``j`` at ``(j + ½)·S`` input pixels (they subtract ½ cell
        from the scaled RoI); the cell's receptive field is centred at ``j·S + c0``, so RoIs are shifted by
        ``−(c0 − S/2)`` and pooled with ``spatial_scale = 1/S``. The ``k²`` bins then vote by averaging.
        """
        shift = self.offset - self.stride / 2.0
        shifted = [r - shift for r in rois]
        kw = {"k": self.k, "spatial_scale": 1.0 / self.stride, "mode": self.spec.ps_mode,
              "sampling_ratio": self.spec.sampling_ratio}
        cls = position_sensitive_vote(position_sensitive_pool(self.cls_maps(reduced), shifted, **kw))
        box = position_sensitive_vote(position_sensitive_pool(self.bbox_maps(reduced), shifted, **kw))
        return cls, box

    def roi_scores(
        self, images: Tensor, rois: list[Tensor], image_sizes: list[tuple[int, int]] | None = None
    ) -> Tensor:
        """Class probabilities (R, C + 1) of given RoIs (continuous input pixels, one (L, 4) tensor per image).

        RoIs are clipped to their image first; a RoI entirely outside becomes a zero-size box on the border
        and is scored from the border cells (finite, defined, but meaningless).
        """
        sizes = image_sizes or [tuple(images.shape[-2:])] * images.shape[0]
        if len(rois) != images.shape[0]:
            raise ValueError(f"rois has {len(rois)} entries for {images.shape[0]} images")
        clipped = [clip_boxes_to_image(r.to(images.dtype).reshape(-1, 4), s) for r, s in zip(rois, sizes, strict=True)]
        cls, _ = self.roi_outputs(self._reduced(self.features(images)), clipped)
        return torch.softmax(cls, dim=1)

    def _sample_rois(
        self, proposals: list[Tensor], targets: list[dict[str, Tensor]]
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Per image: sampled RoIs, their labels (0 = background, c + 1) and regression targets."""
        rois, labels, deltas = [], [], []
        for props, tgt in zip(proposals, targets, strict=True):
            gt = tgt["boxes"].to(props.dtype)
            props = torch.cat([props, gt])  # GT boxes are proposals too (Faster R-CNN / R-FCN training)
            if gt.numel() == 0:
                lab = torch.zeros(props.shape[0], dtype=torch.int64, device=props.device)
                matched = torch.zeros_like(props)
            else:
                idx = self.matcher(box_iou(gt, props))
                lab = tgt["labels"][idx.clamp(min=0)].to(torch.int64) + 1
                lab[idx == self.matcher.BELOW_LOW_THRESHOLD] = 0
                lab[idx == self.matcher.BETWEEN_THRESHOLDS] = -1
                matched = gt[idx.clamp(min=0)]
            pos, neg = self.sampler([lab])
            keep = torch.where(pos[0] | neg[0])[0]
            rois.append(props[keep])
            labels.append(lab[keep])
            deltas.append(self.box_coder.encode_single(matched[keep], props[keep]))
        return rois, labels, deltas

    def detection_losses(
        self, images: Tensor, features: Tensor, image_sizes: list[tuple[int, int]], targets: list[dict[str, Tensor]]
    ) -> dict[str, Tensor]:
        """R-FCN training losses of boxed images: RPN objectness / box and head classification / box.

        Args:
            images: the (padded) input batch (only its shape is used, for the anchors).
            features: backbone features of ``images``.
            image_sizes: ``(h, w)`` of each image inside the padding.
            targets: per image ``{"boxes": (G, 4) continuous input pixels, "labels": (G,) int64 in [0, C)}``;
                ``G`` may be 0 (every anchor and RoI is background).

        Returns:
            ``{"rpn_cls", "rpn_box", "det_cls", "det_box"}`` scalars. ``det_cls`` is the softmax cross-entropy
            over ``C + 1`` of the sampled RoIs, ``det_box`` smooth-L1 (β = 1/9) of the foreground RoIs divided by
            the number of sampled RoIs (torchvision's ``fastrcnn_loss`` normalization).
        """
        reduced = self._reduced(features)
        rpn_targets = [{"boxes": t["boxes"].to(reduced.dtype)} for t in targets]
        proposals, rpn_losses = self.rpn(ImageList(images, list(image_sizes)), {"0": reduced}, rpn_targets)
        rois, labels, deltas = self._sample_rois([p.detach() for p in proposals], targets)
        n = sum(len(r) for r in rois)
        if n == 0:  # nothing to sample (can only happen with an empty image and no proposal)
            zero = self.cls_maps.weight.sum() * 0.0
            return {"rpn_cls": rpn_losses["loss_objectness"], "rpn_box": rpn_losses["loss_rpn_box_reg"],
                    "det_cls": zero, "det_box": zero}
        cls, box = self.roi_outputs(reduced, rois)
        labels_all = torch.cat(labels)
        targets_all = torch.cat(deltas)
        det_cls = F.cross_entropy(cls, labels_all)
        pos = labels_all > 0
        det_box = F.smooth_l1_loss(box[pos], targets_all[pos], beta=1 / 9, reduction="sum") / n
        return {
            "rpn_cls": rpn_losses["loss_objectness"],
            "rpn_box": rpn_losses["loss_rpn_box_reg"],
            "det_cls": det_cls,
            "det_box": det_box,
        }

    @torch.no_grad()
    def predict(
        self,
        images: Tensor,
        image_sizes: list[tuple[int, int]] | None = None,
        *,
        score_thresh: float = 0.01,
        nms_iou: float = 0.3,
        max_per_image: int = 100,
        features: Tensor | None = None,
    ) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Detections per image: ``(boxes (D, 4) continuous input pixels, scores (D,), labels (D,) in [0, C))``.

        Proposals → PS-RoI scores (softmax over ``C + 1``) and decoded class-agnostic boxes clipped to the image
        → per class, scores above ``score_thresh`` → per-class NMS (:func:`torchvision.ops.batched_nms`, IoU
        ``nms_iou``; R-FCN uses 0.3) → the ``max_per_image`` best. Runs the RPN in inference mode whatever
        the module's mode.
        """
        sizes = list(image_sizes) if image_sizes is not None else [tuple(images.shape[-2:])] * images.shape[0]
        was_training = self.training
        self.eval()
        try:
            feats = self.features(images) if features is None else features
            reduced = self._reduced(feats)
            proposals, _ = self.rpn(ImageList(images, sizes), {"0": reduced})
            cls, box = self.roi_outputs(reduced, proposals)
        finally:
            self.train(was_training)
        probs = torch.softmax(cls, dim=1)
        out = []
        start = 0
        for props, size in zip(proposals, sizes, strict=True):
            n = props.shape[0]
            p = probs[start : start + n, 1:]
            boxes = clip_boxes_to_image(self.box_coder.decode_single(box[start : start + n], props), size)
            start += n
            c = p.shape[1]
            boxes = boxes[:, None, :].expand(n, c, 4).reshape(-1, 4)
            scores = p.reshape(-1)
            labels = torch.arange(c, device=p.device).repeat(n)
            keep = torch.where(scores > score_thresh)[0]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            wide = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            boxes, scores, labels = boxes[wide], scores[wide], labels[wide]
            keep = batched_nms(boxes, scores, labels, nms_iou)[:max_per_image]
            out.append((boxes[keep], scores[keep], labels[keep]))
        return out

    def forward(self, images: Tensor, image_sizes: list[tuple[int, int]] | None = None) -> list[tuple[Tensor, ...]]:
        """Inference: :meth:`predict` with its defaults."""
        return self.predict(images, image_sizes)


# ----------------------------------------------------------------------------------------------------------
# Construction
# ----------------------------------------------------------------------------------------------------------
def _resolve_geometry(backbone: nn.Module, channels: int, in_chans: int) -> tuple[int, float]:
    """``(S, c0)`` of the backbone from its receptive field (hooks), else ``(stride, S/2)`` with a warning."""
    from wsol.localize import receptive_field_chain
    from wsol.models.base import CAMNet

    cfg = getattr(backbone, "default_cfg", None) or {}
    size = tuple(cfg.get("input_size", (in_chans, 224, 224)))[1:]
    probe = CAMNet(backbone, build_head("cam", channels, 1, pooling="gap"))
    try:
        rf = receptive_field_chain(probe, (int(size[0]), int(size[1])), in_chans, method="hooks")
        s, p, k = rf.stride[1], rf.padding[1], rf.size[1]
        return int(s), k / 2.0 - p
    except ValueError as err:
        from wsol.models.backbones import mapping_resolution

        h, _ = mapping_resolution(probe, (int(size[0]), int(size[1])), in_chans)
        s = max(1, round(int(size[0]) / h))
        warnings.warn(
            f"could not derive the receptive field of the backbone ({err}); using stride {s} and feature_offset "
            f"{s / 2}; set model.feature_stride / model.feature_offset to override",
            stacklevel=3,
        )
        return s, s / 2.0


def build_rfcn(spec: RFCNSpec, num_classes: int) -> RFCN:
    """Build an :class:`RFCN` from ``spec`` for ``num_classes`` object classes (weights from ``spec.weights``).

    The backbone comes from :func:`wsol.models.create_model` (so every backbone there works, including
    ``timm:<name>`` with ``backbone_kwargs={"stage": i}``); the geometry ``(S, c0)`` is derived from its
    receptive field unless the spec sets it. The returned model's ``spec`` has them filled in, so a
    checkpoint stores a spec that rebuilds the same model without probing.

    Raises:
        ValueError: unknown backbone / invalid spec / unreadable weights file.
    """
    from wsol.models import create_model, load_weights

    spec.validate()
    camnet = create_model(spec.backbone, head="cam", num_classes=1, pooling="gap", in_chans=spec.in_chans,
                          backbone_kwargs=dict(spec.backbone_kwargs))
    backbone = camnet.backbone
    channels = int(camnet.head.in_channels)
    if spec.weights:
        load_weights(backbone, spec.weights, strict=False)
    stride, offset = spec.feature_stride, spec.feature_offset
    if stride is None or offset is None:
        s, c0 = _resolve_geometry(backbone, channels, spec.in_chans)
        stride = s if stride is None else stride
        offset = c0 if offset is None else offset
    cfg = camnet.pretrained_cfg or {}
    mean = spec.pixel_mean or list(cfg.get("mean", (0.0,) * spec.in_chans))
    std = spec.pixel_std or list(cfg.get("std", (1.0,) * spec.in_chans))
    if len(mean) != spec.in_chans or len(std) != spec.in_chans:
        mean, std = [0.0] * spec.in_chans, [1.0] * spec.in_chans
    resolved = replace(spec, feature_stride=int(stride), feature_offset=float(offset),
                       pixel_mean=[float(m) for m in mean], pixel_std=[float(s) for s in std])
    return RFCN(backbone, channels, num_classes, resolved, mean, std)
