"""ULMFiT diagnostics behind docs/ulmfit.md (one thread): prep, bench, pretrain, finetune, clas.

Data: `python -m deepfit.text.corpus all benchmarks/ulmfit_diagnostics/data`. Runs go to `runs/`, classifier
results are appended to `results.jsonl` (both beside this file). Examples (the docs' figures):

    python diagnose.py pretrain --name gen_b --emb-sz 100 --n-hid 256 --max-vocab 10000 --max-texts 15000 \
        --lr 1e-2 --drop-mult 0.2
    python diagnose.py finetune --task fortunes --name ft_fort_3e-2 --pretrained gen_b --lr 3e-2 --epochs 3 \
        --drop-mult 0.2
    python diagnose.py finetune --task fortunes --name fscratch_1e-2 --emb-sz 100 --n-hid 256 --lr 1e-2 --epochs 4 \
        --drop-mult 0.3
    python diagnose.py clas --task fortunes --enc ft_fort_3e-2 --sched ulmfit --lr 2e-2 --stages 1,1,1,2 \
        --divs 1,2,4,20                       # fastai's recipe
    python diagnose.py clas --task fortunes --enc ft_fort_3e-2 --sched ulmfit --lr 4e-2 --stages 1,0,0,5 \
        --divs 1,1,1,2 --factor 1 --drop-mult 0.2   # the new defaults
    python diagnose.py clas --task fortunes --enc ft_fort_3e-2 --sched onecycle --lr 1e-2 --epochs 6
    python diagnose.py clas --task fortunes --sched onecycle --lr 1e-2 --epochs 6 --emb-sz 100 --n-hid 256 [--frac 0.1]
    python diagnose.py clas --task fortunes --model bilstm --lr 5e-3 --epochs 6 --emb-sz 100 --n-hid 256 [--frac 0.1]
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

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
torch.set_num_threads(1)
torch.set_flush_denormal(True)

from deepfit.learner import Learner, accuracy  # noqa: E402
from deepfit.learner.text import fit_ulmfit, language_model_learner, text_classifier_learner  # noqa: E402
from deepfit.models import LSTMClassifier, lstm_classifier_split  # noqa: E402
from deepfit.text import Tokenizer, Vocab, classifier_loaders, lm_loaders  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
CACHE = HERE / "cache"
RUNS = HERE / "runs"


def read_blank_sep(path: Path) -> list[str]:
    return [p.strip() for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip()]


def read_csv(path: Path):
    with path.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows], [r["is_valid"] == "True" for r in rows]


def tok(texts):
    return Tokenizer(cache_dir=CACHE, progress=False, n_workers=1)(texts)


def task_data(task: str):
    """(train_toks, train_labels, valid_toks, valid_labels, classes, unlabelled_toks)"""
    if task == "fortunes":
        texts, labels, valid = read_csv(DATA / "fortunes4.csv")
        unl = []
    else:
        texts, labels, valid = read_csv(DATA / "debian_sections.csv")
        unl = tok(read_blank_sep(DATA / "debian_unlabelled.txt"))
    toks = tok(texts)
    classes = sorted(set(labels))
    y = [classes.index(label) for label in labels]
    tr = [i for i in range(len(texts)) if not valid[i]]
    va = [i for i in range(len(texts)) if valid[i]]
    return ([toks[i] for i in tr], [y[i] for i in tr], [toks[i] for i in va], [y[i] for i in va], classes, unl)


def subsample(toks, ys, frac, seed=0):
    if frac >= 1:
        return toks, ys
    idx = list(range(len(toks)))
    random.Random(seed).shuffle(idx)
    idx = sorted(idx[:max(1, round(len(idx) * frac))])
    return [toks[i] for i in idx], [ys[i] for i in idx]


def quiet(learn):
    learn.progress.live = False
    return learn


def cmd_prep(a):
    t = time.perf_counter()
    g = tok(read_blank_sep(DATA / "general.txt"))
    print("general", len(g), sum(map(len, g)), f"{time.perf_counter() - t:.0f}s")
    for task in ("fortunes", "debian"):
        trx, _, vax, _, classes, unl = task_data(task)
        print(task, len(trx), len(vax), len(classes), sum(map(len, trx)), "unl", len(unl), sum(map(len, unl)))


def general_split(seed=0):
    g = tok(read_blank_sep(DATA / "general.txt"))
    idx = list(range(len(g)))
    random.Random(seed).shuffle(idx)
    nv = len(idx) // 50
    return [g[i] for i in idx[nv:]], [g[i] for i in idx[:nv]]


def cfg_of(a):
    return dict(emb_sz=a.emb_sz, n_hid=a.n_hid, n_layers=a.n_layers)


def cmd_bench(a):
    tr, va = general_split()
    vocab = Vocab.build(tr, max_vocab=a.max_vocab, min_freq=3)
    ids = [vocab.numericalize(t) for t in tr[:20000]]
    dls = lm_loaders(ids, [vocab.numericalize(t) for t in va[:500]], bs=a.bs, bptt=a.bptt, vocab=vocab)
    learn = quiet(language_model_learner(dls, config=cfg_of(a), drop_mult=a.drop_mult))
    n = 30
    xb = [b for _, b in zip(range(n), dls.train)]
    learn.create_opt(1e-3) if hasattr(learn, "create_opt") else None
    model = learn.model.train()
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    lf = torch.nn.CrossEntropyLoss()
    t = time.perf_counter()
    ntok = 0
    for x, y in xb:
        out = model(x)
        loss = lf(out.reshape(-1, out.size(-1)), y.reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad()
        ntok += x.numel()
    dt = time.perf_counter() - t
    print(f"vocab {len(vocab)} cfg {cfg_of(a)} bs {a.bs}: {ntok / dt:.0f} tok/s")


def cmd_pretrain(a):
    tr, va = general_split()
    if a.max_texts:
        tr = tr[:a.max_texts]
    vocab = Vocab.build(tr, max_vocab=a.max_vocab, min_freq=3)
    dls = lm_loaders([vocab.numericalize(t) for t in tr], [vocab.numericalize(t) for t in va], bs=a.bs,
                     bptt=a.bptt, vocab=vocab, seed=a.seed)
    print(f"general: {dls.train.n_tokens} train tokens, {dls.valid.n_tokens} valid, vocab {len(vocab)}")
    torch.manual_seed(a.seed)
    out = RUNS / a.name
    learn = quiet(language_model_learner(dls, config=cfg_of(a), drop_mult=a.drop_mult, path=out, wd=a.wd))
    t = time.perf_counter()
    learn.fit_one_cycle(a.epochs, a.lr, moms=(0.8, 0.7, 0.8))
    dt = time.perf_counter() - t
    learn.save_pretrained("lm")
    res = dict(name=a.name, valid=learn.recorder.last_valid, time=dt, tok_s=a.epochs * dls.train.n_tokens / dt,
               cfg=cfg_of(a), lr=a.lr, epochs=a.epochs, drop_mult=a.drop_mult, wd=a.wd)
    print(json.dumps(res))
    (out / "result.json").write_text(json.dumps(res))


def target_vocab(task, max_vocab=20000):
    trx, _, _, _, _, unl = task_data(task)
    return Vocab.build(trx + unl, max_vocab=max_vocab, min_freq=2)


def cmd_finetune(a):
    """Target LM: from a pretrained general LM (or from scratch), on the task's training + unlabelled texts."""
    trx, _, vax, _, _, unl = task_data(a.task)
    vocab = target_vocab(a.task)
    lm_texts = trx + unl
    # validation: the classifier's validation texts (unlabelled text only; a held-out stream)
    dls = lm_loaders([vocab.numericalize(t) for t in lm_texts], [vocab.numericalize(t) for t in vax], bs=a.bs,
                     bptt=a.bptt, vocab=vocab, seed=a.seed)
    print(f"{a.task} LM: {dls.train.n_tokens} train tokens, vocab {len(vocab)}")
    torch.manual_seed(a.seed)
    out = RUNS / a.name
    if a.pretrained:
        learn = quiet(language_model_learner(dls, pretrained=RUNS / a.pretrained / "models" / "lm.pth",
                                             drop_mult=a.drop_mult, path=out, wd=a.wd, alpha=a.alpha, beta=a.beta))
        before = learn.validate()[1]
    else:
        learn = quiet(language_model_learner(dls, config=cfg_of(a), drop_mult=a.drop_mult, path=out, wd=a.wd,
                                             alpha=a.alpha, beta=a.beta))
        before = float("nan")
    t = time.perf_counter()
    if a.pretrained and a.frozen_epochs:
        learn.freeze()
        learn.fit_one_cycle(a.frozen_epochs, a.lr, moms=(0.8, 0.7, 0.8))
        learn.unfreeze()
    learn.fit_one_cycle(a.epochs, a.lr2 or a.lr, moms=(0.8, 0.7, 0.8))
    dt = time.perf_counter() - t
    learn.save_encoder("enc")
    res = dict(name=a.name, task=a.task, before=before, valid=learn.recorder.last_valid, time=dt,
               pretrained=a.pretrained, lr=a.lr, lr2=a.lr2, epochs=a.epochs, frozen_epochs=a.frozen_epochs)
    print(json.dumps(res))
    (out / "result.json").write_text(json.dumps(res))


