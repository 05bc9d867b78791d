"""`deepfit train-vision` and `deepfit lr-find`: image classifiers on a folder of images or a built-in dataset."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

from .common import (
    CLIError,
    UsageError,
    best_valid,
    existing_run_dir,
    find_lr,
    finish_run,
    format_metrics,
    new_run_dir,
    options_from_config,
    phases_plan,
    precision_cb,
    print_artifacts,
    read_config,
    say,
    seed_everything,
    train_phases,
    write_config,
    write_results,
)
from .options import BUILTIN

SHOWN_EXTENSIONS = (".png", ".jpg", ".jpeg")


# ---------------------------------------------------------------------------------------------- data
def augment_tfms(preset: str, size: int, seed: int) -> list:
    from ..data.transforms import ColorJitter, Flip, PadCrop, Rotate

    if preset == "none":
        return []
    tfms: list[Any] = [Flip(seed=seed)]
    if preset in ("standard", "heavy"):
        tfms.append(PadCrop(padding=max(1, size // 10), seed=seed + 1))
    if preset == "heavy":
        tfms += [Rotate(10.0, seed=seed + 2), ColorJitter(seed=seed + 3)]
    return tfms


def _check_folder(path: Path) -> None:
    from ..data.blocks import IMAGE_EXTENSIONS, get_image_files

    if not path.exists():
        raise UsageError(f"DATA folder '{path}' does not exist",
                         hint=f"give a folder of class subfolders holding images, or one of: {', '.join(BUILTIN)}")
    if not path.is_dir():
        raise UsageError(f"DATA '{path}' is not a folder",
                         hint="give a folder whose subfolders (one per class) hold the images")
    if not get_image_files(path, extensions=IMAGE_EXTENSIONS):
        raise UsageError(f"DATA folder '{path}' has no images (looked for {', '.join(SHOWN_EXTENSIONS)})",
                         hint="put the images in one subfolder per class, e.g. DATA/cat/1.png")


def build_vision_dls(args: argparse.Namespace, augment: bool = True):
    """The `DataLoaders` for `args.data`; returns `(dls, description)`."""
    data = args.data
    if data is None:
        raise UsageError("missing DATA", hint="give an image folder or 'fashion-mnist' (or --resume RUN_DIR)")
    preset = args.augment if augment else "none"
    if data in BUILTIN:
        from ..data.builtin import fashion_mnist_loaders

        if args.size is not None and args.size != 28:
            raise UsageError("--size applies to image folders; fashion-mnist images are 28×28")
        try:
            dls = fashion_mnist_loaders(bs=args.bs, seed=args.seed, n_train=args.n_train, n_valid=args.n_valid,
                                        valid_pct=args.valid_pct if args.valid_pct is not None else 0.1,
                                        tfms=augment_tfms(preset, 28, args.seed))
        except FileNotFoundError as e:
            raise CLIError(f"Fashion-MNIST is not available: {e}", hint="run `deepfit download fashion-mnist` "
                           "(or install the Debian package dataset-fashion-mnist)") from None
        return dls, f"fashion-mnist ({len(dls.train.indices)} training, {len(dls.valid.indices)} validation images)"
    path = Path(data)
    _check_folder(path)
    from ..data.transforms import Resize
    from ..data.vision import ImageDataLoaders, ImageReadError

    item_tfms = [Resize(args.size)] if args.size else []
    size = args.size or 32
    try:
        dls = ImageDataLoaders.from_folder(path, valid_pct=args.valid_pct, seed=args.seed, item_tfms=item_tfms,
                                           batch_tfms=augment_tfms(preset, size, args.seed), bs=args.bs)
    except ImageReadError as e:
        if "others are" in str(e) and not args.size:
            raise UsageError(f"images in '{path}' differ in size: {str(e).split(';')[0]}",
                             hint="add --size N to resize (and centre-crop) every image to N×N") from None
        raise
    if args.n_train is not None:
        dls.train = _subset_loader(dls.train, args.n_train, args.seed)
    n_train, n_valid = len(dls.items[0]), len(dls.items[1])
    if n_valid == 0:
        raise UsageError(f"DATA folder '{path}' gives no validation images",
                         hint="add a valid/ folder, more images, or a larger --valid-pct")
    return dls, f"{path} ({n_train} training, {n_valid} validation images, classes: {', '.join(dls.vocab)})"


def _subset_loader(dl, n: int, seed: int):
    import torch

    idx = getattr(dl, "indices", None)
    if idx is None or not hasattr(dl, "new"):
        raise UsageError("--n-train works only on folders small enough to load into memory")
    g = torch.Generator().manual_seed(seed + 1)
    keep = torch.as_tensor(idx)[torch.randperm(len(idx), generator=g)[:n]]
    return dl.new(indices=keep)


# ---------------------------------------------------------------------------------------------- model
def build_vision_learner(args: argparse.Namespace, dls, lr: float):
    """A `Learner` for `args.arch` (with a new head on pretrained weights when `args.weights`)."""
    from torch import nn

    from ..data.vision import input_channels
    from ..learner import Learner, accuracy
    from ..models import MODELS, get_model
    from ..models.heads import vision_splitter

    if args.arch not in MODELS or args.arch == "vision_model":
        names = sorted(k for k in MODELS if k != "vision_model")
        raise UsageError(f"unknown --arch {args.arch!r}", hint=f"registered architectures: {', '.join(names)}")
    c_in, n_out = input_channels(dls), dls.c
    splitter = None
    try:
        if args.weights is not None:
            model = get_model("vision_model", arch=args.arch, n_out=n_out, c_in=c_in)
            splitter = vision_splitter
        elif args.arch == "mlp":
            from ..data.vision import one_batch

            model = get_model("mlp", n_in=math.prod(one_batch(dls.valid)[0].shape[1:]), n_out=n_out)
        else:
            from ..learner.vision import build_arch

            model = build_arch(args.arch, c_in, n_out=n_out)
            model.arch_name = args.arch
    except (TypeError, ValueError) as e:
        raise CLIError(f"cannot build {args.arch!r} for this data: {e}",
                       hint="try another --arch, or --size for architectures that need larger images") from None
    if args.weights is not None:
        _load_weights(model, Path(args.weights), args.arch)
    loss = nn.CrossEntropyLoss()
    if args.label_smoothing > 0:
        from ..learner.losses import LabelSmoothingCrossEntropy

        loss = LabelSmoothingCrossEntropy(eps=args.label_smoothing)
    cbs = []
    if args.mixup > 0:
        from ..learner.callbacks.mixup import MixUp

        cbs.append(MixUp(alpha=args.mixup, seed=args.seed))
    pcb = precision_cb(args.precision)
    if pcb is not None:
        cbs.append(pcb)
    learn = Learner(model, dls, loss_func=loss, metrics=[accuracy], lr=lr, cbs=cbs, splitter=splitter)
    if args.quiet:
        learn.remove_cb(learn.progress)
    return learn


def _load_weights(model, path: Path, arch: str) -> None:
    """Load a local weights file into the body of a `VisionModel` (body + new head)."""
    from ..learner.vision import load_body_weights, read_state_dict

    if not path.is_file():
        raise UsageError(f"--weights file '{path}' does not exist", hint="give a local state-dict file")
    try:
        load_body_weights(model[0], read_state_dict(path), str(path))
    except ValueError as e:
        raise CLIError(f"--weights '{path}' do not fit {arch}: {e}",
                       hint=f"give weights saved from a {arch} model (same input channels and widths)") from None


def check_vision_options(args: argparse.Namespace) -> None:
    if args.freeze_epochs > 0 and args.weights is None:
        raise UsageError("--freeze-epochs needs --weights (only a pretrained body is worth freezing)",
                         hint="add --weights FILE, or drop --freeze-epochs")


# ---------------------------------------------------------------------------------------------- commands
def cmd_train_vision(args: argparse.Namespace) -> int:
    """Train an image classifier and write a run folder."""
    resuming = args.resume is not None
    if resuming:
        run_dir = existing_run_dir(args.resume)
        config = read_config(run_dir)
        args = options_from_config(config, "train-vision", args)
        lr = config["resolved"]["lr"]
    else:
        check_vision_options(args)
        lr = args.lr
    seed_everything(args.seed)
    dls, desc = build_vision_dls(args)
    learn = build_vision_learner(args, dls, lr if lr != "auto" else 1e-3)
    if not resuming:
        run_dir = new_run_dir(args.out, args.name)
    learn.path = run_dir
    plan = phases_plan(args.freeze_epochs, args.epochs)

    def before_phase(i: int, prefix: str) -> None:
        if prefix == "frozen":
            learn.freeze()
        elif args.weights is not None:
            learn.unfreeze()

    if not resuming:
        if plan[0][0] == "frozen":
            learn.freeze()
        if lr == "auto":
            lr, _ = find_lr(learn, run_dir)
        write_config(run_dir, "train-vision", args, {
            "lr": lr, "classes": list(dls.vocab), "data": desc, "device": str(dls.device),
            "n_params": sum(p.numel() for p in learn.model.parameters())})
    say(f"deepfit: training {args.arch} on {desc}; run folder {run_dir}")
    start = time.perf_counter()
    hparams = {"arch": args.arch, "lr": lr, "bs": args.bs, "epochs": args.epochs, "mixup": args.mixup,
               "label_smoothing": args.label_smoothing, "augment": args.augment, "precision": args.precision}
    train_phases(learn, run_dir, plan, lr, hparams, resuming, before_phase)
    train_time = time.perf_counter() - start
    from torch import nn

    from ..interpret.interpretation import write_classifier_report

    artifacts = finish_run(learn, run_dir, report=write_classifier_report, export_loss=nn.CrossEntropyLoss())
    extra: dict[str, Any] = {"valid_best": best_valid(learn)}
    say(f"validation (best model): {format_metrics(extra['valid_best'])}  training time {train_time:.1f}s")
    if args.tta:
        from ..learner.metrics import accuracy

        probs, targs = learn.tta()
        extra["valid_tta_accuracy"] = float(accuracy(probs, targs))
        say(f"validation with TTA: accuracy {extra['valid_tta_accuracy']:.4f}")
    test = getattr(dls, "test", None)
    if test is not None:
        extra["test"] = best_valid(learn, test)
        say(f"test: {format_metrics(extra['test'])}  ({len(test.y)} images)")
    artifacts["results"] = write_results(run_dir, learn, train_time, extra)
    print_artifacts(run_dir, artifacts)
    return 0


def cmd_lr_find(args: argparse.Namespace) -> int:
    """Run the learning-rate finder on the train-vision data and model options; save the plot."""
    if args.task != "vision":
        from .lm import cmd_lr_find_text

        return cmd_lr_find_text(args)
    args.arch = args.arch or "simple_cnn"
    seed_everything(args.seed)
    for name, default in (("mixup", 0.0), ("label_smoothing", 0.0), ("precision", "fp32"), ("quiet", True)):
        setattr(args, name, getattr(args, name, default))
    dls, desc = build_vision_dls(args)
    learn = build_vision_learner(args, dls, 1e-3)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    learn.path = out
    say(f"deepfit: lr_find for {args.arch} on {desc}")
    lr, res = find_lr(learn, out, num_it=args.num_it)
    print(f"suggested lr: {lr:.3g}")
    return 0
