"""`Learner`: the training loop, driven by callbacks.

The loop itself holds no technique: schedules, mixed precision, MixUp, progress bars, logging and
checkpoints are callbacks (see `events.py` for the order of events). Handlers are resolved once
per `fit`/`validate`/`get_preds` call, never per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..data.core import to_device
from .events import (
    CANCEL_EXCEPTIONS,
    EVENTS,
    Callback,
    CancelBackward,
    CancelBatch,
    CancelEpoch,
    CancelFit,
    CancelStep,
    CancelTrain,
    CancelValidate,
)
from .metrics import Metric, as_metric


def _default_opt(params, lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr)


class Learner:
    """Groups a model, its data, a loss, an optimizer and callbacks, and trains them.

    Args:
        model: any `nn.Module`. Its forward takes `xb` (or `*xb` when a batch's input is a tuple).
        dls: a `DataLoaders` (with `.train`, `.valid` and `.device`).
        loss_func: `(pred, target) -> scalar tensor`; defaults to `nn.CrossEntropyLoss()`.
        opt_func: `(params_or_groups, lr) -> torch.optim.Optimizer`; defaults to Adam.
        lr: default learning rate for `fit`.
        metrics: functions `(pred, target) -> tensor` or `Metric` objects, computed on validation.
        cbs: extra callbacks kept for every `fit`.
        default_cbs: add the default callbacks (train/eval switching, device placement, recorder,
            progress). Each can be removed afterwards with `remove_cb`.
        path: folder where `save`, `export` and plots write by default.
    """

    def __init__(
        self,
        model: nn.Module,
        dls,
        loss_func: Callable[[Tensor, Tensor], Tensor] | None = None,
        opt_func: Callable[..., torch.optim.Optimizer] = _default_opt,
        lr: float = 1e-3,
        metrics: Sequence[Callable | Metric] | Callable | Metric = (),
        cbs: Iterable[Callback] = (),
        default_cbs: bool = True,
        path: str | Path = ".",
        splitter: Callable[[nn.Module], list] | None = None,
    ):
        self.model = model
        self.dls = dls
        self.loss_func = loss_func if loss_func is not None else nn.CrossEntropyLoss()
        self.opt_func = opt_func
        self.lr = lr
        if callable(metrics) or isinstance(metrics, Metric):
            metrics = [metrics]
        self.metrics: list[Metric] = [as_metric(m) for m in metrics]
        self.path = Path(path)
        self.splitter = splitter
        self.opt: torch.optim.Optimizer | None = None
        self.cbs: list[Callback] = []
        self.training = False
        self.epoch = 0
        self.n_epoch = 1
        self.iter = 0
        self.n_iter = 0
        self.train_iter = 0
        self.xb: Any = None
        self.yb: Any = None
        self.pred: Any = None
        self.loss: Tensor | None = None
        self.logger: Callable[[str], None] = print
        self._table: dict[str, list[Callable[[], None]]] = {}
        self._tables: dict[str, dict[str, list[Callable[[], None]]]] = {}
        if default_cbs:
            from .callbacks.core import DeviceCallback, TrainEvalCallback
            from .callbacks.progress import ProgressCallback
            from .callbacks.recorder import Recorder

            self.add_cbs([TrainEvalCallback(), DeviceCallback(), Recorder(), ProgressCallback()])
        self.add_cbs(cbs)

    # ------------------------------------------------------------------ callbacks
    def add_cb(self, cb: Callback) -> Callback:
        """Attach `cb`; it becomes reachable as `learn.<cb.name>`."""
        if isinstance(cb, type):
            cb = cb()
        existing = getattr(self, cb.name, None)
        if isinstance(existing, Callback) and existing in self.cbs:
            raise ValueError(f"a callback named {cb.name!r} is already attached ({existing!r}); remove it first")
        cb.learn = self
        setattr(self, cb.name, cb)
        self.cbs.append(cb)
        self.cbs.sort(key=lambda c: c.order)
        return cb

    def add_cbs(self, cbs: Iterable[Callback]) -> list[Callback]:
        return [self.add_cb(cb) for cb in (cbs or ())]

    def remove_cb(self, cb: Callback | type) -> None:
        """Detach a callback (an instance, or every callback of a class)."""
        targets = [c for c in self.cbs if (isinstance(c, cb) if isinstance(cb, type) else c is cb)]
        for c in targets:
            self.cbs.remove(c)
            if getattr(self, c.name, None) is c:
                delattr(self, c.name)

    def remove_cbs(self, cbs: Iterable[Callback]) -> None:
        for cb in list(cbs):
            self.remove_cb(cb)

    @contextmanager
    def added_cbs(self, cbs: Iterable[Callback] | None):
        """Attach `cbs` for the duration of a `with` block."""
        added = self.add_cbs(cbs or ())
        try:
            yield added
        finally:
            self.remove_cbs(added)

    def _resolve_handlers(self) -> None:
        """Build, once per run, the list of bound handlers for every event and phase."""
        tables: dict[str, dict[str, list]] = {"all": {}, "train": {}, "valid": {}}
        for event in EVENTS:
            for phase, table in tables.items():
                handlers = []
                for cb in self.cbs:
                    if phase == "train" and not cb.run_train or phase == "valid" and not cb.run_valid:
                        continue
                    method = getattr(cb, event, None)
                    if method is not None:
                        handlers.append(self._guard(cb, event, method))
                table[event] = handlers
        self._tables = tables
        self._table = tables["all"]

    @staticmethod
    def _guard(cb: Callback, event: str, method: Callable[[], None]) -> Callable[[], None]:
        return _Handler(cb, event, method)

    def __call__(self, event: str) -> None:
        for handler in self._table[event]:
            handler()

    def _with_events(self, f: Callable[[], None], name: str, cancel: type[Exception]) -> None:
        try:
            self(f"before_{name}")
            f()
        except cancel:
            self(f"after_cancel_{name}")
        self(f"after_{name}")

    # ------------------------------------------------------------------ optimizer
    def parameter_groups(self) -> list[list[nn.Parameter]]:
        """The model's parameters split into layer groups (one group without a splitter)."""
        if self.splitter is None:
            return [list(self.model.parameters())]
        return [list(g) for g in self.splitter(self.model)]

    def create_opt(self, lr: float | None = None) -> torch.optim.Optimizer:
        groups = [{"params": g} for g in self.parameter_groups()]
        self.opt = self.opt_func(groups, lr=self.lr if lr is None else lr)
        return self.opt

    def set_lr(self, lr: float) -> None:
        """Set the learning rate of every parameter group."""
        for g in self.opt.param_groups:
            g["lr"] = lr

    # ------------------------------------------------------------------ the loop
    def fit(self, n_epoch: int, lr: float | None = None, cbs: Iterable[Callback] | None = None,
            reset_opt: bool = False) -> None:
        """Train for `n_epoch` epochs. Callbacks in `cbs` are attached for this call only."""
        if n_epoch < 0:
            raise ValueError(f"n_epoch must be >= 0, got {n_epoch}")
        with self.added_cbs(cbs):
            if reset_opt or self.opt is None:
                self.create_opt(lr)
            if lr is not None:
                self.set_lr(lr)
            self.n_epoch = n_epoch
            self._resolve_handlers()
            self._with_events(self._do_fit, "fit", CancelFit)

    def _do_fit(self) -> None:
        for epoch in range(self.n_epoch):
            self.epoch = epoch
            self._with_events(self._do_epoch, "epoch", CancelEpoch)

    def _do_epoch(self) -> None:
        self._do_train()
        self._do_validate()

    def _do_train(self) -> None:
        self.dl = self.dls.train
        self.training = True
        self._table = self._tables["train"]
        try:
            self._with_events(self._all_batches, "train", CancelTrain)
        finally:
            self._table = self._tables["all"]

    def _do_validate(self, dl=None) -> None:
        self.dl = self.dls.valid if dl is None else dl
        self.training = False
        self._table = self._tables["valid"]
        try:
            with torch.no_grad():
                self._with_events(self._all_batches, "validate", CancelValidate)
        finally:
            self._table = self._tables["all"]

    def _all_batches(self) -> None:
        self.n_iter = len(self.dl) if hasattr(self.dl, "__len__") else 0
        for i, batch in enumerate(self.dl):
            self.iter = i
            self.xb, self.yb = batch
            self._with_events(self._do_one_batch, "batch", CancelBatch)

    def _do_one_batch(self) -> None:
        xb = self.xb
        self.pred = self.model(*xb) if isinstance(xb, (tuple, list)) else self.model(xb)
        self("after_pred")
        self.loss = self.loss_func(self.pred, self.yb)
        self("after_loss")
        if not self.training:
            return
        self._with_events(self._backward, "backward", CancelBackward)
        self._with_events(self._step, "step", CancelStep)

    def _backward(self) -> None:
        self.loss.backward()

    def _step(self) -> None:
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    # ------------------------------------------------------------------ evaluation
    def _run_validation(self, dl, cbs: Iterable[Callback] | None) -> None:
        with self.added_cbs(cbs):
            self._resolve_handlers()
            self._do_validate(dl)

    def validate(self, dl=None, cbs: Iterable[Callback] | None = None) -> list[float]:
        """Loss and metrics on `dl` (default: the validation loader), as `[loss, *metrics]`."""
        from .callbacks.recorder import Recorder

        extra = list(cbs or ())
        recorder = getattr(self, "recorder", None)
        if not isinstance(recorder, Recorder) or recorder not in self.cbs:
            recorder = Recorder(train_metrics=False)
            extra.append(recorder)
        self._run_validation(dl, extra)
        return recorder.last_valid

    def get_preds(self, dl=None, with_input: bool = False, with_loss: bool = False,
                  act: Callable[[Tensor], Tensor] | str | None = "auto", cbs: Iterable[Callback] | None = None):
        """Predictions and targets over `dl` (default: validation), on the CPU.

        `act='auto'` applies softmax when the loss is a cross-entropy (or the loss's own
        `activation` method); pass `None` for raw outputs or any function.
        Returns `(preds, targets)`, plus inputs and per-item losses when asked.
        """
        from .callbacks.core import GatherPreds

        gather = GatherPreds(with_input=with_input, with_loss=with_loss)
        self._run_validation(dl, [gather, *(cbs or ())])
        preds, targs = gather.preds, gather.targets
        activation = resolve_activation(self.loss_func) if act == "auto" else act
        if activation is not None:
            preds = activation(preds)
        out = [preds, targs]
        if with_input:
            out.append(gather.inputs)
        if with_loss:
            out.append(gather.losses)
        return tuple(out)

    def predict(self, item: Any) -> tuple[Any, Tensor | int, Tensor]:
        """Predict one raw item (e.g. a uint8 image tensor, as stored in the dataset).

        Returns `(decoded, index, probabilities)`: the class name when the data knows its
        classes (`dls.vocab`), the predicted index and the probabilities.
        """
        x = self.preprocess(item)
        device = self.dls.device
        self.model.to(device).eval()
        with torch.no_grad():
            out = self.model(*x) if isinstance(x, (tuple, list)) else self.model(x)
        activation = resolve_activation(self.loss_func)
        probs = (activation(out) if activation is not None else out)[0].detach().cpu()
        idx = int(probs.argmax()) if probs.ndim == 1 else probs.argmax(-1)
        vocab = getattr(self.dls, "vocab", None)
        decoded = vocab[idx] if vocab is not None and isinstance(idx, int) else idx
        return decoded, idx, probs

    def preprocess(self, item: Any) -> Any:
        """Turn one raw item into a batch of one, on the device, the way the validation loader does."""
        valid = self.dls.valid
        if hasattr(valid, "encode"):
            return valid.encode(item)
        return to_device(item.unsqueeze(0) if isinstance(item, Tensor) else item, self.dls.device)


class _Handler:
    """A bound callback method that names its callback and event when it raises."""

    __slots__ = ("cb", "event", "method")

    def __init__(self, cb: Callback, event: str, method: Callable[[], None]):
        self.cb, self.event, self.method = cb, event, method

    def __call__(self) -> None:
        try:
            self.method()
        except Exception as e:
            if isinstance(e, CANCEL_EXCEPTIONS) or getattr(e, "_deepfit_noted", False):
                raise
            e.add_note(f"deepfit: raised in callback {type(self.cb).__name__} during event '{self.event}'")
            e._deepfit_noted = True
            raise


def resolve_activation(loss_func: Any) -> Callable[[Tensor], Tensor] | None:
    """The function that turns model outputs into probabilities for this loss, if known."""
    act = getattr(loss_func, "activation", None)
    if callable(act):
        return act
    if isinstance(loss_func, nn.CrossEntropyLoss) or getattr(loss_func, "is_cross_entropy", False):
        return lambda x: torch.softmax(x.float(), dim=-1)
    if isinstance(loss_func, nn.BCEWithLogitsLoss):
        return torch.sigmoid
    return None
