"""`deepfit train-lm`, `generate` and `lr-find --task lm`: language models on a text file, folder or fortunes.

`train-lm TARGET --from GENERAL` is ULMFiT's second stage: the language model of GENERAL (a train-lm run, or a
file written by `TextLearner.save_pretrained`) fine-tuned on TARGET, with TARGET's own vocabulary (the rows of
the tokens GENERAL knows are copied, the others start from the mean embedding: `transfer_vocab`). It trains in two
stages: the embeddings and decoder alone for `--freeze-epochs` (default 1), then every layer for `--epochs`.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..learner.learner import Learner
from ..learner.metrics import Perplexity
from ..models.registry import get_model
from ..rng import seed_everything
from ..run import Phase, RunDir
from ..safe_io import safe_torch_load
from ..text.callbacks import RNNResetCallback
from ..text.generate import generate
from ..text.learner import LM_DROP_MULT, LM_LR, language_model_learner
from ..text.losses import FlatCrossEntropyLoss
from ..text.rules import SPECIAL_TOKENS
from .errors import CLIError, UsageError
from .export import load_export
from .models import check_arch
from .stages import NOTHING_LEFT, ContinuousHistory, StageIndex, StageTag, checkpoint_stage, stage_lr_finder
from .text_data import lm_data, load_vocab, save_vocab
from .training import MAIN_PHASE, TrainJob, lr_find_into, precision_callbacks, say, train

ENCODER_NAME = "encoder"  # models/encoder.pth: what train-classifier --lm fine-tunes
PRETRAINED_NAME = "lm"  # models/lm.pth: the whole language model, what train-lm --from starts from
LM_MOMS = (0.8, 0.7, 0.8)  # one-cycle momentum of AWD-LSTM language models (ULMFiT's)
CHAR_LR = 2e-3  # --lr default of the char models


def lm_defaults() -> tuple[float, float]:
    """`--lr` and `--drop-mult` defaults of an AWD-LSTM language model: deepfit.text.learner's `LM_LR` and
    `LM_DROP_MULT` (measured in docs/ulmfit.md)."""
    return LM_LR, LM_DROP_MULT


# ---------------------------------------------------------------------------------------------- --from
@dataclass(frozen=True)
class Pretrained:
    """A pretrained language model for `--from`: its file, sizes, tokenizer kind and vocabulary size."""

    file: Path
    config: dict[str, Any]
    kind: str
    n_tokens: int


def _is_char_vocab(itos: Sequence[str]) -> bool:
    ordinary = [t for t in itos if t not in set(SPECIAL_TOKENS)]
    return bool(ordinary) and all(len(t) == 1 for t in ordinary)


def read_pretrained(value: str) -> Pretrained:
    """`--from RUN_DIR|FILE`: an AWD-LSTM train-lm run (its `models/lm.pth`) or a `save_pretrained` file."""
    path = Path(value)
    kind = None
    if path.is_dir():
        run = RunDir.open(path)
        config = run.read_config()
        if config.get("command") != "train-lm" or config.get("options", {}).get("arch") != "awd_lstm":
            raise UsageError(f"--from '{run.path}' is not an AWD-LSTM train-lm run",
                             hint="give a folder written by `deepfit train-lm TEXT` (--arch awd_lstm)")
        file = run.models_dir / f"{PRETRAINED_NAME}.pth"
        if not file.is_file():
            raise CLIError(f"--from '{run.path}' has no pretrained language model ({file})",
                           hint="train-lm runs write it at the end; train that run again, or give a "
                                "save_pretrained file")
        kind = load_vocab(run.path)[1]
    elif path.is_file():
        file = path
    else:
        raise UsageError(f"--from '{path}' does not exist",
                         hint="give a train-lm run folder or a language model file written by save_pretrained")
    data = safe_torch_load(file)
    if not isinstance(data, dict) or data.get("kind") != "language_model" or "state_dict" not in data:
        what = "an encoder (save_encoder)" if isinstance(data, dict) and data.get("kind") == "encoder" else \
            "not a deepfit language model"
        raise UsageError(f"--from '{file}' is {what}",
                         hint="give a train-lm run folder or a file written by TextLearner.save_pretrained "
                              "(a dict with kind='language_model', config, itos and state_dict)")
    itos = data.get("itos")
    if not itos:
        raise UsageError(f"--from '{file}' has no vocabulary (itos)",
                         hint="the vocabulary is needed to match the new text's tokens to the model's rows")
    config = {k: v for k, v in (data.get("config") or {}).items() if k not in ("arch", "vocab_sz", "drop_mult")}
    return Pretrained(file, config, kind or ("char" if _is_char_vocab(itos) else "word"), len(itos))


def _check_from_options(args: argparse.Namespace, pretrained: Pretrained | None) -> None:
    if pretrained is None:
        if args.freeze_epochs:
            raise UsageError("--freeze-epochs fine-tunes a pretrained model; it needs --from",
                             hint="add --from RUN_DIR (a train-lm run), or drop --freeze-epochs")
        return
    if args.arch != "awd_lstm":
        raise UsageError(f"--from fine-tunes an AWD-LSTM language model; --arch {args.arch} cannot use it",
                         hint="drop --arch (awd_lstm is the default)")
    if args.tokenizer is not None and args.tokenizer != pretrained.kind:
        raise UsageError(f"--tokenizer {args.tokenizer} differs from the --from model's ({pretrained.kind})",
                         hint="drop --tokenizer: the text must be read as the pretrained model read its own")
    sizes = {k: pretrained.config[k] for k in ("emb_sz", "n_hid", "n_layers") if k in pretrained.config}
    for k, v in sizes.items():  # the sizes are the pretrained model's; recorded as the run's options
        setattr(args, k, v)


# ---------------------------------------------------------------------------------------------- stages
@dataclass(frozen=True)
class LMStage:
    """One stage of fine-tuning a pretrained language model."""

    index: int
    n_stages: int
    frozen: bool  # only the embeddings and the (tied) decoder train
    epochs: int

    @property
    def trains(self) -> str:
        return "embeddings and decoder only" if self.frozen else "all groups"

    def label(self, lr: float) -> str:
        return f"stage {self.index + 1}/{self.n_stages}: {self.trains}, lr {lr:.2g}"


def lm_stages(freeze_epochs: int, epochs: int) -> list[LMStage]:
    return [LMStage(0, 2, True, freeze_epochs), LMStage(1, 2, False, epochs)]


def fit_lm_stages(learn, stages: list[LMStage], lr: float, cbs: list, current: StageIndex,
                  resume: str | Path | None = None, moms: tuple[float, float, float] = LM_MOMS) -> None:
    """Train `stages` in turn (`freeze()` or `unfreeze()`, then one-cycle); `resume` continues the stage its
    checkpoint was taken in, mid-way, and the stages after it."""
    start = 0
    if resume is not None:
        point = checkpoint_stage(learn, resume)
        resume, start = point.path, point.stage
        say(f"resuming {stages[start].label(lr)} (checkpoint {point.path.name})")
    extra = [StageTag(lambda _learn: current.index), ContinuousHistory()]
    for stage in stages[start:]:
        current.index = stage.index
        learn.freeze() if stage.frozen else learn.unfreeze()
        say(stage.label(lr))
        if stage.epochs == 0:
            continue
        kwargs = {"resume": resume} if resume is not None else {}
        resume = None  # only the first stage run continues the checkpoint
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=NOTHING_LEFT)
            learn.fit_one_cycle(stage.epochs, lr, moms=moms, cbs=[*cbs, *extra], **kwargs)


# ---------------------------------------------------------------------------------------------- train-lm
def cmd_train_lm(args: argparse.Namespace) -> int:
    """Train a language model (or fine-tune one with --from) and write a run folder."""
    if args.arch == "awd_lstm":
        lr, drop_mult = lm_defaults()
        args.lr = lr if args.lr is None else args.lr
        args.drop_mult = drop_mult if args.drop_mult is None else args.drop_mult
    elif args.lr is None:
        args.lr = CHAR_LR
    pretrained = read_pretrained(getattr(args, "from")) if getattr(args, "from", None) else None
    if pretrained is not None and args.freeze_epochs is None:
        args.freeze_epochs = 1
    args.freeze_epochs = args.freeze_epochs or 0
    _check_from_options(args, pretrained)
    seed_everything(args.seed)
    dls, vocab, kind, desc = lm_data(args, args.text, char_model=args.arch != "awd_lstm",
                                     kind=pretrained.kind if pretrained else None)
    learn = build_lm_learner(args, dls, vocab, pretrained.config if pretrained else None)

    def after(learn, run: RunDir) -> dict:
        out: dict[str, Any] = {}
        if args.arch == "awd_lstm":
            learn.save_encoder(ENCODER_NAME)
            path = learn.save_pretrained(PRETRAINED_NAME)
            say(f"pretrained language model (for train-lm --from): {path}")
        if args.sample:
            text = generate(learn, _default_prompt(vocab, kind), args.sample, temperature=0.8, seed=args.seed,
                            vocab=vocab, level=kind)
            say("sample: " + text)
            out["sample"] = text
        return out

    resolved: dict[str, Any] = {"tokenizer": kind, "vocab_size": len(vocab)}
    job = TrainJob(learn, desc, title=args.arch, resolved=resolved,
                   export_kwargs={"arch": learn.export_arch}, save_files=lambda run: save_vocab(run.path, vocab, kind),
                   after=after)
    if args.arch == "awd_lstm":
        job.lr_finder = stage_lr_finder("lm", say)
        job.fit = lambda learn, n_epoch, lr, cbs, **kw: learn.fit_one_cycle(n_epoch, lr, moms=LM_MOMS, cbs=cbs, **kw)
    if pretrained is not None:
        _fine_tune_job(job, args, pretrained)
    return train(args, "train-lm", job)


def _fine_tune_job(job: TrainJob, args: argparse.Namespace, pretrained: Pretrained) -> None:
    """`--from`: load the pretrained weights (a new run), then the stages (one phase, one checkpoint series)."""
    learn = job.learn
    stages = lm_stages(args.freeze_epochs, args.epochs)
    if args.freeze_epochs == 0:
        stages = [LMStage(0, 1, False, args.epochs)]
    current = StageIndex()
    loaded = []

    def before_phase(phase: Phase) -> None:
        if args.resume is None and not loaded:  # a resumed run's weights come from its checkpoint
            learn.load_pretrained(pretrained.file)
            loaded.append(True)
        learn.freeze() if stages[0].frozen else learn.unfreeze()  # the first stage's state (also for --lr auto)

    job.title = f"{args.arch} fine-tuned from {pretrained.file}"
    job.resolved.update({"from": str(pretrained.file), "from_vocab_size": pretrained.n_tokens,
                         "stages": [s.trains for s in stages]})
    job.phases = [Phase(MAIN_PHASE, sum(s.epochs for s in stages))]
    job.before_phase = before_phase
    job.fit = lambda learn, n_epoch, lr, cbs, resume=None: fit_lm_stages(learn, stages, lr, cbs, current, resume)
    if len(stages) > 1:
        job.stage_of = lambda _learn: current.index + 1


def build_lm_learner(args: argparse.Namespace, dls, vocab, config: dict[str, Any] | None = None) -> Learner:
    """An AWD-LSTM language model learner (sized by the options, or by `config`: a pretrained model's), or a
    char RNN/GRU/LSTM one."""
    name = check_arch("train-lm", args.arch)
    cbs = precision_callbacks(args.precision)
    if args.arch == "awd_lstm":
        cfg = config if config is not None else dict(emb_sz=args.emb_sz, n_hid=args.n_hid, n_layers=args.n_layers)
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


# ---------------------------------------------------------------------------------------------- generate
def cmd_generate(args: argparse.Namespace) -> int:
    """Sample text from a train-lm run's exported model (word models print detokenized text)."""
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


# ---------------------------------------------------------------------------------------------- lr-find
def cmd_lr_find_text(args: argparse.Namespace) -> int:
    """`lr-find --task lm`: the learning-rate finder for a language model on TEXT."""
    args.arch = args.arch or "awd_lstm"
    check_arch("train-lm", args.arch)
    args.precision, args.bs = "fp32", args.bs or 64
    seed_everything(args.seed)
    dls, vocab, kind, desc = lm_data(args, args.data, char_model=args.arch != "awd_lstm")
    learn = build_lm_learner(args, dls, vocab)
    learn.remove_cb(learn.progress)
    return lr_find_into(learn, args.out, f"{args.arch} on {desc}", args.num_it)


__all__ = ["ENCODER_NAME", "LM_MOMS", "PRETRAINED_NAME", "Pretrained", "build_lm_learner",
           "cmd_generate", "cmd_lr_find_text", "cmd_train_lm", "fit_lm_stages", "lm_stages", "read_pretrained"]
