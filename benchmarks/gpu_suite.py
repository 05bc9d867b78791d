"""The GPU suite: CUDA tests, training throughput by precision, Fashion-MNIST time to 94%, torch.compile on/off.

    python benchmarks/gpu_suite.py --pack-data     # once, where Fashion-MNIST is installed: see "Data" below
    python benchmarks/gpu_suite.py [--out FILE] [--budget 420] [--smoke] [--stages tests,throughput,fmnist,compile]

Stages (each reports into one JSON object, printed as the last line of stdout and written to `--out`):

1. `tests`: `pytest tests/cuda -m cuda` (AMP fp16 with GradScaler and a skipped inf step, bf16, channels_last,
   pinned batches, MixUp and TTA on the device, crash-and-resume bit-exactness with deterministic
   algorithms, export on the GPU loaded on the CPU, DDP with nccl on one process): passed/failed/skipped.
2. `throughput`: training items/s in float32, float16 (loss-scaled) and bfloat16 autocast for `xresnet50` at
   128 px (images/s, channels-last, synthetic images) and the AWD-LSTM language model at its default sizes
   (tokens/s, synthetic token ids), through deepfit's Learner, timed after warm-up batches.
3. `fmnist`: Fashion-MNIST (validated on the 10,000 test images) with the best recipe (`deepfit.recipes`'s
   `fmnist_fast` enlarged for a GPU; a one-cycle XResNet when the recipes module is absent): seconds of
   training until the test accuracy first reaches 94%, per-epoch accuracies.
4. `compile`: the Fashion-MNIST recipe's model trained eagerly and under `torch.compile`: items/s of each,
   seconds of the first compiled steps (compilation).

With CUDA the whole suite takes under 8 minutes on one GPU (`--budget`, default 420 s, is shared out between
the stages; a stage that would overrun is cut short and says so). Without CUDA it says so and runs a tiny smoke
version of every stage (tiny sizes, figures that are not GPU measurements), as `tests/test_gpu_suite.py` does.

Data: the GPU machine receives only the working tree (with named ignored paths, 64 MiB in all) and has no
network. `--pack-data` copies the four Fashion-MNIST `.gz` files (30 MB, from `$DEEPFIT_DATA/fashion-mnist` or
the Debian package's `/usr/share/datasets/fashion-mnist`) into `benchmarks/gpu_data/fashion-mnist/`, a folder
git ignores (its own `.gitignore`); carry `benchmarks/gpu_data` to the GPU machine. The suite reads
Fashion-MNIST from there (unless `$DEEPFIT_DATA` is set), else from the usual places; with no files at all the
`fmnist` stage trains on random images and labels its figures `"data": "synthetic"` (accuracies meaningless).
The other stages need no data. On the device tool:

    run(command="PYTHONUNBUFFERED=1 python3 benchmarks/gpu_suite.py --out $OUT/gpu_suite.json",
        carry=["benchmarks/gpu_data"], timeout_s=600)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / "benchmarks" / "gpu_data"
FMNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                "t10k-labels-idx1-ubyte.gz")
STAGES = ("tests", "throughput", "fmnist", "compile")
# shares of the budget; a stage may use what earlier stages left unused
SHARES = {"tests": 0.30, "throughput": 0.20, "fmnist": 0.30, "compile": 0.20}
TARGET = 0.94

sys.path.insert(0, str(ROOT))


def log(msg: str) -> None:
    print(f"[gpu_suite] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- data
def fmnist_source_folder() -> Path | None:
    """Where Fashion-MNIST's four files are, looked for as `deepfit.data.external` does (None: nowhere)."""
    candidates = [Path(os.environ["DEEPFIT_DATA"]) / "fashion-mnist"] if os.environ.get("DEEPFIT_DATA") else []
    candidates += [DATA_DIR / "fashion-mnist", Path.home() / ".cache" / "deepfit" / "fashion-mnist",
                   Path("/usr/share/datasets/fashion-mnist")]
    return next((c for c in candidates if all((c / f).is_file() for f in FMNIST_FILES)), None)


