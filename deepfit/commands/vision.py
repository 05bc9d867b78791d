"""`deepfit train-vision` and `deepfit lr-find`: image classifiers on a folder of images or a built-in dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from torch import nn

from ..data.vision import input_channels, one_batch
from ..interpret.interpretation import write_classifier_report
from ..learner.callbacks.ema import EMA
from ..learner.callbacks.mixup import MixUp
from ..learner.learner import Learner
from ..learner.losses import BCEWithLogitsFlat, LabelSmoothingCrossEntropy
from ..learner.metrics import accuracy, accuracy_multi, f1_multi
from ..learner.vision import load_body_weights, read_state_dict
from ..models.heads import vision_splitter
from ..models.registry import get_model, spec
from ..models.xresnet import to_channels_last
from ..rng import seed_everything
from ..run import Phase
from .errors import CLIError, UsageError
from .lm import cmd_lr_find_text
from .models import check_arch
from .training import (
    MAIN_PHASE,
    TrainJob,
    best_valid,
    format_metrics,
    lr_find_into,
    precision_callbacks,
    say,
    train,
)
from .vision_data import build_vision_dls, image_size, use_channels_last
from .vision_settings import VisionSettings, resolve_settings


def cmd_train_vision(args: argparse.Namespace) -> int:
    """Train an image classifier and write a run folder."""
    settings = resolve_settings(args, image_size(args))
    if args.freeze_epochs > 0 and args.weights is None:
        raise UsageError("--freeze-epochs needs --weights (only a pretrained body is worth freezing)",
                         hint="add --weights FILE, or drop --freeze-epochs")
    if args.multi_label and (args.label_smoothing > 0 or args.mixup > 0):
        raise UsageError("--label-smoothing and --mixup are for single-label classes, not --multi-label",
                         hint="drop --label-smoothing/--mixup")
    check_arch("train-vision", args.arch)
    seed_everything(args.seed)
    dls, desc = build_vision_dls(args)
    if args.channels_last:
        use_channels_last(dls)
    learn = build_vision_learner(dls, args.arch, args.weights, args.label_smoothing, args.mixup, args.precision,
                                 args.seed, settings=settings, channels_last=args.channels_last, ema=args.ema)
    say(f"deepfit: {settings.describe()}")

    def before_phase(phase: Phase) -> None:
        if phase.name == "frozen":
            learn.freeze()
        elif args.weights is not None:
            learn.unfreeze()

    phases = [Phase("frozen", args.freeze_epochs)] if args.freeze_epochs > 0 else []
    multi = bool(getattr(dls, "multi_label", False))  # no confusion matrix; the export keeps the BCE loss
    def fit(learn, n_epoch: int, lr: float, cbs: list, **kwargs) -> None:
        learn.fit_one_cycle(n_epoch, lr, pct_start=settings.pct_start, div_final=settings.div_final, cbs=cbs,
                            **kwargs)

    job = TrainJob(learn, desc, title=_title(args.arch, settings),
                   resolved={"classes": list(dls.vocab), "multi_label": multi, "settings": settings.as_dict()},
                   phases=phases + [Phase(MAIN_PHASE, args.epochs)], before_phase=before_phase, fit=fit,
                   report=None if multi else write_classifier_report,
                   export_loss=None if multi else nn.CrossEntropyLoss(),
                   after=lambda learn, run: vision_results(learn, args.tta))
    return train(args, "train-vision", job)


def _title(arch: str, settings: VisionSettings) -> str:
    widths = settings.arch_kwargs.get("widths")
    return arch + (f" (widths {widths})" if widths else "")


def vision_results(learn, tta: int) -> dict[str, float]:
    """TTA accuracy on validation (with `tta` passes) and the test set's results (when the data has one)."""
    out: dict = {}
    if tta:
        probs, targs = learn.tta(n=int(tta))
        multi = getattr(learn.dls, "multi_label", False)
        acc = accuracy_multi(probs, targs, sigmoid=False) if multi else accuracy(probs, targs)
        out["valid_tta_accuracy"], out["tta_passes"] = float(acc), int(tta)
        say(f"validation with TTA ({int(tta)} passes): accuracy {out['valid_tta_accuracy']:.4f}")
    test = getattr(learn.dls, "test", None)
    if test is not None:
        out["test"] = best_valid(learn, test)
        say(f"test: {format_metrics(out['test'])}  ({len(test.y)} images)")
    return out


