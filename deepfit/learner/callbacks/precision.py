"""Mixed-precision training: `torch.autocast` for the forward pass, dynamic loss scaling for float16.

How the notes' manual recipe maps onto this callback:

| the notes' recipe                                   | here                                                   |
| --------------------------------------------------- | ------------------------------------------------------ |
| an fp16 copy of the model for forward and backward  | the model keeps float32 weights; `torch.autocast` runs |
|                                                     | matmuls/convolutions in float16 (or bfloat16) on the   |
|                                                     | fly, so backward runs in the same low precision        |
| fp32 "master" weights, updated by the optimizer,    | the model's own float32 parameters *are* the master    |
| then copied back into the fp16 model                | weights: gradients arrive in float32 and the optimizer |
|                                                     | steps them directly; there is nothing to copy back     |
| batchnorm kept in fp32                              | parameters (BN's affine weights and running stats) stay|
|                                                     | float32; the BN kernels reduce in float32              |
| loss computed in fp32 (`loss(pred.float(), y)`)     | autocast covers the model call only (forward hooks on  |
|                                                     | the model); its float16/bfloat16 outputs are cast to   |
|                                                     | float32, so the loss (and MixUp's mixing) runs in fp32 |
| multiply the loss by a scale (e.g. 512) before      | `torch.amp.GradScaler.scale(loss)` in `before_backward`|
| backward, divide the gradients by it afterwards     | (`learn.loss` is put back unscaled in `after_backward`)|
|                                                     | and `scaler.unscale_(opt)` just before the step        |
| dynamic scale: on inf/NaN gradients halve the scale | `scaler.step(opt)` skips the step when any gradient is |
| and skip the step; after N clean steps double it    | inf/NaN, `scaler.update()` multiplies the scale by     |
|                                                     | `backoff_factor` (0.5) on overflow and by              |
|                                                     | `growth_factor` (2) after `growth_interval` clean steps|

bfloat16 has float32's exponent range, so it needs no loss scaling (no scaler by default).

The notes' names (lesson 12's `MixedPrecision(loss_scale=512, dynamic=True, max_loss_scale=2.**24,
div_factor=2., scale_wait=500)`) are accepted as keyword aliases of the `GradScaler` settings:

| the notes                 | here (`torch.amp.GradScaler`)                                             |
| ------------------------- | ------------------------------------------------------------------------- |
| `loss_scale=512` (number) | `init_scale=512`, loss scaling on                                         |
| `max_loss_scale=2.**24`   | `init_scale=2.**24`: the dynamic scale starts there, as in the notes (no  |
|                           | upper cap: GradScaler grows the scale without bound)                      |
| `div_factor=2.`           | `growth_factor=2.` and `backoff_factor=1/2.`                              |
| `scale_wait=500`          | `growth_interval=500` (clean steps before the scale grows)                |
| `dynamic=False`           | not offered: GradScaler always lowers the scale on inf/NaN gradients      |

Which dtype (`MixedPrecision(dtype="auto")`, also `dtype=None`): decided on the first batch by
`deepfit.learner.auto_precision.choose_precision`: bfloat16 on CUDA GPUs with native bf16, float16
with loss scaling on older ones; on a CPU, bfloat16 only when it has native bf16 instructions *and*
a timed probe of one forward+backward on the actual model and batch finds it faster (cached per
machine and model), otherwise float32, because emulated bf16 autocast is many times slower. The
choice and its reason are printed once (`learn.logger`) and kept as `.choice` (a `PrecisionChoice`;
`.choice.as_dict()` for run configs). `dtype=torch.bfloat16` (or `learn.to_bf16()`) forces bf16.

Contract with gradient clipping, gradient accumulation and anything else that touches gradients:

- `MixedPrecision.order = 90`. With loss scaling on, its `before_step` unscales the gradients (if
  not done yet), calls `scaler.step(opt)`, `scaler.update()`, `opt.zero_grad()`, then raises
  `CancelStep` so the Learner does not step a second time.
- Gradient accumulation raises `CancelStep` in `before_step` with an order below 90 on batches that
  must not step; MixedPrecision's `before_step` then does not run, gradients keep accumulating
  (all at the same scale, which only changes in `update()`) and nothing is unscaled.
- Anything that reads or changes gradient values (clipping, gradient-norm logging) first calls
  `unscale_gradients(learn)` (a no-op without loss scaling), in `before_step` with an order below
  90 (or in `after_backward` when no accumulation is used). Unscaling happens at most once per
  optimizer step; calling it again is harmless.
- A callback that rescales the loss for accumulation does it in `before_backward` with an order
  below 90 (the scaler multiplies whatever `learn.loss` holds at that point).
- Checkpoints save and restore `learn.mixed_precision.state_dict()` (the scaler's scale and growth
  tracker; `learn.mixed_precision.scaler` is the `GradScaler` itself).

Host syncs: `scaler.step` reads the overflow flag once per optimizer step; dynamic loss scaling
needs that decision on the host. bfloat16 training has no per-batch sync.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..auto_precision import (
    PRECISION_NAMES,
    PrecisionChoice,
    choose_precision,
    cpu_has_fast_bf16,
    cuda_has_bf16,
    parse_precision,
)
from ..events import Callback, CancelStep

_LOW = (torch.float16, torch.bfloat16)


def default_dtype(device: torch.device) -> torch.dtype:
    """The autocast dtype for `device` without a timed probe (float32 means off).

    CUDA: bfloat16 on GPUs with native bf16, else float16; CPU: bfloat16 when it has native bf16
    instructions, else float32. `precision="auto"` refines the CPU case with a probe (`choose_precision`).
    """
    if device.type == "cuda":
        return torch.bfloat16 if cuda_has_bf16(device) else torch.float16
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    if torch.amp.is_autocast_available(device.type):
        return torch.bfloat16
    return torch.float32


def to_float(x: Any) -> Any:
    """Cast float16/bfloat16 tensors (also inside tuples, lists and dicts) to float32."""
    if isinstance(x, Tensor):
        return x.float() if x.dtype in _LOW else x
    if isinstance(x, tuple) and hasattr(x, "_fields"):  # a namedtuple
        return type(x)(*(to_float(o) for o in x))
    if isinstance(x, (tuple, list)):
        return type(x)(to_float(o) for o in x)
    if isinstance(x, dict):
        return {k: to_float(v) for k, v in x.items()}
    return x


def _model_device(learn) -> torch.device:
    dls_device = getattr(learn.dls, "device", None)
    if dls_device is not None:
        return torch.device(dls_device)
    param = next(learn.model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


class MixedPrecision(Callback):
    """Forward pass and loss under `torch.autocast`; dynamic loss scaling when training in float16.

    Args:
        dtype: `torch.float16`, `torch.bfloat16`, `torch.float32` (off), their names `'fp16'`, `'bf16'`,
            `'fp32'`, or `'auto'`/`None` (chosen on the first batch: see the module docstring).
        loss_scale: use a `GradScaler`; `None` means "for float16 only". A number (the notes'
            `loss_scale=512`) turns scaling on and starts the scale there (`init_scale`).
        init_scale, growth_factor, backoff_factor, growth_interval: the `GradScaler`'s dynamic
            loss-scale settings (start scale, ×growth after `growth_interval` clean steps,
            ×backoff and skip the step on an inf/NaN gradient).
        cache: where `'auto'` caches its CPU probe: True (`$DEEPFIT_DATA/precision_probe.json`), a path,
            or False (probe every time).
        max_loss_scale, div_factor, scale_wait: the notes' names (see the module docstring):
            `init_scale`, `growth_factor` (and `backoff_factor = 1/div_factor`), `growth_interval`.

    After the first batch: `.dtype` (the dtype in use; float32 when off), `.device_type`, `.scaler`
    (a `torch.amp.GradScaler`, disabled when not scaling) and, for `'auto'`, `.choice`.
    Reachable as `learn.mixed_precision`.
    """

    order = 90

    def __init__(self, dtype: torch.dtype | str | None = "auto", loss_scale: bool | float | None = None,
                 init_scale: float = 2.0**16, growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000, cache: bool | str = True, *, max_loss_scale: float | None = None,
                 div_factor: float | None = None, scale_wait: int | None = None):
        try:
            self.requested_dtype = parse_precision(dtype)
        except ValueError:
            raise ValueError(f"MixedPrecision: dtype must be torch.float16, torch.bfloat16, torch.float32, "
                             f"'fp16', 'bf16', 'fp32' or 'auto', got {dtype!r}") from None
        self.cache = cache
        self.choice: PrecisionChoice | None = None
        self._choice_device: str | None = None
        self.scaler_kwargs = dict(init_scale=init_scale, growth_factor=growth_factor,
                                  backoff_factor=backoff_factor, growth_interval=growth_interval)
        self.loss_scale = _notes_scaler_names(self.scaler_kwargs, loss_scale, max_loss_scale, div_factor,
                                              scale_wait)
        self.dtype: torch.dtype | None = None
        self.device_type: str | None = None
        self.scaler: torch.amp.GradScaler | None = None
        self._pending_state: dict | None = None
        self._autocast: torch.autocast | None = None
        self._handles: list = []
        self._hooked = None
        self._armed = False
        self._in_fit = False
        self._unscaled_loss: Tensor | None = None
        self._grads_unscaled = False

    def __repr__(self) -> str:
        return f"MixedPrecision(dtype={self.requested_dtype})"

    # ---------------------------------------------------------------- set-up
    @property
    def enabled(self) -> bool:
        return self.dtype in _LOW

    @property
    def scaling(self) -> bool:
        return self.scaler is not None and self.scaler.is_enabled()

    def before_fit(self) -> None:
        self._setup()
        self._in_fit = True
        if self.decided:
            self._attach()

    @property
    def decided(self) -> bool:
        """Whether the dtype is known (`'auto'` decides on the first batch it sees)."""
        return self.dtype is not None

    def _setup(self, xb: Any = None) -> None:
        """Set `dtype` and the scaler; for `'auto'` without a choice yet, choose from the batch `xb` (or wait)."""
        device = _model_device(self.learn)
        dtype, loss_scale = self.requested_dtype, self.loss_scale
        if dtype == "auto":
            if self.choice is None or self._choice_device != device.type:
                if xb is None:
                    self.dtype = None
                    return
                self.choice = choose_precision(self.learn.model, xb, device, cache=self.cache)
                self._choice_device = device.type
                self.learn.logger(f"MixedPrecision: precision auto chose {self.choice}")
            dtype = self.choice.dtype
            loss_scale = self.choice.loss_scale if loss_scale is None else loss_scale
        if dtype in _LOW and not torch.amp.is_autocast_available(device.type):
            raise RuntimeError(f"MixedPrecision: torch.autocast is not available for device type {device.type!r}")
        self.dtype, self.device_type = dtype, device.type
        scale = dtype == torch.float16 if loss_scale is None else bool(loss_scale)
        scale = scale and dtype in _LOW
        if (self.scaler is None or self.scaler.is_enabled() != scale
                or getattr(self.scaler, "_device", device.type) != device.type):
            self.scaler = torch.amp.GradScaler(device.type, enabled=scale, **self.scaler_kwargs)
        if self._pending_state is not None and self.scaler.is_enabled():
            self.scaler.load_state_dict(self._pending_state)
            self._pending_state = None
        self._grads_unscaled = False

    # ---------------------------------------------------------------- forward and loss
    # Autocast is entered by a forward pre-hook on the model and left by a forward hook that runs even
    # when the forward raises (`always_call=True`), so the autocast state never outlives the model call.
    # `before_batch` arms the pre-hook for exactly one call; outside the Learner's batches the model
    # runs as usual.
    def _attach(self) -> None:
        model = self.learn.model
        if self._hooked is model:
            return
        self._detach()
        if not self.enabled:
            return
        self._handles = [model.register_forward_pre_hook(self._enter_autocast),
                         model.register_forward_hook(self._leave_autocast, prepend=True, always_call=True)]
        self._hooked = model

    def _detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles, self._hooked, self._armed = [], None, False

    def _enter_autocast(self, module, args) -> None:
        if self._armed:
            self._armed = False
            self._autocast = torch.autocast(self.device_type, dtype=self.dtype)
            self._autocast.__enter__()

    def _leave_autocast(self, module, args, output):
        if self._autocast is None:
            return None
        ctx, self._autocast = self._autocast, None
        ctx.__exit__(None, None, None)
        return to_float(output) if output is not None else None

    def before_validate(self) -> None:
        if self.dtype is None:
            self._setup()
        if self.decided:
            self._attach()

    def after_validate(self) -> None:
        if not self._in_fit:
            self._detach()

    def before_batch(self) -> None:
        if not self.decided:
            self._setup(self.learn.xb)
            self._attach()
        self._armed = self.enabled

    def after_pred(self) -> None:
        self._armed = False

    # ---------------------------------------------------------------- backward and step
    def before_backward(self) -> None:
        if self._grads_unscaled:
            raise RuntimeError("MixedPrecision: gradients were unscaled but the optimizer step was cancelled; "
                               "unscale only on batches that step (see deepfit.learner.callbacks.precision)")
        if self.scaling:
            self._unscaled_loss = self.learn.loss
            self.learn.loss = self.scaler.scale(self.learn.loss)

    def after_backward(self) -> None:
        if self._unscaled_loss is not None:
            self.learn.loss, self._unscaled_loss = self._unscaled_loss, None

    def unscale_grads(self) -> None:
        """Divide the gradients by the loss scale (once per optimizer step; no-op without scaling)."""
        if self.scaling and not self._grads_unscaled:
            self.scaler.unscale_(self.learn.opt)
            self._grads_unscaled = True

    def before_step(self) -> None:
        if not self.scaling:
            return
        self.unscale_grads()
        opt = self.learn.opt
        self.scaler.step(opt)
        self.scaler.update()
        opt.zero_grad(set_to_none=True)
        self._grads_unscaled = False
        raise CancelStep()

    def after_fit(self) -> None:
        self._in_fit = False
        self._detach()
        self._unscaled_loss = None

    after_cancel_fit = after_fit

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        """The loss scaler's state (scale, growth tracker); empty without loss scaling."""
        if self.scaler is not None:
            return self.scaler.state_dict()
        return dict(self._pending_state or {})

    def load_state_dict(self, state: dict) -> None:
        """Restore the loss scaler's state (applied at the next `before_fit` if no scaler exists yet)."""
        if not state:
            return
        if self.scaler is not None and self.scaler.is_enabled():
            self.scaler.load_state_dict(state)
        else:
            self._pending_state = dict(state)


