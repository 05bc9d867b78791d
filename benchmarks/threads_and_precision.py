"""Training-step speed of a recipe's model at 1 vs 2 (or more) threads, and in fp32 vs bf16 autocast.

Times `--steps` forward+backward+AdamW steps on one real Fashion-MNIST batch, alternating the
settings round by round so a change in machine load hits them alike, and reports the median wall
time (and process CPU time) per step together with the load average, so "idle" and "loaded"
figures can be told apart.

    python benchmarks/threads_and_precision.py                      # threads 1 vs 2, fp32
    python benchmarks/threads_and_precision.py --precision fp32 bf16 --threads 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepfit.learner.auto_precision import PRECISIONS, cpu_has_fast_bf16, cpu_name  # noqa: E402
from deepfit.recipes import RECIPES, get_recipe  # noqa: E402


def make_step(model, xb, yb, dtype):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> None:
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            out = model(xb)
        loss = torch.nn.functional.cross_entropy(out.float(), yb)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="fmnist_fast", choices=sorted(RECIPES))
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    parser.add_argument("--steps", type=int, default=5, help="steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    recipe = get_recipe(args.recipe)
    dls = recipe.dataloaders(valid="test", n_train=recipe.bs)
    xb, yb = next(iter(dls.train))
    model = recipe.build_model(1, 10).train()
    settings = [(t, p) for t in args.threads for p in args.precision]
    steps = {s: make_step(model, xb, yb, PRECISIONS[s[1]]) for s in settings}
    wall: dict = {s: [] for s in settings}
    cpu: dict = {s: [] for s in settings}
    load_before = os.getloadavg()[0]
    for r in range(args.rounds + 1):  # round 0 warms up
        for s in settings:
            torch.set_num_threads(s[0])
            w, c = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                steps[s]()
            if r > 0:
                wall[s].append((time.perf_counter() - w) / args.steps)
                cpu[s].append((time.process_time() - c) / args.steps)
    load_after = os.getloadavg()[0]
    print(f"{recipe.name} model, batch {recipe.bs}; {cpu_name()}, {os.cpu_count()} CPUs, native bf16: "
          f"{cpu_has_fast_bf16()}; torch {torch.__version__}; load average {load_before:.1f} -> {load_after:.1f}")
    print("| threads | precision | wall s/step (median) | CPU s/step | epoch of 60,000 (wall) |")
    print("| ---: | --- | ---: | ---: | ---: |")
    base = statistics.median(wall[settings[0]])
    for s in settings:
        m = statistics.median(wall[s])
        print(f"| {s[0]} | {s[1]} | {m:.3f} ({base / m:.2f}×) | {statistics.median(cpu[s]):.3f} | "
              f"{m * 60000 / recipe.bs:.0f} s |")


if __name__ == "__main__":
    main()