def pack_data(dest: Path = DATA_DIR) -> Path:
    """Copy Fashion-MNIST's `.gz` files into `dest/fashion-mnist` (ignored by git) for the GPU machine."""
    src = fmnist_source_folder()
    if src is None:
        raise SystemExit("Fashion-MNIST not found: install the Debian package dataset-fashion-mnist or run "
                         "`python -m deepfit download fashion-mnist`")
    out = dest / "fashion-mnist"
    out.mkdir(parents=True, exist_ok=True)
    (dest / ".gitignore").write_text("# packed by benchmarks/gpu_suite.py --pack-data; carried, never committed\n*\n")
    if src.resolve() != out.resolve():
        for f in FMNIST_FILES:
            shutil.copyfile(src / f, out / f)
    size = sum((out / f).stat().st_size for f in FMNIST_FILES)
    log(f"packed {size / 1e6:.1f} MB from {src} into {out}; carry {dest.relative_to(ROOT)} to the GPU machine")
    return out


# ---------------------------------------------------------------------------------------------- helpers
class Budget:
    """Seconds left for the suite, shared out between stages."""

    def __init__(self, total: float):
        self.total, self.start = total, time.perf_counter()

    def left(self) -> float:
        return self.total - (time.perf_counter() - self.start)

    def for_stage(self, stage: str, remaining_stages: list[str]) -> float:
        share = SHARES[stage] / sum(SHARES[s] for s in remaining_stages)
        return max(0.0, self.left() * share)


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_timer(device, warmup: int, deadline: float | None = None):
    """A callback timing the training batches after `warmup`, stopping `fit` after the training phase."""
    from deepfit.learner import Callback, CancelFit

    class StepTimer(Callback):
        order = 99
        run_valid = False

        def __init__(self):
            self.n, self.t0, self.t1, self.first = 0, None, None, None
            self.start = None

        def before_train(self):
            sync(device)
            self.start = time.perf_counter()

        def after_batch(self):
            if not self.learn.training:
                return
            self.n += 1
            if self.n == 1:
                sync(device)
                self.first = time.perf_counter() - self.start  # the first step: compilation, cuDNN autotuning
            if self.n == warmup:
                sync(device)
                self.t0 = time.perf_counter()
            if deadline is not None and time.perf_counter() > deadline and self.n > warmup:
                raise CancelFit()

        def _stop(self):
            if self.t1 is None:
                sync(device)
                self.t1 = time.perf_counter()

        def after_cancel_fit(self):
            self._stop()

        def after_train(self):
            self._stop()
            raise CancelFit()  # no validation: only the training steps are timed

        def rate(self, items_per_batch: int) -> float | None:
            timed = self.n - warmup
            if self.t0 is None or timed <= 0:
                return None
            return items_per_batch * timed / (self.t1 - self.t0)

    return StepTimer()


def channels_last_cb():
    import torch

    from deepfit.learner import Callback

    class ChannelsLastBatches(Callback):
        order = 5

        def before_batch(self):
            xb = self.learn.xb
            if isinstance(xb, torch.Tensor) and xb.ndim == 4:
                self.learn.xb = xb.contiguous(memory_format=torch.channels_last)

    return ChannelsLastBatches()


def set_precision(learn, precision: str) -> None:
    if precision == "fp16":
        learn.to_fp16()
    elif precision == "bf16":
        learn.to_bf16()


def quiet(learn) -> None:
    """No progress table, and the Learner's notes (the precision chosen) on stderr: stdout ends with the JSON."""
    learn.remove_cb(learn.progress)
    learn.logger = log


