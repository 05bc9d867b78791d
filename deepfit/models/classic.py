"""The classic CNNs of Dive into Deep Learning's CNN chapter, sized for small images.

`LeNet` (optionally with batch norm), `AlexNet`, `VGG`/`vgg(conv_arch)`, `NiN`, `GoogLeNet` with
`Inception` blocks, and `BatchNorm`, a from-scratch batch normalisation equal to `nn.BatchNorm1d`/
`nn.BatchNorm2d`. The book trains these on Fashion-MNIST resized to 224×224; here each has a
`small_input` stem or adaptive pooling so it also runs on the 28×28 (or 32×32) images directly.
All take `c_in` input channels and return `n_out` raw logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .init import apply_init, init_cnn, xavier_uniform
from .registry import register
from .sequential import SequentialModel

_ACTS: dict[str, type[nn.Module]] = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh}


def _act(name: str) -> nn.Module:
    try:
        return _ACTS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose from {', '.join(_ACTS)}") from None


class BatchNorm(nn.Module):
    """Batch normalisation written out by hand; numerically equal to `nn.BatchNorm2d` (4-D input) or
    `nn.BatchNorm1d` (2-D input) with the same `eps` and `momentum`.

    Training: normalise with the batch mean and biased variance over every axis but the channel one,
    and update `running_mean`/`running_var` (unbiased) by `running += momentum * (batch - running)`.
    Eval: normalise with the running statistics. Then scale by `weight` (γ) and shift by `bias` (β).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim not in (2, 4) or x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm({self.num_features}) expects (N, {self.num_features}) or "
                             f"(N, {self.num_features}, H, W) input, got {tuple(x.shape)}")
        dims = (0,) if x.ndim == 2 else (0, 2, 3)
        shape = (1, -1) if x.ndim == 2 else (1, -1, 1, 1)
        if self.training:
            n = x.numel() // self.num_features
            if n < 2:
                raise ValueError(f"BatchNorm needs more than one value per channel in training, got input "
                                 f"{tuple(x.shape)}")
            mean = x.mean(dim=dims)
            var = ((x - mean.view(shape)) ** 2).mean(dim=dims)
            with torch.no_grad():
                self.running_mean += self.momentum * (mean.detach() - self.running_mean)
                unbiased = var.detach() * n / (n - 1)
                self.running_var += self.momentum * (unbiased - self.running_var)
                self.num_batches_tracked += 1
        else:
            mean, var = self.running_mean, self.running_var
        x_hat = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        return x_hat * self.weight.view(shape) + self.bias.view(shape)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class LeNet(SequentialModel):
    """LeNet-5: two 5×5 conv + average-pool stages, then 120 → 84 → `n_out` fully connected layers.

    `bn=True` puts a batch norm after every conv/linear layer but the last (the book's "LeNet with
    BatchNorm"). The second stage ends in an adaptive 5×5 average pool, so 28×28 inputs get exactly
    LeNet and larger ones (32×32, ...) work too. Xavier init suits its default sigmoid activations.
    """

    def __init__(self, c_in: int = 1, n_out: int = 10, bn: bool = False, act: str = "sigmoid"):
        def norm2d(c: int) -> list[nn.Module]:
            return [nn.BatchNorm2d(c)] if bn else []

        def norm1d(c: int) -> list[nn.Module]:
            return [nn.BatchNorm1d(c)] if bn else []

        super().__init__(
            nn.Conv2d(c_in, 6, kernel_size=5, padding=2), *norm2d(6), _act(act),
            nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, kernel_size=5), *norm2d(16), _act(act),
            nn.AvgPool2d(kernel_size=2, stride=2), nn.AdaptiveAvgPool2d(5),
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120), *norm1d(120), _act(act),
            nn.Linear(120, 84), *norm1d(84), _act(act),
            nn.Linear(84, n_out),
        )
        self.config = dict(c_in=c_in, n_out=n_out, bn=bn, act=act)
        if act == "relu":
            init_cnn(self)
        else:
            apply_init(self, xavier_uniform)


def lenet_bn(**kwargs) -> LeNet:
    """LeNet with batch normalisation (`LeNet(bn=True)`)."""
    kwargs.setdefault("bn", True)
    return LeNet(**kwargs)


def _classifier(n_in: int, hidden: int, n_out: int, p: float) -> list[nn.Module]:
    return [nn.Flatten(), nn.Linear(n_in, hidden), nn.ReLU(inplace=True), nn.Dropout(p),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(p), nn.Linear(hidden, n_out)]