def cmd_lr_find(args: argparse.Namespace) -> int:
    """Run the learning-rate finder on the train-vision data and model options; save the plot."""
    if args.task != "vision":
        args.bs = args.bs or 64
        return cmd_lr_find_text(args)
    settings = resolve_settings(args, image_size(args))  # the model, batch size and augmentation of train-vision
    check_arch("train-vision", args.arch)
    seed_everything(args.seed)
    dls, desc = build_vision_dls(args)
    learn = build_vision_learner(dls, args.arch, args.weights, seed=args.seed, settings=settings)
    learn.remove_cb(learn.progress)
    say(f"deepfit: {settings.describe()}")
    return lr_find_into(learn, args.out, f"{_title(args.arch, settings)} on {desc}", args.num_it)


# ---------------------------------------------------------------------------------------------- the learner
def build_vision_learner(dls, arch: str, weights: str | None = None, label_smoothing: float = 0.0,
                         mixup: float = 0.0, precision: str = "fp32", seed: int = 0,
                         settings: VisionSettings | None = None, channels_last: bool = False,
                         ema: float = 0.0) -> Learner:
    """A `Learner` for the registered vision `arch` (a new head on a pretrained body with `weights`).

    `ema > 0` adds an `EMA` callback with that decay (validation, the best model and the export use the average).

    `settings` (from `resolve_settings`) give the architecture's arguments and the weight decay of a recipe.
    """
    c_in, n_out = input_channels(dls), dls.c
    arch_kwargs = settings.arch_kwargs if settings is not None and weights is None else {}
    try:
        if weights is not None:
            model = get_model("vision_model", body_arch=arch, n_out=n_out, c_in=c_in)
        else:
            size = {"img_size": list(one_batch(dls.valid)[0].shape[2:])} if spec(arch).needs_img_size else {}
            model = get_model(arch, c_in=c_in, n_out=n_out, **size, **arch_kwargs)
    except (TypeError, ValueError) as e:
        raise CLIError(f"cannot build {arch!r} for this data: {e}",
                       hint="try another --arch, or --size for architectures that need larger images") from None
    if weights is not None:
        _load_weights(model, Path(weights), arch)
    if channels_last:
        to_channels_last(model)
    loss = LabelSmoothingCrossEntropy(eps=label_smoothing) if label_smoothing > 0 else nn.CrossEntropyLoss()
    metrics = [accuracy]
    if getattr(dls, "multi_label", False):
        loss, metrics = BCEWithLogitsFlat(), [accuracy_multi, f1_multi]
    cbs = [MixUp(alpha=mixup, seed=seed)] if mixup > 0 else []
    if ema > 0:
        cbs.append(EMA(decay=ema))
    return Learner(model, dls, loss_func=loss, metrics=metrics, cbs=cbs + precision_callbacks(precision),
                   splitter=vision_splitter if weights is not None else None,
                   wd=settings.wd if settings is not None else None)


def _load_weights(model, path: Path, arch: str) -> None:
    """Load a local weights file into the body of a `VisionModel` (body + new head)."""
    if not path.is_file():
        raise UsageError(f"--weights file '{path}' does not exist", hint="give a local state-dict file")
    try:
        load_body_weights(model[0], read_state_dict(path), str(path))
    except ValueError as e:
        raise CLIError(f"--weights '{path}' do not fit {arch}: {e}",
                       hint=f"give weights saved from a {arch} model (same input channels and widths)") from None
