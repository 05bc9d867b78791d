"""Whether model outputs already are a distribution over classes: probabilities (a model ending in `softmax`)
or log-probabilities (a model ending in `log_softmax`, as the notes' lesson-7 models and the cookbook's network).

`deepfit.learner.probs` (get_preds, predict, tta) and `deepfit.inference` (load_learner's predict) use these so
that such outputs get no second softmax. A row is the last dimension; one-output rows are never a distribution.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

ATOL = 1e-3  # tolerance on a row's sum (outputs in float16/bfloat16 round more than float32)


def _is_distribution_shaped(x: Any) -> bool:
    return isinstance(x, Tensor) and x.is_floating_point() and x.ndim >= 2 and x.shape[-1] >= 2 and x.numel() > 0


def is_probabilities(x: Tensor) -> bool:
    """Whether every row of `x` (over the last dimension) is a probability distribution: `>= 0`, summing to one."""
    if not _is_distribution_shaped(x):
        return False
    x = x.detach().float()
    return bool(torch.isfinite(x).all() and (x >= 0).all() and ((x.sum(-1) - 1).abs() <= ATOL).all())


def is_log_probabilities(x: Tensor) -> bool:
    """Whether every row of `x` is the logarithm of a distribution (`log_softmax` output): `exp(x)` sums to one."""
    if not _is_distribution_shaped(x):
        return False
    x = x.detach().float()
    if bool((x > ATOL).any()) or bool(torch.isnan(x).any()):
        return False
    return bool(((torch.logsumexp(x, dim=-1).exp() - 1).abs() <= ATOL).all())


def as_distribution(x: Tensor) -> Tensor | None:
    """`x` as probabilities when it already is a distribution or its logarithm (float32), else `None`."""
    if is_probabilities(x):
        return x.float()
    if is_log_probabilities(x):
        return x.float().exp()
    return None
