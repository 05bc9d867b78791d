"""The lesson-7 sequence of character models on the fortunes corpus, each trained for the same time budget.

The notes' progression (fast.ai 2018, lesson 7), in deepfit's models (`deepfit.models.char_window`,
`deepfit.models.char_rnn`, `deepfit.models.rnn_cells`):

1. window models, a fixed number of characters in and the next one out:
   `Char3Model` (three characters, the input added to the state), its concat variant (`Char3ConcatModel`, the
   input concatenated to the state) and the loop that predicts from the last of 8 steps (`CharLoopLastModel`);
2. sequence models predicting every next character of `bptt`-long slices of `bs` parallel streams:
   the loop RNN and `nn.RNN` starting from zeros at every batch (`CharLoopModel`, `CharRnn`), then stateful
   models trained with backpropagation through time (the hidden state carried from batch to batch, detached):
   `nn.RNN`, a loop over the hand-written RNN cell, a loop over the hand-written GRU cell (the notes' maths,
   `scratch=True`), `nn.GRU` and a 2-layer `nn.LSTM` with dropout.

Every fortune entry of every topic is a text; one entry in `--valid-every` (20, seeded) is held out. Texts are
split into characters, the training texts concatenated into one stream. Each model trains until its time budget
is spent (checked after each batch), then is validated on the held-out characters: the loss is in nats per
predicted character for every model (windows predict each character after its first `n`), so the rows compare.
Prints a Markdown table (validation loss, bits/char, accuracy of the next character, batches, times) with the
unigram entropy of the characters as the baseline, then samples of the two best sequence models.

    python examples/char_lm.py [--budget 12] [--models char3,gru,...] [--bs 32] [--bptt 48] [--n-fac 42]
        [--n-hidden 128] [--lr 1e-2] [--threads 1] [--valid-every 20] [--topics computers,science] [--seed 0]

With the defaults (10 models, 12 s each) the whole run takes about three minutes on one CPU thread.
`--threads 1` (the default) because on a shared, loaded CPU one torch thread per process is much faster
than two that keep waiting for each other. The notes' models end in `log_softmax` and train with `NLLLoss`;
deepfit's return the scores and train with cross-entropy, the same objective.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepfit.data import DataLoaders, TensorLoader  # noqa: E402
from deepfit.learner import Callback, CancelFit, CancelTrain, Learner  # noqa: E402
from deepfit.learner.callbacks import ProgressCallback  # noqa: E402
from deepfit.learner.callbacks.training import GradientClip  # noqa: E402
from deepfit.models.char_rnn import (  # noqa: E402
    CharLoopModel,
    CharRnn,
    CharSeqGru,
    CharSeqGruCell,
    CharSeqLstm,
    CharSeqRnn,
    CharSeqRnnCell,
)
from deepfit.models.char_window import Char3ConcatModel, Char3Model, CharLoopLastModel, char_windows  # noqa: E402
from deepfit.text import (  # noqa: E402
    UNK,
    FlatCrossEntropyLoss,
    RNNResetCallback,
    Tokenizer,
    Vocab,
    fortunes_texts,
    generate,
    lm_loaders,
)


class TimeBudget(Callback):
    """Stops training once `seconds` of training time are spent; the epoch's validation still runs."""

    order = 90  # after the Recorder saw the batch

    def __init__(self, seconds: float):
        self.seconds = seconds

    def before_fit(self) -> None:
        self.spent, self.n_batches, self.done = 0.0, 0, False

    def before_train(self) -> None:
        self._start = time.perf_counter()

    def after_batch(self) -> None:
        if not self.learn.training:
            return
        self.n_batches += 1
        if self.spent + time.perf_counter() - self._start >= self.seconds:
            self.done = True
            raise CancelTrain()

    def after_train(self) -> None:
        self.spent += time.perf_counter() - self._start

    def after_epoch(self) -> None:
        if self.done:
            raise CancelFit()


