"""`deepfit train-classifier`: ULMFiT on a train-lm run, or an LSTM/BiLSTM (optionally on GloVe vectors)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..interpret.interpretation import ClassificationInterpretation
from ..learner.learner import Learner
from ..learner.metrics import accuracy, accuracy_multi, f1_multi
from ..models import lstm_classifier_split
from ..models.registry import get_model
from ..rng import seed_everything
from ..run import Phase, RunDir
from ..text.embeddings import load_embeddings
from ..text.learner import fit_ulmfit, text_classifier_learner
from .errors import CLIError, UsageError
from .lm import ENCODER_NAME
from .models import check_arch
from .text_data import classifier_data, load_vocab, pad_index, save_vocab
from .training import MAIN_PHASE, TrainJob, precision_callbacks, say, train


def cmd_train_classifier(args: argparse.Namespace) -> int:
    """Train a text classifier (ULMFiT on a train-lm run, or an LSTM/BiLSTM) and write a run folder."""
    args.arch = args.arch or ("awd_lstm" if args.lm else "bilstm")
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
    if lm_run is not None:  # the head alone first (also for --lr auto), then gradual unfreezing
        job.phases = [Phase(MAIN_PHASE, sum(args.stages))]
        job.before_phase = lambda phase: learn.freeze_to(-1)
        job.fit = lambda learn, n_epoch, lr, cbs, **kw: fit_ulmfit(learn, lr, epochs=args.stages, cbs=cbs, **kw)
    return train(args, "train-classifier", job)


def check_classifier_options(args: argparse.Namespace):
    """Refuse options that do not go together; returns the --lm run with its vocabulary and tokenizer kind."""
    if args.resume is not None and args.lm is not None:
        raise UsageError("a ULMFiT run (--lm) cannot be resumed: its gradual unfreezing stages restart",
                         hint="train it again; it is short")
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
                                        metrics=metrics)
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
