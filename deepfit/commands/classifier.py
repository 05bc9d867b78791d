"""`deepfit train-classifier`: ULMFiT on a train-lm run, or an LSTM/BiLSTM (optionally on GloVe vectors).

With `--lm RUN_DIR` it is ULMFiT's third stage: the run's vocabulary and encoder, a new head, then gradual
unfreezing (`fit_ulmfit`: head only, last 2 groups, last 3, all; `--stages` epochs each). Each stage is announced
(`stage 2/4: last 2 groups, lr 4.4e-04..1e-02`), tagged in metrics.csv (`stage` column) and in the checkpoints,
so `--resume` continues the stage (and the epoch) where the run stopped.
"""

from __future__ import annotations

import argparse
import inspect
import warnings
from pathlib import Path
from typing import Any

from ..interpret.interpretation import ClassificationInterpretation
from ..learner.callbacks.training import epoch_summary
from ..learner.learner import Learner
from ..learner.metrics import accuracy, accuracy_multi, f1_multi
from ..models import lstm_classifier_split
from ..models.registry import get_model
from ..rng import seed_everything
from ..run import Phase, RunDir
from ..text.embeddings import load_embeddings
from ..text.learner import ULMFIT_FEATURE_LAYERS, ULMFIT_STAGES, fit_ulmfit, text_classifier_learner
from .errors import CLIError, UsageError
from .lm import ENCODER_NAME
from .models import check_arch
from .stages import (
    NOTHING_LEFT,
    ContinuousHistory,
    StageIndex,
    StageTag,
    checkpoint_stage,
    describe_frozen,
    stage_lr_finder,
)
from .text_data import classifier_data, load_vocab, pad_index, save_vocab
from .training import MAIN_PHASE, TrainJob, precision_callbacks, say, train

SCRATCH_LR = 1e-2  # --lr default without --lm (one-cycle from scratch); with --lm, fit_ulmfit's defaults


def ulmfit_defaults() -> tuple[float, list[int]]:
    """fit_ulmfit's default base rate and stage epochs (the research behind them: docs/ulmfit.md)."""
    params = inspect.signature(fit_ulmfit).parameters
    return float(params["lr"].default), [int(e) for e in params["epochs"].default]


def cmd_train_classifier(args: argparse.Namespace) -> int:
    """Train a text classifier (ULMFiT on a train-lm run, or an LSTM/BiLSTM) and write a run folder."""
    args.arch = args.arch or ("awd_lstm" if args.lm else "bilstm")
    ulmfit_lr, ulmfit_epochs = ulmfit_defaults()
    if args.lr is None:
        args.lr = ulmfit_lr if args.lm else SCRATCH_LR
    if args.stages is None:
        args.stages = ulmfit_epochs
    lm_run, lm_vocab, lm_kind = check_classifier_options(args)
    seed_everything(args.seed)
    dls, vocab, kind, desc, valid_texts = classifier_data(args, lm_vocab, lm_kind)
    learn = build_classifier_learner(args, dls, vocab, lm_run)
    recipe = f"ULMFiT from {lm_run.path}, stages {args.stages}" if lm_run else f"{args.epochs} epochs"
    multi = bool(getattr(dls, "multi_label", False))  # no confusion matrix or top losses per class
    job = TrainJob(learn, desc, title=f"{args.arch} classifier ({recipe})",
                   report=None if multi else text_report(valid_texts),
                   resolved={"arch": args.arch, "tokenizer": kind, "vocab_size": len(vocab),
                             "classes": list(dls.vocab), "multi_label": multi,
                             "lm": str(lm_run.path) if lm_run else None},
                   export_kwargs={"arch": learn.export_arch}, save_files=lambda run: save_vocab(run.path, vocab, kind))
    if lm_run is not None:
        _ulmfit_job(job, args)
    return train(args, "train-classifier", job)


