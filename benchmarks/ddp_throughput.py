"""Samples per second of a Fashion-MNIST CNN: one process vs N processes under torchrun (DDP).

    python benchmarks/ddp_throughput.py [--nproc 2] [--n-train 12000] [--bs 128] [--arch simple_cnn]

Runs the same training script plainly (one process, all threads) and under
`torchrun --standalone --nproc_per_node=N` (each process gets threads/N threads), and prints the
samples/s of each and their ratio. Run with `--worker` it is the training script itself.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    import torch

    from deepfit import distributed
    from deepfit.data import fashion_mnist_loaders
    from deepfit.learner import Learner, accuracy
    from deepfit.models import get_model

    torch.manual_seed(0)
    dls = fashion_mnist_loaders(bs=args.bs, n_train=args.n_train, n_valid=2000, seed=0, device="cpu")
    learn = Learner(get_model(args.arch, c_in=1, n_out=10), dls, metrics=[accuracy], lr=2e-3)
    learn.progress.stream = io.StringIO()
    learn.fit(1)  # warm-up epoch
    start = time.perf_counter()
    learn.fit(args.epochs)
    elapsed = time.perf_counter() - start
    if distributed.is_main_process():
        print(json.dumps({"seconds": elapsed, "samples": args.n_train * args.epochs,
                          "threads_per_process": torch.get_num_threads(), "world": distributed.world_size(),
                          "valid_accuracy": learn.recorder.values[-1][2]}))


def run(cmd: list[str], env: dict) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(proc.stdout + proc.stderr)
    return json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--n-train", type=int, default=12000)
    parser.add_argument("--bs", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--arch", default="simple_cnn")
    parser.add_argument("--worker", action="store_true")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    threads = os.cpu_count() or 1
    common = [str(Path(__file__).resolve()), "--worker", "--n-train", str(args.n_train), "--bs", str(args.bs),
              "--epochs", str(args.epochs), "--arch", args.arch]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    single = run([sys.executable, *common], env)
    env_multi = {**env, "OMP_NUM_THREADS": str(max(threads // args.nproc, 1))}
    multi = run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
                 *common], env_multi)
    sps_1 = single["samples"] / single["seconds"]
    sps_n = multi["samples"] / multi["seconds"]
    print(f"1 process x {single['threads_per_process']} threads: {sps_1:8.1f} samples/s  "
          f"(valid acc {single['valid_accuracy']:.4f})")
    print(f"{args.nproc} processes x {multi['threads_per_process']} threads: {sps_n:8.1f} samples/s  "
          f"(valid acc {multi['valid_accuracy']:.4f})")
    print(f"ratio (DDP / single): {sps_n / sps_1:.3f}")


if __name__ == "__main__":
    main()
