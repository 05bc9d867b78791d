"""ULMFiT against training from scratch, on real data built from Debian packages (the README's ULMFiT table).

1. General language model: an AWD-LSTM pretrained on a sample of `general.txt` (WordNet glosses, Linux man
   pages, the fortunes topics that are not a task's; `python -m deepfit.text.corpus all DATA` builds it).
   Saved as OUT/models/general_lm.pth and reused by later runs (delete it to retrain).
2. Target language model: the general one fine-tuned on the task's training texts (and, for the Debian task,
   15,000 unlabelled package descriptions); its vocabulary is the task's, rows matched by `transfer_vocab`.
3. Classifiers on the task's given split, with all the training labels and with 10% of them:
   ULMFiT (`fit_ulmfit` defaults on the fine-tuned encoder, pooling the embedding and every LSTM layer), the
   AWD-LSTM classifier from scratch (one-cycle on all layers, drop_mult 0.5, pooling the last layer: better for
   it) and a BiLSTM from scratch. Budget (`--budget steps`): with a fraction of the labels every model trains for
   the same number of optimizer steps as with all of them (epochs times the ratio of batches per epoch: 62 texts
   at batch 64 are one step an epoch); the last epoch is reported.

Tasks: `fortunes` (4 topics: linux, love, food, sports; 620 training / 211 validation texts) and `debian`
(package short descriptions labelled by archive section: 27 classes, 3,997 / 1,003 texts). One thread:

    python -m deepfit.text.corpus all data/ulmfit
    python examples/ulmfit_fortunes.py --task fortunes --threads 1
    python examples/ulmfit_fortunes.py --task debian --ft-lr 1e-2 --threads 1   # the README's Debian row
    python examples/ulmfit_fortunes.py --task fortunes --threads 1 --reuse-lm --init-seed 1   # a second seed
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
    ap.add_argument("--clas-drop-mult", type=float, default=None, help="ULMFiT classifier (default CLAS_DROP_MULT)")
    ap.add_argument("--group-factor", type=float, default=1.0, help="fit_ulmfit: rate ratio between layer groups")
    ap.add_argument("--scratch-lr", type=float, default=1e-2, help="AWD-LSTM from scratch, one-cycle peak")
    ap.add_argument("--bilstm-lr", type=float, default=5e-3)
    ap.add_argument("--stages", default="1,0,0,5", help="epochs of fit_ulmfit's 4 stages")
    ap.add_argument("--epochs", type=int, default=None, help="epochs of the scratch models (default: sum of stages)")
    ap.add_argument("--ulmfit-features", choices=["last", "all"], default="all",
                    help="the ULMFiT classifier pools the embedding and every layer (all) or the last layer")
    ap.add_argument("--scratch-features", choices=["last", "all"], default="last",
                    help="the same for the AWD-LSTM from scratch (last: measured better for it)")
    ap.add_argument("--lm-vocab", choices=["task", "union"], default="task",
                    help="target LM (and ULMFiT classifier) vocabulary: the task's tokens (min_freq 2), or those "
                         "plus every token of the general LM, so words rare in the task keep their pretrained rows")
    ap.add_argument("--bs", type=int, default=64)
    ap.add_argument("--bptt", type=int, default=70)
    ap.add_argument("--seed", type=int, default=0, help="split of the general corpus, 10%% sample, LM seeds")
    ap.add_argument("--init-seed", type=int, default=None, help="classifier initialisation and shuffles (--seed)")
    ap.add_argument("--budget", choices=["steps", "epochs"], default="steps",
                    help="steps: a fraction of the labels trains for as many optimizer steps as all labels "
                         "(epochs scaled by the ratio of batches per epoch); epochs: the same epochs")
    ap.add_argument("--models", default="ulmfit,scratch,bilstm", help="which classifiers to train")
    ap.add_argument("--reuse-lm", action="store_true",
                    help="reuse OUT/models/TASK_encoder.pth from an earlier run instead of fine-tuning the LM")
    ap.add_argument("--lm-tag", default="", help="suffix of the target LM's encoder file (keeps variants apart)")
    ap.add_argument("--tag", default="", help="suffix of the results file (results_TASK[_TAG].json)")
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
    vocab = Vocab.build(tr_toks + unlabelled, max_vocab=20000, min_freq=2)  # the from-scratch models'
    lm_vocab = vocab
    if args.lm_vocab == "union":
        general_itos = torch.load(general_path, weights_only=True)["itos"]
        lm_vocab = Vocab(vocab.itos + [t for t in general_itos if t not in vocab.stoi])
    dls_lm = lm_loaders([lm_vocab.numericalize(t) for t in tr_toks + unlabelled],
                        [lm_vocab.numericalize(t) for t in va_toks], bs=args.bs, bptt=args.bptt, vocab=lm_vocab,
                        seed=args.seed)
    ft_epochs = args.ft_epochs if args.ft_epochs is not None else (3 if args.task == "fortunes" else 1)
    enc_name = f"{args.task}_encoder" + ("_union" if args.lm_vocab == "union" else "") + args.lm_tag
    enc = out / "models" / f"{enc_name}.pth"
    ppl_file = out / "models" / f"{enc_name}_lm.json"
    if args.reuse_lm and enc.exists():
        lm_info = json.loads(ppl_file.read_text()) if ppl_file.exists() else dict(ppl=[float("nan")] * 2, sample="")
        ppl_before, ppl_after = lm_info["ppl"]
        sample = lm_info["sample"]
        print(f"\n## (2) {args.task} LM: reusing {enc}")
    else:
        torch.manual_seed(args.seed)
        lm = quiet(language_model_learner(dls_lm, pretrained=general_path, drop_mult=args.lm_drop_mult, path=out))
        ppl_before = lm.validate()[1]
        print(f"\n## (2) {args.task} LM: {dls_lm.train.n_tokens} tokens, vocab {len(lm_vocab)}, perplexity of the "
              f"general LM on the validation texts {ppl_before:.1f}")
        if args.ft_frozen_epochs:
            lm.freeze()
            lm.fit_one_cycle(args.ft_frozen_epochs, args.ft_lr, moms=MOMS)
            lm.unfreeze()
        if ft_epochs:
            lm.fit_one_cycle(ft_epochs, args.ft_lr, moms=MOMS)
        ppl_after = lm.validate()[1]
        enc = lm.save_encoder(enc_name)
        sample = generate(lm, "The", 30, temperature=0.8, seed=args.seed)
        ppl_file.write_text(json.dumps(dict(ppl=[ppl_before, ppl_after], sample=sample)))
        del lm

    # ------------------------------------------------------------------ (3) classifiers
    rows = []
    drop = {} if args.clas_drop_mult is None else dict(drop_mult=args.clas_drop_mult)
    init_seed = args.seed if args.init_seed is None else args.init_seed
    wanted = set(args.models.split(","))
    full_batches = -(-len(tr_toks) // args.bs)
    for frac in [float(f) for f in args.fracs.split(",")]:
        x_tr, y_tr = subsample(tr_toks, tr_y, frac, args.seed)
        dls = classifier_loaders([vocab.numericalize(t) for t in x_tr], y_tr, [vocab.numericalize(t) for t in va_toks],
                                 va_y, bs=args.bs, seed=init_seed, classes=classes, pad_idx=vocab.pad_idx)
        dls.text_vocab = vocab
        dls_pre = dls  # the ULMFiT classifier reads the texts with the target LM's vocabulary
        if lm_vocab is not vocab:
            dls_pre = classifier_loaders([lm_vocab.numericalize(t) for t in x_tr], y_tr,
                                         [lm_vocab.numericalize(t) for t in va_toks], va_y, bs=args.bs,
                                         seed=init_seed, classes=classes, pad_idx=lm_vocab.pad_idx)
            dls_pre.text_vocab = lm_vocab
        # the same optimizer steps whatever the fraction: 62 texts at batch 64 are one step per epoch
        mult = round(full_batches / len(dls.train)) if args.budget == "steps" else 1
        stages_f, n_epochs_f = [e * mult for e in stages], n_epochs * mult
        print(f"\n## (3) classifiers, {len(x_tr)} labelled training texts ({frac:.0%}), {len(va_toks)} validation; "
              f"{len(dls.train)} steps an epoch, ULMFiT stages {stages_f}, from scratch {n_epochs_f} epochs "
              f"({n_epochs_f * len(dls.train)} steps)")

        models = [
            ("ulmfit", "ULMFiT (pretrained, fine-tuned LM, fit_ulmfit)",
             lambda d: text_classifier_learner(d, path=out, pretrained_encoder=enc, feature_layers=args.ulmfit_features,
                                               **drop),
             lambda learn, e=stages_f: fit_ulmfit(learn, args.clas_lr, epochs=e, group_factor=args.group_factor)),
            ("scratch", "AWD-LSTM from scratch (one-cycle)",
             lambda d: text_classifier_learner(d, config=cfg, path=out, drop_mult=0.5,
                                               feature_layers=args.scratch_features),
             lambda learn, e=n_epochs_f: learn.fit_one_cycle(e, args.scratch_lr, moms=MOMS)),
            ("bilstm", "BiLSTM from scratch (one-cycle)",
             lambda d: Learner(LSTMClassifier(len(vocab), len(classes), emb_sz=args.emb_sz, n_hid=args.n_hid // 2,
                                              n_layers=2, bidirectional=True, dropout=0.3, pad_idx=vocab.pad_idx),
                               d, metrics=[accuracy], path=out, splitter=lstm_classifier_split),
             lambda learn, e=n_epochs_f: learn.fit_one_cycle(e, args.bilstm_lr)),
        ]
        for key, name, build, train in models:
            if key not in wanted:
                continue
            torch.manual_seed(init_seed)
            d = dls_pre if key == "ulmfit" else dls
            d.train.set_epoch(0)  # every model sees the same shuffles
            learn = quiet(build(d))
            print(f"\n### {name}")
            t = time.perf_counter()
            train(learn)
            loss, acc = learn.validate()[:2]
            n_ep = sum(stages_f) if key == "ulmfit" else n_epochs_f
            rows.append(dict(frac=frac, n=len(x_tr), model=name, acc=acc, loss=loss,
                             train_loss=learn.recorder.values[-1][0], epochs=n_ep, steps=n_ep * len(dls.train),
                             secs=time.perf_counter() - t))

    # ------------------------------------------------------------------ report
    print(f"\n## {args.task}: target LM perplexity {ppl_before:.1f} (general) -> {ppl_after:.1f} (fine-tuned)")
    print(f"sample: {sample!r}\n")
    print("| labels | classifier | accuracy | valid loss | time (s) |\n| ---: | --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['n']} ({r['frac']:.0%}) | {r['model']} | {r['acc']:.3f} | {r['loss']:.3f} | {r['secs']:.0f} |")
    name = f"results_{args.task}{'_' + args.tag if args.tag else ''}.json"
    (out / name).write_text(json.dumps(dict(args=vars(args), ppl=[ppl_before, ppl_after], rows=rows), indent=1))
    print(f"\ntotal time {time.perf_counter() - t_start:.0f}s")


if __name__ == "__main__":
    main()
