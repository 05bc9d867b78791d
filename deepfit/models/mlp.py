"""Fully connected networks (the cookbook's Fashion-MNIST classifier)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


class MLP(nn.Sequential):
    """Flatten → [Linear → ReLU → Dropout] per hidden size → Linear.

    The default sizes are the cookbook's 784-256-128-10 Fashion-MNIST network.
    """

    def __init__(self, n_in: int = 784, hidden: Sequence[int] = (256, 128), n_out: int = 10, dropout: float = 0.0):
        layers: list[nn.Module] = [nn.Flatten()]
        sizes = [n_in, *hidden]
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(sizes[-1], n_out))
        super().__init__(*layers)
        self.config = dict(n_in=n_in, hidden=list(hidden), n_out=n_out, dropout=dropout)
