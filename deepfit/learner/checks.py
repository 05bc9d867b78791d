"""Catch model/data mismatches before training, and a NaN loss when it happens.

`check_model_data(learn)` runs the model (eval mode, no gradients) on the first training batch with
a pre-hook on every layer that checks the layer's input against what the layer was built for: input
channels of convolutions and batch norms, input features of linear layers (the classic wrong-image-size
error of a fixed-size head), input size of recurrent layers, token ids of embeddings. It then checks
the number of classes the output has against the targets and the data's vocabulary, and that the loss
is finite. Each failure raises `ModelDataMismatchError` naming the layer and the expected and actual shapes.

`fit` runs that check (`learn.check()`) once per model and data, after `before_fit`, without touching
random generators or loader positions; set `learn.check_inputs = False` to skip it.

`NaNLossCheck` stops training with `NonFiniteLossError` (a `FloatingPointError`) at the first NaN or
infinite training loss, naming the epoch and batch where it happened. It reads the losses the Recorder
brings to the host anyway (at progress refreshes, at the end of each training phase, before each
checkpoint): no extra synchronisation. `fit` attaches one by default (`learn.check_nan = False` trains
on regardless); `CheckpointCallback` asks it before every save, so no checkpoint is written after a
non-finite loss.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ..data.files import EmptyDataError
from ..rng import get_rng_state, set_rng_state
from .checkpoint import NonFiniteWeightsError, _generator_states, _set_generator_states, non_finite_tensors
from .events import Callback

if TYPE_CHECKING:
    from .events import LearnerLike


class ModelDataMismatchError(ValueError):
    """The model cannot take the data's batches, or its outputs do not fit the targets."""


def _shape(x: Any) -> str:
    return str(list(x.shape)) if isinstance(x, Tensor) else type(x).__name__


def _conv_dims(m: nn.Module) -> int | None:
    for cls, d in ((nn.Conv1d, 1), (nn.Conv2d, 2), (nn.Conv3d, 3)):
        if isinstance(m, cls):
            return d
    return None


def _layer_problem(name: str, m: nn.Module, x: Any) -> str | None:
    """Why layer `m` cannot take input `x` (or `None` when it can)."""
    if not isinstance(x, Tensor):
        return None
    label = f"layer '{name}' ({m})"
    d = _conv_dims(m)
    if d is not None:
        if x.ndim not in (d + 1, d + 2):
            return f"{label} expects a {d + 2}-d input [N, C, ...], got shape {_shape(x)}"
        c = x.shape[1] if x.ndim == d + 2 else x.shape[0]
        if c != m.in_channels:
            return (f"{label} expects {m.in_channels} input channels, got {c} (input shape {_shape(x)}): "
                    "the images have a different number of channels than the model was built for")
    elif isinstance(m, nn.modules.batchnorm._BatchNorm):
        if x.ndim >= 2 and x.shape[1] != m.num_features:
            return f"{label} expects {m.num_features} channels, got {x.shape[1]} (input shape {_shape(x)})"
    elif isinstance(m, nn.Linear):
        if x.shape[-1] != m.in_features:
            return (f"{label} expects inputs of shape [..., {m.in_features}], got {_shape(x)}: if this layer follows "
                    "a Flatten, the inputs' size differs from the one the model was built for")
    elif isinstance(m, nn.RNNBase):
        if x.shape[-1] != m.input_size:
            return f"{label} expects inputs of shape [..., {m.input_size}], got {_shape(x)}"
    elif isinstance(m, nn.Embedding):
        if x.is_floating_point():
            return f"{label} expects integer token ids, got a {x.dtype} tensor of shape {_shape(x)}"
        if x.numel() and (int(x.max()) >= m.num_embeddings or int(x.min()) < 0):
            return (f"{label} has {m.num_embeddings} rows, got ids in [{int(x.min())}, {int(x.max())}] "
                    f"(input shape {_shape(x)}): the vocabulary is larger than the model's embedding")
    elif isinstance(m, nn.LayerNorm):
        n = len(m.normalized_shape)
        if list(x.shape[-n:]) != list(m.normalized_shape):
            return f"{label} expects inputs ending in {list(m.normalized_shape)}, got {_shape(x)}"
    return None


