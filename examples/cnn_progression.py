"""The course notes' CNN progression on Fashion-MNIST, each model with the same training budget.

Trains, in order, the one-hidden-layer `SimpleNet` ("MLP"), `ConvNet`, `ConvNet2`, `ConvBnNet`,
`ConvBnNet2`, `Resnet`, `Resnet2` (also scored with test-time augmentation when `learn.tta` exists)
and `xresnet18`, each for the same number of epochs over the same data with a one-cycle schedule
(plain `fit` if the Learner has no `fit_one_cycle`), and prints a Markdown table of test accuracy
and wall time.

    python examples/cnn_progression.py                     # full data, 3 epochs each
    python examples/cnn_progression.py --epochs 1 --n-train 10000 --models conv_net resnet

On a small CPU keep `--threads 1` when the machine is shared (OpenMP threads that wait for a busy core
cost more than they bring for these small models).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepfit.data import fashion_mnist_loaders  # noqa: E402
from deepfit.learner import Learner, accuracy  # noqa: E402
from deepfit.models import get_model  # noqa: E402

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


def augmentations() -> list:
    """Random horizontal flips and a 2-pixel pad-and-crop, when deepfit's batch transforms exist."""
    try:
        from deepfit.data.transforms import Flip, PadCrop
    except ImportError:
        return []
    return [Flip(p=0.5, seed=0), PadCrop(padding=2, mode="constant", seed=1)]


def train_one(name: str, kwargs: dict, lr: float, args) -> dict:
    torch.manual_seed(args.seed)
    tfms = augmentations() if args.augment else []
    dls = fashion_mnist_loaders(bs=args.bs, valid="test", n_train=args.n_train, seed=args.seed, device="cpu",
                                tfms=tfms)
    model = get_model(name, c_in=1, n_out=10, **kwargs)
    learn = Learner(model, dls, lr=lr, metrics=accuracy)
    if not args.verbose and hasattr(learn, "progress"):
        learn.remove_cb(learn.progress)
    start = time.perf_counter()
    if hasattr(learn, "fit_one_cycle"):
        learn.fit_one_cycle(args.epochs, lr)
    else:
        learn.fit(args.epochs, lr)
    train_time = time.perf_counter() - start
    _, acc = learn.validate()[:2]
    row = dict(name=name, params=sum(p.numel() for p in model.parameters()), acc=acc, time=train_time, tta=None)
    if name == "resnet2" and args.tta > 0 and hasattr(learn, "tta"):
        probs, targs = learn.tta(n=args.tta)
        row["tta"] = (probs.argmax(1) == targs).float().mean().item()
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--bs", type=int, default=128)
    parser.add_argument("--n-train", type=int, default=None, help="train on a seeded subset (default: all 60,000)")
    parser.add_argument("--models", nargs="*", default=None, help="registry names to run (default: all)")
    parser.add_argument("--tta", type=int, default=4, help="augmented passes for Resnet2's TTA (0: off)")
    parser.add_argument("--no-augment", dest="augment", action="store_false", help="train without flips/crops")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="print each epoch's results")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    chosen = [p for p in PROGRESSION if args.models is None or p[0] in args.models]
    if not chosen:
        parser.error(f"no model among {args.models}; choose from {', '.join(p[0] for p in PROGRESSION)}")
    print(f"Fashion-MNIST, {args.n_train or 60000} training images, test set of 10,000; {args.epochs} epoch(s) "
          f"each, batch {args.bs}, one-cycle, {'flip + pad-crop' if args.augment else 'no augmentation'}, "
          f"{torch.get_num_threads()} thread(s)", flush=True)
    rows = []
    for name, label, kwargs, lr in chosen:
        row = train_one(name, kwargs, lr, args)
        row["label"], row["lr"] = label, lr
        rows.append(row)
        print(f"  {label}: accuracy {row['acc']:.4f} in {row['time']:.0f}s", flush=True)
    print()
    print("| model | params | peak lr | test accuracy | train time (s) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['label']} | {row['params']:,} | {row['lr']:g} | {row['acc']:.4f} | {row['time']:.0f} |")
        if row["tta"] is not None:
            print(f"| {row['label']} + TTA (n={args.tta}) | {row['params']:,} | {row['lr']:g} | {row['tta']:.4f} | "
                  f"{row['time']:.0f} |")


if __name__ == "__main__":
    main()
