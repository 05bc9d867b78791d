"""ULMFiT with a `Learner`: language-model and classifier learners, encoder transfer, gradual unfreezing.

- `language_model_learner(dls, arch=AWD_LSTM, ...)`: an AWD-LSTM language model with tied weights,
  `FlatCrossEntropyLoss`, a perplexity metric, AR/TAR regularisation (`RNNRegularizer`) and state
  resets (`RNNResetCallback`). `pretrained=` starts from a file written by `save_pretrained`, even
  when the new corpus has another vocabulary (`transfer_vocab`).
- `TextLearner.save_encoder(name)` / `load_encoder(name)`: move the encoder from the language model
  to the classifier.
- `text_classifier_learner(dls, arch=AWD_LSTM, vocab=...)`: `SentenceEncoder` + pooling head, split
  into layer groups (embedding, each LSTM layer, head) for discriminative learning rates.
- `fit_ulmfit(learn, lr)`: train the head, then `freeze_to(-2)`, `freeze_to(-3)`, `unfreeze`, each
  stage with `fit_one_cycle` and `slice(lr_stage / 2.6**4, lr_stage)`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..learner.callbacks.hypers import AppliedHypers
from ..learner.events import Callback
from ..learner.learner import Learner
from ..learner.metrics import Metric, Perplexity, accuracy, accuracy_multi
from ..models.awd_lstm import AWD_LSTM, LinearDecoder, awd_lstm_lm_split, get_language_model
from ..models.text_classifiers import SentenceEncoder, awd_lstm_clas_split, get_text_classifier
from ..safe_io import safe_torch_load
from .callbacks import DivergenceWarning, RNNResetCallback, reset_model_state
from .losses import FlatCrossEntropyLoss

#: state-dict keys (suffixes) whose first dimension runs over the vocabulary
VOCAB_KEYS: tuple[str, ...] = ("encoder_dp.emb.weight", "decoder.weight", "decoder.bias")

#: fastai's published recipe: base 2e-2, stage rates 2e-2, 1e-2, 5e-3, 1e-3, `slice(lr_i / 2.6**4, lr_i)`
FASTAI_LR_DIVS: tuple[float, ...] = (1, 2, 4, 20)
#: deepfit's defaults, measured in docs/ulmfit.md: the head alone for one epoch, then every layer for five at
#: half the rate, one rate for all groups. With small CPU-sized language models the encoder has to move a lot;
#: fastai's recipe (discriminative rates 2.6x apart, short stages, last one at lr/20) left it underfitting.
ULMFIT_EPOCHS: tuple[int, ...] = (1, 0, 0, 5)
ULMFIT_LR_DIVS: tuple[float, ...] = (1, 1, 1, 2)
ULMFIT_LR: float = 4e-2
#: each layer group trains `GROUP_FACTOR` times slower than the next (1: one rate; ULMFiT's paper uses 2.6)
GROUP_FACTOR: float = 1.0
ULMFIT_PAPER_GROUP_FACTOR: float = 2.6
#: the classifier's dropout multiplier (of `AWD_LSTM_CLAS_CONFIG`); fastai uses 0.5
CLAS_DROP_MULT: float = 0.2
#: what a classifier on a pretrained encoder pools (`text_classifier_learner(feature_layers=...)`): the embedding and
#: every LSTM layer beat the last layer alone by 2-5 points on both of docs/ulmfit.md's tasks; a classifier from
#: scratch keeps `"last"` (better for it on fortunes)
ULMFIT_FEATURE_LAYERS: str = "all"
#: language-model defaults (AWD-LSTM): peak rate of `fit_one_cycle` (2e-3 gave perplexity 208, 1e-2 129, 3e-2 113
#: on the same data and budget) and dropout multiplier
LM_LR: float = 3e-2
LM_DROP_MULT: float = 0.2


# ---------------------------------------------------------------------------------------------- vocabulary
def _itos(vocab: Any) -> list[str]:
    itos = getattr(vocab, "itos", vocab)
    if itos is None or isinstance(itos, str) or not isinstance(itos, Sequence):
        raise TypeError(f"expected a Vocab or a list of tokens, got {type(vocab).__name__}")
    return list(itos)


def transfer_vocab(state_dict: dict[str, Tensor], old_itos: Sequence[str], new_itos: Sequence[str],
                   keys: Sequence[str] = VOCAB_KEYS) -> tuple[dict[str, Tensor], int]:
    """Re-index the vocabulary-sized tensors of a state dict from `old_itos` to `new_itos`.

    For every tensor whose key ends with one of `keys`: the row of a token present in both
    vocabularies is copied; a new token gets the mean of the old rows (embedding, decoder weight and
    decoder bias alike). Other tensors are passed through. Returns `(new_state_dict, n_shared)`.
    """
    old_index = {t: i for i, t in enumerate(old_itos)}
    src = torch.tensor([old_index.get(t, -1) for t in new_itos], dtype=torch.long)
    found = src >= 0
    out: dict[str, Tensor] = {}
    for k, v in state_dict.items():
        if not any(k.endswith(s) for s in keys):
            out[k] = v
            continue
        if v.shape[0] != len(old_itos):
            raise ValueError(f"transfer_vocab: {k} has {v.shape[0]} rows but the old vocabulary has "
                             f"{len(old_itos)} tokens")
        mean = v.float().mean(0).to(v.dtype)
        new = mean.expand(len(new_itos), *v.shape[1:]).clone()
        new[found] = v[src[found]]
        out[k] = new
    return out, int(found.sum())


# ---------------------------------------------------------------------------------------------- callbacks
class RNNRegularizer(Callback):
    """AR and TAR (Merity et al.) on the last LSTM layer of a language model, during training.

    AR: `alpha * mean(dropped_output ** 2)`; TAR: `beta * mean((raw[t + 1] - raw[t]) ** 2)`, where
    `raw`/`dropped_output` are the input/output of the decoder's output dropout (captured by a
    forward hook). The penalty enters the gradient through `loss + (reg - reg.detach())`, so the
    recorded loss stays the plain cross-entropy (no host sync).
    """

    order = 5

    def __init__(self, alpha: float = 2.0, beta: float = 1.0):
        self.alpha, self.beta = alpha, beta
        self._handle = None
        self._raw = self._out = None

    def _target(self) -> nn.Module:
        for m in self.learn.model.modules():
            if isinstance(m, LinearDecoder):
                return m.output_dp
        raise TypeError("RNNRegularizer needs a model with a LinearDecoder (a language model)")

    def _hook(self, module: nn.Module, inputs: tuple, output: Tensor) -> None:
        if module.training:
            self._raw, self._out = inputs[0], output

    def before_fit(self) -> None:
        if self._handle is None and (self.alpha or self.beta):
            self._handle = self._target().register_forward_hook(self._hook)

    def after_loss(self) -> None:
        raw, out = self._raw, self._out
        self._raw = self._out = None
        if not self.learn.training or raw is None:
            return
        reg = 0.0
        if self.alpha:
            reg = reg + self.alpha * out.float().pow(2).mean()
        if self.beta and raw.size(1) > 1:
            reg = reg + self.beta * (raw[:, 1:] - raw[:, :-1]).float().pow(2).mean()
        if isinstance(reg, Tensor):
            self.learn.loss = self.learn.loss + (reg - reg.detach())

    def after_fit(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._raw = self._out = None


# ---------------------------------------------------------------------------------------------- learner
def _encoder_of(model: nn.Module) -> nn.Module:
    """The encoder (e.g. `AWD_LSTM`) of a language model or a classifier."""
    enc = model[0]
    return enc.module if isinstance(enc, SentenceEncoder) else enc


class TextLearner(Learner):
    """A `Learner` for text models that knows its token vocabulary and moves encoders between models."""

    def __init__(self, model: nn.Module, dls, *args, text_vocab: Any = None, **kwargs):
        super().__init__(model, dls, *args, **kwargs)
        self.text_vocab = text_vocab

    @property
    def itos(self) -> list[str] | None:
        return None if self.text_vocab is None else _itos(self.text_vocab)

    def _path(self, name: str | Path) -> Path:
        p = Path(name)
        if p.suffix or p.parent != Path("."):
            return p
        return self.path / "models" / f"{p.name}.pth"

    def _save(self, obj: dict, name: str | Path) -> Path:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(obj, tmp)
        tmp.replace(path)
        return path

    def encoder(self) -> nn.Module:
        return _encoder_of(self.model)

    def save_encoder(self, name: str | Path) -> Path:
        """Save the encoder's weights, config and vocabulary (`models/<name>.pth` for a bare name)."""
        enc = self.encoder()
        return self._save({"kind": "encoder", "config": getattr(enc, "config", None), "itos": self.itos,
                           "state_dict": enc.state_dict()}, name)

    def load_encoder(self, name: str | Path, strict: bool = True) -> TextLearner:
        """Load an encoder saved by `save_encoder` (vocabularies that differ are matched with `transfer_vocab`)."""
        data = _load(self._path(name))
        state = data["state_dict"]
        if data.get("itos") is not None and self.itos is not None and data["itos"] != self.itos:
            state, n = transfer_vocab(state, data["itos"], self.itos)
            self.logger(f"load_encoder: {n}/{len(self.itos)} tokens found in the saved vocabulary")
        _load_state(self.encoder(), state, strict, self._path(name))
        _reset(self.model)
        return self

    def save_pretrained(self, name: str | Path) -> Path:
        """Save the whole language model with its config and vocabulary, for `language_model_learner(pretrained=)`."""
        return self._save({"kind": "language_model", "config": getattr(self.model, "config", None),
                           "itos": self.itos, "state_dict": self.model.state_dict()}, name)

    def load_pretrained(self, path: str | Path, strict: bool = True) -> TextLearner:
        """Load a language model saved by `save_pretrained`, re-indexing its vocabulary to this one's."""
        path = self._path(path)
        data = _load(path)
        state = data["state_dict"]
        if data.get("itos") is not None and self.itos is not None and data["itos"] != self.itos:
            state, n = transfer_vocab(state, data["itos"], self.itos)
            self.logger(f"pretrained LM: {n}/{len(self.itos)} tokens of the new vocabulary were in the old one; "
                        f"the others start from the mean embedding")
        _load_state(self.model, state, strict, path)
        _reset(self.model)
        return self


