"""FC-less LeNet-5 for MNIST128 (Gudi et al. 2017 §4.1).

Caffe's LeNet-5 (conv 5×5 ×20 → max 2×2/2 → conv 5×5 ×50 → max 2×2/2) with the fully connected
layers removed; the CAM head is attached to the last pooling output. On a 128×128 canvas the maps
are 29×29 and each map pixel sees a 16×16 input window with stride 4.

Deviation, stated: ReLU follows each convolution (Caffe's LeNet has none there, so without FC layers
the network would be linear up to max pooling; the ReLU keeps CAMs non-negative evidence maps).
"""

from __future__ import annotations

from torch import nn

from wsol.models.base import register_model

__all__ = ["LeNet5Features"]


class LeNet5Features(nn.Sequential):
    """Convolutional part of LeNet-5: (B, in_chans, H, W) → (B, width2, (H−12)/4, (W−12)/4)."""

    def __init__(self, in_chans: int = 1, width1: int = 20, width2: int = 50) -> None:
        super().__init__(
            nn.Conv2d(in_chans, width1, kernel_size=5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(width1, width2, kernel_size=5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, 2),
        )
        self.out_channels = width2


@register_model("lenet5")
def _lenet5(in_chans: int = 1, width1: int = 20, width2: int = 50) -> tuple[nn.Module, int]:
    features = LeNet5Features(in_chans, width1, width2)
    return features, features.out_channels