_SCALER_DEFAULTS = dict(init_scale=2.0**16, growth_factor=2.0, backoff_factor=0.5, growth_interval=2000)


def _notes_scaler_names(kwargs: dict, loss_scale: bool | float | None, max_loss_scale: float | None,
                        div_factor: float | None, scale_wait: int | None) -> bool | None:
    """Write the notes' loss-scale names into the GradScaler `kwargs`; returns the `loss_scale` switch."""
    asked = {}
    if loss_scale is not None and not isinstance(loss_scale, bool):
        asked["init_scale"] = ("loss_scale", float(loss_scale))
        loss_scale = True
    if max_loss_scale is not None:
        if "init_scale" in asked:
            raise ValueError("MixedPrecision: loss_scale=<number> and max_loss_scale both set the starting scale; "
                             "give one")
        asked["init_scale"] = ("max_loss_scale", float(max_loss_scale))
    if div_factor is not None:
        if div_factor <= 1:
            raise ValueError(f"MixedPrecision: div_factor must be > 1, got {div_factor}")
        asked["growth_factor"] = ("div_factor", float(div_factor))
        asked["backoff_factor"] = ("div_factor", 1.0 / div_factor)
    if scale_wait is not None:
        asked["growth_interval"] = ("scale_wait", int(scale_wait))
    for key, (alias, value) in asked.items():
        if kwargs[key] not in (_SCALER_DEFAULTS[key], value):
            raise ValueError(f"MixedPrecision: {alias} and {key}={kwargs[key]} disagree; give one of them")
        kwargs[key] = value
    return loss_scale


