"""Wall time to reach 93% and 94% Fashion-MNIST test accuracy on the CPU, deepfit and fastai side by side.

The recipe is a named deepfit recipe (`deepfit.recipes`, default `fmnist_fast`): architecture and
width, batch size, one-cycle schedule, label smoothing, augmentation preset, channels-last layout,
precision and test-time augmentation. Test accuracy is measured on all 10,000 test images after
every epoch; the clock runs through training and those evaluations, starting when `fit` starts
(data loaded, model built). The wall time spent in the evaluations is recorded too, and the table
also gives the time to 93% without it ("training only"). TTA (when the recipe uses it) is timed on its
own and added to the total.

    python benchmarks/fmnist_time_to_acc.py --threads 2
    python benchmarks/fmnist_time_to_acc.py --threads 2 --fastai-python /path/to/fastai-env/bin/python
    python benchmarks/fmnist_time_to_acc.py --recipe fmnist_demo --epochs 3

`--fastai-python PATH` trains the same recipe with fastai's own `Learner`, `fit_one_cycle`,
`LabelSmoothingCrossEntropy` and `TfmdDL` loaders in that interpreter (fastai is never imported
here), on the same files, the same model (built by `deepfit.models`: plain `nn.Module`s, imported
from this checkout), the same augmentation (random flips when the preset has them, pad-and-crop
with black borders) and, when the recipe averages its weights (`ema`), the same moving average as a small
fastai callback written here (fastai has none built in), for a side-by-side line. Both runs use the
same number of threads, one after the other. `--json PATH` writes every figure measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deepfit.data.external import FASHION_MNIST_MEAN, FASHION_MNIST_STD  # noqa: E402
from deepfit.data.transforms import Flip, PadCrop  # noqa: E402
from deepfit.learner import Callback  # noqa: E402
from deepfit.recipes import RECIPES, get_recipe  # noqa: E402
from deepfit.threads import set_threads  # noqa: E402

TARGETS = (0.93, 0.94)


class TimeToAccuracy(Callback):
    """Records, after each validation, the elapsed wall time, the accuracy (the last metric) and the wall time
    spent so far in the per-epoch test evaluations (so that training time alone can be read off too)."""

    order = 90

    def __init__(self):
        self.history: list[tuple[int, float, float, float]] = []

    def before_fit(self) -> None:
        self.start, self.eval_seconds = time.perf_counter(), 0.0

    def before_validate(self) -> None:
        self.eval_start = time.perf_counter()

    def after_validate(self) -> None:
        self.eval_seconds += time.perf_counter() - self.eval_start

    def after_epoch(self) -> None:
        recorder = self.learn.recorder
        self.history.append((self.learn.epoch + 1, time.perf_counter() - self.start, float(recorder.last_valid[-1]),
                             self.eval_seconds))


def recipe_from_args(args):
    recipe = get_recipe(args.recipe)
    changes = {k: getattr(args, k) for k in ("epochs", "bs", "lr", "tta", "precision") if getattr(args, k) is not None}
    return recipe.with_(**changes) if changes else recipe


def augmentation(recipe) -> dict:
    """What the recipe's preset does, for the fastai script: flips, and the pad-and-crop's padding."""
    tfms = recipe.augmentations(28, seed=0)
    pad = next((t.padding for t in tfms if isinstance(t, PadCrop)), 0)
    return dict(flip=any(isinstance(t, Flip) for t in tfms), pad=pad)


def run_deepfit(args, recipe) -> dict:
    torch.manual_seed(args.seed)
    dls = recipe.dataloaders(valid="test", seed=args.seed, n_train=args.n_train)
    timer = TimeToAccuracy()
    learn = recipe.learner(dls, cbs=[timer])
    if not args.verbose:
        learn.remove_cb(learn.progress)
    recipe.fit(learn)
    out = dict(library="deepfit", history=timer.history, params=sum(p.numel() for p in learn.model.parameters()))
    mp = getattr(learn, "mixed_precision", None)
    out["precision"] = mp.choice.name if getattr(mp, "choice", None) is not None else recipe.precision
    if recipe.tta > 0:
        start = time.perf_counter()
        probs, targs = learn.tta(n=recipe.tta)
        acc = float((probs.argmax(1) == targs).float().mean())
        out["tta"] = dict(seconds=time.perf_counter() - start, accuracy=acc)
    return out


FASTAI_SCRIPT = r"""
import gzip, json, sys, time
import numpy as np, torch
from torch import nn
from fastai.vision.all import Callback, DataLoaders, LabelSmoothingCrossEntropy, Learner, TfmdDL, accuracy
cfg = json.loads(sys.argv[1])
sys.path.insert(0, cfg["deepfit_root"])
from deepfit.models import get_model  # the same plain nn.Module as deepfit's run
torch.set_num_threads(cfg["threads"])
torch.manual_seed(cfg["seed"])
def idx(path):
    with gzip.open(path) as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return torch.from_numpy(np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims).copy())