def _first_batch(learn: LearnerLike) -> tuple[Any, Any]:
    """The first training batch, leaving generators and the loader's epoch as they were."""
    dl = getattr(learn.dls, "train", None)
    if dl is None:
        raise EmptyDataError("the DataLoaders have no training loader")
    if hasattr(dl, "__len__") and len(dl) == 0:
        n = getattr(dl, "n", None)
        raise EmptyDataError(f"the training loader yields no batches (it holds {n if n is not None else 0} items"
                             + (f", bs={dl.bs} with drop_last=True" if getattr(dl, "drop_last", False) and n else "")
                             + ")")
    rng, gens = get_rng_state(), _generator_states(learn.dls)
    epoch = getattr(dl, "epoch", None)
    try:
        batch = next(iter(dl), None)
    finally:
        set_rng_state(rng)
        _set_generator_states(learn.dls, gens)
        if epoch is not None:
            if callable(getattr(dl, "set_epoch", None)):
                dl.set_epoch(epoch)
            else:
                dl.epoch = epoch
    if batch is None:
        raise EmptyDataError("the training loader yields no batches (empty dataset)")
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ModelDataMismatchError(f"training batches must be (inputs, targets) pairs, got {type(batch).__name__}")
    return batch[0], batch[1]


def _output_layer(model: nn.Module) -> tuple[str, nn.Module] | None:
    last = None
    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            last = (name, m)
    return last


def _n_targets(learn: LearnerLike, yb: Tensor) -> int:
    """The largest class index among the targets (the whole training set for a `TensorLoader`)."""
    y = getattr(learn.dls.train, "y", None)
    y = y if isinstance(y, Tensor) and not y.is_floating_point() else yb
    return int(y.max()) if y.numel() else -1


def _is_class_loss(loss_func: Any) -> bool:
    return isinstance(loss_func, (nn.CrossEntropyLoss, nn.NLLLoss)) or getattr(loss_func, "is_cross_entropy", False)


def check_model_data(learn: LearnerLike) -> None:
    """Run the model on the first training batch and raise a clear error on any mismatch (see module doc)."""
    xb, yb = _first_batch(learn)
    model = learn.model
    modes = {m: m.training for m in model.modules()}
    found: list[str] = []

    def pre_hook(name):
        def hook(m, args):
            if not found and args:
                problem = _layer_problem(name, m, args[0])
                if problem is not None:
                    found.append(problem)
                    raise ModelDataMismatchError(problem)
        return hook

    handles = [m.register_forward_pre_hook(pre_hook(n)) for n, m in model.named_modules()
               if not list(m.children())]
    model.eval()
    try:
        with torch.no_grad():
            out = model(*xb) if isinstance(xb, (tuple, list)) else model(xb)
    except ModelDataMismatchError:
        raise ModelDataMismatchError(f"{found[0]}. The training batches have inputs of shape {_shape(xb)}.") from None
    except Exception as e:
        raise ModelDataMismatchError(f"the model fails on the first training batch (inputs of shape {_shape(xb)}): "
                                     f"{type(e).__name__}: {e}") from e
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    pred = out[0] if isinstance(out, (tuple, list)) else out
    _check_targets(learn, pred, xb, yb)


def _class_dim(pred: Tensor, yb: Tensor) -> int | None:
    """Which axis of `pred` holds the class scores for integer targets `yb` (`None` when unclear)."""
    if pred.ndim == 2:
        return 1
    if list(yb.shape) == list(pred.shape[:-1]):
        return pred.ndim - 1
    if list(yb.shape) == [pred.shape[0], *pred.shape[2:]]:
        return 1
    return None


