"""Which precision to train in: `choose_precision(model, xb, device)` for `precision="auto"`.

The rule:

- CUDA GPU with native bfloat16 (compute capability 8.0 or newer, or ROCm reporting bf16): bfloat16
  autocast, no loss scaling.
- Older CUDA GPU: float16 autocast with dynamic loss scaling.
- CPU without native bf16 instructions (x86 AVX512-BF16/AMX-BF16, Arm BF16): float32. Emulated bf16
  autocast is many times slower than float32 (10-27× for a small ResNet on an AVX2-only AMD EPYC).
- CPU with native bf16: a timed probe decides. A copy of the model runs one forward and backward on
  the actual batch in float32 and under bf16 autocast, alternately, `reps` times each; bf16 is chosen
  when its best time beats float32's by at least `MIN_SPEEDUP` (native bf16 is not always faster:
  small or memory-bound models can lose). The result is cached per machine, torch version, thread
  count, model and batch shape in `<cache_dir>/precision_probe.json` (`$DEEPFIT_DATA`, default
  `~/.cache/deepfit`), so later runs skip the probe.
- Any other device: float32.

The choice comes back as a `PrecisionChoice` (dtype, loss scaling and the reason in words), which
`MixedPrecision(dtype="auto")` prints once and keeps as `.choice` for run configs.
"""

from __future__ import annotations

import copy
import hashlib
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
PRECISION_NAMES: dict[torch.dtype, str] = {v: k for k, v in PRECISIONS.items()}
#: bf16 must be at least this much faster than fp32 in the probe to be chosen.
MIN_SPEEDUP = 1.1
CACHE_FILE = "precision_probe.json"
#: The clock the probe reads (a module attribute so tests can replace it).
probe_clock: Callable[[], float] = time.perf_counter


@dataclass(frozen=True)
class PrecisionChoice:
    """What `precision="auto"` chose: the autocast `dtype` (float32: off), `loss_scale`, and why."""

    dtype: torch.dtype
    loss_scale: bool
    reason: str
    fp32_seconds: float | None = None
    bf16_seconds: float | None = None

    @property
    def name(self) -> str:
        return PRECISION_NAMES[self.dtype]

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"precision": self.name, "loss_scale": self.loss_scale, "reason": self.reason}
        if self.fp32_seconds is not None:
            out["probe_seconds"] = {"fp32": round(self.fp32_seconds, 6), "bf16": round(self.bf16_seconds or 0.0, 6)}
        return out

    def __str__(self) -> str:
        scale = " with loss scaling" if self.loss_scale else ""
        return f"{self.name} ({_LONG[self.dtype]}){scale}: {self.reason}"


_LONG = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def parse_precision(value: str | torch.dtype | None) -> str | torch.dtype:
    """`'auto'`, or the dtype for `'fp32'`/`'bf16'`/`'fp16'` (or a dtype itself). None means `'auto'`."""
    if value is None or value == "auto":
        return "auto"
    if isinstance(value, torch.dtype):
        if value not in PRECISION_NAMES:
            raise ValueError(f"precision must be one of auto, {', '.join(PRECISIONS)}, got {value}")
        return value
    if isinstance(value, str) and value.lower() in PRECISIONS:
        return PRECISIONS[value.lower()]
    raise ValueError(f"precision must be one of auto, {', '.join(PRECISIONS)}, got {value!r}")