class AlexNet(SequentialModel):
    """AlexNet: five ReLU convolutions with three max pools, then two dropout-regularised dense layers.

    `small_input=True` (default) replaces the 11×11 stride-4 first convolution with a 3×3 stride-1 one
    and pads the pools, so 28×28 images keep a 4×4 map; an adaptive average pool to `pool_size`
    (2 for small inputs, 5 as in the book at 224×224) fixes the classifier's input size.
    """

    def __init__(self, c_in: int = 1, n_out: int = 10, widths: Sequence[int] = (96, 256, 384, 384, 256),
                 hidden: int = 4096, p: float = 0.5, small_input: bool = True, pool_size: int | None = None):
        w1, w2, w3, w4, w5 = widths
        pool_size = pool_size if pool_size is not None else (2 if small_input else 5)
        pad = 1 if small_input else 0
        first = (nn.Conv2d(c_in, w1, kernel_size=3, stride=1, padding=1) if small_input
                 else nn.Conv2d(c_in, w1, kernel_size=11, stride=4, padding=1))
        super().__init__(
            first, nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2, padding=pad),
            nn.Conv2d(w1, w2, kernel_size=5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2, padding=pad),
            nn.Conv2d(w2, w3, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(w3, w4, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(w4, w5, kernel_size=3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2, padding=pad),
            nn.AdaptiveAvgPool2d(pool_size),
            *_classifier(w5 * pool_size * pool_size, hidden, n_out, p),
        )
        self.config = dict(c_in=c_in, n_out=n_out, widths=list(widths), hidden=hidden, p=p, small_input=small_input,
                           pool_size=pool_size)
        init_cnn(self)


#: the book's VGG-11 layout: (number of 3×3 convs, output channels) per block
VGG11_ARCH: tuple[tuple[int, int], ...] = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))


