"""How fast deepfit streams a folder of JPEGs, against PIL alone on one core and a plain torch DataLoader.

    python benchmarks/image_pipeline.py                 # 20,000 + 2,000 JPEGs at 144 px, trained at 128 px
    python benchmarks/image_pipeline.py --n 20000 --size 160 --train-size 128 --workers 0,1,2 --measure 3000

The folder is made once (and reused) from real Fashion-MNIST images (/usr/share/datasets/fashion-mnist or
`$DEEPFIT_DATA`): each 28×28 image upscaled (bicubic) to `--size` px and coloured (a per-image pair of tints
mapped through the grey levels), saved as JPEG (quality 90) in `train/<class>/` and `valid/<class>/`.

Measured in one run, in images per second and in CPU milliseconds per image (this process and its loader
workers; one pass over `--measure` images of a shuffled epoch, after a first batch that starts the workers):
- `pil`: open + decode + convert to RGB + resize to `--train-size` + to an array, in this process (one core):
  the speed limit of an uncached pipeline on one core;
- `torch`: a plain `torch.utils.data.DataLoader` (no torchvision) over a Dataset doing the same, default
  collate, then uint8 → float / 255 → normalize in place (what deepfit's loader does on the device), with
  0/1/2 workers;
- `deepfit`: `ImageDataLoaders.from_folder(..., in_memory=False, num_workers=w)`, the training loader;
- `deepfit cache build`: the first epoch with the decoded cache on (a whole epoch: decoding + writing it);
- `deepfit cached`: a later epoch, read from the memory-mapped cache (a whole epoch).

The machine's load (`uptime`) is printed before and after: on a shared machine the figures are only as
good as the cores that were free. The last line is the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepfit.data import ImageDataLoaders, Resize, cache_dir, fashion_mnist  # noqa: E402
from deepfit.data.transforms import IMAGENET_STATS  # noqa: E402


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "uptime unavailable"


# ---------------------------------------------------------------------------------------------- the folder
def colour(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An RGB image from a grey one: dark levels take one random tint, bright levels another."""
    lo, hi = rng.integers(0, 120, 3), rng.integers(140, 256, 3)
    t = gray.astype(np.float32)[..., None] / 255.0
    return (lo * (1 - t) + hi * t).astype(np.uint8)


def make_folder(root: Path, n_train: int, n_valid: int, size: int, seed: int = 0) -> Path:
    """`root/{train,valid}/<class>/<i>.jpg` from Fashion-MNIST; reused when `root/.complete` exists."""
    done = root / ".complete"
    if done.exists():
        return root
    if root.exists():
        shutil.rmtree(root)
    train, test = fashion_mnist()
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for split, data, n in (("train", train, n_train), ("valid", test, n_valid)):
        idx = rng.permutation(len(data.labels))[:n]
        for i in idx.tolist():
            folder = root / split / data.classes[int(data.labels[i])].replace("/", "_")
            folder.mkdir(parents=True, exist_ok=True)
            img = Image.fromarray(colour(data.images[i].numpy(), rng)).resize((size, size), Image.BICUBIC)
            img.save(folder / f"{i}.jpg", quality=90)
    done.write_text(f"{n_train} {n_valid} {size}\n")
    print(f"made {n_train + n_valid} JPEGs of {size}×{size} px in {root} in {time.perf_counter() - t0:.0f} s",
          flush=True)
    return root


# ---------------------------------------------------------------------------------------------- baselines
def pil_decode(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as img:
        img = img.convert("RGB")
        if img.size != (size, size):
            img = img.resize((size, size), Image.BILINEAR)
        return np.asarray(img)


def pil_rate(files: list[Path], size: int) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    for f in files:
        pil_decode(f, size)
    return len(files) / (time.perf_counter() - t0), (time.process_time() - c0) / len(files) * 1e3


class PlainDataset(torch.utils.data.Dataset):
    def __init__(self, files: list[Path], size: int):
        self.files, self.size = files, size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        a = pil_decode(self.files[i], self.size)
        return torch.from_numpy(a.copy()).permute(2, 0, 1), 0


def tree_cpu_seconds() -> float:
    """CPU seconds used so far by this process and its live children (the loader workers), from /proc."""
    me, tick, total = os.getpid(), os.sysconf("SC_CLK_TCK"), 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(pid) == me or int(fields[1]) == me:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def timed_pass(batches, n_images: int | None = None) -> tuple[float, float]:
    """`(images per second, CPU milliseconds per image)` over `n_images` (all: None) after the first batch,
    which starts the workers. CPU time counts this process and its workers: on a busy machine it is the
    steadier figure."""
    it = iter(batches)
    next(it)
    n, t0, c0 = 0, time.perf_counter(), tree_cpu_seconds()
    for xb, _ in it:
        n += len(xb)
        if n_images is not None and n >= n_images:
            break
    wall, cpu = time.perf_counter() - t0, tree_cpu_seconds() - c0
    return n / wall, cpu / n * 1e3


def torch_rate(files: list[Path], size: int, workers: int, bs: int, n_images: int) -> tuple[float, float]:
    mean = torch.tensor(IMAGENET_STATS[0]).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STATS[1]).view(1, 3, 1, 1)
    dl = torch.utils.data.DataLoader(PlainDataset(files, size), batch_size=bs, shuffle=True, num_workers=workers,
                                     generator=torch.Generator().manual_seed(0))

    def batches():
        for xb, yb in dl:
            yield xb.float().div_(255).sub_(mean).div_(std), yb  # in place, as deepfit does

    return timed_pass(batches(), n_images)


