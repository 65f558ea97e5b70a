"""FC-less LeNet-5 for MNIST128 (Gudi et al. 2017 §4.1).

Caffe's LeNet-5 (conv 5×5 ×20 → max 2×2/2 → conv 5×5 ×50 → max 2×2/2) with the fully connected
layers removed; the CAM head is attached to the last pooling output. On a 128×128 canvas the maps
are 29×29 and each map pixel sees a 16×16 input window with stride 4.

Deviations, stated:

* ReLU follows each convolution (Caffe's LeNet has none there, so without FC layers the network would be
  linear up to max pooling; the ReLU keeps CAMs non-negative evidence maps).
* ``normalize=True`` standardizes inputs in [0, 1] inside the network with the MNIST statistics (mean 0.1307,
  std 0.3081). It is off by default: on MNIST128 with a few thousand training canvases it helped GAP but
  slowed GMP down markedly (validation accuracy 0.67 vs 0.90 after 3 epochs), and the blank canvas is then a
  non-zero input everywhere. Being pointwise, it changes no receptive field.
"""

from __future__ import annotations

from torch import Tensor, nn

from wsol.models.base import register_model

__all__ = ["MNIST_MEAN", "MNIST_STD", "LeNet5Features"]

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


class LeNet5Features(nn.Sequential):
    """Convolutional part of LeNet-5: (B, in_chans, H, W) → (B, width2, (H−12)/4, (W−12)/4)."""

    def __init__(self, in_chans: int = 1, width1: int = 20, width2: int = 50, normalize: bool = False) -> None:
        super().__init__(
            nn.Conv2d(in_chans, width1, kernel_size=5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(width1, width2, kernel_size=5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, 2),
        )
        self.out_channels = width2
        self.normalize = normalize
        self.default_cfg = {
            "input_size": (in_chans, 128, 128),
            "mean": (0.0,) * in_chans,  # standardization happens inside the network
            "std": (1.0,) * in_chans,
        }

    def forward(self, x: Tensor) -> Tensor:
        if self.normalize:
            x = (x - MNIST_MEAN) / MNIST_STD
        return super().forward(x)


@register_model("lenet5")
def _lenet5(in_chans: int = 1, width1: int = 20, width2: int = 50, normalize: bool = False) -> tuple[nn.Module, int]:
    features = LeNet5Features(in_chans, width1, width2, normalize)
    return features, features.out_channels