# ---------------------------------------------------------------------------------------------- stage 1: tests
def stage_tests(device, smoke: bool, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "tests/cuda", "-m", "cuda", "-q", "-p", "no:cacheprovider",
               f"--junitxml={report}"]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=max(seconds, 30))
        except subprocess.TimeoutExpired:
            return {"status": "timed out", "seconds": round(time.perf_counter() - start, 1)}
        out: dict[str, Any] = {"exit_code": proc.returncode, "seconds": round(time.perf_counter() - start, 1)}
        if not report.is_file():
            return {**out, "status": "no report", "output_tail": (proc.stdout + proc.stderr)[-2000:]}
        counts = {"passed": 0, "failed": 0, "skipped": 0}
        failures = []
        for case in ET.parse(report).getroot().iter("testcase"):
            name = f"{case.get('classname', '')}::{case.get('name', '')}"
            if case.find("failure") is not None or case.find("error") is not None:
                counts["failed"] += 1
                bad = case.find("failure") if case.find("failure") is not None else case.find("error")
                failures.append({"test": name, "message": (bad.get("message") or "")[:300]})
            elif case.find("skipped") is not None:
                counts["skipped"] += 1
            else:
                counts["passed"] += 1
        status = "failed" if counts["failed"] else ("skipped: no CUDA" if not counts["passed"] else "passed")
        return {**out, **counts, "status": status, "failures": failures}


# ---------------------------------------------------------------------------------------------- stage 2: throughput
def vision_throughput(device, precision: str, smoke: bool, deadline: float) -> dict[str, Any]:
    import torch

    from deepfit.data import DataLoaders, TensorLoader
    from deepfit.learner import Learner
    from deepfit.models import get_model, to_channels_last

    size, bs, warmup, steps = (32, 2, 1, 1) if smoke else (128, 128, 5, 20)
    # the smoke run keeps xresnet50's blocks (bottlenecks, [3, 4, 6, 3]) at a tiny width
    widths = dict(widths=[8, 16, 32, 64], stem_widths=[8, 8, 8]) if smoke else {}
    torch.manual_seed(0)
    n = bs * (warmup + steps)
    x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, device=device)
    y = torch.randint(0, 10, (n,), device=device)
    dl = TensorLoader(x, y, bs=bs, device=device, mean=[0.5] * 3, std=[0.25] * 3)
    model = to_channels_last(get_model("xresnet50", c_in=3, n_out=10, **widths).to(device))
    learn = Learner(model, DataLoaders(dl, dl, device=device), lr=1e-3, cbs=[channels_last_cb()])
    quiet(learn)
    set_precision(learn, precision)
    timer = make_timer(device, warmup, deadline)
    learn.fit(1, cbs=[timer])
    return {"images_per_s": _round(timer.rate(bs)), "bs": bs, "size": size, "timed_steps": timer.n - warmup,
            **({"widths": widths["widths"]} if widths else {})}


def lm_throughput(device, precision: str, smoke: bool, deadline: float) -> dict[str, Any]:
    import torch

    from deepfit.data import DataLoaders, TensorLoader
    from deepfit.learner import Learner
    from deepfit.models import get_model
    from deepfit.text.losses import FlatCrossEntropyLoss

    if smoke:
        vocab, bs, bptt, warmup, steps, sizes = 100, 4, 8, 1, 1, dict(emb_sz=16, n_hid=32, n_layers=2)
    else:
        vocab, bs, bptt, warmup, steps, sizes = 10_000, 64, 72, 5, 20, {}
    torch.manual_seed(0)
    n = bs * (warmup + steps)
    stream = torch.randint(0, vocab, (n, bptt + 1), device=device)
    dl = TensorLoader(stream[:, :-1], stream[:, 1:], bs=bs, device=device)
    model = get_model("awd_lstm_lm", vocab_sz=vocab, **sizes).to(device)
    learn = Learner(model, DataLoaders(dl, dl, device=device), loss_func=FlatCrossEntropyLoss(), lr=1e-3)
    quiet(learn)
    set_precision(learn, precision)
    timer = make_timer(device, warmup, deadline)
    learn.fit(1, cbs=[timer])
    return {"tokens_per_s": _round(timer.rate(bs * bptt)), "bs": bs, "bptt": bptt, "vocab": vocab,
            "timed_steps": timer.n - warmup}


