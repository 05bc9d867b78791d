"""`deepfit train-lm`, `generate` and `lr-find --task lm`: language models on a text file, folder or fortunes."""

from __future__ import annotations

import argparse

from ..learner.learner import Learner
from ..learner.metrics import Perplexity
from ..models.registry import get_model
from ..rng import seed_everything
from ..run import RunDir
from ..text.callbacks import RNNResetCallback
from ..text.generate import generate
from ..text.learner import language_model_learner
from ..text.losses import FlatCrossEntropyLoss
from .errors import UsageError
from .export import load_export
from .models import check_arch
from .text_data import lm_data, save_vocab
from .training import TrainJob, lr_find_into, precision_callbacks, say, train

ENCODER_NAME = "encoder"


def cmd_train_lm(args: argparse.Namespace) -> int:
    """Train a language model and write a run folder (with the encoder for train-classifier --lm)."""
    seed_everything(args.seed)
    dls, vocab, kind, desc = lm_data(args, args.text, char_model=args.arch != "awd_lstm")
    learn = build_lm_learner(args, dls, vocab)

    def after(learn, run: RunDir) -> dict:
        if args.arch == "awd_lstm":
            learn.save_encoder(ENCODER_NAME)
        if args.sample:
            say("sample: " + generate(learn, _default_prompt(vocab, kind), args.sample, temperature=0.8,
                                      seed=args.seed, vocab=vocab))
        return {}

    job = TrainJob(learn, desc, title=args.arch, resolved={"tokenizer": kind, "vocab_size": len(vocab)},
                   export_kwargs={"arch": learn.export_arch}, save_files=lambda run: save_vocab(run.path, vocab, kind),
                   after=after)
    return train(args, "train-lm", job)


def build_lm_learner(args: argparse.Namespace, dls, vocab) -> Learner:
    """An AWD-LSTM language model learner, or a char RNN/GRU/LSTM one, sized by the options."""
    name = check_arch("train-lm", args.arch)
    cbs = precision_callbacks(args.precision)
    if args.arch == "awd_lstm":
        cfg = dict(emb_sz=args.emb_sz, n_hid=args.n_hid, n_layers=args.n_layers)
        learn = language_model_learner(dls, config=cfg, drop_mult=args.drop_mult, cbs=cbs)
        learn.export_arch = name
        return learn
    model = get_model(name, vocab_sz=len(vocab), emb_sz=args.emb_sz, n_hid=args.n_hid, n_layers=args.n_layers)
    learn = Learner(model, dls, loss_func=FlatCrossEntropyLoss(), metrics=[Perplexity()],
                    cbs=[RNNResetCallback(), *cbs])
    learn.export_arch = None
    return learn


def _default_prompt(vocab, kind: str) -> str:
    return "T" if kind == "char" and "T" in vocab.stoi else ("The" if kind == "word" else vocab.itos[-1])


def cmd_generate(args: argparse.Namespace) -> int:
    """Sample text from a train-lm run's exported model."""
    run = RunDir.open(args.run_dir)
    config = run.read_config()
    if config.get("command") != "train-lm":
        raise UsageError(f"'{run.path}' is a {config.get('command')} run, not a language model",
                         hint="give a folder written by deepfit train-lm")
    inf = load_export(run, resume_hint=f"deepfit train-lm --resume {run.path}")
    kind = config.get("resolved", {}).get("tokenizer", "word")
    try:
        out = generate(inf.model, args.prompt, args.n, temperature=args.temperature, top_k=args.top_k,
                       seed=args.seed, vocab=inf.spec["text"]["itos"], level=kind)
    except ValueError as e:
        raise UsageError(str(e), hint="give a --prompt made of tokens the model knows") from None
    print(out)
    return 0


def cmd_lr_find_text(args: argparse.Namespace) -> int:
    """`lr-find --task lm`: the learning-rate finder for a language model on TEXT."""
    args.arch = args.arch or "awd_lstm"
    check_arch("train-lm", args.arch)
    args.valid_pct, args.precision = 0.1, "fp32"
    seed_everything(args.seed)
    dls, vocab, kind, desc = lm_data(args, args.data, char_model=args.arch != "awd_lstm")
    learn = build_lm_learner(args, dls, vocab)
    learn.remove_cb(learn.progress)
    return lr_find_into(learn, args.out, f"{args.arch} on {desc}", args.num_it)


__all__ = ["ENCODER_NAME", "build_lm_learner", "cmd_generate", "cmd_lr_find_text", "cmd_train_lm"]
