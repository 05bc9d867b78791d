"""The course notes' CNN progression on Fashion-MNIST, each model with the same training budget.

Trains, in order, the one-hidden-layer `SimpleNet` ("MLP"), `ConvNet`, `ConvBnNet`, `Resnet` and
`Resnet2` (then scores `Resnet2` again with test-time augmentation), each for the same number of
epochs over the same data with the same recipe (AdamW one-cycle, label smoothing 0.1, a 2-pixel
pad-and-crop: the `crop` preset, no flips, as deepfit uses for Fashion-MNIST), prints a Markdown
table of test accuracy and time, and checks the notes' ordering:
MLP < ConvNet < ConvBnNet < Resnet < Resnet2 < Resnet2 + TTA.
`--models` adds the intermediate steps (`conv_net2`, `conv_bn_net2`) or `xresnet18`.

    python examples/cnn_progression.py                     # full data, 5 epochs each: ~36 CPU-minutes (1 thread)
    python examples/cnn_progression.py --seeds 0 1              # each model twice; table and ordering on the means
    python examples/cnn_progression.py --epochs 1 --n-train 10000 --models conv_net resnet

On a small CPU keep the default one thread when the machine is shared (OpenMP threads that wait for a
busy core cost more than they bring for these small models).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepfit.data import fashion_mnist_loaders  # noqa: E402
from deepfit.data.transforms import AUGMENT_PRESETS, augment_preset  # noqa: E402
from deepfit.learner import Learner, accuracy  # noqa: E402
from deepfit.learner.losses import LabelSmoothingCrossEntropy  # noqa: E402
from deepfit.models import get_model  # noqa: E402
from deepfit.threads import set_threads  # noqa: E402

#: (registry name, table label, constructor kwargs, peak learning rate)
PROGRESSION: list[tuple[str, str, dict, float]] = [
    ("simple_net", "MLP (SimpleNet, 1 hidden layer of 40)", dict(img_size=28), 3e-3),
    ("conv_net", "ConvNet", {}, 1e-2),
    ("conv_net2", "ConvNet2 (padded ConvLayer)", {}, 1e-2),
    ("conv_bn_net", "ConvBnNet (hand-written BnLayer)", {}, 1e-2),
    ("conv_bn_net2", "ConvBnNet2 (2× deeper)", {}, 1e-2),
    ("resnet", "Resnet (residual BnLayers)", {}, 1e-2),
    ("resnet2", "Resnet2 (wider, dropout 0.2)", {}, 1e-2),
    ("xresnet18", "xresnet18", {}, 1e-2),
]
#: the notes' ordering, checked when all of these run
ORDER = ["simple_net", "conv_net", "conv_bn_net", "resnet", "resnet2"]
DEFAULT_MODELS = ORDER


def train_one(name: str, kwargs: dict, lr: float, args, seed: int) -> dict:
    torch.manual_seed(seed)
    tfms = augment_preset(args.augment, 28, seed=seed)
    dls = fashion_mnist_loaders(bs=args.bs, valid="test", n_train=args.n_train, seed=seed, device="cpu",
                                tfms=tfms)
    model = get_model(name, c_in=1, n_out=10, **kwargs)
    learn = Learner(model, dls, lr=lr, metrics=accuracy, loss_func=LabelSmoothingCrossEntropy(args.label_smoothing),
                    wd=args.wd)
    if not args.verbose:
        learn.remove_cb(learn.progress)
    start, cpu = time.perf_counter(), time.process_time()
    learn.fit_one_cycle(args.epochs, lr)
    train_time, cpu_time = time.perf_counter() - start, time.process_time() - cpu
    acc = float(learn.recorder.last_valid[-1])
    row = dict(name=name, params=sum(p.numel() for p in model.parameters()), acc=acc, time=train_time,
               cpu=cpu_time, tta=None)
    if name == "resnet2" and args.tta > 0:
        probs, targs = learn.tta(n=args.tta)
        row["tta"] = (probs.argmax(1) == targs).float().mean().item()
    return row


def mean_row(runs: list[dict]) -> dict:
    """One row for a model trained with several seeds: mean accuracy (and TTA), mean times, per-seed accuracies."""
    row = dict(runs[0])
    for key in ("acc", "time", "cpu"):
        row[key] = statistics.fmean(r[key] for r in runs)
    if runs[0]["tta"] is not None:
        row["tta"] = statistics.fmean(r["tta"] for r in runs)
    row["per_seed"] = [r["acc"] for r in runs]
    row["per_seed_tta"] = [r["tta"] for r in runs] if runs[0]["tta"] is not None else None
    return row


def ordering(rows: list[dict]) -> tuple[list[str], list[float]] | None:
    """The labels and accuracies of the notes' chain (with Resnet2 + TTA last), or None if a model is missing."""
    by_name = {r["name"]: r for r in rows}
    if not all(n in by_name for n in ORDER):
        return None
    labels, accs = ORDER[:], [by_name[n]["acc"] for n in ORDER]
    if by_name["resnet2"]["tta"] is not None:
        labels.append("resnet2 + TTA")
        accs.append(by_name["resnet2"]["tta"])
    return labels, accs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--bs", type=int, default=128)
    parser.add_argument("--n-train", type=int, default=None, help="train on a seeded subset (default: all 60,000)")
    parser.add_argument("--models", nargs="*", default=None,
                        help=f"registry names to run (default: {' '.join(DEFAULT_MODELS)})")
    parser.add_argument("--tta", type=int, default=4, help="augmented passes for Resnet2's TTA (0: off)")
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--wd", type=float, default=0.1,
                        help="decoupled weight decay (AdamW); 0.1, as the fmnist recipes (with 0.01 Resnet2 stays "
                             "below Resnet at 5 epochs)")
    parser.add_argument("--augment", default="crop", choices=sorted(AUGMENT_PRESETS),
                        help="augmentation preset (default crop: pad-and-crop, no flips; TTA uses its transforms)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1; 0: deepfit's default)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="seeds to train each model with; the table and the ordering use the mean (default 0)")
    parser.add_argument("--json", default=None, help="write the rows (per-seed accuracies included) to this file")
    parser.add_argument("--verbose", action="store_true", help="print each epoch's results")
    args = parser.parse_args(argv)
    threads = set_threads(args.threads or None).threads
    names = args.models if args.models is not None else DEFAULT_MODELS
    chosen = [p for p in PROGRESSION if p[0] in names]
    if not chosen:
        parser.error(f"no model among {args.models}; choose from {', '.join(p[0] for p in PROGRESSION)}")
    print(f"Fashion-MNIST, {args.n_train or 60000} training images, test set of 10,000; {args.epochs} epoch(s) "
          f"each, batch {args.bs}, one-cycle, label smoothing {args.label_smoothing:g}, weight decay {args.wd:g}, "
          f"augmentation {args.augment}, {threads} thread(s), seed(s) {' '.join(map(str, args.seeds))}", flush=True)
    rows = []
    total = time.perf_counter()
    for name, label, kwargs, lr in chosen:
        runs = []
        for seed in args.seeds:
            runs.append(train_one(name, kwargs, lr, args, seed))
            print(f"  {label}, seed {seed}: accuracy {runs[-1]['acc']:.4f} in {runs[-1]['time']:.0f}s", flush=True)
        row = mean_row(runs)
        row["label"], row["lr"] = label, lr
        rows.append(row)
    print()
    several = len(args.seeds) > 1
    mean = "mean " if several else ""
    print(f"| model | params | peak lr | {mean}test accuracy |" + (" per seed |" if several else "")
          + f" {mean}train time (s) | {mean}CPU time (s) |")
    print("| --- | ---: | ---: | ---: |" + (" ---: |" if several else "") + " ---: | ---: |")

    def line(label: str, acc: float, per_seed: list[float] | None, row: dict) -> str:
        seeds = (" " + " / ".join(f"{a:.4f}" for a in per_seed) + " |") if several else ""
        return (f"| {label} | {row['params']:,} | {row['lr']:g} | {acc:.4f} |{seeds} {row['time']:.0f} | "
                f"{row['cpu']:.0f} |")

    for row in rows:
        print(line(row["label"], row["acc"], row["per_seed"], row))
        if row["tta"] is not None:
            print(line(f"{row['label']} + TTA (n={args.tta})", row["tta"], row["per_seed_tta"], row))
    print(f"\ntotal time {time.perf_counter() - total:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(args=vars(args), rows=rows), indent=1))
    chain = ordering(rows)
    if chain is not None:
        labels, accs = chain
        broken = [f"{a} ({x:.4f}) >= {b} ({y:.4f})" for a, b, x, y in zip(labels, labels[1:], accs, accs[1:])
                  if not x < y]
        print("the notes' ordering " + " < ".join(labels) + (": holds" if not broken else
                                                                 ": does not hold: " + "; ".join(broken)))


if __name__ == "__main__":
    main()
