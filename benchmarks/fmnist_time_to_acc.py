"""Wall time to reach 93% and 94% Fashion-MNIST test accuracy on the CPU.

The recipe: a narrow XResNet-18 (three-conv stem with stride 2, no max pool, stage widths
`--widths`, 16-32-64-128 by default: a quarter of the standard width), one-cycle training
(`learn.fit_one_cycle`, else a constant rate), label smoothing 0.1, random horizontal flips and a
small pad-and-crop on the device, channels_last memory format, AdamW.
Test accuracy is measured on all 10,000 test images after every epoch; the clock runs through
training and those evaluations, starting after the data is loaded (about 1 s) and the model built.
Under a one-cycle schedule accuracy climbs most in the last epochs, so the time to a target depends
on `--epochs`: run a few budgets (e.g. 4, 6, 8) to find the shortest one that reaches it.

    python benchmarks/fmnist_time_to_acc.py --epochs 5 --threads 1
    python benchmarks/fmnist_time_to_acc.py --epochs 5 --fastai-python /path/to/fastai-env/bin/python

`--fastai-python PATH` runs the same recipe with fastai's own `Learner` and `xresnet18` in that
interpreter (fastai is never imported here), on the same files, for a side-by-side line.
`--json PATH` writes every figure measured.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepfit.data import DataLoaders, TensorLoader, fashion_mnist  # noqa: E402
from deepfit.data.external import FASHION_MNIST_MEAN, FASHION_MNIST_STD  # noqa: E402
from deepfit.learner import Callback, Learner, accuracy  # noqa: E402
from deepfit.models import to_channels_last, xresnet18  # noqa: E402

TARGETS = (0.93, 0.94)


class TimeToAccuracy(Callback):
    """Records, after each validation, the elapsed wall time and the accuracy (the last metric)."""

    order = 90

    def __init__(self):
        self.history: list[tuple[int, float, float]] = []

    def before_fit(self) -> None:
        self.start = time.perf_counter()

    def after_epoch(self) -> None:
        recorder = self.learn.recorder
        self.history.append((self.learn.epoch + 1, time.perf_counter() - self.start, float(recorder.last_valid[-1])))


def to_channels_last_batch(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def make_dls(bs: int, augment: bool, channels_last: bool, seed: int, n_train: int | None = None) -> DataLoaders:
    train, test = fashion_mnist()
    indices = None
    if n_train is not None:  # a seeded subset, for a quick trial of the script
        indices = torch.randperm(len(train.labels), generator=torch.Generator().manual_seed(seed))[:n_train]
    stats = dict(mean=[FASHION_MNIST_MEAN], std=[FASHION_MNIST_STD])
    layout = [to_channels_last_batch] if channels_last else []
    aug: list = []
    if augment:
        from deepfit.data.transforms import Flip, PadCrop

        aug = [Flip(p=0.5, seed=seed), PadCrop(padding=2, mode="constant", seed=seed + 1)]
    return DataLoaders(
        TensorLoader(train.images.unsqueeze(1), train.labels, bs=bs, shuffle=True, drop_last=True, seed=seed,
                     device="cpu", tfms=aug + layout, indices=indices, **stats),
        TensorLoader(test.images.unsqueeze(1), test.labels, bs=1000, device="cpu", tfms=layout, **stats),
        device="cpu", vocab=train.classes)


def run_deepfit(args) -> dict:
    torch.manual_seed(args.seed)
    dls = make_dls(args.bs, args.augment, args.channels_last, args.seed, args.n_train)
    model = xresnet18(c_in=1, n_out=10, widths=args.widths, stem_widths=args.stem_widths, stem_stride=2,
                      stem_pool=False)
    if args.channels_last:
        to_channels_last(model)
    try:
        from deepfit.learner.losses import LabelSmoothingCrossEntropy

        loss = LabelSmoothingCrossEntropy(args.label_smoothing)
    except ImportError:
        loss = torch.nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    timer = TimeToAccuracy()
    learn = Learner(model, dls, loss_func=loss, lr=args.lr, metrics=accuracy, cbs=[timer], wd=args.wd)
    if not args.verbose and hasattr(learn, "progress"):
        learn.remove_cb(learn.progress)
    if hasattr(learn, "fit_one_cycle"):
        learn.fit_one_cycle(args.epochs, args.lr)
        schedule = "one-cycle"
    else:
        learn.fit(args.epochs, args.lr)
        schedule = "constant lr"
    return dict(library="deepfit", schedule=schedule, history=timer.history,
                params=sum(p.numel() for p in model.parameters()))


FASTAI_SCRIPT = r"""
import gzip, json, sys, time
import numpy as np, torch
from torch import nn
from fastai.vision.all import (Callback, DataLoaders, LabelSmoothingCrossEntropy, Learner, TfmdDL, accuracy,
                               xresnet18)
cfg = json.loads(sys.argv[1])
torch.set_num_threads(cfg["threads"])
torch.manual_seed(cfg["seed"])
def idx(path):
    with gzip.open(path) as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return torch.from_numpy(np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims).copy())