def _load(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"no saved model at {path}")
    data = safe_torch_load(path)  # a file holding pickled objects is refused (PickleRefusedError), never run
    if not isinstance(data, dict) or "state_dict" not in data:
        raise ValueError(f"{path}: not a file written by save_encoder/save_pretrained")
    return data


def _load_state(module: nn.Module, state: dict[str, Tensor], strict: bool, path: Path) -> None:
    own = module.state_dict()
    bad = [f"{k}: saved {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in state.items()
           if k in own and own[k].shape != v.shape]
    if bad:
        raise ValueError(f"{path}: the saved weights do not fit this model (different sizes?): " + "; ".join(bad))
    module.load_state_dict(state, strict=strict)


def _text_vocab(dls, vocab: Any) -> Any:
    vocab = vocab if vocab is not None else getattr(dls, "text_vocab", None)
    if vocab is None:
        raise ValueError("no token vocabulary: pass vocab= (a Vocab or a list of tokens) or set dls.text_vocab")
    return vocab


def _default_cbs(extra: Sequence[Callback]) -> list[Callback]:
    """The callbacks every text learner gets: state resets and the divergence warning (unless given)."""
    cbs = list(extra)
    if not any(isinstance(c, RNNResetCallback) for c in cbs):
        cbs.append(RNNResetCallback())
    if not any(isinstance(c, DivergenceWarning) for c in cbs):
        cbs.append(DivergenceWarning())
    return cbs


