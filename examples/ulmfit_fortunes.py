"""ULMFiT on the fortunes corpus: pretrain, fine-tune, classify with gradual unfreezing.

1. Pretrain an AWD-LSTM language model on every fortunes topic (the classifier's validation texts
   held out).
2. Fine-tune it on the training texts of a few topics; this corpus has its own, smaller vocabulary,
   so the pretrained embedding is re-indexed (shared tokens copied, new ones at the mean). For
   comparison, the same language model trained on those texts from scratch for the same epochs.
3. Train a topic classifier on the fine-tuned encoder with gradual unfreezing (head, `freeze_to(-2)`,
   `freeze_to(-3)`, `unfreeze`, one-cycle each, `slice(lr/2.6**4, lr)`). Compare, for the same
   number of epochs: the AWD-LSTM classifier without pretraining (same recipe, and plain one-cycle
   on all layers), a BiLSTM from scratch, and a BiLSTM whose embeddings are the pretrained LM's,
   written to and read back from a GloVe-format text file (`load_embeddings`).

Prints Markdown tables (language-model validation perplexity; classifier accuracy) and text sampled
from the fine-tuned language model. Small sizes by default so it runs in minutes on a CPU:

    python examples/ulmfit_fortunes.py [--topics linux,love,food,sports] [--lm-epochs 1] [--ft-epochs 3]
        [--emb-sz 64] [--n-hid 192] [--n-layers 2] [--tokenizer spacy|simple] [--out runs/ulmfit]
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepfit.learner import Learner, accuracy  # noqa: E402
from deepfit.text.learner import fit_ulmfit, language_model_learner, text_classifier_learner  # noqa: E402
from deepfit.models import LSTMClassifier, lstm_classifier_split  # noqa: E402
from deepfit.text import (  # noqa: E402
    Tokenizer,
    Vocab,
    classifier_loaders,
    fortune_topics,
    fortunes_texts,
    generate,
    lm_loaders,
)
from deepfit.text.embeddings import load_embeddings  # noqa: E402


def simple_tokens(text: str) -> list[str]:
    return ["xxbos", *re.findall(r"[a-z]+|[^\sa-z]", text.lower()), "xxeos"]


def tokenize(texts: list[str], how: str, cache: Path) -> list[list[str]]:
    if how == "simple":
        return [simple_tokens(t) for t in texts]
    return Tokenizer(cache_dir=cache, progress=False)(texts)


def quiet(learn: Learner) -> Learner:
    """Keep the per-epoch lines but not the live bar."""
    learn.progress.live = False
    return learn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--topics", default="linux,love,food,sports")
    ap.add_argument("--tokenizer", choices=["spacy", "simple"], default="spacy")
    ap.add_argument("--lm-epochs", type=int, default=1, help="pretraining epochs on all topics")
    ap.add_argument("--ft-epochs", type=int, default=3, help="fine-tuning epochs (1 frozen + the rest unfrozen)")
    ap.add_argument("--clas-epochs", default="2,2,2,6", help="epochs of the 4 gradual-unfreezing stages")
    ap.add_argument("--clas-lr-divs", default="1,1,2,4", help="lr divisors of the 4 stages (ULMFiT: 1,2,4,20)")
    ap.add_argument("--emb-sz", type=int, default=64)
    ap.add_argument("--n-hid", type=int, default=192)
    ap.add_argument("--n-layers", type=int, default=2)
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--bptt", type=int, default=40)
    ap.add_argument("--lr", type=float, default=1e-2, help="language-model peak lr")
    ap.add_argument("--clas-lr", type=float, default=2e-2)
    ap.add_argument("--max-vocab", type=int, default=8000)
    ap.add_argument("--pretrain-texts", type=int, default=0, help="use only this many pretraining texts (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument("--out", default="runs/ulmfit_fortunes")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    # gradients that reach an LSTM only through its last state decay into denormal floats, which are many
    # times slower on CPUs (the BiLSTM classifiers here ran ~6x slower); flush them to zero
    torch.set_flush_denormal(True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    topics = args.topics.split(",")
    clas_epochs = [int(e) for e in args.clas_epochs.split(",")]
    lr_divs = [float(d) for d in args.clas_lr_divs.split(",")]
    cfg = dict(emb_sz=args.emb_sz, n_hid=args.n_hid, n_layers=args.n_layers)
    t_start = time.perf_counter()
    rng = random.Random(args.seed)

    # ------------------------------------------------------------------ data
    all_items = fortunes_texts()
    toks = tokenize(all_items.texts, args.tokenizer, out / "tok_cache")
    n_tok = sum(map(len, toks))
    print(f"fortunes: {len(toks)} texts, {n_tok} tokens, {len(fortune_topics())} topics "
          f"(tokenized in {time.perf_counter() - t_start:.0f}s)")
    chosen = [i for i, lbl in enumerate(all_items.labels) if lbl in topics]
    rng.shuffle(chosen)
    n_valid = len(chosen) // 4
    clas_valid, clas_train = chosen[:n_valid], chosen[n_valid:]
    held_out = set(clas_valid)
    others = [i for i in range(len(toks)) if i not in held_out]
    rng.shuffle(others)
    if args.pretrain_texts:
        others = others[:args.pretrain_texts]
    n_lm_valid = len(others) // 20
    pre_valid, pre_train = others[:n_lm_valid], others[n_lm_valid:]

    # ------------------------------------------------------------------ (1) pretraining on all topics
    vocab_pre = Vocab.build([toks[i] for i in pre_train], max_vocab=args.max_vocab, min_freq=3)
    ids_pre = [vocab_pre.numericalize(t) for t in toks]
    dls_pre = lm_loaders([ids_pre[i] for i in pre_train], [ids_pre[i] for i in pre_valid], bs=args.bs,
                         bptt=args.bptt, seed=args.seed, vocab=vocab_pre)
    print(f"\n## (1) pretraining: {dls_pre.train.n_tokens} tokens, vocab {len(vocab_pre)}")
    torch.manual_seed(args.seed)
    lm_pre = quiet(language_model_learner(dls_pre, config=cfg, drop_mult=0.3, path=out))
    t = time.perf_counter()
    lm_pre.fit_one_cycle(args.lm_epochs, args.lr, moms=(0.8, 0.7, 0.8))
    pre_time = time.perf_counter() - t
    pre_tps = args.lm_epochs * dls_pre.train.n_tokens / pre_time
    lm_pre.save_pretrained("lm_pretrained")

    # ------------------------------------------------------------------ (2) fine-tuning on the chosen topics
    vocab = Vocab.build([toks[i] for i in clas_train], max_vocab=args.max_vocab, min_freq=2)
    ids = [vocab.numericalize(t) for t in toks]
    ft_rng = random.Random(args.seed + 1)
    ft_idx = list(clas_train)
    ft_rng.shuffle(ft_idx)
    n_ft_valid = len(ft_idx) // 10
    dls_ft = lm_loaders([ids[i] for i in ft_idx[n_ft_valid:]], [ids[i] for i in clas_valid], bs=args.bs,
                        bptt=args.bptt, seed=args.seed, vocab=vocab)
    shared = sum(t in vocab_pre.stoi for t in vocab.itos)
    print(f"\n## (2) fine-tuning on {topics}: {dls_ft.train.n_tokens} tokens, vocab {len(vocab)} "
          f"({shared} shared with the pretraining vocab)")
    ppl_rows = []
    pre_ppl_on_topics = None
    torch.manual_seed(args.seed)
    lm_ft = quiet(language_model_learner(dls_ft, pretrained=out / "models" / "lm_pretrained.pth", drop_mult=0.3,
                                         path=out))
    pre_ppl_on_topics = lm_ft.validate()[1]
    lm_ft.freeze()
    lm_ft.fit_one_cycle(1, args.lr, moms=(0.8, 0.7, 0.8))
    lm_ft.unfreeze()
    if args.ft_epochs > 1:
        lm_ft.fit_one_cycle(args.ft_epochs - 1, args.lr / 2, moms=(0.8, 0.7, 0.8))
    ft_ppl = lm_ft.validate()[1]
    lm_ft.save_encoder("ft_encoder")

    torch.manual_seed(args.seed)
    lm_scratch = quiet(language_model_learner(dls_ft, config=cfg, drop_mult=0.3, path=out))
    lm_scratch.fit_one_cycle(args.ft_epochs, args.lr, moms=(0.8, 0.7, 0.8))
    scratch_ppl = lm_scratch.validate()[1]
    ppl_rows += [
        ("pretrained on all topics, before fine-tuning", pre_ppl_on_topics),
        (f"pretrained + fine-tuned ({args.ft_epochs} epochs)", ft_ppl),
        (f"from scratch on the chosen topics ({args.ft_epochs} epochs)", scratch_ppl),
    ]

    # ------------------------------------------------------------------ (3) classifiers
    labels = [topics.index(all_items.labels[i]) if all_items.labels[i] in topics else -1 for i in range(len(toks))]
    dls_c = classifier_loaders([ids[i] for i in clas_train], [labels[i] for i in clas_train],
                               [ids[i] for i in clas_valid], [labels[i] for i in clas_valid], bs=args.bs,
                               seed=args.seed, classes=topics)
    dls_c.text_vocab = vocab
    n_epochs = sum(clas_epochs)
    counts = torch.bincount(torch.tensor([labels[i] for i in clas_valid]), minlength=len(topics))
    print(f"\n## (3) classifiers: {len(clas_train)} training / {len(clas_valid)} validation texts, "
          f"{n_epochs} epochs each; majority class {counts.max().item() / counts.sum().item():.3f}")
    clas_rows = []

    def run(name: str, build, train) -> None:
        torch.manual_seed(args.seed)
        learn = quiet(build())
        print(f"\n### {name}")
        t = time.perf_counter()
        train(learn)
        loss, acc = learn.validate()[:2]
        clas_rows.append((name, acc, loss, time.perf_counter() - t))

    enc_path = out / "models" / "ft_encoder.pth"
    run("AWD-LSTM, ULMFiT (pretrained + fine-tuned LM, gradual unfreezing)",
        lambda: text_classifier_learner(dls_c, config=cfg, path=out, pretrained_encoder=enc_path),
        lambda learn: fit_ulmfit(learn, args.clas_lr, epochs=clas_epochs, lr_divs=lr_divs))
    run("AWD-LSTM, no pretraining, same gradual unfreezing",
        lambda: text_classifier_learner(dls_c, config=cfg, path=out),
        lambda learn: fit_ulmfit(learn, args.clas_lr, epochs=clas_epochs, lr_divs=lr_divs))
    run("AWD-LSTM, no pretraining, one-cycle on all layers",
        lambda: text_classifier_learner(dls_c, config=cfg, path=out),
        lambda learn: learn.fit_one_cycle(n_epochs, args.clas_lr / 2, moms=(0.8, 0.7, 0.8)))

    def bilstm() -> LSTMClassifier:
        return LSTMClassifier(len(vocab), len(topics), emb_sz=args.emb_sz, n_hid=args.n_hid // 2, n_layers=2,
                              bidirectional=True, dropout=0.3, pad_idx=vocab.pad_idx)

    run("BiLSTM from scratch",
        lambda: Learner(bilstm(), dls_c, metrics=[accuracy], path=out, splitter=lstm_classifier_split),
        lambda learn: learn.fit_one_cycle(n_epochs, 5e-3))

    # the pretrained LM's word vectors as a GloVe-format text file, read back with load_embeddings
    glove = out / f"fortunes_lm.{args.emb_sz}d.txt"
    emb = lm_pre.model[0].encoder.weight.detach().cpu()
    with glove.open("w", encoding="utf-8") as f:
        for tok, vec in zip(vocab_pre.itos, emb.tolist()):
            if " " not in tok and tok.strip():
                f.write(tok + " " + " ".join(f"{v:.5f}" for v in vec) + "\n")

    def bilstm_glove() -> Learner:
        model = bilstm()
        model.set_embeddings(load_embeddings(glove, vocab, seed=args.seed).weight)
        return Learner(model, dls_c, metrics=[accuracy], path=out, splitter=lstm_classifier_split)

    run("BiLSTM, embeddings from the pretrained LM (GloVe-format file)", bilstm_glove,
        lambda learn: learn.fit_one_cycle(n_epochs, 5e-3))

    # ------------------------------------------------------------------ report
    print("\n## Language models (validation: the chosen topics' held-out texts)\n")
    print("| language model | validation perplexity |\n| --- | ---: |")
    for name, ppl in ppl_rows:
        print(f"| {name} | {ppl:.1f} |")
    print(f"\nPretraining: {args.lm_epochs} epochs over {dls_pre.train.n_tokens} tokens, validation perplexity "
          f"{lm_pre.recorder.last_valid[1]:.1f} on held-out texts of all topics, {pre_tps:.0f} tokens/s.")
    print(f"\n## Topic classifier ({', '.join(topics)}; {n_epochs} epochs each)\n")
    print("| classifier | accuracy | valid loss | time (s) |\n| --- | ---: | ---: | ---: |")
    for name, acc, loss, secs in clas_rows:
        print(f"| {name} | {acc:.3f} | {loss:.3f} | {secs:.0f} |")
    print("\n## Samples from the fine-tuned language model\n")
    for i, prompt in enumerate(["The", "Love is", "A computer"]):
        tok = (lambda s: simple_tokens(s)[:-1]) if args.tokenizer == "simple" else None
        text = generate(lm_ft, prompt, 40, temperature=0.8, seed=args.seed + i, tokenizer=tok)
        print(f"- {text!r}")
    print(f"\ntotal time {time.perf_counter() - t_start:.0f}s")


if __name__ == "__main__":
    main()
