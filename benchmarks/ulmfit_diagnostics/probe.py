"""Linear probe of a classifier encoder's pooled features: `python probe.py ENC|random TASK [LAYER]`.

ENC is a `diagnose.py finetune` run (its `models/enc.pth`); LAYER pools that LSTM layer's outputs instead of the
last one. Fits a logistic regression (L-BFGS) on standardised features of up to 1,500 training texts.
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from diagnose import RUNS, classifier_loaders, target_vocab, task_data, text_classifier_learner  # noqa: E402

from deepfit.models.text_classifiers import masked_concat_pool  # noqa: E402

torch.set_num_threads(1)


def main() -> None:
    enc_name, task = sys.argv[1], sys.argv[2]
    layer = int(sys.argv[3]) if len(sys.argv) > 3 else -1
    trx, try_, vax, vay, classes, _ = task_data(task)
    vocab = target_vocab(task)
    trx, try_ = trx[:1500], try_[:1500]
    dls = classifier_loaders([vocab.numericalize(t) for t in trx], try_, [vocab.numericalize(t) for t in vax], vay,
                             bs=64, seed=0, classes=classes, pad_idx=vocab.pad_idx)
    dls.text_vocab = vocab
    enc = RUNS / enc_name / "models" / "enc.pth" if enc_name != "random" else None
    torch.manual_seed(0)
    learn = text_classifier_learner(dls, path=RUNS / "clas", pretrained_encoder=enc,
                                    config=None if enc else dict(emb_sz=100, n_hid=256, n_layers=2))
    learn.model.eval()
    caught: list[torch.Tensor] = []
    if layer >= 0:
        learn.model[0].module.rnns[layer].register_forward_hook(lambda m, i, o: caught.append(o[0]))

    def feats(texts: list[list[str]]) -> torch.Tensor:
        out = []
        with torch.no_grad():
            for t in texts:
                caught.clear()
                o, mask = learn.model[0](vocab.numericalize(t)[None])
                if layer >= 0:
                    o, mask = torch.cat(caught, 1), torch.ones(1, sum(c.size(1) for c in caught), dtype=torch.bool)
                out.append(masked_concat_pool(o, mask))
        return torch.cat(out)

    x_tr, x_va = feats(trx), feats(vax)
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
    x_tr, x_va = (x_tr - mu) / sd, (x_va - mu) / sd
    y_tr, y_va = torch.tensor(try_), torch.tensor(vay)
    for wd in (1e-3, 1e-2):
        acc_tr, acc_va = fit_probe(x_tr, y_tr, x_va, y_va, len(classes), wd)
        print(f"{enc_name} {task} layer {layer} wd {wd}: train acc {acc_tr:.3f} valid acc {acc_va:.3f}")


def fit_probe(x_tr, y_tr, x_va, y_va, n_class: int, wd: float) -> tuple[float, float]:
    """Logistic regression with L2 `wd`, fitted by L-BFGS; returns (train, valid) accuracy."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(x_tr.shape[1], n_class)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=300)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(lin(x_tr), y_tr) + wd * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        acc_tr = (lin(x_tr).argmax(1) == y_tr).float().mean().item()
        return acc_tr, (lin(x_va).argmax(1) == y_va).float().mean().item()

if __name__ == "__main__":
    main()
