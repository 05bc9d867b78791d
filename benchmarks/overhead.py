"""Learner overhead against a hand-written PyTorch loop.

Trains the same model on the same batches, from the same seed, with (a) a plain loop and (b) a
`Learner` with its default callbacks (progress printing to a null stream), alternating A B A B.
Both also run a validation pass per epoch computing loss and accuracy.
Prints the largest absolute difference between the two per-batch loss sequences (expected 0 on
the CPU) and the ratio of median wall times (Learner / plain loop).

    python benchmarks/overhead.py [--arch mlp] [--bs 128] [--repeats 5] [--n-train 54000] [--threads N] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time

import torch
from torch import nn

from deepfit.data import fashion_mnist_loaders
from deepfit.learner import Learner, accuracy
from deepfit.models import get_model


def make_model(arch: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return get_model(arch, c_in=1, n_out=10)  # Fashion-MNIST: 1×28×28 (mlp's default img_size is 28)


def sgd(params, lr):
    return torch.optim.SGD(params, lr=lr, momentum=0.9)


def plain_loop(model, dls, epochs: int, lr: float) -> tuple[list[float], float]:
    opt = sgd(model.parameters(), lr)
    loss_func = nn.CrossEntropyLoss()
    losses: list[torch.Tensor] = []
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for xb, yb in dls.train:
            loss = loss_func(model(xb), yb)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.detach())
        model.eval()
        total, correct, n = 0.0, 0.0, 0
        with torch.no_grad():
            for xb, yb in dls.valid:
                pred = model(xb)
                total = total + loss_func(pred, yb) * len(yb)
                correct = correct + (pred.argmax(-1) == yb).float().sum()
                n += len(yb)
        _ = (float(total) / n, float(correct) / n)
    elapsed = time.perf_counter() - start
    return [float(v) for v in torch.stack(losses)], elapsed


def learner_loop(model, dls, epochs: int, lr: float) -> tuple[list[float], float]:
    learn = Learner(model, dls, loss_func=nn.CrossEntropyLoss(), opt_func=sgd, lr=lr, metrics=[accuracy])
    learn.progress.stream = io.StringIO()
    start = time.perf_counter()
    learn.fit(epochs)
    elapsed = time.perf_counter() - start
    return learn.recorder.losses, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="mlp")
    parser.add_argument("--bs", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n-train", type=int, default=54000)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    dls = fashion_mnist_loaders(bs=args.bs, n_train=args.n_train, n_valid=5000, seed=args.seed, device="cpu")
    # Warm-up (allocator, thread pool) on both paths, not timed.
    plain_loop(make_model(args.arch, args.seed), dls, 1, args.lr)
    learner_loop(make_model(args.arch, args.seed), dls, 1, args.lr)
    times = {"plain": [], "learner": []}
    max_diff = 0.0
    for _ in range(args.repeats):
        for name, loop in (("plain", plain_loop), ("learner", learner_loop)):
            dls.train.set_epoch(0)
            losses, elapsed = loop(make_model(args.arch, args.seed), dls, args.epochs, args.lr)
            times[name].append(elapsed)
            if name == "plain":
                reference = losses
            else:
                max_diff = max(max_diff, max(abs(a - b) for a, b in zip(reference, losses)))
                assert len(reference) == len(losses)
    ratio = statistics.median(times["learner"]) / statistics.median(times["plain"])
    result = {"loss_max_abs_diff": max_diff, "time_ratio": round(ratio, 4),
              "plain_median_s": round(statistics.median(times["plain"]), 4),
              "learner_median_s": round(statistics.median(times["learner"]), 4),
              "plain_s": [round(t, 3) for t in times["plain"]], "learner_s": [round(t, 3) for t in times["learner"]],
              "arch": args.arch, "bs": args.bs, "batches_per_epoch": len(dls.train), "repeats": args.repeats,
              "threads": torch.get_num_threads()}
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>18}: {v}")


if __name__ == "__main__":
    main()
