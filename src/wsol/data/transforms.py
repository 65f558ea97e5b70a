"""Box-aware image transforms: the papers' augmentation recipes, with boxes following every geometric change.

A transform here is a :data:`wsol.data.records.BoxTransform`::

    tensor, boxes = transform(image, boxes)

``image`` is an ``(H, W, 3)`` uint8 RGB array, ``boxes`` a ``(K, 4)`` float64 array of ``[x0, y0, x1, y1]``
*inclusive* pixel corners (the convention of :mod:`wsol.metrics.boxes`); the result is a float32
``(3, h, w)`` tensor normalized as ``(x / 255 − mean) / std`` and the ``(K, 4)`` float64 boxes in the output
image's pixels. The geometry is done by ``torchvision.transforms.v2`` on a ``tv_tensors.Image`` and a
``tv_tensors.BoundingBoxes`` together, so image and boxes can never disagree.

Box conventions (``box_scaling``):

``"edges"`` (default, exact): pixel ``x`` covers the continuous interval ``[x, x + 1)``, so an inclusive box is
    the continuous box ``[x0, y0, x1 + 1, y1 + 1]`` that torchvision transforms; the result is converted back
    with ``− 1`` on the far corner. Hence a resize by ``s = W'/W`` maps ``x0 → x0·s`` and
    ``x1 → (x1 + 1)·s − 1``, a horizontal flip maps ``x → W − 1 − x`` (corners swapped), and a crop at column
    ``l`` maps ``x → x − l``. A box drawn as filled pixels still encloses those pixels after any transform.
``"choe"``: the corners are scaled as points, ``x' = x·W'/W`` for both corners — Choe et al. 2020's
    ``resize_bbox`` (wsolevaluation, without its final ``int()`` truncation). It differs from ``"edges"`` by
    ``|s − 1|`` pixels on the far corner (none on the near corner, none for ``s = 1``); only for evaluation
    transforms (a pure resize), to reproduce their numbers.

torchvision maps the boxes in float32 (relative error ~1e-7); they are returned as float64. Boxes are clipped to
the output image. A box thinner than one output pixel (``"edges"``: continuous width
``< 1``) collapses onto its near corner (``x1 = x0``), the one-pixel box of the inclusive convention. A box
entirely cut away by a crop becomes a row of ``NaN`` (the row is kept so that ``box_labels`` stay aligned;
callers that need boxes drop NaN rows).

Recipes (:func:`build_transform`; every *evaluation* transform is the deterministic resize to ``image_size``,
as in Choe et al. 2020's evaluation):

=========  ==================================================================================================
recipe     training transform
=========  ==================================================================================================
zhou       resize to ``resize_size`` (default 256×256 for 224×224), random crop ``image_size``, horizontal
           flip p=0.5 — the CAM recipe of Choe et al. 2020 (wsolevaluation ``data_loaders.py``); Zhou et al.
           2016 §3.1 only says "fine-tuned on the 1.3M training images".
moreaux    resize to ``image_size`` (299×299) only: "our models are trained and tested with images resized to
           299×299 RGB pixels" (Moreaux et al. 2018 §3.3); no augmentation is mentioned.
qiu        resize to ``image_size`` (600×600), horizontal flip p=0.5: "single-scale training and testing
           (600×600 input image). During training, each sampled image is horizontally flipped. No other data
           augmentation is used." (Qiu, §IV-A).
gudi       resize to ``image_size`` only: Gudi et al. 2017 §4.2 does not describe any augmentation (their
           speed test uses "~500×500" images, §4.2.2).
none       resize to ``image_size`` only.
=========  ==================================================================================================

Resizing is bilinear with antialiasing (``torchvision`` tensor resize, which matches PIL's bilinear resize
used by torchvision's PIL transforms in Choe et al.'s code up to rounding).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RECIPES",
    "BoxAwareTransform",
    "BoxScaling",
    "build_transform",
    "list_recipes",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

BoxScaling = Literal["edges", "choe"]

#: recipe name → one-line description (with the paper section it follows).
RECIPES: dict[str, str] = {
    "zhou": "resize 256x256, random crop 224x224, horizontal flip (CAM recipe of Choe et al. 2020; Zhou et al. 2016)",
    "moreaux": "resize to image_size (299x299) only (Moreaux et al. 2018 §3.3)",
    "qiu": "resize to image_size (600x600), horizontal flip (Qiu §IV-A)",
    "gudi": "resize to image_size only (Gudi et al. 2017 §4.2 describes no augmentation)",
    "none": "resize to image_size only",
}


def list_recipes() -> list[str]:
    """Names accepted by :func:`build_transform`."""
    return sorted(RECIPES)


# ----------------------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------------------
def _size_pair(value: Sequence[int], name: str) -> tuple[int, int]:
    ok = isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2
    ok = ok and all(isinstance(v, int | np.integer) and not isinstance(v, bool) and v > 0 for v in value)
    if not ok:
        raise ValueError(f"{name} must be (height, width) with two positive ints, got {value!r}")
    return int(value[0]), int(value[1])


def _channel_stats(value: Sequence[float], name: str) -> tuple[float, float, float]:
    vals = [value] if isinstance(value, int | float) else list(value)
    if len(vals) == 1:
        vals = vals * 3
    if len(vals) != 3 or not all(isinstance(v, int | float) and math.isfinite(v) for v in vals):
        raise ValueError(f"{name} must be 3 (or 1) finite numbers, got {value!r}")
    return float(vals[0]), float(vals[1]), float(vals[2])


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        desc = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"image must be an (H, W, 3) uint8 RGB array, got {desc}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image has a zero size: {image.shape}")
    return image


def _check_boxes(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)
    if b.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must be a (K, 4) array of [x0, y0, x1, y1], got shape {b.shape}")
    if not np.isfinite(b).all():
        raise ValueError("boxes contain NaN or infinite coordinates")
    if (b[:, 2] < b[:, 0]).any() or (b[:, 3] < b[:, 1]).any():
        bad = int(np.flatnonzero((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1]))[0])
        raise ValueError(f"box {bad} {b[bad].tolist()} has x1 < x0 or y1 < y0")
    return b


# ----------------------------------------------------------------------------------------------------------
# the transform
# ----------------------------------------------------------------------------------------------------------
class BoxAwareTransform:
    """A ``torchvision.transforms.v2`` geometric pipeline applied jointly to an image and its boxes, then
    ``ToDtype(float32, scale=True)`` and ``Normalize(mean, std)`` on the image (see the module docstring for
    the box conventions).

    Args:
        geometric: v2 transform(s) taking ``(tv_tensors.Image, tv_tensors.BoundingBoxes)``.
        mean: per-channel mean on the [0, 1] scale.
        std: per-channel standard deviation on the [0, 1] scale.
        box_scaling: ``"edges"`` (exact, default) or ``"choe"`` (corners scaled as points).
        description: shown by ``repr``.
    """

    def __init__(
        self,
        geometric: v2.Transform,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        box_scaling: BoxScaling = "edges",
        description: str = "",
    ) -> None:
        if box_scaling not in ("edges", "choe"):
            raise ValueError(f"box_scaling must be 'edges' or 'choe', got {box_scaling!r}")
        self.mean = _channel_stats(mean, "mean")
        self.std = _channel_stats(std, "std")
        if min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {self.std}")
        self.geometric = geometric
        self.box_scaling = box_scaling
        self.description = description
        self._to_float = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(self.mean, self.std)])

    def __repr__(self) -> str:
        return (
            f"BoxAwareTransform({self.description or self.geometric!r}, mean={self.mean}, std={self.std}, "
            f"box_scaling={self.box_scaling!r})"
        )

    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """Transform ``image`` (H, W, 3) uint8 and ``boxes`` (K, 4) inclusive corners; see the class docstring.

        Raises:
            ValueError: an image that is not (H, W, 3) uint8, or boxes that are not (K, 4) finite with
                ``x0 <= x1`` and ``y0 <= y1``.
        """
        img = _check_image(image)
        b = _check_boxes(boxes)
        h, w = img.shape[:2]
        far = 1.0 if self.box_scaling == "edges" else 0.0
        continuous = b.copy()
        continuous[:, 2:] += far  # inclusive far corner -> pixel edge
        t_img = tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1))
        t_box = tv_tensors.BoundingBoxes(torch.from_numpy(continuous), format="XYXY", canvas_size=(h, w))
        out_img, out_box = self.geometric(t_img, t_box)
        oh, ow = out_img.shape[-2:]
        edges = out_box.as_subclass(torch.Tensor).to(torch.float64).numpy().copy().reshape(-1, 4)
        edges[:, 0::2] = edges[:, 0::2].clip(0.0, ow)
        edges[:, 1::2] = edges[:, 1::2].clip(0.0, oh)
        gone = (edges[:, 2] <= edges[:, 0]) | (edges[:, 3] <= edges[:, 1]) if far else np.zeros(len(edges), bool)
        out = edges.copy()
        out[:, 2:] -= far  # pixel edge -> inclusive far corner
        out[:, 2:] = np.maximum(out[:, 2:], out[:, :2])  # thinner than one pixel: collapse onto the near corner
        out[:, 0::2] = out[:, 0::2].clip(0.0, ow - 1)
        out[:, 1::2] = out[:, 1::2].clip(0.0, oh - 1)
        out[gone] = np.nan
        tensor = self._to_float(out_img).as_subclass(torch.Tensor).contiguous()
        return tensor, out


# ----------------------------------------------------------------------------------------------------------
# recipes
# ----------------------------------------------------------------------------------------------------------
def _resize(size: tuple[int, int]) -> v2.Resize:
    return v2.Resize(list(size), interpolation=InterpolationMode.BILINEAR, antialias=True)


def build_transform(
    recipe: str,
    train: bool,
    image_size: Sequence[int] = (224, 224),
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    resize_size: Sequence[int] | None = None,
    flip_prob: float = 0.5,
    box_scaling: BoxScaling = "edges",
) -> BoxAwareTransform:
    """The training or evaluation :data:`~wsol.data.records.BoxTransform` of a paper's recipe.

    Args:
        recipe: ``"zhou"``, ``"moreaux"``, ``"qiu"``, ``"gudi"`` or ``"none"`` (module docstring table).
        train: the augmented training transform; False gives the deterministic evaluation transform (resize to
            ``image_size``, identical for every recipe).
        image_size: network input ``(height, width)``.
        mean: normalization mean (on [0, 1] images).
        std: normalization standard deviation.
        resize_size: ``(height, width)`` of the resize before the random crop (``zhou`` only); default
            ``round(image_size · 256/224)`` (256×256 for 224×224).
        flip_prob: probability of the horizontal flip (``zhou``, ``qiu``).
        box_scaling: ``"edges"`` or ``"choe"`` (evaluation only), see the module docstring.

    Raises:
        ValueError: unknown recipe (valid ones listed), bad sizes, ``resize_size`` smaller than ``image_size``,
            ``flip_prob`` outside [0, 1], or ``box_scaling="choe"`` for a training transform.
    """
    if recipe not in RECIPES:
        from wsol.config import suggest

        raise ValueError(f"unknown recipe {recipe!r}{suggest(recipe, list(RECIPES))}; valid: {', '.join(RECIPES)}")
    size = _size_pair(image_size, "image_size")
    if not (isinstance(flip_prob, int | float) and 0.0 <= flip_prob <= 1.0):
        raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob!r}")
    if train and box_scaling == "choe":
        raise ValueError("box_scaling='choe' (corners scaled as points) is only defined for evaluation transforms")
    if not train:
        return BoxAwareTransform(_resize(size), mean, std, box_scaling, f"eval: resize {size[0]}x{size[1]}")
    if recipe == "zhou":
        big = (
            _size_pair(resize_size, "resize_size")
            if resize_size is not None
            else (round(size[0] * 256 / 224), round(size[1] * 256 / 224))
        )
        if big[0] < size[0] or big[1] < size[1]:
            raise ValueError(f"resize_size {big} must be at least image_size {size} for the random crop")
        steps = v2.Compose([_resize(big), v2.RandomCrop(list(size)), v2.RandomHorizontalFlip(flip_prob)])
        desc = f"zhou: resize {big[0]}x{big[1]}, random crop {size[0]}x{size[1]}, flip p={flip_prob}"
        return BoxAwareTransform(steps, mean, std, box_scaling, desc)
    if recipe == "qiu":
        steps = v2.Compose([_resize(size), v2.RandomHorizontalFlip(flip_prob)])
        desc = f"qiu: resize {size[0]}x{size[1]}, flip p={flip_prob}"
        return BoxAwareTransform(steps, mean, std, box_scaling, desc)
    return BoxAwareTransform(_resize(size), mean, std, box_scaling, f"{recipe}: resize {size[0]}x{size[1]}")
