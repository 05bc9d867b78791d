"""The course notes' CIFAR-10 progression, from a one-hidden-layer net to a ResNet with dropout.

Each step adds one idea: `SimpleNet` (fully connected), `ConvNet` (stride-2 convolutions and a
global max pool), `ConvNet2` (the same built from a padded `ConvLayer`), `ConvBnNet` (a hand-written
batch-norm layer, `BnLayer`, after a 5×5 stem convolution), `ConvBnNet2` (a stride-1 layer after each
stride-2 one), `Resnet` (stride-1 layers become residual) and `Resnet2` (a wider 7×7 normalised stem
and dropout before the classifier).

All take `c_in` input channels and return `n_out` raw logits (use them with `nn.CrossEntropyLoss`;
the notes' `log_softmax` lives in the loss), and work at any input size from 28×28 up
(`SimpleNet` is told its input size).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .init import init_cnn
from .registry import register


def _size2(img_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(img_size, int):
        return img_size, img_size
    h, w = img_size
    return int(h), int(w)


class SimpleNet(nn.Module):
    """Flatten → [Linear → ReLU] per hidden size → Linear: the notes' one-hidden-layer baseline.

    The input size is fixed by `c_in × img_size`; a batch of another size raises a `ValueError`.
    """

    def __init__(self, c_in: int = 1, n_out: int = 10, hidden: Sequence[int] | int = (40,),
                 img_size: int | Sequence[int] = 28):
        super().__init__()
        hidden = [hidden] if isinstance(hidden, int) else list(hidden)
        h, w = _size2(img_size)
        self.n_in = c_in * h * w
        sizes = [self.n_in, *hidden, n_out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.config = dict(c_in=c_in, n_out=n_out, hidden=hidden, img_size=[h, w])
        init_cnn(self)

    def forward(self, x: Tensor) -> Tensor:
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.n_in:
            raise ValueError(f"SimpleNet expects {self.n_in} input values per item (config {self.config}), "
                             f"got {x.shape[1]}")
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class ConvNet(nn.Module):
    """Unpadded stride-2 3×3 convolutions with ReLU, a global max pool and a linear classifier."""

    def __init__(self, c_in: int = 1, n_out: int = 10, widths: Sequence[int] = (20, 40, 80)):
        super().__init__()
        sizes = [c_in, *widths]
        self.layers = nn.ModuleList(nn.Conv2d(a, b, kernel_size=3, stride=2) for a, b in zip(sizes[:-1], sizes[1:]))
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.out = nn.Linear(sizes[-1], n_out)
        self.config = dict(c_in=c_in, n_out=n_out, widths=list(widths))
        init_cnn(self)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = F.relu(layer(x))
        return self.out(self.pool(x).flatten(1))


class ConvLayer(nn.Module):
    """A padded stride-2 3×3 convolution followed by ReLU (halves the resolution, rounding up)."""

    def __init__(self, ni: int, nf: int, stride: int = 2, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(ni, nf, kernel_size=kernel_size, stride=stride, padding=kernel_size // 2)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.conv(x))


class ConvNet2(nn.Module):
    """`ConvNet` rebuilt from `ConvLayer`s (padding keeps the border pixels)."""

    def __init__(self, c_in: int = 1, n_out: int = 10, widths: Sequence[int] = (20, 40, 80)):
        super().__init__()
        sizes = [c_in, *widths]
        self.layers = nn.ModuleList(ConvLayer(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = nn.Linear(sizes[-1], n_out)
        self.config = dict(c_in=c_in, n_out=n_out, widths=list(widths))
        init_cnn(self)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.out(F.adaptive_max_pool2d(x, 1).flatten(1))


BN_EVAL_STATS = ("running", "last_batch")


class BnLayer(nn.Module):
    """Convolution → ReLU → a hand-written per-channel batch normalisation with a learnable shift and scale.

    Training: each channel is normalised with the batch's mean and (biased) variance. Then
    `y = x_hat * m + a`, with `m` (scale, starts at 1) and `a` (shift, starts at 0) learnt per channel.

    Eval, by `eval_stats`:

    - `"running"` (default, as `nn.BatchNorm2d`): exponential running averages kept in training
      (`running = (1 - momentum) * running + momentum * batch`, the variance unbiased) normalise, so an
      item's output does not depend on the rest of the batch nor on which batch came last.
    - `"last_batch"` (the lesson-7 notes' `BnLayer`): the statistics of the last training batch, kept
      in the same buffers, normalise; eval on that batch reproduces its training output exactly. (The
      notes divide by the unbiased standard deviation without `eps`; here the variance is the one used
      in training, `eps` included, so train and eval agree.)
    """

    def __init__(self, ni: int, nf: int, stride: int = 2, kernel_size: int = 3, eps: float = 1e-5,
                 momentum: float = 0.1, eval_stats: str = "running"):
        super().__init__()
        if eval_stats not in BN_EVAL_STATS:
            raise ValueError(f"BnLayer: eval_stats must be one of {BN_EVAL_STATS}, got {eval_stats!r}")
        self.conv = nn.Conv2d(ni, nf, kernel_size=kernel_size, stride=stride, padding=kernel_size // 2, bias=False)
        self.a = nn.Parameter(torch.zeros(nf))
        self.m = nn.Parameter(torch.ones(nf))
        self.register_buffer("running_mean", torch.zeros(nf))
        self.register_buffer("running_var", torch.ones(nf))
        self.eps, self.momentum, self.eval_stats = eps, momentum, eval_stats

    def normalize(self, x: Tensor) -> Tensor:
        """The normalisation part alone (applied after the convolution and ReLU)."""
        if self.training:
            var, mean = torch.var_mean(x, dim=(0, 2, 3), correction=0)
            with torch.no_grad():
                if self.eval_stats == "last_batch":
                    self.running_mean.copy_(mean)
                    self.running_var.copy_(var)
                else:
                    n = x.numel() // x.shape[1]
                    self.running_mean.lerp_(mean.detach(), self.momentum)
                    self.running_var.lerp_(var.detach() * (n / max(n - 1, 1)), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        scale = self.m * torch.rsqrt(var + self.eps)
        shift = self.a - mean * scale
        return x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.normalize(F.relu(self.conv(x)))

    def extra_repr(self) -> str:
        return f"eval_stats={self.eval_stats!r}" if self.eval_stats != "running" else ""


class ResnetLayer(BnLayer):
    """A stride-1 `BnLayer` whose output is added to its input: `x + f(x)`."""

    def __init__(self, ni: int, nf: int, stride: int = 1, kernel_size: int = 3, **kwargs):
        if ni != nf or stride != 1:
            raise ValueError(f"ResnetLayer needs ni == nf and stride 1 to add its input, got ni={ni}, nf={nf}, "
                             f"stride={stride}")
        super().__init__(ni, nf, stride=stride, kernel_size=kernel_size, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        return x + super().forward(x)


class ConvBnNet(nn.Module):
    """A 5×5 stride-1 stem convolution, then stride-2 `BnLayer`s, global max pool, linear."""

    def __init__(self, c_in: int = 1, n_out: int = 10, widths: Sequence[int] = (10, 20, 40, 80, 160),
                 bn_eval: str = "running"):
        super().__init__()
        widths = list(widths)
        bn = dict(eval_stats=bn_eval)
        self.conv1 = nn.Conv2d(c_in, widths[0], kernel_size=5, stride=1, padding=2)
        self.layers = nn.ModuleList(BnLayer(a, b, **bn) for a, b in zip(widths[:-1], widths[1:]))
        self.out = nn.Linear(widths[-1], n_out)
        self.config = dict(c_in=c_in, n_out=n_out, widths=widths, bn_eval=bn_eval)
        init_cnn(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        for layer in self.layers:
            x = layer(x)
        return self.out(F.adaptive_max_pool2d(x, 1).flatten(1))


class ConvBnNet2(nn.Module):
    """`ConvBnNet` made twice as deep: a stride-1 `BnLayer` after every stride-2 one."""

    def __init__(self, c_in: int = 1, n_out: int = 10, widths: Sequence[int] = (10, 20, 40, 80, 160),
                 bn_eval: str = "running"):
        super().__init__()
        widths = list(widths)
        bn = dict(eval_stats=bn_eval)
        self.conv1 = nn.Conv2d(c_in, widths[0], kernel_size=5, stride=1, padding=2)
        self.layers = nn.ModuleList(BnLayer(a, b, **bn) for a, b in zip(widths[:-1], widths[1:]))
        self.layers2 = nn.ModuleList(BnLayer(b, b, stride=1, **bn) for b in widths[1:])
        self.out = nn.Linear(widths[-1], n_out)
        self.config = dict(c_in=c_in, n_out=n_out, widths=widths, bn_eval=bn_eval)
        init_cnn(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        for layer, layer2 in zip(self.layers, self.layers2):
            x = layer2(layer(x))
        return self.out(F.adaptive_max_pool2d(x, 1).flatten(1))


class Resnet(nn.Module):
    """Each stride-2 `BnLayer` followed by two residual stride-1 layers (`ResnetLayer`)."""

    def __init__(self, c_in: int = 1, n_out: int = 10, widths: Sequence[int] = (10, 20, 40, 80, 160),
                 bn_eval: str = "running"):
        super().__init__()
        widths = list(widths)
        bn = dict(eval_stats=bn_eval)
        self.conv1 = nn.Conv2d(c_in, widths[0], kernel_size=5, stride=1, padding=2)
        self.layers = nn.ModuleList(BnLayer(a, b, **bn) for a, b in zip(widths[:-1], widths[1:]))
        self.layers2 = nn.ModuleList(ResnetLayer(b, b, **bn) for b in widths[1:])
        self.layers3 = nn.ModuleList(ResnetLayer(b, b, **bn) for b in widths[1:])
        self.out = nn.Linear(widths[-1], n_out)
        self.config = dict(c_in=c_in, n_out=n_out, widths=widths, bn_eval=bn_eval)
        init_cnn(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        for layer, layer2, layer3 in zip(self.layers, self.layers2, self.layers3):
            x = layer3(layer2(layer(x)))
        return self.out(F.adaptive_max_pool2d(x, 1).flatten(1))


class Resnet2(nn.Module):
    """`Resnet` with a normalised 7×7 stem (`BnLayer`, stride 1), wider layers and dropout `p` before the output."""

    def __init__(self, c_in: int = 1, n_out: int = 10, widths: Sequence[int] = (16, 32, 64, 128, 256),
                 p: float = 0.2, bn_eval: str = "running"):
        super().__init__()
        widths = list(widths)
        bn = dict(eval_stats=bn_eval)
        self.conv1 = BnLayer(c_in, widths[0], stride=1, kernel_size=7, **bn)
        self.layers = nn.ModuleList(BnLayer(a, b, **bn) for a, b in zip(widths[:-1], widths[1:]))
        self.layers2 = nn.ModuleList(ResnetLayer(b, b, **bn) for b in widths[1:])
        self.layers3 = nn.ModuleList(ResnetLayer(b, b, **bn) for b in widths[1:])
        self.drop = nn.Dropout(p)
        self.out = nn.Linear(widths[-1], n_out)
        self.config = dict(c_in=c_in, n_out=n_out, widths=widths, p=p, bn_eval=bn_eval)
        init_cnn(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        for layer, layer2, layer3 in zip(self.layers, self.layers2, self.layers3):
            x = layer3(layer2(layer(x)))
        return self.out(self.drop(F.adaptive_max_pool2d(x, 1).flatten(1)))


register("simple_net", SimpleNet, "vision", needs_img_size=True)
register("conv_net", ConvNet, "vision")
register("conv_net2", ConvNet2, "vision")
register("conv_bn_net", ConvBnNet, "vision")
register("conv_bn_net2", ConvBnNet2, "vision")
register("resnet", Resnet, "vision")
register("resnet2", Resnet2, "vision")

__all__ = ["BN_EVAL_STATS", "BnLayer", "ConvBnNet", "ConvBnNet2", "ConvLayer", "ConvNet", "ConvNet2", "Resnet",
           "Resnet2", "ResnetLayer", "SimpleNet"]
