"""Accuracy and time of a recipe trained in fp32 and in bf16 autocast, same seeds, same data.

Checks that bf16 autocast learns as well as fp32 (the accuracies should agree within seed noise)
and says what it costs on this machine. On a CPU without native bf16 (no `avx512_bf16`/`amx_bf16`)
bf16 is emulated and many times slower; that is why `precision="auto"` picks fp32 there.

    python benchmarks/precision_accuracy.py                                   # fmnist_demo, 10,000 images, 3 epochs
    python benchmarks/precision_accuracy.py --recipe fmnist_fast --n-train 60000 --epochs 8 --seeds 0
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepfit.learner.auto_precision import cpu_has_fast_bf16, cpu_name  # noqa: E402
from deepfit.recipes import RECIPES, get_recipe, train_recipe  # noqa: E402
from deepfit.threads import set_threads  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="fmnist_demo", choices=sorted(RECIPES))
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--n-train", type=int, default=10000, help="training images (seeded subset; 0: all 60,000)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="write the rows to this file")
    args = parser.parse_args(argv)
    threads = set_threads(args.threads).threads
    rows = []
    load = os.getloadavg()[0]
    for seed in args.seeds:  # alternate the precisions so a change in load hits both
        for precision in args.precision:
            recipe = get_recipe(args.recipe).with_(precision=precision, epochs=args.epochs, tta=0)
            cpu = time.process_time()
            result = train_recipe(recipe, seed=seed, n_train=args.n_train or None, quiet=True)
            rows.append(dict(precision=result.precision["precision"], seed=seed, accuracy=result.accuracy,
                             wall=result.train_seconds, cpu=time.process_time() - cpu))
            print(f"  {precision}, seed {seed}: test accuracy {result.accuracy:.4f}, {result.train_seconds:.1f} s",
                  flush=True)
    print(f"\n{args.recipe}, {args.n_train or 60000} training images, {args.epochs} epochs, {threads} thread(s); "
          f"{cpu_name()}, native bf16: {cpu_has_fast_bf16()}; torch {torch.__version__}; load average "
          f"{load:.1f} -> {os.getloadavg()[0]:.1f}")
    print("| precision | test accuracy per seed | mean | training s (mean) | CPU s (mean) | time vs first |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    base = None
    for precision in args.precision:
        mine = [r for r in rows if r["precision"] == precision]
        wall = statistics.fmean(r["wall"] for r in mine)
        base = base or wall
        accs = " / ".join(f"{r['accuracy']:.4f}" for r in mine)
        print(f"| {precision} | {accs} | "
              f"{statistics.fmean(r['accuracy'] for r in mine):.4f} | {wall:.1f} | "
              f"{statistics.fmean(r['cpu'] for r in mine):.1f} | {wall / base:.2f}× |")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(args=vars(args), rows=rows), indent=1))


if __name__ == "__main__":
    main()
