"""Model outputs to probabilities, for `get_preds`, `predict`, `tta` and the interpretation plots.

The activation comes from the loss (`losses.resolve_activation`): softmax for cross-entropy, sigmoid for
`BCEWithLogitsLoss`/`BCEWithLogitsFlat`, `exp` for `NLLLoss` (whose model ends in `log_softmax`, as every
lesson-7 model and the cookbook's network do). Whatever the loss says, a single-label model whose outputs
already are a distribution over the classes needs no second one (`deepfit.probabilities`):

- outputs that are non-negative and sum to one over the last dimension (a model ending in `softmax`) are
  returned as they are;
- outputs whose exponentials sum to one (a model ending in `log_softmax`, trained with a cross-entropy, an
  `NLLLoss` or a loss deepfit does not know) are returned as `exp(outputs)`.

Per-label losses (binary cross-entropy, multi-label) are not checked this way: their outputs are one score
per label, and their rows need not sum to anything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor, nn

from ..probabilities import as_distribution
from .losses import BCEWithLogitsFlat, resolve_activation

PER_LABEL_LOSSES: tuple[type, ...] = (nn.BCEWithLogitsLoss, nn.BCELoss, nn.MultiLabelSoftMarginLoss, BCEWithLogitsFlat)


def is_per_label(loss_func: Any) -> bool:
    """Whether `loss_func` scores each label on its own (binary / multi-label cross-entropy)."""
    return isinstance(loss_func, PER_LABEL_LOSSES) or getattr(loss_func, "multi_label", False) is True


def to_probs(out: Tensor, loss_func: Any, act: Callable[[Tensor], Tensor] | str | None = "auto") -> Tensor:
    """Probabilities from model outputs `out` (see the module docstring).

    `act='auto'` resolves the activation from `loss_func` and the outputs; `None` returns `out` unchanged; a
    callable is applied as given.
    """
    if act is None:
        return out
    if callable(act):
        return act(out)
    if act != "auto":
        raise ValueError(f"act must be 'auto', None or a function, got {act!r}")
    if not is_per_label(loss_func):
        dist = as_distribution(out)
        if dist is not None:
            return dist
    activation = resolve_activation(loss_func)
    return activation(out) if activation is not None else out


def threshold(loss_func: Any, thresh: float | None = None) -> float:
    """The decision threshold of a per-label loss: `thresh` when given, else the loss's own, else 0.5."""
    if thresh is not None:
        return float(thresh)
    return float(getattr(loss_func, "thresh", 0.5))


def decode_prediction(probs: Tensor, loss_func: Any, vocab: Sequence[str] | None = None,
                      thresh: float | None = None) -> tuple[Any, Any]:
    """`(decoded, index)` of one item's probabilities.

    - multi-label (a per-label loss, several outputs): every label whose probability is above the threshold,
      as a list of names (of indices without `vocab`), and the boolean mask;
    - single-output binary classifier (a per-label loss, one output): class 1 when its probability is above the
      threshold, else class 0 (its name when `vocab` holds two classes), and that index;
    - otherwise the arg-max class (its name with `vocab`) and its index; a sequence of outputs (a language
      model) gives one index per position.
    """
    if is_per_label(loss_func) and probs.ndim <= 1:
        cut = threshold(loss_func, thresh)
        if probs.numel() == 1:
            idx = int(float(probs.reshape(())) > cut)
            return (vocab[idx] if vocab is not None and len(vocab) == 2 else idx), idx
        mask = probs > cut
        hits = mask.nonzero().flatten().tolist()
        return ([vocab[i] for i in hits] if vocab is not None else hits), mask
    if probs.ndim == 1:
        idx = int(probs.argmax())
        return (vocab[idx] if vocab is not None else idx), idx
    idx = probs.argmax(-1)
    return idx, idx


def default_loss(dls: Any) -> nn.Module:
    """The loss a `Learner` gets when none is given: `BCEWithLogitsFlat` for multi-label data
    (`dls.multi_label`), else `nn.CrossEntropyLoss`."""
    return BCEWithLogitsFlat() if getattr(dls, "multi_label", False) else nn.CrossEntropyLoss()


def flat_bce(loss_func: Any) -> Any:
    """A plain `nn.BCEWithLogitsLoss` as the `BCEWithLogitsFlat` with its settings: the same loss on multi-hot
    targets, that also takes the usual 0/1 integer labels `(N,)` of a single-output `(N, 1)` binary classifier
    and thresholds `predict`'s decisions. Any other loss (or one with a `weight`) is returned unchanged."""
    if type(loss_func) is nn.BCEWithLogitsLoss and loss_func.weight is None:
        return BCEWithLogitsFlat(pos_weight=loss_func.pos_weight, reduction=loss_func.reduction)
    return loss_func