# ---------------------------------------------------------------------------------------------- deepfit
def deepfit_loaders(root: Path, size: int, workers: int, bs: int, cache: Path | bool = False):
    return ImageDataLoaders.from_folder(root, item_tfms=[Resize(size)], bs=bs, in_memory=False, num_workers=workers,
                                        stats="imagenet", device="cpu", cache=cache, seed=0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20000, help="training JPEGs (plus n/10 validation)")
    p.add_argument("--size", type=int, default=144, help="JPEG size in px (128-160 for the README figures)")
    p.add_argument("--train-size", type=int, default=128, help="the size images are resized to")
    p.add_argument("--workers", default="0,1,2", help="worker counts to measure")
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--measure", type=int, default=3000, help="images timed per uncached configuration")
    p.add_argument("--pil-images", type=int, default=1500, help="images timed for the PIL baseline")
    p.add_argument("--folder", type=Path, default=None,
                   help="where the JPEGs are made (default: $DEEPFIT_DATA/benchmarks/fmnist-jpeg-N-SIZE)")
    p.add_argument("--no-cache", action="store_true", help="skip the decoded-cache measurements")
    args = p.parse_args()
    torch.set_num_threads(1)
    workers = [int(w) for w in args.workers.split(",")]
    before = uptime()
    print(f"load before: {before}", flush=True)
    print(f"cpus in the affinity mask: {len(os.sched_getaffinity(0))}; torch threads: 1", flush=True)
    root = args.folder or cache_dir() / "benchmarks" / f"fmnist-jpeg-{args.n}-{args.size}"
    make_folder(root, args.n, max(1, args.n // 10), args.size)
    files = sorted((root / "train").rglob("*.jpg"))
    rng = np.random.default_rng(1)
    sample = [files[i] for i in rng.permutation(len(files))[:args.pil_images]]
    for f in sample[:50]:  # page cache and PIL warm
        pil_decode(f, args.train_size)
    figures: dict = {"n_train": len(files), "jpeg_px": args.size, "train_px": args.train_size, "bs": args.bs}
    rate, cpu = pil_rate(sample, args.train_size)
    figures["pil_1core"], figures["pil_cpu_ms"] = round(rate), round(cpu, 3)
    print(f"PIL alone, one core: {rate:.0f} images/s ({cpu:.2f} ms CPU per image)", flush=True)
    for w in workers:
        rate, cpu = torch_rate(files, args.train_size, w, args.bs, args.measure)
        figures[f"torch_w{w}"], figures[f"torch_w{w}_cpu_ms"] = round(rate), round(cpu, 3)
        print(f"plain torch DataLoader, {w} workers: {rate:.0f} images/s ({cpu:.2f} ms CPU per image)", flush=True)
    for w in workers:
        dls = deepfit_loaders(root, args.train_size, w, args.bs)
        rate, cpu = timed_pass(dls.train, args.measure)
        figures[f"deepfit_w{w}"], figures[f"deepfit_w{w}_cpu_ms"] = round(rate), round(cpu, 3)
        print(f"deepfit streaming, {w} workers: {rate:.0f} images/s ({cpu:.2f} ms CPU per image)", flush=True)
        del dls
    if not args.no_cache:
        w = max(workers)
        with tempfile.TemporaryDirectory(prefix="deepfit-cache-") as tmp:
            dls = deepfit_loaders(root, args.train_size, w, args.bs, cache=Path(tmp))
            build, build_cpu = timed_pass(dls.train)
            assert dls.train.cache.complete
            cached, cached_cpu = timed_pass(dls.train)
            size_mb = dls.train.cache.path.stat().st_size / 2**20
        figures.update({f"deepfit_cache_build_w{w}": round(build), "deepfit_cached": round(cached),
                        "deepfit_cached_cpu_ms": round(cached_cpu, 3), "cache_mib": round(size_mb)})
        print(f"deepfit, decoded cache: first epoch (decode + write, {w} workers) {build:.0f} images/s; "
              f"later epochs (memory map) {cached:.0f} images/s ({cached_cpu:.3f} ms CPU per image); "
              f"cache file {size_mb:.0f} MiB", flush=True)
    pil, pil_cpu = figures["pil_1core"], figures["pil_cpu_ms"]
    print("\nratios: images/s over PIL alone on one core; deepfit over the plain DataLoader (images/s, and CPU "
          "per image: < 1 is less CPU)")
    for w in workers:
        d, t = figures[f"deepfit_w{w}"], figures[f"torch_w{w}"]
        dc, tc = figures[f"deepfit_w{w}_cpu_ms"], figures[f"torch_w{w}_cpu_ms"]
        print(f"  {w} workers: deepfit {d / pil:.2f}× PIL, torch {t / pil:.2f}× PIL, deepfit/torch {d / t:.2f} "
              f"(CPU per image: deepfit/torch {dc / tc:.2f}, deepfit/PIL {dc / pil_cpu:.2f})")
        figures[f"ratio_deepfit_w{w}_pil"] = round(d / pil, 2)
        figures[f"ratio_deepfit_torch_w{w}"] = round(d / t, 2)
        figures[f"ratio_cpu_deepfit_torch_w{w}"] = round(dc / tc, 2)
    if "deepfit_cached" in figures:
        print(f"  cached epochs: {figures['deepfit_cached'] / pil:.1f}× PIL")
        figures["ratio_cached_pil"] = round(figures["deepfit_cached"] / pil, 1)
    after = uptime()
    print(f"load after: {after}")
    figures["load_before"] = before.split("load average:")[-1].strip()
    figures["load_after"] = after.split("load average:")[-1].strip()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
