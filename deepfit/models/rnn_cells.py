"""Recurrent cells written out from the lesson-7 notes' maths: one time step, batch-first vectors.

- `RNNCell`: `h' = tanh(W_ih x + b_ih + W_hh h + b_hh)` (the input and the state are added, not
  concatenated).
- `GRUCell`: from `gi = W_ih x + b_ih` and `gh = W_hh h + b_hh`, each cut into reset/update/new thirds,
  `r = σ(gi_r + gh_r)`, `z = σ(gi_z + gh_z)`, `n = tanh(gi_n + r * gh_n)` and `h' = n + z * (h - n)`: the
  update gate `z` interpolates between the old state and the new candidate.

Parameters have the names, shapes, gate order and initialisation of `nn.RNNCell`/`nn.GRUCell`, so a
state dict moves between them both ways and the outputs agree (tested).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _Cell(nn.Module):
    n_gates = 1

    def __init__(self, n_in: int, n_hid: int, bias: bool = True):
        super().__init__()
        if n_in < 1 or n_hid < 1:
            raise ValueError(f"{type(self).__name__}: n_in and n_hid must be >= 1, got {n_in}, {n_hid}")
        self.n_in, self.n_hid = n_in, n_hid
        rows = self.n_gates * n_hid
        self.weight_ih = nn.Parameter(torch.empty(rows, n_in))
        self.weight_hh = nn.Parameter(torch.empty(rows, n_hid))
        self.register_parameter("bias_ih", nn.Parameter(torch.empty(rows)) if bias else None)
        self.register_parameter("bias_hh", nn.Parameter(torch.empty(rows)) if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform in ±1/√n_hid, as PyTorch's cells."""
        bound = 1 / math.sqrt(self.n_hid)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def _check(self, x: Tensor, h: Tensor | None) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.n_in:
            raise ValueError(f"{type(self).__name__} expects input (bs, {self.n_in}), got {tuple(x.shape)}")
        if h is None:
            return x.new_zeros(x.shape[0], self.n_hid)
        if h.shape != (x.shape[0], self.n_hid):
            raise ValueError(f"{type(self).__name__} expects a state (bs, {self.n_hid}) = ({x.shape[0]}, "
                             f"{self.n_hid}), got {tuple(h.shape)}")
        return h

    def extra_repr(self) -> str:
        return f"{self.n_in}, {self.n_hid}, bias={self.bias_ih is not None}"


class RNNCell(_Cell):
    """One step of a plain RNN: `h' = tanh(W_ih x + b_ih + W_hh h + b_hh)`; `h` defaults to zeros."""

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        h = self._check(x, h)
        return torch.tanh(F.linear(x, self.weight_ih, self.bias_ih) + F.linear(h, self.weight_hh, self.bias_hh))


class GRUCell(_Cell):
    """One step of a GRU (reset gate `r`, update gate `z`, candidate `n`); `h` defaults to zeros."""

    n_gates = 3

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        h = self._check(x, h)
        i_r, i_z, i_n = F.linear(x, self.weight_ih, self.bias_ih).chunk(3, dim=1)
        h_r, h_z, h_n = F.linear(h, self.weight_hh, self.bias_hh).chunk(3, dim=1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        return n + z * (h - n)


__all__ = ["GRUCell", "RNNCell"]
