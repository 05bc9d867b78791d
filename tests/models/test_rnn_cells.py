"""The hand-written RNN and GRU cells against PyTorch's, with the same weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepfit.models import GRUCell, RNNCell

PAIRS = [(RNNCell, nn.RNNCell), (GRUCell, nn.GRUCell)]


@pytest.mark.parametrize("ours_cls, torch_cls", PAIRS)
@pytest.mark.parametrize("bias", [True, False])
def test_cell_equals_torch_cell_with_copied_weights(ours_cls, torch_cls, bias):
    torch.manual_seed(0)
    ref = torch_cls(5, 7, bias=bias)
    ours = ours_cls(5, 7, bias=bias)
    assert ours.state_dict().keys() == ref.state_dict().keys()
    ours.load_state_dict(ref.state_dict())
    x, h = torch.randn(4, 5), torch.randn(4, 7)
    for state in (h, None):  # None: the state starts from zeros, as in PyTorch
        a, b = ours(x, state), ref(x, state)
        assert torch.allclose(a, b, atol=1e-6)
    # the same gradients, through several steps
    xs = torch.randn(6, 4, 5)
    ha = hb = torch.zeros(4, 7)
    for t in range(6):
        ha, hb = ours(xs[t], ha), ref(xs[t], hb)
    ha.pow(2).sum().backward()
    hb.pow(2).sum().backward()
    for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-5), name


@pytest.mark.parametrize("ours_cls, torch_cls", PAIRS)
def test_torch_cell_loads_ours_and_init_range(ours_cls, torch_cls):
    ours = ours_cls(3, 16)
    bound = 1 / 16 ** 0.5
    assert all(p.abs().max() <= bound for p in ours.parameters())
    ref = torch_cls(3, 16)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3)
    assert torch.allclose(ours(x), ref(x), atol=1e-6)


def test_gru_update_gate_interpolates_between_state_and_candidate():
    """With the update gate pushed to 1 the state is kept; pushed to 0 it is replaced by the candidate."""
    cell = GRUCell(2, 3)
    with torch.no_grad():
        cell.bias_ih[3:6] = 50.0  # z = sigmoid(large) ~ 1
    h = torch.randn(1, 3)
    assert torch.allclose(cell(torch.randn(1, 2), h), h, atol=1e-4)


def test_cells_check_shapes():
    with pytest.raises(ValueError, match=r"input \(bs, 5\)"):
        RNNCell(5, 7)(torch.randn(4, 6))
    with pytest.raises(ValueError, match=r"state \(bs, 7\)"):
        GRUCell(5, 7)(torch.randn(4, 5), torch.randn(3, 7))