def vgg_block(num_convs: int, c_in: int, c_out: int) -> nn.Sequential:
    """`num_convs` ReLU 3×3 convolutions then a 2×2 max pool (rounding up, so odd sizes keep their edge)."""
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        layers += [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
        c_in = c_out
    layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
    return nn.Sequential(*layers)


class VGG(SequentialModel):
    """VGG built from `conv_arch`, a sequence of `(num_convs, out_channels)` blocks, then the dense classifier.

    An adaptive average pool to `pool_size` (1 by default; 7 reproduces the book's 224×224 head) sits
    between the blocks and the classifier, so any input of at least 2^(number of blocks - 1) pixels works.
    """

    def __init__(self, conv_arch: Sequence[Sequence[int]] = VGG11_ARCH, c_in: int = 1, n_out: int = 10,
                 hidden: int = 4096, p: float = 0.5, pool_size: int = 1):
        arch = [(int(n), int(c)) for n, c in conv_arch]
        if not arch:
            raise ValueError("VGG: conv_arch needs at least one (num_convs, out_channels) block")
        blocks, ni = [], c_in
        for num_convs, c_out in arch:
            blocks.append(vgg_block(num_convs, ni, c_out))
            ni = c_out
        super().__init__(*blocks, nn.AdaptiveAvgPool2d(pool_size), *_classifier(ni * pool_size**2, hidden, n_out, p))
        self.config = dict(conv_arch=[list(b) for b in arch], c_in=c_in, n_out=n_out, hidden=hidden, p=p,
                           pool_size=pool_size)
        init_cnn(self)


def vgg(conv_arch: Sequence[Sequence[int]], **kwargs) -> VGG:
    """A VGG network with the blocks `conv_arch` (e.g. `((1, 16), (1, 32), (2, 64), (2, 128), (2, 128))`)."""
    return VGG(conv_arch, **kwargs)


def vgg11(**kwargs) -> VGG:
    """VGG-11 (the book's `conv_arch`); pass `conv_arch=` to override."""
    kwargs.setdefault("conv_arch", VGG11_ARCH)
    return VGG(**kwargs)


def nin_block(c_in: int, c_out: int, kernel_size: int, stride: int, padding: int) -> nn.Sequential:
    """A convolution followed by two 1×1 convolutions (a per-pixel MLP), each with ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size, stride, padding), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, kernel_size=1), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, kernel_size=1), nn.ReLU(inplace=True),
    )


class NiN(SequentialModel):
    """Network in Network: NiN blocks and max pools; the last block outputs one channel per class,
    averaged over the image (no dense layer).

    `small_input=True` (default) uses a 3×3 stride-1 first block and padded pools for 28×28 images;
    `False` is the book's 11×11 stride-4 version for 224×224.
    """

    def __init__(self, c_in: int = 1, n_out: int = 10, widths: Sequence[int] = (96, 256, 384), p: float = 0.5,
                 small_input: bool = True):
        w1, w2, w3 = widths
        pad = 1 if small_input else 0
        first = nin_block(c_in, w1, 3, 1, 1) if small_input else nin_block(c_in, w1, 11, 4, 0)
        super().__init__(
            first, nn.MaxPool2d(3, stride=2, padding=pad),
            nin_block(w1, w2, 5, 1, 2), nn.MaxPool2d(3, stride=2, padding=pad),
            nin_block(w2, w3, 3, 1, 1), nn.MaxPool2d(3, stride=2, padding=pad),
            nn.Dropout(p),
            nin_block(w3, n_out, 3, 1, 1),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.config = dict(c_in=c_in, n_out=n_out, widths=list(widths), p=p, small_input=small_input)
        init_cnn(self)


class Inception(nn.Module):
    """Four parallel paths concatenated on channels: 1×1; 1×1→3×3; 1×1→5×5; 3×3 max pool→1×1.

    `c2` and `c3` are `(reduce, out)` channel pairs; the output has `c1 + c2[1] + c3[1] + c4` channels.
    """

    def __init__(self, c_in: int, c1: int, c2: Sequence[int], c3: Sequence[int], c4: int):
        super().__init__()
        relu = lambda: nn.ReLU(inplace=True)
        self.p1 = nn.Sequential(nn.Conv2d(c_in, c1, kernel_size=1), relu())
        self.p2 = nn.Sequential(nn.Conv2d(c_in, c2[0], kernel_size=1), relu(),
                                nn.Conv2d(c2[0], c2[1], kernel_size=3, padding=1), relu())
        self.p3 = nn.Sequential(nn.Conv2d(c_in, c3[0], kernel_size=1), relu(),
                                nn.Conv2d(c3[0], c3[1], kernel_size=5, padding=2), relu())
        self.p4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), nn.Conv2d(c_in, c4, kernel_size=1), relu())
        self.c_out = c1 + c2[1] + c3[1] + c4

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.p1(x), self.p2(x), self.p3(x), self.p4(x)], dim=1)


class GoogLeNet(SequentialModel):
    """GoogLeNet (Inception v1) as in the book: a 7×7 stem, 1×1 and 3×3 convs, nine Inception blocks,
    global average pooling and one linear layer.

    Each stage halves the resolution (padded pools), so 28×28 inputs reach 1×1 before the pooling.
    `width_div` divides every channel count (e.g. 4 for a quick model); the default is the book's size.
    """

    def __init__(self, c_in: int = 1, n_out: int = 10, width_div: int = 1):
        if width_div < 1:
            raise ValueError(f"GoogLeNet: width_div must be >= 1, got {width_div}")

        def w(c: int) -> int:
            return max(1, c // width_div)

        def inc(ni: int, c1: int, c2: Sequence[int], c3: Sequence[int], c4: int) -> Inception:
            return Inception(ni, w(c1), (w(c2[0]), w(c2[1])), (w(c3[0]), w(c3[1])), w(c4))

        relu = lambda: nn.ReLU(inplace=True)
        pool = lambda: nn.MaxPool2d(3, stride=2, padding=1)
        b1 = nn.Sequential(nn.Conv2d(c_in, w(64), kernel_size=7, stride=2, padding=3), relu(), pool())
        b2 = nn.Sequential(nn.Conv2d(w(64), w(64), kernel_size=1), relu(),
                           nn.Conv2d(w(64), w(192), kernel_size=3, padding=1), relu(), pool())
        blocks3 = [inc(w(192), 64, (96, 128), (16, 32), 32)]
        blocks3.append(inc(blocks3[-1].c_out, 128, (128, 192), (32, 96), 64))
        b3 = nn.Sequential(*blocks3, pool())
        specs4 = [(192, (96, 208), (16, 48), 64), (160, (112, 224), (24, 64), 64), (128, (128, 256), (24, 64), 64),
                  (112, (144, 288), (32, 64), 64), (256, (160, 320), (32, 128), 128)]
        blocks4, ni = [], blocks3[-1].c_out
        for spec in specs4:
            blocks4.append(inc(ni, *spec))
            ni = blocks4[-1].c_out
        b4 = nn.Sequential(*blocks4, pool())
        blocks5 = [inc(ni, 256, (160, 320), (32, 128), 128)]
        blocks5.append(inc(blocks5[-1].c_out, 384, (192, 384), (48, 128), 128))
        b5 = nn.Sequential(*blocks5, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        super().__init__(b1, b2, b3, b4, b5, nn.Linear(blocks5[-1].c_out, n_out))
        self.config = dict(c_in=c_in, n_out=n_out, width_div=width_div)
        init_cnn(self)


register("lenet", LeNet, "vision")
register("lenet_bn", lenet_bn, "vision")
register("alexnet", AlexNet, "vision")
register("vgg", VGG, "vision")
register("vgg11", vgg11, "vision")
register("nin", NiN, "vision")
register("googlenet", GoogLeNet, "vision")

__all__ = ["VGG11_ARCH", "AlexNet", "BatchNorm", "GoogLeNet", "Inception", "LeNet", "NiN", "VGG", "lenet_bn",
           "nin_block", "vgg", "vgg11", "vgg_block"]