def load(kind, n=None):
    x = idx(cfg["data"] + f"/{kind}-images-idx3-ubyte.gz").unsqueeze(1).float().div_(255)
    y = idx(cfg["data"] + f"/{kind}-labels-idx1-ubyte.gz").long()
    if n is not None:
        keep = torch.randperm(len(y), generator=torch.Generator().manual_seed(cfg["seed"]))[:n]
        x, y = x[keep], y[keep]
    x = (x - cfg["mean"]) / cfg["std"]
    return list(zip(x, y))
dls = DataLoaders(TfmdDL(load("train", cfg["n_train"]), bs=cfg["bs"], shuffle=True, drop_last=False),
                  TfmdDL(load("t10k"), bs=2 * cfg["bs"]), device="cpu")
BLACK = (0.0 - cfg["mean"]) / cfg["std"]
def augment(x, gen):
    n, c, h, w = x.shape
    if cfg["flip"]:
        x = torch.where(torch.rand(n, 1, 1, 1, generator=gen) < 0.5, x.flip(-1), x)
    p = cfg["pad"]
    if p:
        xp = nn.functional.pad(x - BLACK, (p, p, p, p)) + BLACK
        off = torch.randint(0, 2 * p + 1, (2, n), generator=gen)
        rows = (off[0].view(n, 1) + torch.arange(h)).view(n, 1, h, 1).expand(n, c, h, w + 2 * p)
        cols = (off[1].view(n, 1) + torch.arange(w)).view(n, 1, 1, w).expand(n, c, h, w)
        x = xp.gather(2, rows).gather(3, cols)
    return x
class Augment(Callback):
    "Random flips (when the preset has them) and pad-and-crop with black borders of training batches."
    def __init__(self, tta_seed=None):
        self.gen = torch.Generator().manual_seed(cfg["seed"] if tta_seed is None else tta_seed)
        self.tta = tta_seed is not None
    def before_batch(self):
        if self.training or self.tta:
            self.learn.xb = (augment(self.xb[0], self.gen),)
class Layout(Callback):
    order = 100
    def before_batch(self):
        if cfg["channels_last"]:
            self.learn.xb = (self.xb[0].contiguous(memory_format=torch.channels_last),)
class Timer(Callback):
    order = 90
    def before_fit(self):
        self.start, self.hist, self.eval = time.perf_counter(), [], 0.0
    def before_validate(self):
        self.eval_start = time.perf_counter()
    def after_validate(self):
        self.eval += time.perf_counter() - self.eval_start
    def after_epoch(self):
        self.hist.append((self.epoch + 1, time.perf_counter() - self.start, float(self.recorder.values[-1][-1]),
                          self.eval))
