"""XResNet: the "bag of tricks" ResNet from the course notes (lesson 12).

- Stem: three 3×3 conv-BN-ReLU layers (the first with stride 2) instead of one 7×7 convolution; the
  first has `(c_in + 1) * 8` channels, then 32 and 64 by default. `stem_widths="notes"` gives the
  lesson-12 notes' `(c_in + 1) * 8, 64, 64` (see docs/vision-models.md for why the default differs).
- Residual blocks (`ResBlock`): two 3×3 convs (expansion 1, xresnet18/34) or a 1×1 → 3×3 → 1×1
  bottleneck whose output has 4× the channels (expansion 4, xresnet50/101/152). The stride sits on
  the 3×3 conv. The block's last BatchNorm starts at zero, so every block starts as the identity.
- Shortcut: identity when shapes match; otherwise a 2×2 average pool (when the block downsamples)
  then a 1×1 conv-BN (when the channel count changes).

Everything is plain convolution, BatchNorm, ReLU and pooling, so the model runs in channels_last on
CPU without layout conversions: `model.to(memory_format=torch.channels_last)` and feed it
`x.contiguous(memory_format=torch.channels_last)` (see `to_channels_last`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from .init import init_cnn
from .registry import register
from .sequential import SequentialModel

#: named stems: the widths of the three stem convolutions for `c_in` input channels
STEMS: dict[str, Callable[[int], list[int]]] = {
    "default": lambda c_in: [(c_in + 1) * 8, 32, 64],
    "notes": lambda c_in: [(c_in + 1) * 8, 64, 64],  # lesson 12's `nfs = [c_in, (c_in+1)*8, 64, 64]`
}


def stem_widths_for(stem_widths: Sequence[int] | str | None, c_in: int) -> list[int]:
    """The stem's widths: a sequence as given, or a `STEMS` name (`None` is `"default"`)."""
    if stem_widths is None or isinstance(stem_widths, str):
        name = stem_widths or "default"
        if name not in STEMS:
            raise ValueError(f"XResNet: unknown stem_widths {name!r}; give widths or one of {', '.join(STEMS)}")
        return STEMS[name](c_in)
    widths = [int(w) for w in stem_widths]
    if not widths or min(widths) < 1:
        raise ValueError(f"XResNet: stem_widths must be positive widths, got {list(stem_widths)}")
    return widths