def next_char_accuracy(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Share of characters predicted right (arg-max), for window `(bs, V)` and sequence `(bs, seq, V)` outputs."""
    return (pred.argmax(-1) == target).float().mean()


@dataclass
class Spec:
    key: str
    name: str
    window: int | None  # characters in for a window model; None for a sequence model
    make: Callable[[int, argparse.Namespace], nn.Module]


MODELS = [
    Spec("char3", "Char3Model (3 chars in, input added)", 3,
         lambda v, a: Char3Model(v, emb_sz=a.n_fac, n_hid=a.n_hidden)),
    Spec("char3_concat", "Char3ConcatModel (3 chars in, input concatenated)", 3,
         lambda v, a: Char3ConcatModel(v, emb_sz=a.n_fac, n_hid=a.n_hidden)),
    Spec("loop_last", "CharLoopLastModel (8 chars in a loop, last step out)", 8,
         lambda v, a: CharLoopLastModel(v, emb_sz=a.n_fac, n_hid=a.n_hidden)),
    Spec("loop", "CharLoopModel (loop RNN, every step out, zeros each batch)", None,
         lambda v, a: CharLoopModel(v, emb_sz=a.n_fac, n_hid=a.n_hidden)),
    Spec("rnn", "CharRnn (nn.RNN, zeros each batch)", None,
         lambda v, a: CharRnn(v, emb_sz=a.n_fac, n_hid=a.n_hidden)),
    Spec("seq_rnn", "CharSeqRnn (stateful nn.RNN, BPTT)", None,
         lambda v, a: CharSeqRnn(v, emb_sz=a.n_fac, n_hid=a.n_hidden)),
    Spec("rnn_cell", "CharSeqRnnCell (stateful, hand-written RNN cell)", None,
         lambda v, a: CharSeqRnnCell(v, emb_sz=a.n_fac, n_hid=a.n_hidden, scratch=True)),
    Spec("gru_cell", "CharSeqGruCell (stateful, hand-written GRU cell)", None,
         lambda v, a: CharSeqGruCell(v, emb_sz=a.n_fac, n_hid=a.n_hidden, scratch=True)),
    Spec("gru", "CharSeqGru (stateful nn.GRU)", None,
         lambda v, a: CharSeqGru(v, emb_sz=a.n_fac, n_hid=a.n_hidden)),
    Spec("lstm", "CharSeqLstm (stateful nn.LSTM, 2 layers, dropout 0.2)", None,
         lambda v, a: CharSeqLstm(v, emb_sz=a.n_fac, n_hid=a.n_hidden, n_layers=2, dropout=0.2)),
]


def unigram_entropy(token_lists: list[list[str]]) -> float:
    counts = Counter(c for toks in token_lists for c in toks)
    total = sum(counts.values())
    return -sum(n / total * math.log(n / total) for n in counts.values())


def window_loaders(train_stream: torch.Tensor, valid_stream: torch.Tensor, n: int, bs: int, seed: int):
    """Every window of `n` characters of each stream and the character after it."""
    xt, yt = char_windows(train_stream, n)
    xv, yv = char_windows(valid_stream, n)
    return DataLoaders(TensorLoader(xt, yt, bs=bs, shuffle=True, seed=seed, device="cpu"),
                       TensorLoader(xv, yv, bs=4 * bs, device="cpu"), device="cpu")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=12.0, help="training seconds per model")
    p.add_argument("--models", default=",".join(s.key for s in MODELS),
                   help="comma-separated models to train (default: all): " + ", ".join(s.key for s in MODELS))
    p.add_argument("--bs", type=int, default=32, help="streams per batch (sequence models)")
    p.add_argument("--window-bs", type=int, default=512, help="windows per batch (window models; the notes' 512)")
    p.add_argument("--bptt", type=int, default=48)
    p.add_argument("--n-fac", type=int, default=42, help="embedding size (emb_sz; the notes' n_fac)")
    p.add_argument("--n-hidden", type=int, default=128, help="hidden size (n_hid; the notes' n_hidden)")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--valid-every", type=int, default=20, help="hold out one entry in this many")
    p.add_argument("--topics", default=None, help="comma-separated fortune topics (default: all)")
    p.add_argument("--sample-len", type=int, default=200, help="characters sampled from the best two (0: none)")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    known = {s.key: s for s in MODELS}
    unknown = [k for k in args.models.split(",") if k not in known]
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)}; choose among {', '.join(known)}")
    chosen = [known[k] for k in args.models.split(",")]

    topics = args.topics.split(",") if args.topics else None
    texts = fortunes_texts(topics=topics).texts
    rng = random.Random(args.seed)
    order = list(range(len(texts)))
    rng.shuffle(order)
    n_valid = len(texts) // args.valid_every
    valid_texts = [texts[i] for i in order[:n_valid]]
    train_texts = [texts[i] for i in order[n_valid:]]
    tok = Tokenizer.chars(progress=False)
    train_toks, valid_toks = tok(train_texts), tok(valid_texts)
    vocab = Vocab.build(train_toks, min_freq=1, specials=[UNK], progress=False)
    entropy = unigram_entropy(train_toks)
    n_train, n_valid_chars = sum(map(len, train_toks)), sum(map(len, valid_toks))
    print(f"fortunes: {len(texts)} entries, {n_train} training / {n_valid_chars} validation characters, "
          f"vocabulary {len(vocab)} (unigram entropy {entropy:.3f} nats/char)")
    train_ids = [vocab.numericalize(t) for t in train_toks]
    valid_ids = [vocab.numericalize(t) for t in valid_toks]
    train_stream, valid_stream = torch.cat(train_ids), torch.cat(valid_ids)

    rows, learners = [], {}
    for spec in chosen:
        torch.manual_seed(args.seed)
        model = spec.make(len(vocab), args)
        if spec.window is not None:
            dls = window_loaders(train_stream, valid_stream, spec.window, args.window_bs, args.seed)
            loss_func, cbs, batch = nn.CrossEntropyLoss(), [GradientClip(1.0)], f"{args.window_bs} windows"
        else:
            dls = lm_loaders(train_ids, valid_ids, bs=args.bs, bptt=args.bptt, seed=args.seed, device="cpu",
                             vocab=vocab)
            loss_func, cbs = FlatCrossEntropyLoss(), [RNNResetCallback(), GradientClip(1.0)]
            batch = f"{args.bs}x~{args.bptt} chars"
        budget = TimeBudget(args.budget)
        learn = Learner(model, dls, loss_func=loss_func, lr=args.lr, metrics=[next_char_accuracy], cbs=cbs)
        learn.remove_cb(ProgressCallback)
        n_params = sum(p.numel() for p in model.parameters())
        print(f"{spec.name}: {n_params} parameters ...", end=" ", flush=True)
        learn.fit(1000, cbs=[budget])
        start = time.perf_counter()
        valid_loss, valid_acc = learn.validate()
        valid_time = time.perf_counter() - start
        print(f"valid loss {valid_loss:.3f} after {budget.n_batches} batches of {batch}")
        rows.append((spec, valid_loss, valid_acc, budget.n_batches, budget.spent, valid_time, n_params))
        if spec.window is None:
            learners[spec.key] = learn

    print("\n| model | params | valid loss (nats/char) | bits/char | next-char accuracy | train batches "
          "| train time (s) | valid time (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| unigram baseline | - | {entropy:.3f} | {entropy / math.log(2):.3f} | - | - | - | - |")
    for spec, loss, acc, n_batches, spent, vtime, n_params in rows:
        print(f"| {spec.name} | {n_params} | {loss:.3f} | {loss / math.log(2):.3f} | {acc:.3f} | {n_batches} "
              f"| {spent:.1f} | {vtime:.1f} |")
    if args.sample_len > 0:
        best = sorted((r for r in rows if r[0].key in learners), key=lambda r: r[1])[:2]
        for spec, *_ in best:
            text = generate(learners[spec.key], "The ", args.sample_len, temperature=args.temperature,
                            seed=args.seed)
            print(f"\n### {spec.name} (temperature {args.temperature}, seed {args.seed})\n")
            print("```\n" + text + "\n```")


if __name__ == "__main__":
    main()
