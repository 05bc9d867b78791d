"""`deepfit train-classifier`: ULMFiT on a train-lm run, or an LSTM/BiLSTM (optionally on GloVe vectors)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

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
from .lm import ENCODER_NAME
from .text_data import build_vocab, load_vocab, make_tokenizer, read_labelled, sample, save_vocab, split


# ---------------------------------------------------------------------------------------------- classifiers
def _classifier_data(args: argparse.Namespace, lm_vocab=None, lm_kind: str | None = None):
    from ..text.loaders import classifier_loaders

    items = read_labelled(args.data)
    texts, labels = items.texts, items.labels
    if args.max_texts is not None and len(texts) > args.max_texts:
        keep = sample(list(range(len(texts))), args.max_texts, args.seed)
        texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    classes = sorted(set(labels))
    kind = lm_kind or args.tokenizer or "word"
    tokenizer = make_tokenizer(kind)
    tokens = tokenizer(texts)
    train_idx, valid_idx = split(len(texts), args.valid_pct, args.seed)
    vocab = lm_vocab if lm_vocab is not None else build_vocab([tokens[i] for i in train_idx], kind, args.max_vocab,
                                                              args.min_freq)
    ids = [vocab.numericalize(t) for t in tokens]
    y = [classes.index(lbl) for lbl in labels]
    pad = vocab.pad_idx if vocab.pad_idx is not None else 1
    dls = classifier_loaders([ids[i] for i in train_idx], [y[i] for i in train_idx], [ids[i] for i in valid_idx],
                             [y[i] for i in valid_idx], bs=args.bs, pad_idx=pad, seed=args.seed, classes=classes)
    dls.text_vocab, dls.tokenizer = vocab, tokenizer
    valid_texts = [texts[i] for i in valid_idx]
    desc = (f"{args.data} ({len(train_idx)} training, {len(valid_idx)} validation texts, classes: "
            f"{', '.join(classes)})")
    return dls, vocab, kind, desc, valid_texts


def _classifier_learner(args: argparse.Namespace, dls, vocab, lr: float, lm_dir: Path | None):
    from ..learner import Learner, accuracy
    from ..learner.text import text_classifier_learner
    from ..models import get_model, lstm_classifier_split

    cbs = [c for c in [precision_cb(args.precision)] if c is not None]
    if args.arch == "awd_lstm":
        enc = lm_dir / "models" / f"{ENCODER_NAME}.pth" if lm_dir is not None else None
        if enc is not None and not enc.exists():
            raise CLIError(f"'{lm_dir}' has no saved encoder ({enc})", hint="give an AWD-LSTM train-lm run folder")
        cfg = None if enc is not None else dict(emb_sz=args.emb_sz, n_hid=args.n_hid, n_layers=max(args.n_layers, 1))
        learn = text_classifier_learner(dls, vocab=vocab, config=cfg, pretrained_encoder=enc, lr=lr, cbs=cbs)
        learn.export_arch = "awd_lstm_classifier"
        return learn
    emb_sz, weight = args.emb_sz, None
    if args.embeddings is not None:
        from ..text.embeddings import load_embeddings

        if not Path(args.embeddings).is_file():
            raise UsageError(f"--embeddings file '{args.embeddings}' does not exist",
                             hint="give a GloVe-format text file (a word and its numbers per line)")
        weight = load_embeddings(args.embeddings, vocab, logger=say).weight
        emb_sz = weight.shape[1]
    pad = vocab.pad_idx if vocab.pad_idx is not None else 1
    model = get_model("lstm_classifier", vocab_sz=len(vocab), n_class=dls.c, emb_sz=emb_sz, n_hid=args.n_hid,
                      n_layers=args.n_layers, bidirectional=args.arch == "bilstm", pad_idx=pad)
    if weight is not None:
        model.set_embeddings(weight)
    learn = Learner(model, dls, metrics=[accuracy], lr=lr, cbs=cbs, splitter=lstm_classifier_split)
    learn.export_arch = None
    return learn


def text_report(valid_texts: list[str]):
    """A report function: confusion matrix PNG and the worst validation texts (`top_losses.txt`)."""

    def report(learn, run_dir: Path) -> dict[str, Path]:
        from ..interpret.interpretation import ClassificationInterpretation

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


def cmd_train_classifier(args: argparse.Namespace) -> int:
    """Train a text classifier (ULMFiT on a train-lm run, or an LSTM/BiLSTM) and write a run folder."""
    resuming = args.resume is not None
    if resuming:
        run_dir = existing_run_dir(args.resume)
        config = read_config(run_dir)
        args = options_from_config(config, "train-classifier", args)
        lr = config["resolved"]["lr"]
        if args.lm is not None:
            raise UsageError("a ULMFiT run (--lm) cannot be resumed: its gradual unfreezing stages restart",
                             hint="train it again; it is short")
    else:
        lr = args.lr
    args.arch = args.arch or ("awd_lstm" if args.lm else "bilstm")
    if args.lm is not None and args.arch != "awd_lstm":
        raise UsageError(f"--lm fine-tunes an AWD-LSTM encoder; --arch {args.arch} cannot use it",
                         hint="drop --arch, or drop --lm to train an LSTM from scratch")
    if args.embeddings is not None and args.arch == "awd_lstm":
        raise UsageError("--embeddings is for --arch lstm or bilstm", hint="add --arch bilstm")
    lm_dir, lm_vocab, lm_kind = None, None, None
    if args.lm is not None:
        lm_dir = existing_run_dir(args.lm)
        lm_vocab, lm_kind = load_vocab(lm_dir)
        if args.tokenizer is not None and args.tokenizer != lm_kind:
            raise UsageError(f"--tokenizer {args.tokenizer} differs from the --lm run's ({lm_kind})",
                             hint="drop --tokenizer: the classifier must read texts as its language model did")
        if read_config(lm_dir).get("options", {}).get("arch") != "awd_lstm":
            raise UsageError(f"--lm '{lm_dir}' is not an AWD-LSTM language model run",
                             hint="train one with `deepfit train-lm TEXT --arch awd_lstm`")
    seed_everything(args.seed)
    dls, vocab, kind, desc, valid_texts = _classifier_data(args, lm_vocab, lm_kind)
    learn = _classifier_learner(args, dls, vocab, lr if lr != "auto" else 1e-3, lm_dir)
    if args.quiet:
        learn.remove_cb(learn.progress)
    if not resuming:
        run_dir = new_run_dir(args.out, args.name)
    learn.path = run_dir
    if not resuming:
        if lr == "auto":
            if args.lm is not None:
                learn.freeze_to(-1)
            lr, _ = find_lr(learn, run_dir)
        write_config(run_dir, "train-classifier", args, {
            "lr": lr, "arch": args.arch, "tokenizer": kind, "vocab_size": len(vocab), "classes": list(dls.vocab),
            "data": desc, "device": str(dls.device), "lm": str(lm_dir) if lm_dir else None,
            "n_params": sum(p.numel() for p in learn.model.parameters())})
        save_vocab(run_dir, vocab, kind)
    recipe = f"ULMFiT from {lm_dir}, stages {args.stages}" if args.lm else f"{args.epochs} epochs"
    say(f"deepfit: training {args.arch} classifier ({recipe}) on {desc}; run folder {run_dir}")
    start = time.perf_counter()
    hparams = {"arch": args.arch, "lr": lr, "bs": args.bs, "epochs": args.epochs, "tokenizer": kind,
               "ulmfit": args.lm is not None}
    if args.lm is not None:
        from ..learner.text import fit_ulmfit

        def fit(learn, n_epoch, lr, cbs, **kwargs):
            fit_ulmfit(learn, lr, epochs=args.stages, cbs=cbs, **kwargs)

        train_phases(learn, run_dir, [("checkpoint", sum(args.stages))], lr, hparams, resuming, fit=fit)
    else:
        train_phases(learn, run_dir, phases_plan(0, args.epochs), lr, hparams, resuming)
    train_time = time.perf_counter() - start
    artifacts = finish_run(learn, run_dir, report=text_report(valid_texts), export_kwargs={"arch": learn.export_arch})
    best = best_valid(learn)
    say(f"validation (best model): {format_metrics(best)}  training time {train_time:.1f}s")
    artifacts["results"] = write_results(run_dir, learn, train_time, {"valid_best": best})
    print_artifacts(run_dir, artifacts)
    return 0