def _ulmfit_job(job: TrainJob, args: argparse.Namespace) -> None:
    """ULMFiT's stages as one phase (one checkpoint series): the head alone first (also for --lr auto), then
    gradual unfreezing; each stage announced, tagged in metrics.csv and the checkpoints, resumable."""
    learn, current, results = job.learn, StageIndex(), []
    n_groups = len(learn.parameter_groups())

    def on_stage(stage) -> None:
        current.index = stage.index
        say(stage.label)

    def fit(learn, n_epoch, lr, cbs, resume=None) -> None:
        extra = [StageTag(lambda _learn: current.index), ContinuousHistory()]
        start = 0
        if resume is not None:
            point = checkpoint_stage(learn, resume, args.stages)
            resume, start = point.path, point.stage
            n = len(ULMFIT_STAGES)
            say(f"checkpoint {point.path.name} ended ULMFiT stage {start + 1}/{n}" if point.stage_done else
                f"resuming ULMFiT stage {start + 1}/{n} at its epoch {point.epoch} (checkpoint {point.path.name})")
            if point.stage_done:  # restore the run's state, go on with the next stage
                _restore(learn, point, lr, [*cbs, *extra], current)
                start, resume = start + 1, None
        if start == len(ULMFIT_STAGES):
            return
        results.extend(fit_ulmfit(learn, lr, epochs=args.stages, cbs=[*cbs, *extra], start_stage=start,
                                  resume=resume, on_stage=on_stage))

    def after(learn, run) -> dict[str, Any]:
        out = job_after(learn, run) if job_after is not None else {}
        out["ulmfit_stages"] = [_jsonable(r) for r in results]
        best = epoch_summary(learn)["best_epoch"]  # the rule RunBestModel follows
        rows = {r["epoch"]: r for r in run.read_metrics()}
        stage = rows.get(str(best), {}).get("stage")
        if stage:
            k = int(stage)
            say(f"best epoch {best}: stage {k}/{len(ULMFIT_STAGES)} ({job.resolved['stages'][k - 1]})")
            out["best_stage"] = k
        return out

    job_after = job.after
    job.phases = [Phase(MAIN_PHASE, sum(args.stages))]
    job.before_phase = lambda phase: learn.freeze_to(-1)
    job.fit = fit
    job.after = after
    job.stage_of = lambda _learn: current.index + 1
    job.lr_finder = stage_lr_finder("head", say)
    job.resolved["stages"] = [describe_frozen(n, n_groups) for n in ULMFIT_STAGES]


def _restore(learn, point, lr: float, cbs: list, current: StageIndex) -> None:
    """Load a checkpoint taken at the end of ULMFiT stage `point.stage` (weights, optimizer, random and loader
    states, history) with a fit of that stage that has nothing left to train, as fit_ulmfit would (it cannot:
    a stage that takes no step has no applied rates to report)."""
    current.index = point.stage
    learn.freeze_to(ULMFIT_STAGES[point.stage])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=NOTHING_LEFT)
        learn.fit_one_cycle(point.epoch, lr, cbs=cbs, resume=point.path)


def _jsonable(result: dict[str, Any]) -> dict[str, Any]:
    lr = result["lr"]
    return {**result, "lr": [lr.start, lr.stop] if isinstance(lr, slice) else lr}


def check_classifier_options(args: argparse.Namespace):
    """Refuse options that do not go together; returns the --lm run with its vocabulary and tokenizer kind."""
    if args.resume is not None and args.lm is not None:
        started = RunDir.open(args.resume).read_config().get("options", {}).get("epochs")
        if started is not None and args.epochs != started:
            raise UsageError("--epochs: a ULMFiT run (--lm) trains its --stages epochs; it cannot train longer",
                             hint="drop --epochs; for more epochs start a new run with other --stages")
    if args.lm is not None and args.arch != "awd_lstm":
        raise UsageError(f"--lm fine-tunes an AWD-LSTM encoder; --arch {args.arch} cannot use it",
                         hint="drop --arch, or drop --lm to train an LSTM from scratch")
    if args.embeddings is not None and args.arch == "awd_lstm":
        raise UsageError("--embeddings is for --arch lstm or bilstm", hint="add --arch bilstm")
    if args.lm is None:
        return None, None, None
    lm_run = RunDir.open(args.lm)
    lm_vocab, lm_kind = load_vocab(lm_run.path)
    if args.tokenizer is not None and args.tokenizer != lm_kind:
        raise UsageError(f"--tokenizer {args.tokenizer} differs from the --lm run's ({lm_kind})",
                         hint="drop --tokenizer: the classifier must read texts as its language model did")
    if lm_run.read_config().get("options", {}).get("arch") != "awd_lstm":
        raise UsageError(f"--lm '{lm_run.path}' is not an AWD-LSTM language model run",
                         hint="train one with `deepfit train-lm TEXT --arch awd_lstm`")
    return lm_run, lm_vocab, lm_kind


