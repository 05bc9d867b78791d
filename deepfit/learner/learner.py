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
from ..distributed import launched_by_torchrun
from ..interpret.summary import summary as layer_summary
from .callbacks.core import DeviceCallback, GatherPreds, TrainEvalCallback
from .callbacks.lr_finder import lr_find
from .callbacks.precision import set_precision
from .callbacks.progress import ProgressCallback
from .callbacks.recorder import Recorder
from .callbacks.schedule import fit_flat_cos, fit_one_cycle, fit_sgdr
from .checkpoint import load_checkpoint, prepare_resume, save_checkpoint
from .checks import NaNLossCheck, check_model_data
from .distributed import distrib_ctx
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
from .export import export_learner, to_onnx, to_torchscript
from .freeze import check_bn_freeze, freeze, freeze_to
from .metrics import Metric, as_metric
from .optim import build_param_groups, default_opt, layer_groups, lr_for_groups, max_lr, n_layer_groups, set_hyper
from .probs import decode_prediction, default_loss, flat_bce, to_probs
from .tta import tta


def _default_opt(params, lr: float) -> torch.optim.Optimizer:
    """Adam with decoupled weight decay 0.01 (see `optim.default_opt`)."""
    return default_opt(params, lr=lr)


class Learner:
    """Groups a model, its data, a loss, an optimizer and callbacks, and trains them.

    Args:
        model: any `nn.Module`. Its forward takes `xb` (or `*xb` when a batch's input is a tuple).
        dls: a `DataLoaders` (with `.train`, `.valid` and `.device`).
        loss_func: `(pred, target) -> scalar tensor`; defaults to `nn.CrossEntropyLoss()`, or to
            `BCEWithLogitsFlat()` when the data is multi-label (`dls.multi_label`). A plain
            `nn.BCEWithLogitsLoss` is used as `BCEWithLogitsFlat` (same loss, and it takes the 0/1
            integer labels of a single-output binary classifier; see `probs.flat_bce`).
        opt_func: `(params_or_groups, lr) -> torch.optim.Optimizer`; defaults to Adam with decoupled
            weight decay 0.01 (`optim.Adam`). Any `torch.optim` class works (`torch.optim.SGD`...).
        lr: default learning rate for `fit`: a float, or `slice(lo, hi)`/`slice(hi)` across layer groups.
        metrics: functions `(pred, target) -> tensor` or `Metric` objects, computed on validation.
        cbs: extra callbacks kept for every `fit`.
        default_cbs: add the default callbacks (train/eval switching, device placement, recorder,
            progress). Each can be removed afterwards with `remove_cb`.
        path: folder where `save`, `export` and plots write by default.
        splitter: `model -> list of layer groups` (modules or parameter lists); default:
            `optim.default_splitter` (body and head of an `nn.Sequential`, else one group) for
            learning rates, and the model's top-level children for `freeze`/`freeze_to` (see `freeze.py`).
        wd: weight decay for every group that takes it; `None` keeps the optimizer's default.
        wd_bn_bias: also decay biases and normalization weights (off by default).
        train_bn: `freeze`/`freeze_to` leave batchnorm weights trainable in frozen groups.
        bn_freeze: which batchnorm layers stay in eval mode while training (running statistics fixed):
            `'frozen'` (those of frozen groups, the default), `True` (all, the notes' `learn.bn_freeze=True`)
            or `False` (none).
        precision: None (plain float32, no callback), `'auto'` (bf16/fp16 where the hardware runs it
            fast, chosen on the first batch: see `callbacks.precision`), `'bf16'`, `'fp16'` or `'fp32'`.
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
        wd: float | None = None,
        wd_bn_bias: bool = False,
        train_bn: bool = True,
        bn_freeze: bool | str = "frozen",
        precision: str | torch.dtype | None = None,
    ):
        self.model = model
        self.dls = dls
        self.loss_func = flat_bce(loss_func) if loss_func is not None else default_loss(dls)
        self.opt_func = opt_func
        self.lr = lr
        if callable(metrics) or isinstance(metrics, Metric):
            metrics = [metrics]
        self.metrics: list[Metric] = [as_metric(m) for m in metrics]
        self.path = Path(path)
        self.splitter = splitter
        self.wd, self.wd_bn_bias, self.train_bn = wd, wd_bn_bias, train_bn
        self.bn_freeze = check_bn_freeze(bn_freeze)
        self.frozen_idx = 0
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
        self._resume_point = None  # set by fit(resume=...), see checkpoint.py
        self.resuming = self._fitting = False
        self.check_inputs = True  # fit runs `check()` once per model and data (see checks.py)
        self.check_nan = True  # fit stops at the first non-finite training loss (checks.NaNLossCheck)
        self._checked: tuple[int, int] | None = None
        self.logger: Callable[[str], None] = print
        self._table: dict[str, list[Callable[[], None]]] = {}
        self._tables: dict[str, dict[str, list[Callable[[], None]]]] = {}
        if default_cbs:
            self.add_cbs([TrainEvalCallback(), DeviceCallback(), Recorder(), ProgressCallback()])
        self.add_cbs(cbs)
        if precision is not None:
            set_precision(self, precision)

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
        """The model's parameters split into layer groups by `splitter` (default: `optim.default_splitter`)."""
        return layer_groups(self.model, self.splitter)

    def create_opt(self, lr: float | slice | None = None) -> torch.optim.Optimizer:
        """Build `self.opt` over the layer groups, with per-group `lr` and weight decay (see `optim.py`)."""
        lr = self.lr if lr is None else lr
        groups = build_param_groups(self.model, self.parameter_groups(), lr, wd=self.wd, wd_bn_bias=self.wd_bn_bias)
        self.opt = self.opt_func(groups, lr=max_lr(lr))
        return self.opt

    def set_lr(self, lr: float | slice) -> None:
        """Set the learning rate of every layer group (a float, or a `slice` spread across groups)."""
        set_hyper(self.opt, "lr", lr if isinstance(lr, (int, float)) else _group_lrs(self.opt, lr))

    # ------------------------------------------------------------------ schedules, lr_find, freezing
    def fit_one_cycle(self, n_epoch: int, lr_max: float | slice | None = None, div: float = 25.0,
                      div_final: float = 1e5, pct_start: float = 0.25, wd: float | None = None,
                      moms: tuple[float, float, float] | None = (0.95, 0.85, 0.95),
                      cbs: Iterable[Callback] | None = None, reset_opt: bool = False, **fit_kwargs) -> None:
        """1cycle training (see `callbacks.schedule.fit_one_cycle`)."""
        fit_one_cycle(self, n_epoch, lr_max, div=div, div_final=div_final, pct_start=pct_start, wd=wd, moms=moms,
                      cbs=cbs, reset_opt=reset_opt, **fit_kwargs)

    def fit_flat_cos(self, n_epoch: int, lr: float | slice | None = None, div_final: float = 1e5,
                     pct_start: float = 0.75, wd: float | None = None, cbs: Iterable[Callback] | None = None,
                     reset_opt: bool = False, **fit_kwargs) -> None:
        """Flat then cosine-annealed learning rate (see `callbacks.schedule.fit_flat_cos`)."""
        fit_flat_cos(self, n_epoch, lr, div_final=div_final, pct_start=pct_start, wd=wd, cbs=cbs,
                     reset_opt=reset_opt, **fit_kwargs)

    def fit_sgdr(self, n_cycles: int, cycle_len: int, lr_max: float | slice | None = None, cycle_mult: int = 1,
                 lr_min: float = 0.0, wd: float | None = None, save_name: str | None = None,
                 cbs: Iterable[Callback] | None = None, reset_opt: bool = False, **fit_kwargs) -> None:
        """Cosine annealing with warm restarts (see `callbacks.schedule.fit_sgdr`)."""
        fit_sgdr(self, n_cycles, cycle_len, lr_max, cycle_mult=cycle_mult, lr_min=lr_min, wd=wd,
                 save_name=save_name, cbs=cbs, reset_opt=reset_opt, **fit_kwargs)

    def lr_find(self, start_lr: float = 1e-7, end_lr: float = 10.0, num_it: int = 100, stop_div: bool = True,
                plot: str | Path | None = None, progress: bool = True):
        """Learning-rate range test; leaves the model and optimizer as they were (see `callbacks.lr_finder`)."""
        return lr_find(self, start_lr=start_lr, end_lr=end_lr, num_it=num_it, stop_div=stop_div, plot=plot,
                       progress=progress)

    def freeze_to(self, n: int, train_bn: bool | None = None) -> int:
        """Freeze the layer groups before `n` (negative counts from the end); see `freeze.py`."""
        return freeze_to(self, n, train_bn=train_bn)

    def freeze(self, train_bn: bool | None = None) -> int:
        """Freeze every layer group before the last one holding parameters (the head); see `freeze.py`."""
        return freeze(self, train_bn=train_bn)

    def unfreeze(self) -> int:
        """Make every layer group trainable."""
        return self.freeze_to(0)

    # ------------------------------------------------------------------ precision
    def to_fp16(self, **kwargs) -> Learner:
        """Train in float16 mixed precision with dynamic loss scaling (`MixedPrecision(torch.float16, **kwargs)`)."""
        return set_precision(self, torch.float16, **kwargs)

    def to_bf16(self, **kwargs) -> Learner:
        """Train in bfloat16 mixed precision (`MixedPrecision(torch.bfloat16, **kwargs)`), even on a slow-bf16 CPU."""
        return set_precision(self, torch.bfloat16, **kwargs)

    def to_fp32(self) -> Learner:
        """Back to plain float32 training (removes any `MixedPrecision` callback)."""
        return set_precision(self, torch.float32)

    # ------------------------------------------------------------------ the loop
    def fit(self, n_epoch: int, lr: float | None = None, cbs: Iterable[Callback] | None = None,
            reset_opt: bool = False, resume: str | Path | None = None) -> None:
        """Train for `n_epoch` epochs. Callbacks in `cbs` are attached for this call only.

        `resume` (a checkpoint name or path, or `'last'` for the newest in `path/models`) continues the
        run the checkpoint was taken from, mid-epoch included (see `checkpoint.py`).
        Unless `learn.check_nan` is False, a `NaNLossCheck` is attached for the call when none is: the first
        NaN/inf training loss stops it with `NonFiniteLossError` (see `checks.py`).
        """
        if n_epoch < 0:
            raise ValueError(f"n_epoch must be >= 0, got {n_epoch}")

        if launched_by_torchrun() and not getattr(self, "_in_distrib", False):
            with self.distrib_ctx():
                return self.fit(n_epoch, lr=lr, cbs=cbs, reset_opt=reset_opt, resume=resume)
        cbs = list(cbs or ())
        if self.check_nan and not any(isinstance(c, NaNLossCheck) for c in [*self.cbs, *cbs]):
            cbs.append(NaNLossCheck())
        with self.added_cbs(cbs):
            if reset_opt or self.opt is None:
                self.create_opt(lr)
            if lr is not None:
                self.set_lr(lr)
            self.n_epoch = n_epoch
            if resume is not None:
                self._resume_point = prepare_resume(self, resume)
            self.resuming, self._fitting = resume is not None, True
            self._resolve_handlers()
            try:
                self._with_events(self._do_fit, "fit", CancelFit)
            finally:
                self.resuming, self._fitting, self._resume_point = False, False, None

    def _do_fit(self) -> None:
        if self.check_inputs and self._checked != (id(self.model), id(self.dls)):
            self.check()
        start = self._resume_point.start(self) if self._resume_point is not None else 0
        for epoch in range(start, self.n_epoch):
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
        start, batches = 0, self.dl
        if self._resume_point is not None and self.training:
            start, batches = self._resume_point.take_batches(self, self.dl)
        for i, batch in enumerate(batches, start):
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

    def distrib_ctx(self, sync_bn: bool = False, find_unused_parameters: bool = False):
        """Context in which `fit` runs under DistributedDataParallel when launched by torchrun (see
        `deepfit.distributed`); a no-op in a single process. `fit` enters it by itself when needed."""
        return distrib_ctx(self, sync_bn=sync_bn, find_unused_parameters=find_unused_parameters)

    # ------------------------------------------------------------------ evaluation
    def _run_validation(self, dl, cbs: Iterable[Callback] | None) -> None:
        with self.added_cbs(cbs):
            self._resolve_handlers()
            self._do_validate(dl)

    def validate(self, dl=None, cbs: Iterable[Callback] | None = None) -> list[float]:
        """Loss and metrics on `dl` (default: the validation loader), as `[loss, *metrics]`."""
        extra = list(cbs or ())
        recorder = getattr(self, "recorder", None)
        if not isinstance(recorder, Recorder) or recorder not in self.cbs:
            recorder = Recorder(train_metrics=False)
            extra.append(recorder)
        self._run_validation(dl, extra)
        return recorder.last_valid

    def get_preds(self, dl=None, with_input: bool = False, with_loss: bool = False,
                  act: Callable[[Tensor], Tensor] | str | None = "auto", cbs: Iterable[Callback] | None = None,
                  with_tta: bool = False):
        """Predictions and targets over `dl` (default: validation), on the CPU.

        `act='auto'` turns outputs into probabilities (see `probs.to_probs`): the loss's activation
        (softmax for a cross-entropy, sigmoid for a binary/multi-label one, `exp` for `NLLLoss`), and no
        second softmax on outputs that already are probabilities or log-probabilities (models ending in
        `softmax`/`log_softmax`); pass `None` for raw outputs or any function.
        Returns `(preds, targets)`, plus inputs and per-item losses when asked.
        `with_tta=True` returns `self.tta(dl=dl)` instead (test-time augmentation, see `tta.py`).
        """
        if with_tta:
            if with_input or with_loss or cbs:
                raise ValueError("get_preds: with_tta cannot be combined with with_input, with_loss or cbs")
            return self.tta(dl=dl, act=act)

        gather = GatherPreds(with_input=with_input, with_loss=with_loss)
        self._run_validation(dl, [gather, *(cbs or ())])
        preds, targs = gather.preds, gather.targets
        out = [to_probs(preds, self.loss_func, act), targs]
        if with_input:
            out.append(gather.inputs)
        if with_loss:
            out.append(gather.losses)
        return tuple(out)

    def tta(self, n: int = 4, dl=None, tfms=None, beta: float | None = None, seed: int = 0, act="auto"):
        """Test-time augmentation: `(probabilities, targets)` averaged over the plain pass over `dl`
        (default: validation) and `n` passes with random flips/crops (see `deepfit.learner.tta`)."""
        return tta(self, dl=dl, n=n, tfms=tfms, beta=beta, seed=seed, act=act)

    def predict(self, item: Any, thresh: float | None = None) -> tuple[Any, Any, Tensor]:
        """Predict one raw item (e.g. a uint8 image tensor, as stored in the dataset, or a text).

        Returns `(decoded, index, probabilities)`: the class name when the data knows its
        classes (`dls.vocab`), the predicted index and the probabilities. With a multi-label loss
        (`BCEWithLogitsFlat`, `BCEWithLogitsLoss`): every label whose probability is above `thresh`
        (default: the loss's `thresh`, else 0.5) as a list, and the boolean mask as the index.
        A single-output binary classifier gives class 1 above the threshold, else 0.
        """
        x = self.preprocess(item)
        device = self.dls.device
        self.model.to(device).eval()
        with torch.no_grad():
            out = self.model(*x) if isinstance(x, (tuple, list)) else self.model(x)
        probs = to_probs(out, self.loss_func)[0].detach().cpu()
        decoded, idx = decode_prediction(probs, self.loss_func, getattr(self.dls, "vocab", None), thresh)
        return decoded, idx, probs

    def preprocess(self, item: Any) -> Any:
        """Turn one raw item into a batch of one, on the device, the way the validation loader does.

        A text (a `str`) is tokenized and numericalized when the learner knows its tokenizer
        (`dls.tokenizer`) and token vocabulary (`learn.text_vocab` or `dls.text_vocab`).
        """
        valid = self.dls.valid
        if hasattr(valid, "encode"):
            return valid.encode(item)
        if isinstance(item, str):
            item = self._numericalize(item)
        if isinstance(item, Tensor):
            item = item.unsqueeze(0)
            if item.ndim == 2 and getattr(valid, "batch_first", True) is False:
                item = item.t()  # a sequence-first loader's layout: (seq_len, 1)
        return to_device(item, self.dls.device)

    def _numericalize(self, text: str) -> Tensor:
        tokenizer = getattr(self.dls, "tokenizer", None)
        vocab = getattr(self, "text_vocab", None) or getattr(self.dls, "text_vocab", None)
        if tokenizer is None or vocab is None:
            raise ValueError("predict: a text needs the tokenizer (dls.tokenizer) and the token vocabulary "
                             "(learn.text_vocab or dls.text_vocab); or pass token ids as a tensor")
        return vocab.numericalize(tokenizer.tokenize1(text))

    def summary(self, xb: Any = None, print_it: bool = True) -> str:
        """Table of layers (name, type, output shape, params, trainable) for one real batch; see
        `deepfit.interpret.summary`."""
        return layer_summary(self, xb=xb, print_it=print_it)

    def check(self) -> None:
        """Run the model on one training batch and raise a clear error on a model/data mismatch (checks.py)."""
        check_model_data(self)
        self._checked = (id(self.model), id(self.dls))

    # ------------------------------------------------------------------ saving (checkpoint.py, export.py)
    def save(self, name: str | Path, with_opt: bool = True) -> Path:
        """Checkpoint model, optimizer, position, RNGs and history atomically to `path/models/<name>.pt`."""
        return save_checkpoint(self, name, with_opt=with_opt)

    def load(self, name: str | Path, with_opt: bool = True, strict: bool = True, allow_pickle: bool = False):
        """Load a checkpoint written by `save` (tensors only; pickle refused unless `allow_pickle=True`)."""
        load_checkpoint(self, name, with_opt=with_opt, strict=strict, allow_pickle=allow_pickle)
        return self

    def export(self, path: str | Path, arch: str | None = None, format: str = "auto", example: Tensor | None = None,
               **kwargs) -> Path:
        """Write an inference folder that `load_learner` reads without unpickling anything (see `export.py`).

        `format='auto'` writes safetensors weights + `learner.json` when the model registry can rebuild the model,
        else an ONNX program (`model.onnx`, traced on `example` or one validation batch); `'registry'` or
        `'onnx'` force one. `kwargs`: `text_vocab`, `tokenizer` for text models, `item_tfms` for images.
        """
        return export_learner(self, path, arch=arch, format=format, example=example, **kwargs)

    def to_onnx(self, path: str | Path, example: Tensor | None = None, **kwargs) -> Path:
        """Export the model to ONNX (dynamic batch size), traced on `example` or one validation item."""
        return to_onnx(self, path, example=example, **kwargs)

    def to_torchscript(self, path: str | Path, example: Tensor | None = None) -> Path:
        """Export the model as a traced TorchScript file."""
        return to_torchscript(self, path, example=example)


def _group_lrs(opt: torch.optim.Optimizer, lr) -> list[float]:
    return lr_for_groups(lr, n_layer_groups(opt))


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