def language_model_learner(dls, arch: str | type[nn.Module] = AWD_LSTM, config: dict[str, Any] | None = None,
                           drop_mult: float = 1.0, pretrained: str | Path | None = None, vocab: Any = None,
                           alpha: float = 2.0, beta: float = 1.0,
                           metrics: Sequence[Callable | Metric] | None = None, cbs: Sequence[Callback] = (),
                           **kwargs: Any) -> TextLearner:
    """A `TextLearner` for an AWD-LSTM language model on language-model `dls` (see `deepfit.text.lm_loaders`).

    `config` overrides the architecture's sizes and dropouts (`AWD_LSTM_LM_CONFIG`); with
    `pretrained` (a file from `save_pretrained`) the saved config is the starting point and the
    weights are loaded, the vocabulary matched to `dls`'s. `alpha`/`beta` weigh AR/TAR (0 disables).
    Metrics default to perplexity. Other `kwargs` go to `Learner` (`opt_func`, `lr`, `wd`, `path`...).
    """

    vocab = _text_vocab(dls, vocab)
    itos = _itos(vocab)
    cfg: dict[str, Any] = {}
    if pretrained is not None:
        saved = _load(Path(pretrained)).get("config") or {}
        cfg = {k: v for k, v in saved.items() if k not in ("arch", "vocab_sz", "drop_mult")}
    cfg.update(config or {})
    model = get_language_model(arch, len(itos), drop_mult=drop_mult, **cfg)
    cbs = _default_cbs(cbs)
    if alpha or beta:
        cbs.append(RNNRegularizer(alpha, beta))
    learn = TextLearner(model, dls, loss_func=kwargs.pop("loss_func", FlatCrossEntropyLoss()),
                        metrics=[Perplexity()] if metrics is None else metrics, cbs=cbs,
                        splitter=kwargs.pop("splitter", awd_lstm_lm_split), text_vocab=vocab, **kwargs)
    if pretrained is not None:
        learn.load_pretrained(Path(pretrained))
    return learn


