"""`deepfit train-lm`, `generate` and `lr-find --task lm`: language models on a text file, folder or fortunes."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from .common import (
    EXPORT_DIR,
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
from .text_data import VOCAB_FILE, build_vocab, make_tokenizer, read_corpus, sample, save_vocab, split

CHAR_ARCHS = {"char_rnn": "char_seq_rnn", "char_gru": "char_seq_gru", "char_lstm": "char_seq_lstm"}
ENCODER_NAME = "encoder"


# ---------------------------------------------------------------------------------------------- language models
def _lm_data(args: argparse.Namespace, text: str | None):
    from ..text.loaders import lm_loaders

    texts = sample(read_corpus(text), args.max_texts, args.seed)
    if len(texts) < 2:
        raise UsageError(f"TEXT '{text}' holds a single text: nothing to hold out for validation",
                         hint="give more texts (paragraphs, files or fortune entries)")
    kind = args.tokenizer or ("char" if args.arch in CHAR_ARCHS else "word")
    tokenizer = make_tokenizer(kind)
    tokens = tokenizer(texts)
    train_idx, valid_idx = split(len(tokens), args.valid_pct, args.seed)
    vocab = build_vocab([tokens[i] for i in train_idx], kind, args.max_vocab, args.min_freq)
    ids = [vocab.numericalize(t) for t in tokens]
    n_train_tok = sum(len(ids[i]) for i in train_idx)
    if n_train_tok < args.bs * 3:
        raise UsageError(f"TEXT '{text}' is too short: {n_train_tok} training tokens for --bs {args.bs}",
                         hint="give more text or a smaller --bs")
    dls = lm_loaders([ids[i] for i in train_idx], [ids[i] for i in valid_idx], bs=args.bs, bptt=args.bptt,
                     seed=args.seed, vocab=vocab)
    dls.tokenizer = tokenizer
    desc = f"{text} ({len(texts)} texts, {n_train_tok} training tokens, {kind} vocabulary of {len(vocab)})"
    return dls, vocab, kind, desc


def _lm_learner(args: argparse.Namespace, dls, vocab, lr: float):
    from ..learner.text import language_model_learner

    cbs = [c for c in [precision_cb(args.precision)] if c is not None]
    if args.arch == "awd_lstm":
        cfg = dict(emb_sz=args.emb_sz, n_hid=args.n_hid, n_layers=args.n_layers)
        learn = language_model_learner(dls, config=cfg, drop_mult=args.drop_mult, lr=lr, cbs=cbs)
        learn.export_arch = "awd_lstm_lm"
        return learn
    from ..learner import Learner
    from ..learner.metrics import Perplexity
    from ..models import get_model
    from ..text.callbacks import RNNResetCallback
    from ..text.losses import FlatCrossEntropyLoss

    name = CHAR_ARCHS[args.arch]
    kw: dict[str, Any] = dict(vocab_size=len(vocab), n_fac=args.emb_sz, n_hidden=args.n_hid)
    if args.arch != "char_rnn":
        kw["n_layers"] = args.n_layers
    model = get_model(name, **kw)
    learn = Learner(model, dls, loss_func=FlatCrossEntropyLoss(), metrics=[Perplexity()], lr=lr,
                    cbs=[RNNResetCallback(), *cbs])
    learn.export_arch = None
    return learn


def cmd_train_lm(args: argparse.Namespace) -> int:
    """Train a language model and write a run folder (with the encoder for train-classifier --lm)."""
    resuming = args.resume is not None
    if resuming:
        run_dir = existing_run_dir(args.resume)
        config = read_config(run_dir)
        args = options_from_config(config, "train-lm", args)
        lr = config["resolved"]["lr"]
    else:
        lr = args.lr
    seed_everything(args.seed)
    dls, vocab, kind, desc = _lm_data(args, args.text)
    learn = _lm_learner(args, dls, vocab, lr if lr != "auto" else 1e-3)
    if args.quiet:
        learn.remove_cb(learn.progress)
    if not resuming:
        run_dir = new_run_dir(args.out, args.name)
    learn.path = run_dir
    if not resuming:
        if lr == "auto":
            lr, _ = find_lr(learn, run_dir)
        write_config(run_dir, "train-lm", args, {"lr": lr, "tokenizer": kind, "vocab_size": len(vocab),
                                                  "data": desc, "device": str(dls.device),
                                                  "n_params": sum(p.numel() for p in learn.model.parameters())})
        save_vocab(run_dir, vocab, kind)
    say(f"deepfit: training {args.arch} on {desc}; run folder {run_dir}")
    start = time.perf_counter()
    hparams = {"arch": args.arch, "lr": lr, "bs": args.bs, "bptt": args.bptt, "epochs": args.epochs,
               "tokenizer": kind}
    train_phases(learn, run_dir, phases_plan(0, args.epochs), lr, hparams, resuming)
    train_time = time.perf_counter() - start
    artifacts = finish_run(learn, run_dir, export_kwargs={"arch": learn.export_arch})
    if args.arch == "awd_lstm":
        artifacts["encoder"] = learn.save_encoder(ENCODER_NAME)
    artifacts["vocabulary"] = run_dir / VOCAB_FILE
    best = best_valid(learn)
    say(f"validation (best model): {format_metrics(best)}  training time {train_time:.1f}s")
    artifacts["results"] = write_results(run_dir, learn, train_time, {"valid_best": best})
    if args.sample:
        from ..text.generate import generate

        say("sample: " + generate(learn, _default_prompt(vocab, kind), args.sample, temperature=0.8, seed=args.seed,
                                  vocab=vocab))
    print_artifacts(run_dir, artifacts)
    return 0


def _default_prompt(vocab, kind: str) -> str:
    return "T" if kind == "char" and "T" in vocab.stoi else ("The" if kind == "word" else vocab.itos[-1])


# ---------------------------------------------------------------------------------------------- generate, lr-find
def cmd_generate(args: argparse.Namespace) -> int:
    """Sample text from a train-lm run's exported model."""
    from ..learner.export import load_learner
    from ..text.generate import generate

    run_dir = existing_run_dir(args.run_dir)
    folder = run_dir / EXPORT_DIR
    if not folder.is_dir():
        raise CLIError(f"'{run_dir}' has no {EXPORT_DIR}/ folder (the run did not finish)",
                       hint=f"resume it with `deepfit train-lm --resume {run_dir}`")
    config = read_config(run_dir)
    if config.get("command") != "train-lm":
        raise UsageError(f"'{run_dir}' is a {config.get('command')} run, not a language model",
                         hint="give a folder written by deepfit train-lm")
    inf = load_learner(folder)
    text_spec = inf.spec["text"]
    kind = config.get("resolved", {}).get("tokenizer", "word")
    try:
        out = generate(inf.model, args.prompt, args.n, temperature=args.temperature, top_k=args.top_k,
                       seed=args.seed, vocab=text_spec["itos"], level=kind)
    except ValueError as e:
        raise UsageError(str(e), hint="give a --prompt made of tokens the model knows") from None
    print(out)
    return 0


def cmd_lr_find_text(args: argparse.Namespace) -> int:
    """`lr-find --task lm`: the learning-rate finder for a language model on TEXT."""
    args.arch = args.arch or "awd_lstm"
    if args.arch not in ("awd_lstm", *CHAR_ARCHS):
        raise UsageError(f"--arch {args.arch!r} is not a language model", hint="awd_lstm, char_lstm, char_gru or "
                         "char_rnn")
    args.valid_pct, args.precision = 0.1, "fp32"
    seed_everything(args.seed)
    dls, vocab, kind, desc = _lm_data(args, args.data)
    learn = _lm_learner(args, dls, vocab, 1e-3)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    learn.path = out
    say(f"deepfit: lr_find for {args.arch} on {desc}")
    lr, _ = find_lr(learn, out, num_it=args.num_it)
    print(f"suggested lr: {lr:.3g}")
    return 0