def stage_throughput(device, smoke: bool, seconds: float) -> dict[str, Any]:
    import torch

    torch.backends.cudnn.benchmark = device.type == "cuda"
    deadline = time.perf_counter() + seconds
    out: dict[str, Any] = {"data": "synthetic"}
    for name, fn in (("xresnet50_128px", vision_throughput), ("awd_lstm_lm", lm_throughput)):
        out[name] = {}
        for precision in ("fp32", "fp16", "bf16"):
            left = deadline - time.perf_counter()
            if left <= 0:
                out[name][precision] = {"skipped": "time budget"}
                continue
            try:
                out[name][precision] = fn(device, precision, smoke, time.perf_counter() + left / 2)
            except Exception as e:  # one failing precision must not hide the others' figures
                out[name][precision] = {"error": f"{type(e).__name__}: {e}"[:300]}
            log(f"throughput {name} {precision}: {out[name][precision]}")
            _free(device)
    return out


# ---------------------------------------------------------------------------------------------- stage 3: fmnist
GPU_RECIPE = dict(epochs=20, bs=512, lr=8e-3, arch="xresnet",
                  arch_kwargs=dict(layers=[2, 2, 2], widths=[64, 128, 256], stem_widths=[32, 32, 64], stem_stride=1,
                                   stem_pool=False))
SMOKE_RECIPE = dict(epochs=1, bs=64, tta=0, arch="xresnet",
                    arch_kwargs=dict(layers=[1], widths=[8], stem_widths=[8], stem_stride=2, stem_pool=False))


def fmnist_recipe(smoke: bool) -> tuple[Any, str]:
    """`(recipe, description)`: the project's best Fashion-MNIST recipe enlarged for a GPU, or a fallback."""
    try:
        from deepfit.recipes import get_recipe

        base = get_recipe("fmnist_fast")
        return base.with_(name="fmnist_gpu", **(SMOKE_RECIPE if smoke else GPU_RECIPE)), \
            f"deepfit.recipes 'fmnist_fast' with {SMOKE_RECIPE if smoke else GPU_RECIPE}"
    except (ImportError, KeyError, AttributeError, TypeError) as e:
        return None, f"one-cycle xresnet (deepfit.recipes unavailable: {type(e).__name__})"


def fmnist_loaders(device, smoke: bool, bs: int, tfms: list | None = None):
    """Fashion-MNIST with the test images as validation set, or random images when the files are absent."""
    import torch

    from deepfit.data import DataLoaders, TensorLoader

    n_train, n_valid = (512, 256) if smoke else (None, None)
    if fmnist_source_folder() is not None:
        from deepfit.data import fashion_mnist_loaders

        return fashion_mnist_loaders(bs=bs, valid="test", n_train=n_train, n_valid=n_valid, device=device,
                                     tfms=tfms or ()), "fashion-mnist"
    g = torch.Generator().manual_seed(0)
    n_train, n_valid = n_train or 60_000, n_valid or 10_000
    x = torch.randint(0, 256, (n_train + n_valid, 1, 28, 28), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (n_train + n_valid,), generator=g)
    stats = dict(mean=[0.286], std=[0.353])
    dls = DataLoaders(TensorLoader(x[:n_train], y[:n_train], bs=bs, shuffle=True, device=device, tfms=tfms or (),
                                   **stats),
                      TensorLoader(x[n_train:], y[n_train:], bs=bs * 2, device=device, **stats), device=device,
                      vocab=[str(i) for i in range(10)])
    return dls, "synthetic"


def epoch_clock(device, deadline: float):
    from deepfit.learner import Callback, CancelFit

    class EpochClock(Callback):
        order = 99

        def __init__(self):
            self.epochs: list[dict[str, float]] = []
            self.cut_short = False

        def before_fit(self):
            sync(device)
            self.start = time.perf_counter()

        def after_epoch(self):
            sync(device)
            elapsed = time.perf_counter() - self.start
            valid = self.learn.recorder.last_valid
            self.epochs.append({"epoch": self.learn.epoch + 1, "seconds": round(elapsed, 2),
                                "accuracy": round(float(valid[-1]), 4) if valid else None})
            if time.perf_counter() > deadline and self.learn.epoch + 1 < self.learn.n_epoch:
                self.cut_short = True
                raise CancelFit()

    return EpochClock()