def text_classifier_learner(dls, arch: str | type[nn.Module] = AWD_LSTM, vocab: Any = None,
                            config: dict[str, Any] | None = None, drop_mult: float = CLAS_DROP_MULT, bptt: int = 72,
                            max_len: int = 72 * 20, lin_ftrs: Sequence[int] = (50,), ps: Sequence[float] | None = None,
                            n_class: int | None = None, pretrained_encoder: str | Path | None = None,
                            metrics: Sequence[Callable | Metric] | None = None, cbs: Sequence[Callback] = (),
                            feature_layers: str = "last", **kwargs: Any) -> TextLearner:
    """A `TextLearner` for an AWD-LSTM classifier on classifier `dls` (see `deepfit.text.classifier_loaders`).

    `vocab` is the token vocabulary (default `dls.text_vocab`); it must be the one the language
    model was fine-tuned with for `load_encoder` to copy rows one to one (otherwise they are
    matched). `n_class` defaults to `dls.c`. The model is split into layer groups: embedding, each
    LSTM layer, head. `feature_layers="all"` pools the embedding and every LSTM layer's outputs instead
    of the last layer's (see `get_text_classifier`). `pretrained_encoder`: a file from `save_encoder` to
    load at once. Metrics default to accuracy (`accuracy_multi` for multi-label data, whose loss is
    `BCEWithLogitsFlat`).
    """
    vocab = _text_vocab(dls, vocab)
    itos = _itos(vocab)
    n_class = n_class if n_class is not None else getattr(dls, "c", None)
    if n_class is None:
        raise ValueError("text_classifier_learner: unknown number of classes; pass n_class= or give dls a vocab")
    cfg = dict(config or {})
    if pretrained_encoder is not None:
        saved = _load(Path(pretrained_encoder)).get("config") or {}
        sizes = {k: saved[k] for k in ("emb_sz", "n_hid", "n_layers", "pad_token") if k in saved}
        cfg = {**sizes, **cfg}
    pad_idx = getattr(vocab, "pad_idx", None)
    if pad_idx is not None:
        cfg.setdefault("pad_token", pad_idx)
    model = get_text_classifier(arch, len(itos), n_class, bptt=bptt, max_len=max_len, lin_ftrs=lin_ftrs, ps=ps,
                                drop_mult=drop_mult, feature_layers=feature_layers, **cfg)
    if metrics is None:  # a multi-label dls gets BCEWithLogitsFlat from the Learner; its metric is accuracy_multi
        metrics = [accuracy_multi] if getattr(dls, "multi_label", False) else [accuracy]
    learn = TextLearner(model, dls, metrics=metrics, cbs=_default_cbs(cbs),
                        splitter=kwargs.pop("splitter", awd_lstm_clas_split), text_vocab=vocab, **kwargs)
    if pretrained_encoder is not None:
        learn.load_encoder(Path(pretrained_encoder))
    return learn