def build_classifier_learner(args: argparse.Namespace, dls, vocab, lm_run: RunDir | None) -> Learner:
    """An AWD-LSTM classifier (on the --lm run's encoder, or from scratch) or an LSTM/BiLSTM one."""
    name = check_arch("train-classifier", args.arch)
    cbs = precision_callbacks(args.precision)
    # multi-label data: the Learner's default loss is BCEWithLogitsFlat (see Learner's loss_func)
    metrics = [accuracy_multi, f1_multi] if getattr(dls, "multi_label", False) else [accuracy]
    if args.arch == "awd_lstm":
        enc = lm_run.models_dir / f"{ENCODER_NAME}.pth" if lm_run is not None else None
        if enc is not None and not enc.exists():
            raise CLIError(f"'{lm_run.path}' has no saved encoder ({enc})", hint="give an AWD-LSTM train-lm run folder")
        cfg = None if enc is not None else dict(emb_sz=args.emb_sz, n_hid=args.n_hid, n_layers=max(args.n_layers, 1))
        learn = text_classifier_learner(dls, vocab=vocab, config=cfg, pretrained_encoder=enc, cbs=cbs,
                                        metrics=metrics, feature_layers=ULMFIT_FEATURE_LAYERS if enc else "last")
        learn.export_arch = name
        return learn
    emb_sz, weight = args.emb_sz, None
    if args.embeddings is not None:
        if not Path(args.embeddings).is_file():
            raise UsageError(f"--embeddings file '{args.embeddings}' does not exist",
                             hint="give a GloVe-format text file (a word and its numbers per line)")
        weight = load_embeddings(args.embeddings, vocab, logger=say).weight
        emb_sz = weight.shape[1]
    model = get_model(name, vocab_sz=len(vocab), n_out=dls.c, emb_sz=emb_sz, n_hid=args.n_hid, n_layers=args.n_layers,
                      pad_idx=pad_index(vocab))
    if weight is not None:
        model.set_embeddings(weight)
    learn = Learner(model, dls, metrics=metrics, cbs=cbs, splitter=lstm_classifier_split)
    learn.export_arch = None
    return learn


def text_report(valid_texts: list[str]):
    """A report function: confusion matrix PNG and the worst validation texts (`top_losses.txt`)."""

    def report(learn, run_dir: Path) -> dict[str, Path]:
        probs, targets, losses = learn.get_preds(with_loss=True)
        interp = ClassificationInterpretation(probs, targets, losses, vocab=learn.dls.vocab)
        out = {"confusion matrix plot": interp.plot_confusion_matrix(run_dir / "confusion_matrix.png")}
        order = list(learn.dls.valid.sampler)  # validation batches come sorted by length
        values, idxs = interp.top_losses(16)
        lines = []
        for v, i in zip(values.tolist(), idxs.tolist()):
            text = " ".join(valid_texts[order[i]].split())
            pred, actual = learn.dls.vocab[int(interp.preds[i])], learn.dls.vocab[int(interp.targets[i])]
            lines.append(f"{v:.3f}\tpredicted {pred}\tactual {actual}\t{text[:200]}")
        path = run_dir / "top_losses.txt"
        path.write_text("loss\tprediction\tactual\ttext\n" + "\n".join(lines) + "\n", encoding="utf-8")
        out["top losses"] = path
        return out

    return report