def unscale_gradients(learn) -> None:
    """Unscale `learn`'s gradients if a loss-scaling `MixedPrecision` is attached (else do nothing).

    Call this before reading gradient values (clipping, norms); see the module docstring.
    """
    mp = getattr(learn, "mixed_precision", None)
    if isinstance(mp, MixedPrecision) and mp in learn.cbs:
        mp.unscale_grads()


def set_precision(learn, dtype: torch.dtype | str | None, **kwargs) -> Any:
    """Replace any attached `MixedPrecision` by `MixedPrecision(dtype, **kwargs)`; float32 just removes it.

    `dtype`: `'auto'` (or None), `'bf16'`, `'fp16'`, `'fp32'` or a torch dtype.
    """
    dtype = parse_precision(dtype)
    learn.remove_cb(MixedPrecision)
    if dtype != torch.float32:
        learn.add_cb(MixedPrecision(dtype=dtype, **kwargs))
    return learn


def decide_precision(learn, xb: Any = None) -> dict[str, Any]:
    """Make an attached `'auto'` `MixedPrecision` choose now (not at the first batch); return `precision_record`.

    `xb` is the batch to probe with; by default the first batch of `learn.dls.valid` (reading it
    draws no random augmentation). For a run's config, written before training starts.
    """
    mp = getattr(learn, "mixed_precision", None)
    if isinstance(mp, MixedPrecision) and mp in learn.cbs and mp.requested_dtype == "auto" and mp.choice is None:
        mp.learn = learn
        if xb is None:
            batch = next(iter(learn.dls.valid))
            xb = batch[0] if isinstance(batch, (tuple, list)) else batch
        mp._setup(xb)
    return precision_record(learn)


def precision_record(learn) -> dict[str, Any]:
    """What `learn` trains in, for a run's config: `{'precision', 'loss_scale', 'reason'[, 'probe_seconds']}`.

    Before an `'auto'` callback has seen a batch the precision is `'auto'` (undecided).
    """
    mp = getattr(learn, "mixed_precision", None)
    if not isinstance(mp, MixedPrecision) or mp not in learn.cbs:
        return {"precision": "fp32", "loss_scale": False, "reason": "no MixedPrecision callback"}
    requested = mp.requested_dtype
    if requested != "auto":
        scale = requested == torch.float16 if mp.loss_scale is None else bool(mp.loss_scale)
        return {"precision": PRECISION_NAMES[requested], "loss_scale": scale and requested in _LOW,
                "reason": "requested"}
    if mp.choice is None:
        return {"precision": "auto", "loss_scale": False, "reason": "not decided yet (decides on the first batch)"}
    out = mp.choice.as_dict()
    if mp.dtype is not None:
        out["loss_scale"] = mp.scaling
    return out