# ---------------------------------------------------------------------------------------------- recipe
ULMFIT_STAGES: tuple[int, ...] = (-1, -2, -3, 0)
@dataclass(frozen=True)
class UlmfitStage:
    """One stage of gradual unfreezing: `freeze_to(frozen_to)`, then `fit_one_cycle(epochs, lr)`."""

    index: int
    n_stages: int
    frozen_to: int
    epochs: int
    lr: float | slice
    n_groups: int

    @property
    def n_trainable(self) -> int:
        return self.n_groups if self.frozen_to == 0 else -self.frozen_to

    @property
    def label(self) -> str:
        """`'stage 2/4: last 2 groups, lr 0.0027..0.01'` (what a progress table or a log shows)."""
        which = "head only" if self.frozen_to == -1 else (
            "all groups" if self.n_trainable >= self.n_groups else f"last {self.n_trainable} groups")
        lrs = f"{self.lr:.2g}" if not isinstance(self.lr, slice) else self._slice_text()
        return f"stage {self.index + 1}/{self.n_stages}: {which}, lr {lrs}"

    def _slice_text(self) -> str:
        from ..learner.optim import lr_for_groups

        lrs = lr_for_groups(self.lr, self.n_groups)[self.n_groups - self.n_trainable:]
        lo, hi = f"{lrs[0]:.2g}", f"{lrs[-1]:.2g}"
        return hi if lo == hi else f"{lo}..{hi}"


def ulmfit_plan(n_groups: int, lr: float = ULMFIT_LR, epochs: Sequence[int] = ULMFIT_EPOCHS,
                lr_divs: Sequence[float] = ULMFIT_LR_DIVS, factor: float | None = None,
                group_factor: float = GROUP_FACTOR) -> list[UlmfitStage]:
    """The stages of `fit_ulmfit` for a model with `n_groups` layer groups (nothing is trained).

    Stage `i` trains at `lr_i = lr / lr_divs[i]`: the head stage with `lr_i`, the later ones with
    `slice(lr_i / factor, lr_i)` spread over every layer group, so consecutive groups differ by
    `group_factor` (`factor = group_factor ** (n_groups - 1)`: 2.6**4 for a 3-layer AWD-LSTM classifier, as in
    ULMFiT; 2.6**3 for 2 layers). Give `factor` to fix the spread instead.
    """
    if len(epochs) != len(ULMFIT_STAGES) or len(lr_divs) != len(ULMFIT_STAGES):
        raise ValueError(f"fit_ulmfit: epochs and lr_divs need {len(ULMFIT_STAGES)} entries "
                         f"(head, -2, -3, all), got {list(epochs)} and {list(lr_divs)}")
    if n_groups < len(ULMFIT_STAGES) - 1:
        raise ValueError(f"fit_ulmfit needs a model with at least 3 layer groups (embedding, LSTM, head), "
                         f"got {n_groups}")
    if any(e < 0 for e in epochs) or any(d <= 0 for d in lr_divs) or lr <= 0:
        raise ValueError(f"fit_ulmfit: epochs must be >= 0, lr and lr_divs > 0; got lr={lr}, epochs={list(epochs)}, "
                         f"lr_divs={list(lr_divs)}")
    spread = factor if factor is not None else group_factor ** (n_groups - 1)
    stages = []
    for i, (n, n_epoch, div) in enumerate(zip(ULMFIT_STAGES, epochs, lr_divs)):
        lr_i = lr / div
        stages.append(UlmfitStage(i, len(ULMFIT_STAGES), n, int(n_epoch),
                                  lr_i if i == 0 else slice(lr_i / spread, lr_i), n_groups))
    return stages


