"""Fully connected networks (the cookbook's Fashion-MNIST classifier)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from .registry import register


def _n_values(c_in: int, img_size: int | Sequence[int]) -> int:
    h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
    return int(c_in) * int(h) * int(w)


class MLP(nn.Sequential):
    """Flatten → [Linear → ReLU → Dropout] per hidden size → Linear.

    Takes `c_in` channels of `img_size` pixels (an int or `(h, w)`), flattened: `c_in * h * w` inputs.
    For flat feature vectors, pass `img_size=1` and the number of features as `c_in`. The default sizes
    are the cookbook's 784-256-128-10 Fashion-MNIST network.
    """

    def __init__(self, c_in: int = 1, n_out: int = 10, hidden: Sequence[int] = (256, 128),
                 img_size: int | Sequence[int] = 28, dropout: float = 0.0):
        layers: list[nn.Module] = [nn.Flatten()]
        sizes = [_n_values(c_in, img_size), *hidden]
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(sizes[-1], n_out))
        super().__init__(*layers)
        self.config = dict(c_in=c_in, n_out=n_out, hidden=list(hidden),
                           img_size=img_size if isinstance(img_size, int) else list(img_size), dropout=dropout)


register("mlp", MLP, "vision", needs_img_size=True)

__all__ = ["MLP"]