def stage_fmnist(device, smoke: bool, seconds: float) -> dict[str, Any]:
    import torch

    from deepfit.learner import Learner, accuracy
    from deepfit.models import get_model

    torch.backends.cudnn.benchmark = device.type == "cuda"
    recipe, description = fmnist_recipe(smoke)
    deadline = time.perf_counter() + seconds
    torch.manual_seed(0)
    if recipe is not None:
        tfms = recipe.augmentations(28) + recipe.layout_tfms()
        dls, data = fmnist_loaders(device, smoke, recipe.bs, tfms)
        for dl in (dls.valid, getattr(dls, "test", None)):
            if dl is not None:
                dl.tfms = list(dl.tfms) + recipe.layout_tfms()
        learn = recipe.learner(dls)
        epochs = recipe.epochs
        fit = lambda cbs: recipe.fit(learn, cbs=cbs)  # noqa: E731
    else:
        epochs, bs = (1, 64) if smoke else (GPU_RECIPE["epochs"], GPU_RECIPE["bs"])
        dls, data = fmnist_loaders(device, smoke, bs)
        arch = SMOKE_RECIPE["arch_kwargs"] if smoke else GPU_RECIPE["arch_kwargs"]
        learn = Learner(get_model("xresnet", c_in=1, n_out=10, **arch).to(device), dls, metrics=[accuracy],
                        lr=8e-3, precision="auto" if device.type == "cuda" else None)
        fit = lambda cbs: learn.fit_one_cycle(epochs, 8e-3, cbs=cbs)  # noqa: E731
    quiet(learn)
    clock = epoch_clock(device, deadline)
    fit([clock])
    reached = next((e for e in clock.epochs if e["accuracy"] is not None and e["accuracy"] >= TARGET), None)
    final = clock.epochs[-1]["accuracy"] if clock.epochs else None
    return {"recipe": description, "data": data, "target": TARGET, "planned_epochs": epochs,
            "seconds_to_target": reached["seconds"] if reached else None,
            "epochs_to_target": reached["epoch"] if reached else None, "final_accuracy": final,
            "cut_short_by_budget": clock.cut_short, "epochs": clock.epochs,
            "train_items": len(dls.train.indices) if getattr(dls.train, "indices", None) is not None else None}


# ---------------------------------------------------------------------------------------------- stage 4: compile
def stage_compile(device, smoke: bool, seconds: float) -> dict[str, Any]:
    import torch

    from deepfit.data import DataLoaders, TensorLoader
    from deepfit.learner import Learner
    from deepfit.models import get_model

    torch.backends.cudnn.benchmark = device.type == "cuda"
    arch = SMOKE_RECIPE["arch_kwargs"] if smoke else GPU_RECIPE["arch_kwargs"]
    bs, warmup, steps = (16, 2, 2) if smoke else (512, 10, 40)
    backend = "eager" if device.type != "cuda" else "inductor"  # the smoke run checks the path, not the speed
    precision = "bf16" if device.type == "cuda" else "fp32"
    deadline = time.perf_counter() + seconds
    torch.manual_seed(0)
    n = bs * (warmup + steps)
    x = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, device=device)
    y = torch.randint(0, 10, (n,), device=device)
    out: dict[str, Any] = {"model": f"xresnet {arch} at 28 px", "bs": bs, "precision": precision,
                           "backend": backend, "data": "synthetic"}
    for mode in ("eager", "compiled"):
        left = deadline - time.perf_counter()
        if left <= 0:
            out[mode] = {"skipped": "time budget"}
            continue
        dl = TensorLoader(x, y, bs=bs, device=device, mean=[0.286], std=[0.353])
        model = get_model("xresnet", c_in=1, n_out=10, **arch).to(device)
        if mode == "compiled":
            model = torch.compile(model, backend=backend)
        learn = Learner(model, DataLoaders(dl, dl, device=device), lr=1e-3)
        quiet(learn)
        set_precision(learn, precision)
        timer = make_timer(device, warmup, time.perf_counter() + left)
        try:
            learn.fit(1, cbs=[timer])
            out[mode] = {"items_per_s": _round(timer.rate(bs)), "first_step_s": _round(timer.first),
                         "timed_steps": timer.n - warmup}
        except Exception as e:  # a compiler failure is a finding, not a crash of the suite
            out[mode] = {"error": f"{type(e).__name__}: {e}"[:300]}
        log(f"compile {mode}: {out[mode]}")
        _free(device)
    eager, compiled = out.get("eager", {}).get("items_per_s"), out.get("compiled", {}).get("items_per_s")
    out["speedup"] = round(compiled / eager, 3) if eager and compiled else None
    return out