def load(kind):
    x = idx(cfg["data"] + f"/{kind}-images-idx3-ubyte.gz").unsqueeze(1).float().div_(255)
    x = (x - cfg["mean"]) / cfg["std"]
    if cfg["channels_last"]:
        x = x.contiguous(memory_format=torch.channels_last)
    return list(zip(x, idx(cfg["data"] + f"/{kind}-labels-idx1-ubyte.gz").long()))
dls = DataLoaders(TfmdDL(load("train"), bs=cfg["bs"], shuffle=True, drop_last=True),
                  TfmdDL(load("t10k"), bs=1000), device="cpu")
class Augment(Callback):
    "Random horizontal flip and 2-pixel pad-and-crop of training batches (plain tensors, as in deepfit's run)."
    def before_batch(self):
        if not self.training or not cfg["augment"]:
            return
        x = self.xb[0]
        n, c, h, w = x.shape
        x = torch.where(torch.rand(n, 1, 1, 1) < 0.5, x.flip(-1), x)
        xp = nn.functional.pad(x, (2, 2, 2, 2))
        i, j = torch.randint(0, 5, (2,)).tolist()
        self.learn.xb = (xp[:, :, i:i + h, j:j + w].contiguous(memory_format=torch.channels_last)
                         if cfg["channels_last"] else xp[:, :, i:i + h, j:j + w],)
class Timer(Callback):
    order = 90
    def before_fit(self):
        self.start, self.hist = time.perf_counter(), []
    def after_epoch(self):
        self.hist.append((self.epoch + 1, time.perf_counter() - self.start, float(self.recorder.values[-1][-1])))
model = xresnet18(c_in=1, n_out=10, widen=cfg["widths"][0] / 64, stem_szs=tuple(cfg["stem_widths"]))
model = nn.Sequential(*[m for m in model if not isinstance(m, nn.MaxPool2d)])  # no stem max pool, as in deepfit's
if cfg["channels_last"]:
    model = model.to(memory_format=torch.channels_last)
timer = Timer()
learn = Learner(dls, model, loss_func=LabelSmoothingCrossEntropy(cfg["label_smoothing"]), metrics=accuracy,
                cbs=[Augment(), timer], wd=cfg["wd"])
with learn.no_bar(), learn.no_logging():
    learn.fit_one_cycle(cfg["epochs"], cfg["lr"])
print("FASTAI_RESULT " + json.dumps(dict(library="fastai", schedule="one-cycle", history=timer.hist,
                                          params=sum(p.numel() for p in model.parameters()))))
"""


def run_fastai(args) -> dict:
    """Run the recipe with fastai in another interpreter; return its history or an `error`."""
    from deepfit.data.external import FASHION_MNIST_FILES, _find_folder

    folder = _find_folder(list(FASHION_MNIST_FILES), None, download=False)
    cfg = dict(data=str(folder), bs=args.bs, epochs=args.epochs, lr=args.lr, wd=args.wd, seed=args.seed,
               threads=torch.get_num_threads(), label_smoothing=args.label_smoothing, widths=list(args.widths),
               stem_widths=list(args.stem_widths), augment=args.augment, channels_last=args.channels_last,
               mean=FASHION_MNIST_MEAN, std=FASHION_MNIST_STD)
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


def time_to(history: list, target: float) -> float | None:
    for _, seconds, acc in history:
        if acc >= target:
            return seconds
    return None


def report(results: list[dict], args) -> str:
    lines = [f"Fashion-MNIST test accuracy vs wall time ({args.epochs} epochs, batch {args.bs}, "
             f"{torch.get_num_threads()} thread(s), {os.cpu_count()} CPUs visible)", "",
             "| library | schedule | params | " + " | ".join(f"time to {t:.0%}" for t in TARGETS)
             + " | final accuracy | total time |",
             "| --- | --- | ---: | " + " | ".join("---:" for _ in TARGETS) + " | ---: | ---: |"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['library']} | error: {r['error']} |")
            continue
        hist = r["history"]
        times = [time_to(hist, t) for t in TARGETS]
        cells = [f"{t:.0f} s" if t is not None else "not reached" for t in times]
        lines.append(f"| {r['library']} | {r['schedule']} | {r['params']:,} | " + " | ".join(cells)
                     + f" | {hist[-1][2]:.4f} | {hist[-1][1]:.0f} s |")
    lines.append("")
    for r in results:
        if "history" in r:
            epochs = ", ".join(f"{e}: {a:.4f} @ {s:.0f}s" for e, s, a in r["history"])
            lines.append(f"{r['library']} per epoch: {epochs}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--bs", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--wd", type=float, default=0.01)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--widths", type=int, nargs=4, default=[16, 32, 64, 128])
    parser.add_argument("--stem-widths", type=int, nargs=3, default=[16, 16, 16])
    parser.add_argument("--no-augment", dest="augment", action="store_false")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=None, help="train on a seeded subset (quick trials only)")
    parser.add_argument("--fastai-python", default=None, help="python of an environment with fastai installed")
    parser.add_argument("--json", default=None, help="write the measured figures to this file")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = [run_deepfit(args)]
    if args.fastai_python:
        results.append(run_fastai(args))
    print(report(results, args))
    if args.json:
        Path(args.json).write_text(json.dumps(dict(args=vars(args), results=results), indent=2))


if __name__ == "__main__":
    main()
