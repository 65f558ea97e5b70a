"""Every global pooling of the papers: per-location evidence (B, C, H, W) → image-level scores (B, C).

One registry, :func:`build_pooling`, builds any of them by name::

    pool = build_pooling("spam", kernel_sizes=(1, 2, 5, None))
    scores = pool(cams)                       # (B, C)
    scores, weights = pool.forward_with_weights(cams)   # weights: localization maps or None

Names: ``gap``, ``gmp``, ``lse``, ``spam``, ``gwap`` (class-agnostic), ``gwap_cs`` (class-specific),
``wildcat``. A pooling that needs maps beyond one per class (``gwap_cs``: a background map) says so in
its :attr:`_GlobalPool.extra_channels`; heads read it to size their CAM layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ClassSpecificGWAP",
    "GlobalAvgPool",
    "GlobalMaxPool",
    "GlobalWeightedAvgPool",
    "LogSumExpPool",
    "SPAMPool",
    "WildcatPool",
    "build_pooling",
    "list_poolings",
    "register_pooling",
]

_POOLINGS: dict[str, type[_GlobalPool]] = {}


def register_pooling(name: str) -> Callable[[type[_GlobalPool]], type[_GlobalPool]]:
    """Class decorator adding a pooling to the registry under ``name``."""

    def wrap(cls: type[_GlobalPool]) -> type[_GlobalPool]:
        if name in _POOLINGS:
            raise ValueError(f"pooling {name!r} is already registered")
        _POOLINGS[name] = cls
        cls.name = name
        return cls

    return wrap


def list_poolings() -> list[str]:
    """Names accepted by :func:`build_pooling`."""
    return sorted(_POOLINGS)


def build_pooling(name: str, **kwargs: object) -> _GlobalPool:
    """Build a registered global pooling by name (timm-style factory).

    Args:
        name: one of :func:`list_poolings`.
        **kwargs: constructor arguments of that pooling (e.g. ``r`` for ``lse``).

    Raises:
        ValueError: unknown name (the message lists the valid ones) or invalid arguments.
    """
    try:
        cls = _POOLINGS[name]
    except KeyError:
        raise ValueError(f"unknown pooling {name!r}; valid names: {', '.join(list_poolings())}") from None
    return cls(**kwargs)


def _check_maps(x: Tensor, name: str = "maps") -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (B, C, H, W), got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W) (rank 4), got rank {x.ndim}: {tuple(x.shape)}")
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"{name} has a zero-size spatial dimension: {tuple(x.shape)}")


class _GlobalPool(nn.Module):
    """Base class: validates the input, then pools every channel over the whole map.

    Subclasses implement :meth:`_pool`, returning ``(scores, weights)`` where ``weights`` is the
    spatial weight map the pooling itself computes (GWAP's α) or ``None``.
    """

    name: str = ""
    #: maps the pooling needs beyond one per class (e.g. a background map)
    extra_channels: int = 0

    def forward(self, x: Tensor) -> Tensor:
        """Pool ``x`` (B, C, H, W) to scores (B, C − extra_channels)."""
        return self.forward_with_weights(x)[0]

    def forward_with_weights(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Pool and also return the pooling's own spatial weights (None if it has none)."""
        _check_maps(x)
        return self._pool(x)

    def _pool(self, x: Tensor) -> tuple[Tensor, Tensor | None]:  # pragma: no cover - abstract
        raise NotImplementedError


@register_pooling("gap")
class GlobalAvgPool(_GlobalPool):
    r"""Global average pooling (Zhou et al. 2016 §2; Moreaux et al. 2018 eq. 1).

    .. math:: s_c = \frac{1}{HW} \sum_{x,y} f_c(x, y)

    Gradient: uniform ``g / (HW)`` at every location (Gudi et al. 2017 eq. 2).
    """

    def _pool(self, x: Tensor) -> tuple[Tensor, None]:
        return x.mean(dim=(2, 3)), None


@register_pooling("gmp")
class GlobalMaxPool(_GlobalPool):
    r"""Global max pooling (Oquab et al. 2015; Gudi et al. 2017 eq. 1).

    .. math:: s_c = \max_{x,y} f_c(x, y)

    Gradient: ``g`` at the arg-max only, 0 elsewhere (Gudi eq. 1). With ties the gradient goes to
    the first maximum in row-major order (``torch.max`` over the flattened map), never split.
    """

    def _pool(self, x: Tensor) -> tuple[Tensor, None]:
        return x.flatten(2).max(dim=-1).values, None


@register_pooling("lse")
class LogSumExpPool(_GlobalPool):
    r"""Log-sum-exp pooling with sharpness ``r`` (Pinheiro & Collobert 2015; Qiu §II).

    .. math:: s_c = \frac{1}{r} \log \Big( \frac{1}{HW} \sum_{x,y} e^{r f_c(x, y)} \Big)

    Tends to GAP as ``r → 0`` and to GMP as ``r → ∞``; computed with ``torch.logsumexp`` so large
    ``r`` does not overflow.

    Args:
        r: sharpness, > 0 (default 5.0).
    """

    def __init__(self, r: float = 5.0) -> None:
        super().__init__()
        if not (isinstance(r, int | float) and math.isfinite(r) and r > 0):
            raise ValueError(f"lse pooling: r must be a finite number > 0, got {r!r}")
        self.r = float(r)

    def _pool(self, x: Tensor) -> tuple[Tensor, None]:
        n = x.shape[2] * x.shape[3]
        return (torch.logsumexp(self.r * x.flatten(2), dim=-1) - math.log(n)) / self.r, None

    def extra_repr(self) -> str:
        return f"r={self.r}"


@register_pooling("spam")
class SPAMPool(_GlobalPool):
    r"""Spatial Pyramid Averaged Max pooling (Gudi et al. 2017 §3.2.2, Fig. 6).

    For each pyramid level ``p`` with kernel ``K_p``: local average pooling (stride 1, no padding),
    then global max; the ``P`` maxima are averaged:

    .. math:: s_c = \frac{1}{P} \sum_{p=1}^{P} \max_{x,y} \operatorname{avgpool}_{K_p}(f_c)(x, y)

    Its gradient is Gudi eq. 3: each level sends ``g / (P K_p^2)`` to the ``K_p × K_p`` window of its
    arg-max. Level 1×1 is GMP, level N×N (the whole map) is GAP.

    Args:
        kernel_sizes: pyramid kernel sizes; ``None`` (or ``"full"``) means the whole map
            (``H × W``, Gudi's ``N × N``). An int ``k`` means ``k × k``; a pair means ``(kh, kw)``.
            Default ``(1, 2, 5, None)``, the paper's MNIST128 and VOC setting.
    """

    def __init__(self, kernel_sizes: Sequence[int | tuple[int, int] | str | None] = (1, 2, 5, None)) -> None:
        super().__init__()
        if isinstance(kernel_sizes, int | str) or kernel_sizes is None or len(kernel_sizes) == 0:
            raise ValueError(f"spam pooling: kernel_sizes must be a non-empty sequence, got {kernel_sizes!r}")
        sizes: list[tuple[int, int] | None] = []
        for k in kernel_sizes:
            if k is None or k == "full":
                sizes.append(None)
            elif isinstance(k, int) and not isinstance(k, bool) and k > 0:
                sizes.append((k, k))
            elif (
                isinstance(k, tuple | list)
                and len(k) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in k)
            ):
                sizes.append((int(k[0]), int(k[1])))
            else:
                raise ValueError(
                    f"spam pooling: kernel_sizes entries must be positive ints, (kh, kw) pairs or None, got {k!r}"
                )
        self.kernel_sizes = sizes

    def _pool(self, x: Tensor) -> tuple[Tensor, None]:
        h, w = x.shape[2], x.shape[3]
        levels = []
        for size in self.kernel_sizes:
            kh, kw = (h, w) if size is None else size
            if kh > h or kw > w:
                raise ValueError(
                    f"spam pooling: kernel_sizes entry {kh}x{kw} is larger than the {h}x{w} map; "
                    "use smaller kernels or None for the whole map"
                )
            local = F.avg_pool2d(x, kernel_size=(kh, kw), stride=1, padding=0)
            levels.append(local.flatten(2).max(dim=-1).values)
        return torch.stack(levels, dim=0).mean(dim=0), None

    def extra_repr(self) -> str:
        return f"kernel_sizes={[('full' if s is None else s) for s in self.kernel_sizes]}"