def conv_layer(ni: int, nf: int, ks: int = 3, stride: int = 1, zero_bn: bool = False,
               act: bool = True) -> nn.Sequential:
    """Conv (no bias, padding `ks // 2`) → BatchNorm (weight 0 if `zero_bn`, else 1) → optional ReLU."""
    bn = nn.BatchNorm2d(nf)
    nn.init.constant_(bn.weight, 0.0 if zero_bn else 1.0)
    layers: list[nn.Module] = [nn.Conv2d(ni, nf, kernel_size=ks, stride=stride, padding=ks // 2, bias=False), bn]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class ResBlock(nn.Module):
    """A residual block: `relu(convs(x) + shortcut(x))` with `ni` input and `nh * expansion` output channels."""

    def __init__(self, ni: int, nh: int, expansion: int = 1, stride: int = 1):
        super().__init__()
        if expansion < 1 or stride < 1:
            raise ValueError(f"ResBlock: expansion and stride must be >= 1, got {expansion}, {stride}")
        nf = nh * expansion
        if expansion == 1:
            layers = [conv_layer(ni, nh, 3, stride=stride), conv_layer(nh, nf, 3, zero_bn=True, act=False)]
        else:
            layers = [conv_layer(ni, nh, 1), conv_layer(nh, nh, 3, stride=stride),
                      conv_layer(nh, nf, 1, zero_bn=True, act=False)]
        self.convs = nn.Sequential(*layers)
        self.pool = nn.AvgPool2d(2, ceil_mode=True) if stride != 1 else nn.Identity()
        self.idconv = conv_layer(ni, nf, 1, act=False) if ni != nf else nn.Identity()
        self.act = nn.ReLU(inplace=True)
        self.ni, self.nf, self.stride = ni, nf, stride

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.convs(x) + self.idconv(self.pool(x)))


class XResNet(SequentialModel):
    """XResNet: stem → max pool → residual stages → global average pool → (dropout) → linear.

    Args:
        expansion: 1 (basic blocks) or 4 (bottleneck blocks).
        layers: number of blocks per stage, e.g. `[2, 2, 2, 2]` for xresnet18.
        c_in, n_out: input channels and number of outputs.
        widths: the inner width of each stage (a stage outputs `width * expansion` channels); the
            first stage keeps the resolution, the others halve it. Defaults to 64, 128, 256, 512.
        stem_widths: the stem convolutions' widths, or `"default"` (`(c_in + 1) * 8, 32, 64`) or `"notes"`
            (`(c_in + 1) * 8, 64, 64`, the lesson-12 notes' stem). `config` records the widths.
        stem_stride: stride of the first stem conv (2 as in the notes; 1 keeps small images' detail).
        stem_pool: the 3×3 stride-2 max pool after the stem (as in the notes).
        p: dropout before the final linear layer.
    """

    def __init__(self, expansion: int = 1, layers: Sequence[int] = (2, 2, 2, 2), c_in: int = 3, n_out: int = 1000,
                 widths: Sequence[int] = (64, 128, 256, 512), stem_widths: Sequence[int] | str | None = None,
                 stem_stride: int = 2, stem_pool: bool = True, p: float = 0.0):
        layers, widths = [int(n) for n in layers], [int(w) for w in widths]
        if len(layers) != len(widths):
            raise ValueError(f"XResNet: layers {layers} and widths {widths} must have the same length")
        if not layers or min(layers) < 1:
            raise ValueError(f"XResNet: every stage needs at least one block, got layers={layers}")
        stem_w = stem_widths_for(stem_widths, c_in)
        sizes = [c_in, *stem_w]
        stem = [conv_layer(sizes[i], sizes[i + 1], stride=stem_stride if i == 0 else 1) for i in range(len(stem_w))]
        stages, ni = [], sizes[-1]
        for i, (n_blocks, nh) in enumerate(zip(layers, widths)):
            blocks = []
            for j in range(n_blocks):
                blocks.append(ResBlock(ni, nh, expansion, stride=2 if (i > 0 and j == 0) else 1))
                ni = nh * expansion
            stages.append(nn.Sequential(*blocks))
        head: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if p > 0:
            head.append(nn.Dropout(p))
        head.append(nn.Linear(ni, n_out))
        pool = [nn.MaxPool2d(kernel_size=3, stride=2, padding=1)] if stem_pool else []
        super().__init__(*stem, *pool, *stages, *head)
        self.config = dict(expansion=expansion, layers=layers, c_in=c_in, n_out=n_out, widths=widths,
                           stem_widths=stem_w, stem_stride=stem_stride, stem_pool=stem_pool, p=p)
        init_cnn(self)


def _xresnet(expansion: int, layers: list[int], kwargs: dict) -> XResNet:
    if "c_out" in kwargs:  # the notes' (and fastai's) name for the number of outputs
        if "n_out" in kwargs:
            raise TypeError("xresnet: got both c_out and n_out; c_out is the notes' name of n_out")
        warnings.warn("xresnet: c_out is the notes' name; deepfit calls the number of outputs n_out",
                      DeprecationWarning, stacklevel=3)
        kwargs["n_out"] = kwargs.pop("c_out")
    kwargs.setdefault("expansion", expansion)
    kwargs.setdefault("layers", layers)
    return XResNet(**kwargs)


def xresnet18(**kwargs) -> XResNet:
    """XResNet-18: basic blocks, [2, 2, 2, 2]. Takes `c_in`, `n_out` (`c_out` is read, with a warning)
    and the other `XResNet` arguments."""
    return _xresnet(1, [2, 2, 2, 2], kwargs)


def xresnet34(**kwargs) -> XResNet:
    """XResNet-34: basic blocks, [3, 4, 6, 3]."""
    return _xresnet(1, [3, 4, 6, 3], kwargs)


def xresnet50(**kwargs) -> XResNet:
    """XResNet-50: bottleneck blocks (expansion 4), [3, 4, 6, 3]."""
    return _xresnet(4, [3, 4, 6, 3], kwargs)


def xresnet101(**kwargs) -> XResNet:
    """XResNet-101: bottleneck blocks, [3, 4, 23, 3]."""
    return _xresnet(4, [3, 4, 23, 3], kwargs)


def xresnet152(**kwargs) -> XResNet:
    """XResNet-152: bottleneck blocks, [3, 8, 36, 3]."""
    return _xresnet(4, [3, 8, 36, 3], kwargs)


def to_channels_last(model: nn.Module) -> nn.Module:
    """Store `model`'s 4-D weights channels-last (NHWC), in place; feed it channels-last inputs too."""
    return model.to(memory_format=torch.channels_last)


register("xresnet", XResNet, "vision")
register("xresnet18", xresnet18, "vision")
register("xresnet34", xresnet34, "vision")
register("xresnet50", xresnet50, "vision")
register("xresnet101", xresnet101, "vision")
register("xresnet152", xresnet152, "vision")

__all__ = ["STEMS", "ResBlock", "XResNet", "conv_layer", "stem_widths_for", "to_channels_last", "xresnet18",
           "xresnet34", "xresnet50", "xresnet101", "xresnet152"]