# ---------------------------------------------------------------------------------------------- main
def _round(v: float | None, digits: int = 1) -> float | None:
    return None if v is None else round(v, digits)


def _free(device) -> None:
    import gc

    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


RUNNERS: dict[str, Callable[..., dict[str, Any]]] = {"tests": stage_tests, "throughput": stage_throughput,
                                                     "fmnist": stage_fmnist, "compile": stage_compile}


def run_suite(stages: list[str], smoke: bool | None = None, budget: float = 420.0) -> dict[str, Any]:
    """Run `stages` and return the figures (see the module docstring)."""
    if not os.environ.get("DEEPFIT_DATA") and all((DATA_DIR / "fashion-mnist" / f).is_file() for f in FMNIST_FILES):
        os.environ["DEEPFIT_DATA"] = str(DATA_DIR)
    import torch

    cuda = torch.cuda.is_available()
    smoke = (not cuda) if smoke is None else smoke
    device = torch.device("cuda" if cuda else "cpu")
    if not cuda:
        log("no CUDA GPU here: running the smoke version (tiny sizes; its figures are not GPU measurements)")
    result: dict[str, Any] = {
        "suite": "deepfit-gpu", "cuda": cuda, "smoke": smoke,
        "device": torch.cuda.get_device_name(0) if cuda else f"cpu ({platform.processor() or platform.machine()})",
        "torch": torch.__version__, "python": platform.python_version(), "budget_s": budget, "stages": {}}
    clock = Budget(budget)
    for i, stage in enumerate(stages):
        seconds = clock.for_stage(stage, stages[i:])
        log(f"stage {stage}: up to {seconds:.0f} s")
        start = time.perf_counter()
        try:
            figures = RUNNERS[stage](device, smoke, seconds)
        except Exception as e:  # report and go on: the other stages' figures still count
            figures = {"error": f"{type(e).__name__}: {e}"[:500]}
        figures["stage_seconds"] = round(time.perf_counter() - start, 1)
        result["stages"][stage] = figures
        log(f"stage {stage} done in {figures['stage_seconds']} s")
        _free(device)
    result["seconds"] = round(time.perf_counter() - clock.start, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pack-data", action="store_true", help="copy Fashion-MNIST into benchmarks/gpu_data and exit")
    p.add_argument("--smoke", action="store_true", help="tiny sizes even on a GPU")
    p.add_argument("--budget", type=float, default=420.0, help="seconds for the whole suite (default 420)")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    p.add_argument("--out", type=Path, help="also write the JSON figures to this file")
    args = p.parse_args(argv)
    if args.pack_data:
        pack_data()
        return 0
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        p.error(f"unknown stage(s) {unknown}; stages: {', '.join(STAGES)}")
    result = run_suite(stages, smoke=True if args.smoke else None, budget=args.budget)
    line = json.dumps(result, separators=(",", ":"))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(line + "\n")
    print(line, flush=True)
    failed = result["stages"].get("tests", {}).get("failed", 0)
    return 1 if failed or any("error" in s for s in result["stages"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
