"""A small convolutional classifier for 28×28 (or larger) images."""

from __future__ import annotations

from torch import nn

from .registry import register


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1, bn: bool = True) -> nn.Sequential:
    """3×3 convolution (no bias when followed by BatchNorm) → BatchNorm → ReLU."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class SimpleCNN(nn.Sequential):
    """Two conv blocks with max pooling, then a two-layer classifier.

    conv(c_in→w) → pool → conv(w→2w) → pool → global average pool → Linear(2w→hidden) → Linear(hidden→n_out).
    Global pooling makes it work at any input size ≥ 4×4.
    """

    def __init__(self, c_in: int = 1, n_out: int = 10, width: int = 32, hidden: int = 128, bn: bool = True,
                 dropout: float = 0.0):
        super().__init__(
            conv_bn_relu(c_in, width, bn=bn),
            nn.MaxPool2d(2),
            conv_bn_relu(width, width * 2, bn=bn),
            nn.MaxPool2d(2),
            conv_bn_relu(width * 2, width * 2, bn=bn),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(width * 2, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            nn.Linear(hidden, n_out),
        )
        self.config = dict(c_in=c_in, n_out=n_out, width=width, hidden=hidden, bn=bn, dropout=dropout)


register("simple_cnn", SimpleCNN, "vision")
