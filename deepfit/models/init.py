"""Weight initialisation rules for whole models.

`apply_init(model, weight_fn)` applies any tensor initialiser (`nn.init.xavier_uniform_`,
`lambda w: nn.init.constant_(w, 0.5)`, ...) to the weights of every convolution and linear layer
and zeroes (or otherwise initialises) their biases. `init_cnn` is the rule the notes use for CNNs:
Kaiming normal weights, zero biases. Normalisation layers are left alone, so a zero-initialised
BatchNorm (XResNet's trick) survives `init_cnn`.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

InitFn = Callable[[Tensor], object]

#: the layers whose weights `apply_init` touches by default
WEIGHTED_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear,
)


def apply_init(
    model: nn.Module,
    weight_fn: InitFn,
    bias_fn: InitFn | None = nn.init.zeros_,
    types: tuple[type[nn.Module], ...] = WEIGHTED_LAYERS,
) -> nn.Module:
    """Initialise, in place, the weights of every submodule of `model` that is an instance of `types`.

    `weight_fn(weight)` and `bias_fn(bias)` receive the parameter tensors (called under no-grad by the
    `nn.init` functions). `bias_fn=None` leaves biases as they are. Returns `model`.
    """
    if not callable(weight_fn):
        raise TypeError(f"apply_init: weight_fn must be callable, got {type(weight_fn).__name__}")
    found = False
    for module in model.modules():
        if not isinstance(module, types):
            continue
        found = True
        weight = getattr(module, "weight", None)
        if isinstance(weight, Tensor):
            weight_fn(weight)
        bias = getattr(module, "bias", None)
        if bias_fn is not None and isinstance(bias, Tensor):
            bias_fn(bias)
    if not found:
        names = ", ".join(t.__name__ for t in types)
        raise ValueError(f"apply_init: {type(model).__name__} has no layer of type {names}")
    return model


def kaiming_normal(weight: Tensor) -> Tensor:
    """He (Kaiming) normal initialisation for ReLU networks (fan-in mode)."""
    return nn.init.kaiming_normal_(weight, nonlinearity="relu")


def xavier_uniform(weight: Tensor) -> Tensor:
    """Glorot (Xavier) uniform initialisation, for sigmoid/tanh networks."""
    return nn.init.xavier_uniform_(weight)


def constant(value: float) -> InitFn:
    """An initialiser that fills a tensor with `value` (as in the notes' `init_42`)."""
    return lambda w: nn.init.constant_(w, value)


def init_cnn(model: nn.Module) -> nn.Module:
    """Kaiming normal weights and zero biases for every conv and linear layer of `model`."""
    return apply_init(model, kaiming_normal)


__all__ = ["WEIGHTED_LAYERS", "apply_init", "constant", "init_cnn", "kaiming_normal", "xavier_uniform"]
