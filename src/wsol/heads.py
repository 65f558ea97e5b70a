"""CAM heads: features (B, K, H, W) → logits (B, C) *and* class maps (B, C, H, W) in one forward pass.

Every head returns a :class:`CAMOutput`, a 2-tuple ``(logits, cams)`` (so ``logits, cams = head(f)``
works) carrying an ``extras`` dict: ``"activations"`` are the maps the activity regularizer penalizes,
``"alpha"`` the GWAP weight maps where the head has them. No hooks, no second pass.

Heads (:func:`build_head` names):
    ``zhou``     features → GAP → FC; CAM_c = Σ_k w_k^c f_k (Zhou et al. 2016 eq. 2).
    ``cam``      1×1 conv to one map per class, then any pooling (Gudi et al. 2017 §3.1).
    ``gapm``     conv 3×3 with m·C kernels + ReLU, CAM_c = sum of its m maps, GAP (Moreaux et al. 2018 eq. 1–4).
    ``gwap``     class-agnostic GWAP (α shared) then FC (Qiu §III-B).
    ``gwap_cs``  ``cam`` head with class-specific GWAP and a background map (Qiu §III-C).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from wsol.pooling import GlobalWeightedAvgPool, _GlobalPool, build_pooling

__all__ = [
    "ActivityRegularizer",
    "CAMLayerHead",
    "CAMOutput",
    "GAPmHead",
    "GWAPHead",
    "ZhouHead",
    "activity_regularization",
    "build_head",
    "list_heads",
]


class CAMOutput(tuple):
    """``(logits, cams)`` with an ``extras`` dict; unpacks as a plain 2-tuple.

    Attributes:
        logits: (B, C) class scores before softmax/sigmoid.
        cams: (B, C, H, W) class activation maps at feature resolution.
        extras: named auxiliary tensors (``"activations"``, ``"alpha"``, ...).
    """

    extras: dict[str, Tensor]

    def __new__(cls, logits: Tensor, cams: Tensor, extras: dict[str, Tensor] | None = None) -> CAMOutput:
        self = super().__new__(cls, (logits, cams))
        self.extras = dict(extras or {})
        return self

    @property
    def logits(self) -> Tensor:
        return self[0]

    @property
    def cams(self) -> Tensor:
        return self[1]


def _check_features(x: Tensor, in_channels: int) -> None:
    if not isinstance(x, Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"features must be a tensor of shape (B, K, H, W), got {shape}")
    if x.shape[1] != in_channels:
        raise ValueError(f"features have {x.shape[1]} channels, the head expects in_channels={in_channels}")
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"features have a zero-size spatial dimension: {tuple(x.shape)}")


def _positive_int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _as_pooling(pooling: str | _GlobalPool, **kwargs: Any) -> _GlobalPool:
    return build_pooling(pooling, **kwargs) if isinstance(pooling, str) else pooling


class _CAMHead(nn.Module):
    """Base class of the heads: validates features and exposes ``in_channels``/``num_classes``."""

    def __init__(self, in_channels: int, num_classes: int, output_affine: bool = False) -> None:
        super().__init__()
        self.in_channels = _positive_int(in_channels, "in_channels")
        self.num_classes = _positive_int(num_classes, "num_classes")
        self.scale = nn.Parameter(torch.ones(num_classes)) if output_affine else None
        self.bias = nn.Parameter(torch.zeros(num_classes)) if output_affine else None

    def _affine(self, scores: Tensor) -> Tensor:
        """Gudi's per-class output layer ``logit_c = a_c s_c + d_c`` when ``output_affine`` is on."""
        return scores if self.scale is None else scores * self.scale + self.bias

    def cam_thresholds(self) -> Tensor:
        """Per-class pooled-score value where the output probability is 0.5: ``-d_c / a_c`` (Gudi §3.1.1).

        A two-way softmax on one pooled score ``s`` is ``sigmoid((a_1 - a_0) s + (d_1 - d_0))``: one scale
        and one bias per class, whose decision boundary is ``s* = -d / a``. Without ``output_affine`` the
        boundary of a sigmoid on the pooled score is 0.
        """
        if self.scale is None:
            return torch.zeros(self.num_classes)
        return (-self.bias / self.scale).detach()

    def forward(self, features: Tensor) -> CAMOutput:
        _check_features(features, self.in_channels)
        return self._forward(features)

    def _forward(self, features: Tensor) -> CAMOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def class_maps(self, features: Tensor) -> Tensor:
        """Only the class maps (B, C, H, W) of ``features``."""
        return self(features).cams