def _check_targets(learn: LearnerLike, pred: Tensor, xb: Any, yb: Any) -> None:
    loss_func = learn.loss_func
    if isinstance(yb, Tensor) and isinstance(pred, Tensor) and _is_class_loss(loss_func) and pred.ndim >= 2:
        dim = _class_dim(pred, yb)
        layer = _output_layer(learn.model)
        where = f"the output layer '{layer[0]}' ({layer[1]})" if layer else "the model"
        n_out = pred.shape[dim] if dim is not None else None
        c = getattr(learn.dls, "c", None)
        if n_out is not None and c is not None and c != n_out:
            raise ModelDataMismatchError(f"{where} gives {n_out} outputs per item (output shape {_shape(pred)}) but "
                                         f"the data has {c} classes: build the model with {c} outputs")
        if n_out is not None and not yb.is_floating_point():
            top = _n_targets(learn, yb)
            if top >= n_out:
                raise ModelDataMismatchError(f"{where} gives {n_out} outputs per item (output shape {_shape(pred)}) "
                                             f"but the targets hold class index {top}: build the model with at "
                                             f"least {top + 1} outputs")
    try:
        loss = loss_func(pred, yb)
    except Exception as e:
        raise ModelDataMismatchError(f"the loss {type(loss_func).__name__} fails on the model's output (shape "
                                     f"{_shape(pred)}) and the targets (shape {_shape(yb)}): {e}") from e
    if isinstance(loss, Tensor) and loss.numel() == 1 and not torch.isfinite(loss.float()).item():
        bad_x = isinstance(xb, Tensor) and xb.is_floating_point() and not torch.isfinite(xb).all().item()
        cause = ("the inputs of that batch contain NaN/inf values" if bad_x
                 else "check the targets and the model's initialisation for NaN/inf values")
        raise FloatingPointError(f"the loss on the first training batch is {loss.item()} before any training: {cause}")


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; `epoch`, `batch` (index in the epoch) and `value` say where."""

    def __init__(self, message: str, epoch: int, batch: int, value: float):
        super().__init__(message)
        self.epoch, self.batch, self.value = epoch, batch, value


class NaNLossCheck(Callback):
    """Stops `fit` with `NonFiniteLossError` at the first NaN/inf training loss (see the module doc).

    Args:
        max_skipped: non-finite losses tolerated in a row before stopping. `None` (default): 0, or 10 when
            a loss-scaling `MixedPrecision` (float16) is attached, whose scaler skips the optimizer step of
            such batches (the weights stay finite) and lowers the scale.
        check_weights: at the end of each training phase, also check that the weights are finite (one
            host sync per epoch), so that a last step that made them NaN stops the run before validation,
            `SaveBestModel` and the epoch's checkpoint (`NonFiniteWeightsError`).

    The error is raised when the losses reach the host, which may be a few batches after the bad one
    (at the latest at the end of the training phase, before validation and before any checkpoint); the
    message names the batch where the loss first became non-finite. `TerminateOnNaN` stops at the very
    batch instead, at the price of one host sync per batch.
    """

    order = 55  # after the Recorder (50) stored the batch loss
    run_valid = False

    def __init__(self, max_skipped: int | None = None, check_weights: bool = True):
        if max_skipped is not None and (isinstance(max_skipped, bool) or max_skipped < 0):
            raise ValueError(f"NaNLossCheck: max_skipped must be >= 0 or None, got {max_skipped!r}")
        self.max_skipped, self.check_weights = max_skipped, check_weights
        self._last: tuple[int, int] | None = None
        self._where: list[tuple[int, int]] = []
        self._seen = 0
        self._run = 0
        self._first: tuple[int, int, float] | None = None

    @property
    def name(self) -> str:
        return "nan_loss_check"

    def _recorder(self) -> Any:
        rec = getattr(self.learn, "recorder", None)
        return rec if rec is not None and hasattr(rec, "losses") else None

    def _limit(self) -> int:
        if self.max_skipped is not None:
            return self.max_skipped
        mp = getattr(self.learn, "mixed_precision", None)
        return 10 if mp is not None and mp in self.learn.cbs and getattr(mp, "scaling", False) else 0

    def before_fit(self) -> None:
        rec = self._recorder()
        self._seen = len(rec.losses) if rec is not None else 0
        self._where, self._run, self._first = [], 0, None

    def after_batch(self) -> None:
        learn = self.learn
        if learn.loss is None or not learn.training:
            return
        self._where.append((learn.epoch, learn.iter))  # the batch of each loss the Recorder keeps
        self._last = (learn.epoch, learn.iter)
        rec = self._recorder()
        if rec is not None and len(rec.losses) > self._seen:  # a progress refresh brought some to the host
            self._scan(rec)

    def after_train(self) -> None:
        rec = self._recorder()
        if rec is not None:
            self._scan(rec)
        if self.check_weights and self._last is not None and getattr(self.learn, "lr_finder", None) is None:
            bad = non_finite_tensors(self.learn.model.state_dict())
            if bad:
                epoch, batch = self._last
                raise NonFiniteWeightsError(
                    f"the model's weights became NaN/inf at epoch {epoch}, batch {batch} (its step; "
                    f"{', '.join(bad[:3])}{'...' if len(bad) > 3 else ''}): lower the learning rate or clip gradients",
                    epoch, batch, bad)

    def check(self) -> None:
        """Bring the pending losses to the host and raise if one is non-finite (called before a checkpoint)."""
        rec = self._recorder()
        if rec is None or getattr(self.learn, "lr_finder", None) is not None:
            return
        if hasattr(rec, "flush"):
            rec.flush()
        self._scan(rec)

    def _scan(self, rec: Any) -> None:
        if getattr(self.learn, "lr_finder", None) is not None:  # lr_find expects and handles divergence
            self._seen, self._where = len(rec.losses), []
            return
        new = rec.losses[self._seen:]
        where, self._where = self._where[:len(new)], self._where[len(new):]
        self._seen = len(rec.losses)
        limit = self._limit()
        for i, v in enumerate(new):
            if math.isfinite(v):
                self._run, self._first = 0, None
                continue
            epoch, batch = where[i] if i < len(where) else (self.learn.epoch, self.learn.iter)
            self._run += 1
            if self._first is None:
                self._first = (epoch, batch, v)
            if self._run > limit:
                epoch, batch, v = self._first
                run = f" ({self._run} non-finite losses in a row)" if self._run > 1 else ""
                raise NonFiniteLossError(
                    f"the training loss became {v} at epoch {epoch}, batch {batch}{run}: lower the learning rate, "
                    "clip gradients, or check the data for NaN/inf values", epoch, batch, v)