class EMA(Callback):
    "The recipe's moving average of the weights (fastai has none built in; the same rule as deepfit's EMA)."
    order = 85
    def __init__(self, decay):
        self.decay, self.shadow, self.n, self.raw = decay, None, 0, None
    def live(self):
        return {k: v for k, v in self.learn.model.state_dict().items() if v.is_floating_point()}
    @torch.no_grad()
    def after_step(self):
        live = self.live()
        if self.shadow is None:
            self.shadow = {k: v.detach().clone() for k, v in live.items()}
        d = min(self.decay, (1 + self.n) / (10 + self.n))
        torch._foreach_lerp_(list(self.shadow.values()), [live[k] for k in self.shadow], 1 - d)
        self.n += 1
    @torch.no_grad()
    def before_validate(self):
        live = self.live()
        self.raw = {k: v.clone() for k, v in live.items()}
        for k, v in live.items():
            v.copy_(self.shadow[k])
    @torch.no_grad()
    def after_epoch(self):
        if self.raw is not None and self.epoch + 1 < self.n_epoch:  # the last epoch keeps the average
            for k, v in self.live().items():
                v.copy_(self.raw[k])
        self.raw = None
model = get_model(cfg["arch"], c_in=1, n_out=10, **cfg["arch_kwargs"])
if cfg["channels_last"]:
    model = model.to(memory_format=torch.channels_last)
timer = Timer()
learn = Learner(dls, model, loss_func=LabelSmoothingCrossEntropy(cfg["label_smoothing"]), metrics=accuracy,
                cbs=[Augment(), Layout(), timer] + ([EMA(cfg["ema"])] if cfg["ema"] > 0 else []), wd=cfg["wd"])
with learn.no_bar(), learn.no_logging():
    learn.fit_one_cycle(cfg["epochs"], cfg["lr"], pct_start=cfg["pct_start"], div_final=cfg["div_final"])
out = dict(library="fastai", history=timer.hist, params=sum(p.numel() for p in model.parameters()),
           precision="fp32")
if cfg["tta"] > 0:
    start = time.perf_counter()
    with learn.no_bar(), learn.no_logging():
        probs, targs = learn.get_preds(dl=dls.valid)
        total = torch.zeros_like(probs)
        for i in range(cfg["tta"]):
            total += learn.get_preds(dl=dls.valid, cbs=[Augment(tta_seed=1000 + i)])[0]
    probs = (probs + total) / (cfg["tta"] + 1)
    out["tta"] = dict(seconds=time.perf_counter() - start, accuracy=float((probs.argmax(1) == targs).float().mean()))
