"""MixedPrecision under the notes' names (lesson 12): loss_scale=512, max_loss_scale, div_factor, scale_wait."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deepfit.learner import Learner
from deepfit.learner.callbacks import ProgressCallback
from deepfit.learner.callbacks.precision import MixedPrecision
from tests.helpers.data import make_linear_data


def test_the_notes_names_map_to_grad_scaler_settings():
    mp = MixedPrecision(torch.float16, loss_scale=512, div_factor=2.0, scale_wait=500)
    assert mp.loss_scale is True
    assert mp.scaler_kwargs == dict(init_scale=512.0, growth_factor=2.0, backoff_factor=0.5, growth_interval=500)
    mp = MixedPrecision(torch.float16, max_loss_scale=2.0**24, div_factor=4.0)
    assert mp.scaler_kwargs["init_scale"] == 2.0**24 and mp.scaler_kwargs["backoff_factor"] == 0.25
    assert mp.loss_scale is None  # scaling stays "for float16"
    assert MixedPrecision(torch.bfloat16, loss_scale=False).loss_scale is False
    with pytest.raises(ValueError, match="give one"):
        MixedPrecision(torch.float16, loss_scale=512, max_loss_scale=2.0**24)
    with pytest.raises(ValueError, match="scale_wait and growth_interval=100 disagree"):
        MixedPrecision(torch.float16, scale_wait=500, growth_interval=100)
    assert MixedPrecision(scale_wait=100, growth_interval=100).scaler_kwargs["growth_interval"] == 100
    with pytest.raises(ValueError, match="div_factor must be > 1"):
        MixedPrecision(div_factor=0.5)


def test_loss_scale_number_starts_the_scaler_there():
    torch.manual_seed(0)
    learn = Learner(nn.Linear(4, 3), make_linear_data(), cbs=[MixedPrecision(torch.bfloat16, loss_scale=512,
                                                                             scale_wait=1000)])
    learn.remove_cb(ProgressCallback)
    learn.fit(1, lr=1e-2)
    scaler = learn.mixed_precision.scaler
    assert scaler.is_enabled() and scaler.get_scale() == 512.0 and scaler.get_growth_interval() == 1000