def fit_ulmfit(learn: Learner, lr: float = ULMFIT_LR, epochs: Sequence[int] = ULMFIT_EPOCHS,
               lr_divs: Sequence[float] = ULMFIT_LR_DIVS, factor: float | None = None,
               group_factor: float = GROUP_FACTOR, moms: tuple[float, float, float] | None = (0.8, 0.7, 0.8),
               start_stage: int = 0, on_stage: Callable[[UlmfitStage], None] | None = None,
               **fit_kwargs: Any) -> list[dict[str, Any]]:
    """ULMFiT's gradual unfreezing: train the head, then `freeze_to(-2)`, `freeze_to(-3)`, `unfreeze`.

    The stages come from `ulmfit_plan` (defaults: epochs `(1, 0, 0, 5)`, stage rates `lr / (1, 1, 1, 2)` with
    `lr=4e-2`, one rate for every layer group; a stage with 0 epochs is skipped). fastai's recipe is
    `lr=2e-2, epochs=(1, 1, 1, 2), lr_divs=FASTAI_LR_DIVS, factor=2.6**4`, and the paper's discriminative rates
    `group_factor=ULMFIT_PAPER_GROUP_FACTOR`; docs/ulmfit.md measures why they underfit small models.
    `start_stage` skips the stages before it and `resume=` (a
    checkpoint, see `fit(resume=)`) continues that stage mid-way: a run interrupted in stage `k` resumes with
    `fit_ulmfit(..., start_stage=k, resume=path)` and ends as the uninterrupted one would (CPU);
    `on_stage(stage)` is called before each stage trains (the CLI prints `stage.label` and tags its metrics);
    during a stage `learn.ulmfit_stage` is that `UlmfitStage`. Other keywords go to `fit_one_cycle`
    (`wd`, `cbs`...).

    Returns one dict per stage run: `stage`, `label`, `frozen_to`, `lr` (the float or slice given),
    `trainable_groups`, `applied` (`lrs`: peak rate of each trainable group, `moms`: highest and lowest
    momentum, `wds`: weight decay of each trainable group, as the optimizer applied them) and `valid`.
    """
    stages = ulmfit_plan(len(learn.parameter_groups()), lr, epochs, lr_divs, factor, group_factor)
    if not 0 <= start_stage < len(stages):
        raise ValueError(f"fit_ulmfit: start_stage must be in [0, {len(stages) - 1}], got {start_stage}")
    extra_cbs = list(fit_kwargs.pop("cbs", None) or [])
    resume = fit_kwargs.pop("resume", None)
    results = []
    for stage in stages[start_stage:]:
        idx = learn.freeze_to(stage.frozen_to)
        groups = learn.parameter_groups()
        trainable = [j for j, g in enumerate(groups) if g and all(p.requires_grad for p in g)]
        learn.ulmfit_stage = stage
        if on_stage is not None:
            on_stage(stage)
        applied: dict[str, Any] = {}
        if stage.epochs > 0:
            spy = AppliedHypers()
            kw = dict(fit_kwargs, resume=resume) if resume is not None else fit_kwargs
            resume = None  # only the first stage run continues a checkpoint
            learn.fit_one_cycle(stage.epochs, stage.lr, moms=moms, cbs=[*extra_cbs, spy], **kw)
            if spy.lrs:  # a stage resumed at its end trains no step: nothing was applied
                applied = dict(lrs=[spy.lrs[j] for j in trainable], moms=spy.moms,
                               wds=[spy.wds[j] for j in trainable])
        results.append(dict(stage=stage.index, label=stage.label, frozen_to=idx, lr=stage.lr,
                            trainable_groups=trainable, applied=applied,
                            valid=list(learn.recorder.last_valid) if stage.epochs > 0 else []))
    learn.ulmfit_stage = None
    return results


#: the highest rate `suggest_lr` returns for each stage (measured in docs/ulmfit.md)
SAFE_LR_CAPS: dict[str, float] = {"lm": LM_LR, "head": ULMFIT_LR, "all": ULMFIT_LR / 2}


def suggest_lr(learn: Learner, stage: str = "lm", num_it: int = 100, plot: str | Path | None = None,
               cap: float | None = None) -> tuple[float, Any]:
    """A learning rate from `lr_find` that is safe for `stage`: `'lm'`, `'head'` (frozen encoder) or `'all'`.

    The steepest-descent point often sits just before the loss blows up (on a frozen classifier head it
    picked 0.167, and validation loss went to 40), so this returns the lower of the two suggestions
    (`minimum / 10` and `steepest`), never above `cap` (default `SAFE_LR_CAPS[stage]`). For `'head'` the sweep
    runs with the encoder frozen, and the learner is unfrozen afterwards. Returns `(lr, LRFindResult)`.
    """
    if stage not in SAFE_LR_CAPS:
        raise ValueError(f"suggest_lr: stage must be one of {sorted(SAFE_LR_CAPS)}, got {stage!r}")
    cap = SAFE_LR_CAPS[stage] if cap is None else cap
    if stage == "head":
        learn.freeze()
    try:
        n_batches = len(learn.dls.train) if hasattr(learn.dls.train, "__len__") else num_it
        res = learn.lr_find(num_it=min(num_it, max(4 * n_batches, 10)), plot=plot)
    finally:
        if stage == "head":
            learn.unfreeze()
    found = [v for v in (res.minimum, res.steepest) if math.isfinite(v) and v > 0]
    lr = min([*found, cap])
    return float(lr), res


def _reset(model: nn.Module) -> None:

    reset_model_state(model)