class ZhouHead(_CAMHead):
    r"""Zhou et al. 2016 (§2, eq. 1–2): features → global pooling → FC, and the CAM from the FC weights.

    .. math:: S_c = \sum_k w_k^c \, \mathrm{GAP}(f_k) + b_c, \qquad
              M_c(x, y) = \sum_k w_k^c f_k(x, y)

    The CAM is one batched ``einsum`` over all classes. With GAP, ``mean_{x,y} M_c + b_c = S_c``
    exactly (the identity the tests check).

    Args:
        in_channels: feature channels ``K``.
        num_classes: ``C``.
        pooling: pooling of the features before the FC (``"gap"`` in the paper).
    """

    def __init__(self, in_channels: int, num_classes: int, pooling: str | _GlobalPool = "gap", **pool_kw: Any):
        super().__init__(in_channels, num_classes)
        self.pool = _as_pooling(pooling, **pool_kw)
        if self.pool.extra_channels or isinstance(self.pool, GlobalWeightedAvgPool):
            raise ValueError("zhou head: use the 'gwap' / 'gwap_cs' heads for GWAP poolings")
        self.fc = nn.Linear(in_channels, num_classes)

    def _forward(self, features: Tensor) -> CAMOutput:
        logits = self.fc(self.pool(features))
        cams = torch.einsum("ck,bkhw->bchw", self.fc.weight.to(features.dtype), features)
        return CAMOutput(logits, cams, {"activations": cams})

    def topk_cams(self, features: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
        """Logits (B, C), the ids of the ``k`` highest logits (B, k) and only *their* CAMs (B, k, H, W).

        The same numbers as :meth:`forward` followed by a gather, without computing the other ``C − k``
        maps (eq. 2 is linear in the FC rows): for ImageNet and ``k = 5`` that is 995 maps saved per image.
        Ranking by logits equals ranking by softmax or sigmoid probabilities.
        """
        _check_features(features, self.in_channels)
        k = _positive_int(k, "k")
        logits = self.fc(self.pool(features))
        ids = logits.topk(min(k, self.num_classes), dim=1).indices
        weight = self.fc.weight.to(features.dtype)[ids]  # (B, k, K)
        return logits, ids, torch.einsum("bjk,bkhw->bjhw", weight, features)


class CAMLayerHead(_CAMHead):
    r"""Gudi et al. 2017 §3.1: the CAM layer comes *first* (1×1 conv, one map per class), then pooling.

    .. math:: M_c = \sum_k w_k^c f_k + b_c, \qquad s_c = \mathrm{pool}(M_c), \qquad
              \text{logit}_c = a_c s_c + d_c \ \text{(if ``output_affine``)}

    ``output_affine`` adds Gudi's per-class output layer: a two-way softmax on one pooled score is
    ``sigmoid((a_1 - a_0) s + (d_1 - d_0))``, i.e. one scale and one bias per class; the CAM threshold
    of §3.1.1 ("ratio of biases/weights of the output layer") is then ``-d_c / a_c``
    (:meth:`cam_thresholds`). Poolings with ``extra_channels`` (``gwap_cs``) get that many extra maps
    (a background map), which are pooled but not returned as CAMs.

    Args:
        in_channels: feature channels ``K``.
        num_classes: ``C``.
        pooling: a name from :func:`wsol.pooling.list_poolings` or a pooling module.
        output_affine: add the per-class scale + bias after pooling.
        **pool_kw: arguments of the pooling (e.g. ``kernel_sizes`` for SPAM).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        pooling: str | _GlobalPool = "gap",
        output_affine: bool = False,
        **pool_kw: Any,
    ) -> None:
        super().__init__(in_channels, num_classes, output_affine)
        self.pool = _as_pooling(pooling, **pool_kw)
        if isinstance(self.pool, GlobalWeightedAvgPool):
            raise ValueError("cam head: class-agnostic 'gwap' pools features; use the 'gwap' head instead")
        self.cam = nn.Conv2d(in_channels, num_classes + self.pool.extra_channels, kernel_size=1)

    def _forward(self, features: Tensor) -> CAMOutput:
        maps = self.cam(features)
        scores, alpha = self.pool.forward_with_weights(maps)
        scores = self._affine(scores)
        cams = maps[:, : self.num_classes]
        extras = {"activations": cams}
        if alpha is not None:
            extras["alpha"] = alpha
        return CAMOutput(scores, cams, extras)


class GAPmHead(_CAMHead):
    r"""Moreaux et al. 2018 §3 (eq. 1–4): unshared GAP with ``m`` maps per class ("GAP-m").

    .. math::
        f_k = \mathrm{ReLU}(W_k * z), \ k < m C; \qquad
        g'_c = \sum_{k \in \text{class } c} \mathrm{GAP}(f_k); \qquad
        \mathrm{CAM}_c = \sum_{k=(c-1)m}^{cm-1} f_k

    Maps ``[c m, (c + 1) m)`` belong to class ``c``. Logits are ``g'`` (softmax gives eq. 3);
    ``logits_c = mean(CAM_c)`` since GAP is linear.

    Args:
        in_channels: feature channels.
        num_classes: ``C``.
        m: maps per class (the paper's choice is 5).
        kernel_size: size of the convolution (3 in the paper; padded to keep the resolution).
        output_affine: per-class scale + bias after GAP (needed for a one-class sigmoid output, since
            the ReLU maps make ``g'`` non-negative); see :class:`CAMLayerHead`.
    """

    def __init__(
        self, in_channels: int, num_classes: int, m: int = 5, kernel_size: int = 3, output_affine: bool = False
    ) -> None:
        super().__init__(in_channels, num_classes, output_affine)
        self.m = _positive_int(m, "m")
        k = _positive_int(kernel_size, "kernel_size")
        self.conv = nn.Conv2d(in_channels, self.m * num_classes, kernel_size=k, padding=k // 2)

    def _forward(self, features: Tensor) -> CAMOutput:
        maps = torch.relu(self.conv(features))
        b, _, h, w = maps.shape
        cams = maps.view(b, self.num_classes, self.m, h, w).sum(dim=2)
        return CAMOutput(self._affine(cams.mean(dim=(2, 3))), cams, {"activations": maps})


class GWAPHead(_CAMHead):
    r"""Class-agnostic GWAP head (Qiu §III-B, Fig. 3): shared α, pooled feature, FC.

    .. math:: \text{logit}_c = \sum_k w_k^c \sum_{x,y} \alpha(x, y) f_k(x, y) + b_c
              = \sum_{x,y} \alpha(x, y)\, M_c(x, y) + b_c,
              \quad M_c = \sum_k w_k^c f_k

    Returns the class maps ``M_c`` (Zhou-style, one einsum) as CAMs and ``α`` (B, 1, H, W) in
    ``extras["alpha"]``.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__(in_channels, num_classes)
        self.pool = GlobalWeightedAvgPool(in_channels)
        self.fc = nn.Linear(in_channels, num_classes)

    def _forward(self, features: Tensor) -> CAMOutput:
        pooled, alpha = self.pool.forward_with_weights(features)
        logits = self.fc(pooled)
        cams = torch.einsum("ck,bkhw->bchw", self.fc.weight.to(features.dtype), features)
        return CAMOutput(logits, cams, {"activations": cams, "alpha": alpha})


def _gwap_cs_head(in_channels: int, num_classes: int, **kwargs: Any) -> CAMLayerHead:
    return CAMLayerHead(in_channels, num_classes, pooling="gwap_cs", **kwargs)


_HEADS: dict[str, Callable[..., _CAMHead]] = {
    "zhou": ZhouHead,
    "cam": CAMLayerHead,
    "gapm": GAPmHead,
    "gwap": GWAPHead,
    "gwap_cs": _gwap_cs_head,
}


def list_heads() -> list[str]:
    """Names accepted by :func:`build_head`."""
    return sorted(_HEADS)


def build_head(name: str, in_channels: int, num_classes: int, **kwargs: Any) -> _CAMHead:
    """Build a CAM head by name, e.g. ``build_head("cam", 512, 20, pooling="spam")``.

    Raises:
        ValueError: unknown name (the message lists the valid ones) or invalid arguments.
    """
    try:
        factory = _HEADS[name]
    except KeyError:
        raise ValueError(f"unknown head {name!r}; valid names: {', '.join(list_heads())}") from None
    return factory(in_channels, num_classes, **kwargs)


def activity_regularization(maps: Tensor, kind: str = "l1", alpha: float = 1e-7) -> Tensor:
    r"""Activity regularization of class-evidence maps (Moreaux et al. 2018 §3.2, eq. 5–6).

    .. math::
        L_1 = \alpha \sum_k \Big| \sum_{x,y} f_k(x, y) \Big|, \qquad
        L_2 = \alpha \sum_k \sqrt{\sum_{x,y} f_k(x, y)^2}

    summed over the maps ``k`` of one image and averaged over the batch.

    Args:
        maps: (B, K, H, W) activations (``CAMOutput.extras["activations"]``).
        kind: ``"l1"`` or ``"l2"``.
        alpha: weight (the paper's default 1e-7), ≥ 0.
    """
    if not isinstance(maps, Tensor) or maps.ndim != 4:
        raise ValueError("activity_regularization: maps must be a (B, K, H, W) tensor")
    if not alpha >= 0:
        raise ValueError(f"activity_regularization: alpha must be >= 0, got {alpha!r}")
    sums = maps.float().flatten(2)
    if kind == "l1":
        per_map = sums.sum(dim=-1).abs()
    elif kind == "l2":
        per_map = sums.pow(2).sum(dim=-1).sqrt()
    else:
        raise ValueError(f"activity_regularization: kind must be 'l1' or 'l2', got {kind!r}")
    return alpha * per_map.sum(dim=1).mean()


class ActivityRegularizer:
    """Callable loss term for the trainer: ``regularizer(output) -> scalar`` on a :class:`CAMOutput`.

    Args:
        kind: ``"l1"`` or ``"l2"`` (Moreaux eq. 5 / eq. 6).
        alpha: weight, default 1e-7 as in the paper.
    """

    def __init__(self, kind: str = "l1", alpha: float = 1e-7) -> None:
        if kind not in ("l1", "l2"):
            raise ValueError(f"ActivityRegularizer: kind must be 'l1' or 'l2', got {kind!r}")
        if not alpha >= 0:
            raise ValueError(f"ActivityRegularizer: alpha must be >= 0, got {alpha!r}")
        self.kind, self.alpha = kind, float(alpha)

    def __call__(self, output: CAMOutput | tuple[Tensor, Tensor]) -> Tensor:
        extras = getattr(output, "extras", {})
        maps = extras.get("activations", output[1])
        return activity_regularization(maps, self.kind, self.alpha)

    def __repr__(self) -> str:
        return f"ActivityRegularizer(kind={self.kind!r}, alpha={self.alpha})"