@register_pooling("gwap")
class GlobalWeightedAvgPool(_GlobalPool):
    r"""Class-agnostic global weighted average pooling (Qiu §III-B, eq. 3–5).

    .. math::
        M(x, y) = \exp(\sigma(\mathbf{w} F(x, y) + b)), \quad
        \alpha(x, y) = \frac{M(x, y)}{\sum_{x,y} M(x, y)}, \quad
        \mathbf{f} = \sum_{x,y} \alpha(x, y) F(x, y)

    ``w ∈ R^{1×K}, b`` are a learned 1×1 convolution. ``α`` (B, 1, H, W), non-negative and summing
    to 1, is a class-agnostic localization map; :meth:`forward_with_weights` returns it.

    Args:
        in_channels: ``K``, channels of the input.
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        if not isinstance(in_channels, int) or isinstance(in_channels, bool) or in_channels <= 0:
            raise ValueError(f"gwap pooling: in_channels must be a positive int, got {in_channels!r}")
        self.score = nn.Conv2d(in_channels, 1, kernel_size=1)

    def _pool(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.shape[1] != self.score.in_channels:
            raise ValueError(f"gwap pooling expects {self.score.in_channels} channels, got {x.shape[1]}")
        m = torch.sigmoid(self.score(x))  # log M; α = softmax(log M) = M / ΣM, computed stably
        alpha = torch.softmax(m.flatten(2), dim=-1).view_as(m)
        return (alpha * x).sum(dim=(2, 3)), alpha


@register_pooling("gwap_cs")
class ClassSpecificGWAP(_GlobalPool):
    r"""Class-specific global weighted average pooling (Qiu §III-C, eq. 6–9, Fig. 4).

    Input: class score maps ``S`` (B, C, H, W) followed by one background map ``B`` — i.e.
    ``Ŝ`` (B, C + 1, H, W), background *last*. Output: scores (B, C).

    .. math::
        O = \operatorname{softmax}_{c \in [1, C+1]}(\hat S), \quad
        M_c = O_c \odot \sigma(S_c), \quad
        \alpha_c(x, y) = \frac{e^{M_c(x, y)}}{\sum_{x,y} e^{M_c(x, y)}}, \quad
        s_c = \sum_{x,y} \alpha_c(x, y)\, S_c(x, y)

    (Eq. 6 as printed sums its denominator to ``C`` while ranging ``c`` to ``C + 1``; the softmax here
    is over all ``C + 1`` channels, as the text says "every position can only belong to a unique class".)
    ``α`` (B, C, H, W) are class-specific localization maps; :meth:`forward_with_weights` returns them.
    """

    extra_channels = 1

    def _pool(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if x.shape[1] < 2:
            raise ValueError(
                f"gwap_cs pooling expects C + 1 >= 2 channels (class maps then a background map), got {x.shape[1]}"
            )
        s = x[:, :-1]
        o = torch.softmax(x, dim=1)[:, :-1]
        m = o * torch.sigmoid(s)
        alpha = torch.softmax(m.flatten(2), dim=-1).view_as(m)
        return (alpha * s).sum(dim=(2, 3)), alpha


@register_pooling("wildcat")
class WildcatPool(_GlobalPool):
    r"""WILDCAT top-k + α·bottom-k pooling (Durand et al., CVPR 2017, §3.3).

    .. math:: s_c = \frac{1}{k^+} \sum_{i \in \text{top-}k^+} f_c^{(i)}
                  + \alpha \frac{1}{k^-} \sum_{i \in \text{bottom-}k^-} f_c^{(i)}

    Args:
        kmax: number of highest regions (int ≥ 1) or a fraction of ``H·W`` in (0, 1).
        kmin: number/fraction of lowest regions; ``None`` = same as ``kmax``; 0 disables the term.
        alpha: weight of the bottom term (≥ 0; the paper uses 0.7).
    """

    def __init__(self, kmax: float = 1, kmin: float | None = None, alpha: float = 0.7) -> None:
        super().__init__()
        self.kmax = self._check_k(kmax, "kmax", allow_zero=False)
        self.kmin = self.kmax if kmin is None else self._check_k(kmin, "kmin", allow_zero=True)
        if not (isinstance(alpha, int | float) and math.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"wildcat pooling: alpha must be a finite number >= 0, got {alpha!r}")
        self.alpha = float(alpha)

    @staticmethod
    def _check_k(k: float, name: str, allow_zero: bool) -> float:
        ok = isinstance(k, int | float) and not isinstance(k, bool) and math.isfinite(k)
        ok = ok and ((k == 0 and allow_zero) or (0 < k < 1) or (k >= 1 and float(k).is_integer()))
        if not ok:
            raise ValueError(f"wildcat pooling: {name} must be an int >= 1 or a fraction in (0, 1), got {k!r}")
        return k

    @staticmethod
    def _count(k: float, n: int) -> int:
        if k == 0:
            return 0
        return max(1, round(k * n)) if k < 1 else min(int(k), n)

    def _pool(self, x: Tensor) -> tuple[Tensor, None]:
        flat = x.flatten(2)
        n = flat.shape[-1]
        kmax, kmin = self._count(self.kmax, n), self._count(self.kmin, n)
        scores = flat.topk(kmax, dim=-1).values.mean(dim=-1)
        if kmin > 0 and self.alpha > 0:
            scores = scores + self.alpha * flat.topk(kmin, dim=-1, largest=False).values.mean(dim=-1)
        return scores, None

    def extra_repr(self) -> str:
        return f"kmax={self.kmax}, kmin={self.kmin}, alpha={self.alpha}"
