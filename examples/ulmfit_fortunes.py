"""ULMFiT against training from scratch, on real data built from Debian packages (the README's ULMFiT table).

1. General language model: an AWD-LSTM pretrained on a sample of `general.txt` (WordNet glosses, Linux man
   pages, the fortunes topics that are not a task's; `python -m deepfit.text.corpus all DATA` builds it).
   Saved as OUT/models/general_lm.pth and reused by later runs (delete it to retrain).
2. Target language model: the general one fine-tuned on the task's training texts (and, for the Debian task,
   15,000 unlabelled package descriptions); its vocabulary is the task's, rows matched by `transfer_vocab`.
3. Classifiers on the task's given split, with all the training labels and with 10% of them:
   ULMFiT (`fit_ulmfit` defaults on the fine-tuned encoder), the same AWD-LSTM classifier from scratch
   (one-cycle on all layers, drop_mult 0.5) and a BiLSTM from scratch, for the same number of epochs.

Tasks: `fortunes` (4 topics: linux, love, food, sports; 620 training / 211 validation texts) and `debian`
(package short descriptions labelled by archive section: 27 classes, 3,997 / 1,003 texts). One thread:

    python -m deepfit.text.corpus all data/ulmfit
    python examples/ulmfit_fortunes.py --task fortunes --threads 1
    python examples/ulmfit_fortunes.py --task debian --ft-lr 1e-2 --threads 1   # the README's Debian row
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepfit.learner import Learner, accuracy  # noqa: E402
from deepfit.models import LSTMClassifier, lstm_classifier_split  # noqa: E402
from deepfit.text import Tokenizer, Vocab, classifier_loaders, generate, lm_loaders  # noqa: E402
from deepfit.text.corpus import main as build_corpus  # noqa: E402
from deepfit.text.learner import fit_ulmfit, language_model_learner, text_classifier_learner  # noqa: E402

MOMS = (0.8, 0.7, 0.8)


def read_texts(path: Path) -> list[str]:
    return [p.strip() for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip()]


def read_labelled(path: Path) -> tuple[list[str], list[str], list[bool]]:
    with path.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows], [r["is_valid"] == "True" for r in rows]


def quiet(learn: Learner) -> Learner:
    learn.progress.live = False
    return learn


def subsample(xs: list, ys: list, frac: float, seed: int) -> tuple[list, list]:
    if frac >= 1:
        return xs, ys
    idx = list(range(len(xs)))
    random.Random(seed).shuffle(idx)
    keep = sorted(idx[:max(1, round(len(idx) * frac))])
    return [xs[i] for i in keep], [ys[i] for i in keep]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=["fortunes", "debian"], default="fortunes")
    ap.add_argument("--data", default="data/ulmfit", help="folder of deepfit.text.corpus files (built if missing)")
    ap.add_argument("--out", default="runs/ulmfit")
    ap.add_argument("--fracs", default="1,0.1", help="fractions of the training labels to use")
    ap.add_argument("--emb-sz", type=int, default=100)
    ap.add_argument("--n-hid", type=int, default=256)
    ap.add_argument("--n-layers", type=int, default=2)
    ap.add_argument("--general-texts", type=int, default=15000, help="general-corpus texts to pretrain on")
    ap.add_argument("--general-vocab", type=int, default=10000)
    ap.add_argument("--lm-lr", type=float, default=1e-2, help="general LM: one-cycle peak")
    ap.add_argument("--ft-lr", type=float, default=3e-2, help="target LM fine-tuning: one-cycle peak (LM_LR)")
    ap.add_argument("--lm-drop-mult", type=float, default=0.2)
    ap.add_argument("--ft-frozen-epochs", type=int, default=1, help="target LM: epochs with only embeddings/decoder")
    ap.add_argument("--ft-epochs", type=int, default=None, help="target LM: unfrozen epochs (fortunes 3, debian 1)")
    ap.add_argument("--clas-lr", type=float, default=4e-2, help="ULMFiT base rate (fit_ulmfit's lr)")
    ap.add_argument("--scratch-lr", type=float, default=1e-2, help="AWD-LSTM from scratch, one-cycle peak")
    ap.add_argument("--bilstm-lr", type=float, default=5e-3)
    ap.add_argument("--stages", default="1,0,0,5", help="epochs of fit_ulmfit's 4 stages")
    ap.add_argument("--epochs", type=int, default=None, help="epochs of the scratch models (default: sum of stages)")
    ap.add_argument("--bs", type=int, default=64)
    ap.add_argument("--bptt", type=int, default=70)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # LSTM gradients decay into denormals, many times slower on CPUs
    data, out = Path(args.data), Path(args.out)
    if not (data / "general.txt").exists() or not (data / "debian_sections.csv").exists():
        build_corpus(["all", str(data)])
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(cache_dir=out / "tok_cache", progress=False)
    cfg = dict(emb_sz=args.emb_sz, n_hid=args.n_hid, n_layers=args.n_layers)
    stages = [int(e) for e in args.stages.split(",")]
    n_epochs = args.epochs or sum(stages)
    t_start = time.perf_counter()

    # ------------------------------------------------------------------ (1) general language model
    general_path = out / "models" / "general_lm.pth"
    if not general_path.exists():
        g = tok(read_texts(data / "general.txt"))
        idx = list(range(len(g)))
        random.Random(args.seed).shuffle(idx)
        n_valid = len(idx) // 50
        train = [g[i] for i in idx[n_valid:]][:args.general_texts]
        valid = [g[i] for i in idx[:n_valid]]
        vocab_g = Vocab.build(train, max_vocab=args.general_vocab, min_freq=3)
        dls = lm_loaders([vocab_g.numericalize(t) for t in train], [vocab_g.numericalize(t) for t in valid],
                         bs=args.bs, bptt=args.bptt, vocab=vocab_g, seed=args.seed)
        print(f"## (1) general LM: {dls.train.n_tokens} tokens, vocab {len(vocab_g)}")
        torch.manual_seed(args.seed)
        lm = quiet(language_model_learner(dls, config=cfg, drop_mult=args.lm_drop_mult, path=out))
        lm.fit_one_cycle(1, args.lm_lr, moms=MOMS)
        lm.save_pretrained(general_path.with_suffix("").name)
        del lm

    # ------------------------------------------------------------------ (2) target language model
    if args.task == "fortunes":
        texts, labels, is_valid = read_labelled(data / "fortunes4.csv")
        unlabelled: list[list[str]] = []
    else:
        texts, labels, is_valid = read_labelled(data / "debian_sections.csv")
        unlabelled = tok(read_texts(data / "debian_unlabelled.txt"))
    toks = tok(texts)
    classes = sorted(set(labels))
    y = [classes.index(lbl) for lbl in labels]
    tr = [i for i in range(len(texts)) if not is_valid[i]]
    va = [i for i in range(len(texts)) if is_valid[i]]
    tr_toks, tr_y, va_toks, va_y = [toks[i] for i in tr], [y[i] for i in tr], [toks[i] for i in va], [y[i] for i in va]
    vocab = Vocab.build(tr_toks + unlabelled, max_vocab=20000, min_freq=2)
    dls_lm = lm_loaders([vocab.numericalize(t) for t in tr_toks + unlabelled], [vocab.numericalize(t) for t in va_toks],
                        bs=args.bs, bptt=args.bptt, vocab=vocab, seed=args.seed)
    ft_epochs = args.ft_epochs if args.ft_epochs is not None else (3 if args.task == "fortunes" else 1)
    torch.manual_seed(args.seed)
    lm = quiet(language_model_learner(dls_lm, pretrained=general_path, drop_mult=args.lm_drop_mult, path=out))
    ppl_before = lm.validate()[1]
    print(f"\n## (2) {args.task} LM: {dls_lm.train.n_tokens} tokens, vocab {len(vocab)}, perplexity of the general "
          f"LM on the validation texts {ppl_before:.1f}")
    if args.ft_frozen_epochs:
        lm.freeze()
        lm.fit_one_cycle(args.ft_frozen_epochs, args.ft_lr, moms=MOMS)
        lm.unfreeze()
    if ft_epochs:
        lm.fit_one_cycle(ft_epochs, args.ft_lr, moms=MOMS)
    ppl_after = lm.validate()[1]
    enc = lm.save_encoder(f"{args.task}_encoder")
    sample = generate(lm, "The", 30, temperature=0.8, seed=args.seed)

    # ------------------------------------------------------------------ (3) classifiers
    rows = []
    for frac in [float(f) for f in args.fracs.split(",")]:
        x_tr, y_tr = subsample(tr_toks, tr_y, frac, args.seed)
        dls = classifier_loaders([vocab.numericalize(t) for t in x_tr], y_tr, [vocab.numericalize(t) for t in va_toks],
                                 va_y, bs=args.bs, seed=args.seed, classes=classes, pad_idx=vocab.pad_idx)
        dls.text_vocab = vocab
        print(f"\n## (3) classifiers, {len(x_tr)} labelled training texts ({frac:.0%}), {len(va_toks)} validation")

        models = [
            ("ULMFiT (pretrained, fine-tuned LM, fit_ulmfit)",
             lambda d: text_classifier_learner(d, path=out, pretrained_encoder=enc),
             lambda learn: fit_ulmfit(learn, args.clas_lr, epochs=stages)),
            ("AWD-LSTM from scratch (one-cycle)",
             lambda d: text_classifier_learner(d, config=cfg, path=out, drop_mult=0.5),
             lambda learn: learn.fit_one_cycle(n_epochs, args.scratch_lr, moms=MOMS)),
            ("BiLSTM from scratch (one-cycle)",
             lambda d: Learner(LSTMClassifier(len(vocab), len(classes), emb_sz=args.emb_sz, n_hid=args.n_hid // 2,
                                              n_layers=2, bidirectional=True, dropout=0.3, pad_idx=vocab.pad_idx),
                               d, metrics=[accuracy], path=out, splitter=lstm_classifier_split),
             lambda learn: learn.fit_one_cycle(n_epochs, args.bilstm_lr)),
        ]
        for name, build, train in models:
            torch.manual_seed(args.seed)
            dls.train.set_epoch(0)  # every model sees the same shuffles
            learn = quiet(build(dls))
            print(f"\n### {name}")
            t = time.perf_counter()
            train(learn)
            loss, acc = learn.validate()[:2]
            rows.append(dict(frac=frac, n=len(x_tr), model=name, acc=acc, loss=loss, secs=time.perf_counter() - t))

    # ------------------------------------------------------------------ report
    print(f"\n## {args.task}: target LM perplexity {ppl_before:.1f} (general) -> {ppl_after:.1f} (fine-tuned)")
    print(f"sample: {sample!r}\n")
    print("| labels | classifier | accuracy | valid loss | time (s) |\n| ---: | --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['n']} ({r['frac']:.0%}) | {r['model']} | {r['acc']:.3f} | {r['loss']:.3f} | {r['secs']:.0f} |")
    (out / f"results_{args.task}.json").write_text(json.dumps(dict(ppl=[ppl_before, ppl_after], rows=rows), indent=1))
    print(f"\ntotal time {time.perf_counter() - t_start:.0f}s")


if __name__ == "__main__":
    main()