# ---------------------------------------------------------------------------------------------- hardware
def cpu_has_fast_bf16() -> bool:
    """Whether this CPU runs bfloat16 natively (x86 AVX512-BF16/AMX-BF16, Arm BF16)."""
    get_cap = getattr(getattr(torch._C, "_cpu", None), "_get_cpu_capability", None)
    if get_cap is not None:
        try:
            cap = get_cap()
            if cap.get("avx512_bf16") or cap.get("amx_bf16"):
                return True
            if cap.get("architecture", "x86_64") in ("x86_64", "AMD64"):
                return False
        except Exception:
            pass
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(f.read().split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def cuda_has_bf16(device: torch.device) -> bool:
    """Native bfloat16 on this CUDA (or ROCm) device: compute capability 8.0+ (Ampere and newer)."""
    if getattr(torch.version, "hip", None):
        return bool(torch.cuda.is_bf16_supported())
    return torch.cuda.get_device_capability(device) >= (8, 0)


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ---------------------------------------------------------------------------------------------- probe
def _scalar(out: Any) -> Tensor:
    """A scalar to backpropagate from any model output (tensors inside tuples, lists and dicts)."""
    if isinstance(out, Tensor):
        return out.float().mean() if out.is_floating_point() and out.requires_grad else out.new_zeros(())
    items = out.values() if isinstance(out, dict) else out if isinstance(out, (tuple, list)) else ()
    parts = [_scalar(o) for o in items]
    return sum(parts[1:], parts[0]) if parts else torch.zeros(())


def time_train_step(model: nn.Module, xb: Any, dtype: torch.dtype, device_type: str,
                    timer: Callable[[], float] | None = None) -> float:
    """Seconds for one forward and backward of `model` on `xb` under `dtype` autocast (float32: none).

    `timer` defaults to `probe_clock` (`time.perf_counter`).
    """
    timer = timer if timer is not None else probe_clock
    args = xb if isinstance(xb, (tuple, list)) else (xb,)
    start = timer()
    with torch.enable_grad():
        with torch.autocast(device_type, dtype=dtype, enabled=dtype != torch.float32):
            out = model(*args)
        _scalar(out).backward()
    if device_type == "cuda":
        torch.cuda.synchronize()
    seconds = timer() - start
    model.zero_grad(set_to_none=True)
    return seconds


def probe_bf16(model: nn.Module, xb: Any, device_type: str = "cpu", reps: int = 3) -> tuple[float, float]:
    """`(fp32 seconds, bf16 seconds)`: the best of `reps` alternated forward+backward steps on a copy of `model`.

    One step of each is run first as a warm-up (and fewer reps are used when that step is slow).
    """
    probe = copy.deepcopy(model).train()
    warm = time_train_step(probe, xb, torch.float32, device_type)
    time_train_step(probe, xb, torch.bfloat16, device_type)
    reps = 1 if warm > 2.0 else max(1, reps)
    t32, t16 = [], []
    for _ in range(reps):
        t32.append(time_train_step(probe, xb, torch.float32, device_type))
        t16.append(time_train_step(probe, xb, torch.bfloat16, device_type))
    return min(t32), min(t16)


def _shape_of(xb: Any) -> Any:
    if isinstance(xb, Tensor):
        layout = "channels_last" if xb.ndim == 4 and xb.is_contiguous(memory_format=torch.channels_last) \
            and not xb.is_contiguous() else "contiguous"
        return [list(xb.shape), str(xb.dtype), layout]
    if isinstance(xb, (tuple, list)):
        return [_shape_of(o) for o in xb]
    return type(xb).__name__


def probe_key(model: nn.Module, xb: Any) -> str:
    """What the probe's result depends on: machine, torch, threads, the model's structure and the batch shape."""
    layers = [(name, type(m).__name__) for name, m in model.named_modules()]
    params = [(name, list(p.shape)) for name, p in model.named_parameters()]
    desc = json.dumps([cpu_name(), torch.__version__, torch.get_num_threads(), type(model).__name__, layers,
                       params, _shape_of(xb)], default=str)
    return hashlib.sha256(desc.encode()).hexdigest()[:24]


def _cache_path(cache: bool | str | Path) -> Path | None:
    if cache is False:
        return None
    if cache is True:
        from ..data.download import cache_dir

        return cache_dir() / CACHE_FILE
    return Path(cache)


def _read_cache(path: Path | None) -> dict:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(path: Path | None, key: str, entry: dict) -> None:
    if path is None:
        return
    from ..safe_io import atomic_write_text

    data = _read_cache(path)
    data[key] = entry
    try:
        atomic_write_text(json.dumps(data, indent=1, sort_keys=True), path)
    except OSError:
        pass  # a read-only home: probe again next time


def _cpu_choice(model: nn.Module, xb: Any, cache: bool | str | Path, reps: int) -> PrecisionChoice:
    if not cpu_has_fast_bf16():
        return PrecisionChoice(torch.float32, False, "this CPU has no native bf16 instructions (avx512_bf16, "
                               "amx_bf16); emulated bf16 is slower than float32")
    path = _cache_path(cache)
    key = probe_key(model, xb)
    entry = _read_cache(path).get(key)
    cached = isinstance(entry, dict) and {"fp32", "bf16"} <= set(entry)
    if cached:
        t32, t16 = float(entry["fp32"]), float(entry["bf16"])
    else:
        try:
            t32, t16 = probe_bf16(model, xb, "cpu", reps)
        except Exception as e:  # a model the probe cannot run: stay safe
            return PrecisionChoice(torch.float32, False, f"the bf16 probe failed ({type(e).__name__}: {e})")
        _write_cache(path, key, {"fp32": t32, "bf16": t16, "cpu": cpu_name(), "torch": torch.__version__,
                                 "threads": torch.get_num_threads(), "when": time.strftime("%Y-%m-%d %H:%M:%S")})
    speedup = t32 / t16 if t16 > 0 else float("inf")
    source = "cached probe" if cached else "probe"
    timing = f"{source}: a training step takes {t32 * 1e3:.1f} ms in fp32, {t16 * 1e3:.1f} ms in bf16"
    if speedup >= MIN_SPEEDUP:
        return PrecisionChoice(torch.bfloat16, False, f"native bf16 CPU, {speedup:.2f}× faster ({timing})", t32, t16)
    return PrecisionChoice(torch.float32, False, f"native bf16 CPU, but bf16 is not faster here "
                           f"({speedup:.2f}×, needs {MIN_SPEEDUP}×; {timing})", t32, t16)


def choose_precision(model: nn.Module, xb: Any, device: torch.device | str, cache: bool | str | Path = True,
                     reps: int = 3) -> PrecisionChoice:
    """The precision to train `model` on batches like `xb` on `device` (see the module docstring).

    `cache`: True for `<cache_dir>/precision_probe.json`, a path for another file, False to always probe.
    """
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        if cuda_has_bf16(device):
            return PrecisionChoice(torch.bfloat16, False, f"CUDA GPU with native bf16 ({name})")
        return PrecisionChoice(torch.float16, True, f"CUDA GPU without native bf16 ({name}): fp16 needs loss scaling")
    if device.type == "cpu":
        return _cpu_choice(model, xb, cache, reps)
    return PrecisionChoice(torch.float32, False, f"auto uses low precision only on CUDA and bf16 CPUs, not on "
                           f"{device.type}")


__all__ = ["MIN_SPEEDUP", "PRECISIONS", "PrecisionChoice", "choose_precision", "cpu_has_fast_bf16", "cuda_has_bf16",
           "parse_precision", "probe_bf16", "probe_key", "time_train_step"]