def cmd_clas(a):
    trx, try_, vax, vay, classes, _ = task_data(a.task)
    vocab = target_vocab(a.task)
    trx, try_ = subsample(trx, try_, a.frac, a.seed)
    dls = classifier_loaders([vocab.numericalize(t) for t in trx], try_, [vocab.numericalize(t) for t in vax], vay,
                             bs=a.bs, seed=a.seed, classes=classes, pad_idx=vocab.pad_idx)
    dls.text_vocab = vocab
    torch.manual_seed(a.seed)
    out = RUNS / "clas"
    t = time.perf_counter()
    if a.model == "bilstm":
        model = LSTMClassifier(len(vocab), len(classes), emb_sz=a.emb_sz, n_hid=a.n_hid // 2, n_layers=2,
                               bidirectional=True, dropout=0.3, pad_idx=vocab.pad_idx)
        learn = quiet(Learner(model, dls, metrics=[accuracy], path=out, splitter=lstm_classifier_split))
        learn.fit_one_cycle(a.epochs, a.lr)
    else:
        enc = RUNS / a.enc / "models" / "enc.pth" if a.enc else None
        learn = quiet(text_classifier_learner(dls, config=None if enc else cfg_of(a), path=out,
                                              pretrained_encoder=enc, drop_mult=a.drop_mult, wd=a.wd,
                                              lin_ftrs=(a.head,)))
        if a.sched == "onecycle":
            learn.fit_one_cycle(a.epochs, a.lr, moms=(0.8, 0.7, 0.8))
        elif a.sched == "ulmfit":
            ep = [int(e) for e in a.stages.split(",")]
            divs = [float(d) for d in a.divs.split(",")]
            fit_ulmfit(learn, a.lr, epochs=ep, lr_divs=divs, factor=a.factor)
        elif a.sched == "head":
            learn.freeze()
            learn.fit_one_cycle(a.epochs, a.lr, moms=(0.8, 0.7, 0.8))
        elif a.sched == "two":  # head, then all layers with discriminative rates
            learn.freeze()
            learn.fit_one_cycle(1, a.lr, moms=(0.8, 0.7, 0.8))
            learn.unfreeze()
            learn.fit_one_cycle(a.epochs - 1, slice(a.lr / 2 / a.factor, a.lr / 2), moms=(0.8, 0.7, 0.8))
    dt = time.perf_counter() - t
    loss, acc = learn.validate()[:2]
    tl = learn.recorder.values[-1][0] if getattr(learn.recorder, "values", None) else None
    res = dict(task=a.task, model=a.model, enc=a.enc, sched=a.sched, stages=a.stages, divs=a.divs, lr=a.lr,
               epochs=a.epochs, frac=a.frac, acc=round(acc, 4), loss=round(loss, 4), train_loss=tl, time=round(dt),
               drop_mult=a.drop_mult, wd=a.wd, factor=a.factor, head=a.head, seed=a.seed, n_train=len(trx),
               tag=a.tag)
    print(json.dumps(res))
    with (HERE / "results.jsonl").open("a") as f:
        f.write(json.dumps(res) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd")
    ap.add_argument("--task", default="fortunes")
    ap.add_argument("--name", default="x")
    ap.add_argument("--emb-sz", type=int, default=200)
    ap.add_argument("--n-hid", type=int, default=400)
    ap.add_argument("--n-layers", type=int, default=2)
    ap.add_argument("--max-vocab", type=int, default=20000)
    ap.add_argument("--max-texts", type=int, default=0)
    ap.add_argument("--bs", type=int, default=64)
    ap.add_argument("--bptt", type=int, default=70)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--lr2", type=float, default=0)
    ap.add_argument("--wd", type=float, default=0.01)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--frozen-epochs", type=int, default=1)
    ap.add_argument("--drop-mult", type=float, default=0.5)
    ap.add_argument("--pretrained", default="")
    ap.add_argument("--enc", default="")
    ap.add_argument("--model", default="awd")
    ap.add_argument("--sched", default="ulmfit")
    ap.add_argument("--stages", default="1,1,1,2")
    ap.add_argument("--divs", default="1,2,4,20")
    ap.add_argument("--factor", type=float, default=2.6 ** 4)
    ap.add_argument("--head", type=int, default=50)
    ap.add_argument("--frac", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="")
    ap.add_argument("--alpha", type=float, default=2.0)
    ap.add_argument("--beta", type=float, default=1.0)
    a = ap.parse_args()
    globals()["cmd_" + a.cmd](a)


if __name__ == "__main__":
    main()
