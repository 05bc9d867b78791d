"""Character-level language models on the fortunes corpus: RNN, GRU and LSTM for the same time budget.

Every fortune entry of every topic is a text; one entry in `--valid-every` (20, seeded) is held out for
validation. Texts are split into characters (`Tokenizer.chars()`), concatenated and read as `bs` parallel
streams of `bptt` characters (`LMLoader`, random bptt for training); the stateful models carry their hidden
state from batch to batch (backpropagation through time), reset at every training and validation phase
(`RNNResetCallback`). Each model trains until the time budget is spent (checked after each batch), then is
validated on the whole held-out set. Prints a Markdown table (validation loss in nats/char, its bits/char,
batches and time) with the unigram entropy of the characters as the baseline to beat, then a sample from each
model.

    python examples/char_lm.py [--budget 60] [--bs 32] [--bptt 48] [--n-hidden 128] [--lr 1e-2] [--threads 1]
        [--valid-every 20] [--topics computers,science] [--sample-len 300] [--temperature 0.8] [--seed 0]

`--threads 1` (the default) because on a shared, loaded CPU one torch thread per process is much faster
than two that keep waiting for each other.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepfit.learner import Callback, CancelFit, CancelTrain, Learner  # noqa: E402
from deepfit.learner.callbacks.training import GradientClip  # noqa: E402
from deepfit.models.char_rnn import CharSeqGru, CharSeqLstm, CharSeqRnn  # noqa: E402
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

    order = 90  # after the Recorder and the progress line saw the epoch

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


def unigram_entropy(token_lists: list[list[str]]) -> float:
    counts = Counter(c for toks in token_lists for c in toks)
    total = sum(counts.values())
    return -sum(n / total * math.log(n / total) for n in counts.values())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=60.0, help="training seconds per model")
    p.add_argument("--bs", type=int, default=32)
    p.add_argument("--bptt", type=int, default=48)
    p.add_argument("--n-fac", type=int, default=42, help="embedding size (emb_sz; the notes' n_fac)")
    p.add_argument("--n-hidden", type=int, default=128, help="hidden size (n_hid; the notes' n_hidden)")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--valid-every", type=int, default=20, help="hold out one entry in this many")
    p.add_argument("--topics", default=None, help="comma-separated fortune topics (default: all)")
    p.add_argument("--sample-len", type=int, default=300)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    topics = args.topics.split(",") if args.topics else None
    texts = fortunes_texts(topics=topics).texts
    rng = random.Random(args.seed)
    order = list(range(len(texts)))
    rng.shuffle(order)
    n_valid = len(texts) // args.valid_every
    valid_texts = [texts[i] for i in order[:n_valid]]
    train_texts = [texts[i] for i in order[n_valid:]]
    tok = Tokenizer.chars()
    train_toks, valid_toks = tok(train_texts), tok(valid_texts)
    vocab = Vocab.build(train_toks, min_freq=1, specials=[UNK])
    entropy = unigram_entropy(train_toks)
    n_train, n_valid_chars = sum(map(len, train_toks)), sum(map(len, valid_toks))
    print(f"fortunes: {len(texts)} entries, {n_train} training / {n_valid_chars} validation characters, "
          f"vocabulary {len(vocab)} (unigram entropy {entropy:.3f} nats/char)")
    train_ids = [vocab.numericalize(t) for t in train_toks]
    valid_ids = [vocab.numericalize(t) for t in valid_toks]

    models = {
        "RNN (nn.RNN)": lambda: CharSeqRnn(len(vocab), emb_sz=args.n_fac, n_hid=args.n_hidden),
        "GRU (nn.GRU)": lambda: CharSeqGru(len(vocab), emb_sz=args.n_fac, n_hid=args.n_hidden),
        "LSTM (2 layers, dropout 0.2)": lambda: CharSeqLstm(len(vocab), emb_sz=args.n_fac, n_hid=args.n_hidden,
                                                             n_layers=2, dropout=0.2),
    }
    rows, samples = [], {}
    for name, make in models.items():
        torch.manual_seed(args.seed)
        dls = lm_loaders(train_ids, valid_ids, bs=args.bs, bptt=args.bptt, seed=args.seed, device="cpu",
                         vocab=vocab)
        model = make()
        budget = TimeBudget(args.budget)
        learn = Learner(model, dls, loss_func=FlatCrossEntropyLoss(), lr=args.lr,
                        cbs=[RNNResetCallback(), GradientClip(1.0)])
        print(f"\n## {name}: {sum(p.numel() for p in model.parameters())} parameters")
        learn.fit(1000, cbs=[budget])
        start = time.perf_counter()
        valid_loss = learn.validate()[0]
        valid_time = time.perf_counter() - start
        rows.append((name, valid_loss, budget.n_batches, budget.spent, valid_time))
        samples[name] = generate(learn, "The ", args.sample_len, temperature=args.temperature, seed=args.seed)

    print(f"\n| model | valid loss (nats/char) | bits/char | train batches ({args.bs}x~{args.bptt}) "
          f"| train time (s) | valid time (s) |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| unigram baseline | {entropy:.3f} | {entropy / math.log(2):.3f} | - | - | - |")
    for name, loss, n_batches, spent, vtime in rows:
        print(f"| {name} | {loss:.3f} | {loss / math.log(2):.3f} | {n_batches} | {spent:.1f} | {vtime:.1f} |")
    for name, text in samples.items():
        print(f"\n### {name} (temperature {args.temperature}, seed {args.seed})\n")
        print("```\n" + text + "\n```")


if __name__ == "__main__":
    main()