print("FASTAI_RESULT " + json.dumps(out))
"""


def run_fastai(args, recipe) -> dict:
    """Run the recipe with fastai in another interpreter; return its history or an `error`."""
    from deepfit.data.external import FASHION_MNIST_FILES, _find_folder

    if recipe.precision not in ("auto", "fp32"):
        return dict(library="fastai", error=f"this script runs fastai in fp32 only (recipe: {recipe.precision})")
    folder = _find_folder(list(FASHION_MNIST_FILES), None, download=False)
    cfg = dict(data=str(folder), deepfit_root=str(ROOT), bs=recipe.bs, epochs=recipe.epochs, lr=recipe.lr,
               wd=recipe.wd, pct_start=recipe.pct_start, div_final=recipe.div_final, ema=recipe.ema,
               seed=args.seed, threads=torch.get_num_threads(),
               label_smoothing=recipe.label_smoothing, arch=recipe.arch, arch_kwargs=dict(recipe.arch_kwargs),
               channels_last=recipe.channels_last, tta=recipe.tta, n_train=args.n_train,
               mean=FASHION_MNIST_MEAN, std=FASHION_MNIST_STD, **augmentation(recipe))
    with tempfile.NamedTemporaryFile("w", suffix="_fastai_fmnist.py", delete=False) as f:
        f.write(FASTAI_SCRIPT)
        script = f.name
    try:
        proc = subprocess.run([args.fastai_python, script, json.dumps(cfg)], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": ""})
    except OSError as e:
        return dict(library="fastai", error=f"cannot run {args.fastai_python}: {e}")
    finally:
        os.unlink(script)
    for line in proc.stdout.splitlines():
        if line.startswith("FASTAI_RESULT "):
            return json.loads(line[len("FASTAI_RESULT "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    return dict(library="fastai", error=f"{args.fastai_python} exited with {proc.returncode}: {tail[0]}")


def time_to(history: list, target: float, training_only: bool = False) -> float | None:
    """Wall time at the end of the first epoch whose test accuracy is at least `target` (None: never);
    `training_only`: less the time spent in the per-epoch test evaluations up to then."""
    for _, seconds, acc, eval_seconds in history:
        if acc >= target:
            return seconds - (eval_seconds if training_only else 0.0)
    return None


def report(results: list[dict], recipe, threads: int) -> str:
    lines = [f"Fashion-MNIST test accuracy vs wall time: recipe {recipe.name} ({recipe.arch} "
             f"{json.dumps(recipe.arch_kwargs)}, {recipe.epochs} epochs, batch {recipe.bs}, one-cycle lr "
             f"{recipe.lr:g}, weight decay {recipe.wd:g}, EMA {recipe.ema:g}, label smoothing "
             f"{recipe.label_smoothing:g}, augment {recipe.augment}, channels_last "
             f"{recipe.channels_last}, TTA {recipe.tta}); {threads} thread(s), {os.cpu_count()} CPUs visible", "",
             "| library | precision | params | " + " | ".join(f"time to {t:.0%}" for t in TARGETS)
             + f" | time to {TARGETS[0]:.0%}, training only | final accuracy | training time | of which test "
               "evaluation | with TTA | total time |",
             "| --- | --- | ---: | " + " | ".join("---:" for _ in TARGETS) + " | ---: | ---: | ---: | ---: | ---: "
             "| ---: |"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['library']} | error: {r['error']} |")
            continue
        hist = r["history"]
        times = [time_to(hist, t) for t in TARGETS]
        tta = r.get("tta")
        total = hist[-1][1] + (tta["seconds"] if tta else 0.0)
        for i, t in enumerate(TARGETS):  # reached only with TTA: the time of training plus TTA
            if times[i] is None and tta and tta["accuracy"] >= t:
                times[i] = total
        cells = [f"{t:.0f} s" if t is not None else "not reached" for t in times]
        train_only = time_to(hist, TARGETS[0], training_only=True)
        cells.append(f"{train_only:.0f} s" if train_only is not None else "not reached")
        tta_cell = f"{tta['accuracy']:.4f} (+{tta['seconds']:.0f} s)" if tta else "-"
        lines.append(f"| {r['library']} | {r.get('precision', '?')} | {r['params']:,} | " + " | ".join(cells)
                     + f" | {hist[-1][2]:.4f} | {hist[-1][1]:.0f} s | {hist[-1][3]:.0f} s | {tta_cell} | "
                     f"{total:.0f} s |")
    lines.append("")
    for r in results:
        if "history" in r:
            epochs = ", ".join(f"{e}: {a:.4f} @ {s:.0f}s" for e, s, a, _ in r["history"])
            lines.append(f"{r['library']} per epoch: {epochs}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="fmnist_fast", choices=sorted(RECIPES))
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    parser.add_argument("--bs", type=int, default=None, help="override the recipe's batch size")
    parser.add_argument("--lr", type=float, default=None, help="override the recipe's peak learning rate")
    parser.add_argument("--tta", type=int, default=None, help="override the recipe's TTA passes (0: off)")
    parser.add_argument("--precision", default=None, choices=["auto", "fp32", "bf16"], help="override the precision")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: deepfit.set_threads())")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=None, help="train on a seeded subset (quick trials only)")
    parser.add_argument("--fastai-python", default=None, help="python of an environment with fastai installed")
    parser.add_argument("--json", default=None, help="write the measured figures to this file")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    threads = set_threads(args.threads).threads
    recipe = recipe_from_args(args)
    load = [os.getloadavg()[0]]
    results = [run_deepfit(args, recipe)]
    load.append(os.getloadavg()[0])
    if args.fastai_python:
        results.append(run_fastai(args, recipe))
        load.append(os.getloadavg()[0])
    print(report(results, recipe, threads))
    print("load average (1 min) before, after deepfit" + (", after fastai" if args.fastai_python else "") + ": "
          + ", ".join(f"{x:.2f}" for x in load))
    if args.json:
        Path(args.json).write_text(json.dumps(dict(args=vars(args), recipe=recipe.as_dict(), results=results,
                                                   load_average=load), indent=2))


if __name__ == "__main__":
    main()
