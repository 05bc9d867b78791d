"""`deepfit <command>`: the command-line parser (also `python -m deepfit`).

Every option is defined once, in `OPTIONS`; each command lists the options it takes, group by group, in
`COMMANDS`, and `OVERRIDES` sets the defaults and help that differ between commands. To add an option: one
`OPTIONS` entry, its name in the groups of the commands that take it, and a line where a command reads it.

The commands live in `deepfit.commands`, imported only when one runs: importing this module and building the
parser loads no torch, so `--help` and usage errors answer at once. Errors are one line `deepfit: error: ...`
plus a `hint:` line; exit status 2 for usage errors, 1 for failures.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .commands.catalog import ARCH_COMMANDS, BUILTIN, CLASSIFIER_ARCHS, LM_ARCHS
from .commands.errors import EXIT_FAILURE, EXIT_USAGE, CLIError, UsageError, describe
from .commands.vision_defaults import RECIPE_NAMES, default_help
from .run import RunDir, RunDirError, is_plain_name, read_config_file
from .threads import prefer_passive_wait

#: deepfit.data.transforms.AUGMENT_PRESETS, '%' doubled for argparse's help (the parser imports no torch;
#: tests/test_cli.py checks that the two agree)
AUGMENT_PRESETS = {
    "none": "no augmentation",
    "flip": "random horizontal flips",
    "crop": "pad-and-crop by 10%% of the size, no flips (for digits, text, anything a mirror changes)",
    "standard": "flips + pad-and-crop by 10%% of the size",
    "heavy": "flips + pad-and-crop + rotations up to 10 degrees + colour jitter",
}
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
TOKENIZERS = ("word", "char")


# ---------------------------------------------------------------------------------------------- argument types
def _whole_number(text: str, minimum: int) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {v}")
    return v


def positive_int(text: str) -> int:
    return _whole_number(text, 1)


def non_negative_int(text: str) -> int:
    return _whole_number(text, 0)


def _number(text: str, expected: str = "a number") -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None


def positive_float(text: str) -> float:
    v = _number(text)
    if not v > 0 or not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return v


def non_negative_float(text: str) -> float:
    v = _number(text)
    if v < 0 or not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def probability(text: str) -> float:
    v = _number(text)
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {v}")
    return v


def lr_value(text: str) -> float | str:
    """`--lr`: a positive float or `auto` (run lr_find and take its suggestion)."""
    if text == "auto":
        return "auto"
    _number(text, "a number or 'auto'")
    return positive_float(text)


def run_name(text: str) -> str:
    """`--name`: one folder name, so that the run folder stays inside `--out`."""
    if not is_plain_name(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a plain folder name (the run folder is made inside --out)")
    return text


def stage_epochs(text: str) -> list[int]:
    """`--stages 1,1,1,2`: epochs of ULMFiT's four gradual-unfreezing stages."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 4 comma-separated whole numbers, got {text!r}") from None
    if len(values) != 4 or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected 4 comma-separated whole numbers >= 0, got {text!r}")
    return values


# ---------------------------------------------------------------------------------------------- options
# name -> (flags, argparse keywords). Positional arguments are here too, under the name of their `dest`.
OPTIONS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    # inputs
    "data": (("data",), dict(metavar="DATA", nargs="?", default=None, help="the training data")),
    "text": (("text",), dict(metavar="TEXT", nargs="?", default=None,
                             help="a text file, a folder of text files, or a fortunes file/folder (entries split at "
                                  "'%%' lines)")),
    "run_dir": (("run_dir",), dict(metavar="RUN_DIR", help="a run folder written by a train-* command")),
    "items": (("items",), dict(metavar="FILES_OR_TEXT", nargs="+",
                               help="image files (vision runs) or texts / text files (text classifier runs)")),
    # data
    "task": (("--task",), dict(choices=("vision", "lm"), default="vision",
                               help="vision: DATA and options as train-vision; lm: DATA is TEXT, options as train-lm")),
    "valid_pct": (("--valid-pct",), dict(type=probability, default=None, help="fraction of the texts held out")),
    "valid_col": (("--valid-col",), dict(metavar="NAME", default=None,
                                         help="the CSV column that marks the validation rows (True/False or 1/0); "
                                              "default: 'is_valid' when the CSV has one")),
    "unlabelled": (("--unlabelled",), dict(metavar="PATH", default=None,
                                           help="more training text (a file, a CSV's 'text' column or a folder): "
                                                "added to TEXT's training texts, never used for validation")),
    "n_train": (("--n-train",), dict(type=positive_int, default=None,
                                     help="train on a seeded random subset of this size")),
    "n_valid": (("--n-valid",), dict(type=positive_int, default=None,
                                     help="validate on a seeded random subset of this size (fashion-mnist)")),
    "size": (("--size",), dict(type=positive_int, default=None,
                               help="resize (and centre-crop) every image to SIZE×SIZE (image folders; needed when "
                                    "sizes differ)")),
    "multi_label": (("--multi-label",), dict(action="store_true",
                                             help="several labels per item: DATA is a CSV file whose label column "
                                                  "holds them separated by spaces (binary cross-entropy, "
                                                  "accuracy_multi and F1)")),
    "augment": (("--augment",), dict(choices=sorted(AUGMENT_PRESETS), default="none",
                                     help="batch augmentation preset: "
                                          + "; ".join(f"{k}: {v}" for k, v in AUGMENT_PRESETS.items())
                                          + ". Test-time augmentation (--tta) uses the label-preserving "
                                            "transforms of the preset")),
    "workers": (("--workers",), dict(type=non_negative_int, default=None, metavar="N",
                                     help="processes that decode an image folder (0: the training process); default: "
                                          "the CPUs available to this process less one, at most 8")),
    "cache": (("--cache",), dict(action=argparse.BooleanOptionalAction, default=False,
                                 help="keep an image folder's decoded images (at the training size) in a file beside "
                                      "it (else in $DEEPFIT_DATA), written in the first epoch and memory-mapped "
                                      "afterwards")),
    "tokenizer": (("--tokenizer",), dict(choices=TOKENIZERS, default=None,
                                         help="word (spaCy rules) or char; default: char for char_* models, else "
                                              "word")),
    "max_texts": (("--max-texts",), dict(type=positive_int, default=None,
                                         help="use a seeded random sample of at most this many texts")),
    "max_vocab": (("--max-vocab",), dict(type=positive_int, default=30000, help="largest vocabulary")),
    "min_freq": (("--min-freq",), dict(type=positive_int, default=2,
                                       help="rarest token kept in the vocabulary (word level)")),
    "bptt": (("--bptt",), dict(type=positive_int, default=70,
                               help="tokens per sequence (backpropagation through time)")),
    # model
    "recipe": (("--recipe",), dict(choices=RECIPE_NAMES, default=None, metavar="NAME",
                                   help="a named recipe (deepfit.recipes: " + ", ".join(RECIPE_NAMES) + "): sets "
                                        "--arch and its widths, --bs, --epochs, --lr, the one-cycle schedule and "
                                        "weight decay, --label-smoothing, --ema, --augment, --precision, "
                                        "--channels-last and --tta; options given on the command line override it")),
    "arch": (("--arch",), dict(default=None, help="a registered architecture (see `deepfit models`)")),
    "weights": (("--weights",), dict(default=None, metavar="FILE",
                                     help="local pretrained weights (state dict or deepfit checkpoint) for the "
                                          "architecture's body; a new head is trained on top")),
    "from": (("--from",), dict(metavar="RUN_DIR|FILE", default=None,
                               help="fine-tune this pretrained AWD-LSTM language model (a train-lm run, or a file "
                                    "written by save_pretrained) on TEXT, with TEXT's vocabulary (the rows of known "
                                    "tokens are copied); its sizes replace --emb-sz/--n-hid/--n-layers")),
    "lm": (("--lm",), dict(metavar="RUN_DIR", default=None,
                           help="a train-lm run (AWD-LSTM): ULMFiT fine-tuning with gradual unfreezing on its "
                                "encoder")),
    "embeddings": (("--embeddings",), dict(metavar="FILE", default=None,
                                           help="GloVe-format text file of pretrained word vectors for the "
                                                "lstm/bilstm embedding")),
    "emb_sz": (("--emb-sz",), dict(type=positive_int, default=200,
                                   help="embedding size (AWD-LSTM) / n_fac (char models)")),
    "n_hid": (("--n-hid",), dict(type=positive_int, default=512, help="hidden size")),
    "n_layers": (("--n-layers",), dict(type=positive_int, default=2, help="number of recurrent layers")),
    "drop_mult": (("--drop-mult",), dict(type=non_negative_float, default=0.3,
                                         help="multiplies every dropout (AWD-LSTM)")),
    # training
    "epochs": (("--epochs",), dict(type=non_negative_int, default=1, help="number of epochs (one-cycle schedule)")),
    "lr": (("--lr",), dict(type=lr_value, default="1e-3",
                           help="peak learning rate, or 'auto' to run lr_find and use its suggestion")),
    "bs": (("--bs",), dict(type=positive_int, default=64, help="batch size")),
    "precision": (("--precision",), dict(choices=PRECISIONS, default="auto",
                                         help="training precision; auto: bf16 on GPUs (and CPUs) that run it fast "
                                              "(on a CPU a timed probe of the model decides, cached), fp16 with loss "
                                              "scaling on older GPUs, else fp32; the choice and why are printed and "
                                              "kept in config.json")),
    "channels_last": (("--channels-last",), dict(action=argparse.BooleanOptionalAction, default=None,
                                                 help="keep weights and image batches channels-last (NHWC), which "
                                                      "speeds up convolutions on CPUs (default: the recipe's; "
                                                      "off without one)")),
    "threads": (("--threads",), dict(type=positive_int, default=None, metavar="N",
                                     help="torch threads (default: $DEEPFIT_THREADS or $OMP_NUM_THREADS, else the "
                                          "CPUs this process may use, capped by its cgroup CPU quota); printed and "
                                          "kept in config.json; may change with --resume")),
    "seed": (("--seed",), dict(type=int, default=0,
                               help="random seed (data split, shuffling, initialisation)")),
    "mixup": (("--mixup",), dict(type=non_negative_float, default=0.0, help="MixUp alpha (0: off)")),
    "ema": (("--ema",), dict(type=probability, default=0.0, metavar="DECAY",
                             help="validate, save and export an exponential moving average of the weights, updated "
                                  "after every step with this decay (e.g. 0.99; 0: off)")),
    "label_smoothing": (("--label-smoothing",), dict(type=probability, default=0.0,
                                                     help="label smoothing epsilon (0: off)")),
    "freeze_epochs": (("--freeze-epochs",), dict(type=non_negative_int, default=0,
                                                 help="first train only the new head for this many epochs (needs "
                                                      "--weights)")),
    "stages": (("--stages",), dict(type=stage_epochs, default=None,
                                   help="ULMFiT: epochs of the 4 stages (head, last 2 groups, last 3, all); "
                                        "default: fit_ulmfit's")),
    "num_it": (("--num-it",), dict(type=positive_int, default=100, help="learning rates tried (one batch each)")),
    # results
    "tta": (("--tta",), dict(type=non_negative_int, nargs="?", const=4, default=0, metavar="N",
                             help="also report the validation accuracy with test-time augmentation: N passes with "
                                  "the label-preserving transforms of --augment (--tta alone: 4; 0: off)")),
    "sample": (("--sample",), dict(type=non_negative_int, default=100,
                                   help="print a sample of this many tokens at the end (0: none)")),
    # run folder
    "out": (("--out",), dict(default="runs", help="parent folder of the run folder")),
    "name": (("--name",), dict(type=run_name, default=None, help="run folder name (default: a timestamp)")),
    "config": (("--config",), dict(metavar="FILE", default=None,
                                   help="re-run the run of this config.json (or run folder); options given here "
                                        "override its options")),
    "resume": (("--resume",), dict(metavar="RUN_DIR", default=None,
                                   help="continue the interrupted run in RUN_DIR from its last checkpoint (its "
                                        "config.json is used)")),
    "quiet": (("--quiet",), dict(action="store_true", help="no per-epoch table")),
    # using a run
    "prompt": (("--prompt",), dict(default="The", help="the start of the text")),
    "n": (("--n",), dict(type=positive_int, default=200, help="tokens (characters for char models) to sample")),
    "temperature": (("--temperature",), dict(type=positive_float, default=0.8,
                                             help="sampling temperature (lower: safer text)")),
    "top_k": (("--top-k",), dict(type=positive_int, default=None, help="sample among the k most likely tokens only")),
    "json": (("--json",), dict(action="store_true", help="print a JSON list instead of tab-separated lines")),
    "onnx": (("--onnx",), dict(action="store_true", help="write export/model.onnx (needs onnx and onnxscript)")),
    "torchscript": (("--torchscript",), dict(action="store_true", help="write export/model.torchscript.pt")),
    "dataset": (("name",), dict(choices=BUILTIN, help="dataset name")),
    "corpus": (("what",), dict(choices=("general", "fortunes", "debian", "all"),
                               help="general: general.txt (WordNet glosses, Linux man pages, fortunes but the task's "
                                    "topics), to pretrain a language model on; fortunes: fortunes4.csv (4 topics, "
                                    "is_valid split); debian: debian_sections.csv (package descriptions by section) "
                                    "and debian_unlabelled.txt; all: every one")),
    "corpus_dir": (("folder",), dict(metavar="FOLDER", help="where the files are written")),
    "models_of": (("for_command",), dict(metavar="COMMAND", nargs="?", default=None, choices=ARCH_COMMANDS,
                                         help="list only the --arch values of this command, one per line: "
                                              + ", ".join(ARCH_COMMANDS))),
}

RUN_FOLDER = ["out", "name", "config", "resume", "quiet"]


def _train_vision_data_help() -> str:
    return ("an image folder (class subfolders, optionally under train/ and valid/) or a built-in dataset: "
            + ", ".join(BUILTIN))


# command -> (help, [(group title, [option names])]); the group title None puts options with the positionals.
COMMANDS: dict[str, tuple[str, list[tuple[str | None, list[str]]]]] = {
    "train-vision": ("train an image classifier on a folder of images or fashion-mnist", [
        ("data", ["data", "valid_pct", "n_train", "n_valid", "size", "augment", "workers", "cache"]),
        ("labels", ["multi_label"]),
        ("model", ["recipe", "arch", "weights"]),
        ("training", ["epochs", "lr", "bs", "precision", "channels_last", "threads", "seed", "mixup",
                      "label_smoothing", "ema", "freeze_epochs"]),
        ("results", ["tta"]),
        ("run folder", RUN_FOLDER),
    ]),
    "lr-find": ("run the learning-rate finder, save its plot and print the suggested rate", [
        ("data", ["task", "data", "valid_pct", "n_train", "n_valid", "size", "augment", "workers", "cache",
                  "tokenizer", "max_texts",
                  "max_vocab", "min_freq", "bptt"]),
        ("model", ["arch", "weights", "emb_sz", "n_hid", "n_layers", "drop_mult"]),
        ("training", ["bs", "threads", "seed", "num_it"]),
        ("output", ["out"]),
    ]),
    "train-lm": ("train a language model (AWD-LSTM or a char RNN) on a text file, folder or fortunes", [
        ("data", ["text", "valid_pct", "valid_col", "unlabelled", "tokenizer", "max_texts", "max_vocab", "min_freq",
                  "bptt"]),
        ("model", ["from", "arch", "emb_sz", "n_hid", "n_layers", "drop_mult"]),
        ("training", ["freeze_epochs", "epochs", "lr", "bs", "precision", "threads", "seed"]),
        ("results", ["sample"]),
        ("run folder", RUN_FOLDER),
    ]),
    "train-classifier": ("train a text classifier: ULMFiT from a train-lm run (--lm), or an LSTM/BiLSTM", [
        ("data", ["data", "valid_pct", "valid_col", "n_train", "tokenizer", "max_texts", "max_vocab", "min_freq"]),
        ("labels", ["multi_label"]),
        ("model", ["lm", "arch", "embeddings", "emb_sz", "n_hid", "n_layers"]),
        ("training", ["stages", "epochs", "lr", "bs", "precision", "threads", "seed"]),
        ("run folder", RUN_FOLDER),
    ]),
    "generate": ("sample text from a train-lm run", [
        (None, ["run_dir", "prompt", "n", "temperature", "top_k", "seed"]),
    ]),
    "predict": ("predict classes of image files or texts with a run's exported model", [
        (None, ["run_dir", "items", "json"]),
    ]),
    "summary": ("print a run's configuration, results per epoch, model and files", [(None, ["run_dir"])]),
    "export": ("write ONNX / TorchScript files of a run's exported model", [
        (None, ["run_dir", "onnx", "torchscript"]),
    ]),
    "download": ("fetch a dataset into the cache folder ($DEEPFIT_DATA)", [(None, ["dataset"])]),
    "corpus": ("write text corpora built from installed Debian packages (no download): a general corpus to "
               "pretrain a language model on, and labelled tasks", [(None, ["corpus", "corpus_dir"])]),
    "models": ("list the architectures each command's --arch accepts", [(None, ["models_of"])]),
}

# command -> option name -> argparse keywords that replace the shared definition's for that command.
OVERRIDES: dict[str, dict[str, dict[str, Any]]] = {
    "train-vision": {
        "data": dict(help=_train_vision_data_help()),
        "valid_pct": dict(help="hold out this fraction at random (default: the valid/ folder, else 0.2; "
                               "fashion-mnist 0.1)"),
        "multi_label": dict(help="several labels per image: DATA is a CSV file with a header row, the image file "
                                 "(relative to the CSV's folder) in its first column and the labels, separated by "
                                 "spaces, in its second (binary cross-entropy, accuracy_multi and F1; a recipe's "
                                 "label smoothing is not used)"),
        # the options a recipe sets: None until the command resolves them (commands.vision_settings)
        **{name: dict(default=None, help=OPTIONS[name][1]["help"] + f" ({default_help(name)})")
           for name in ("arch", "epochs", "lr", "bs", "label_smoothing", "ema", "augment", "precision", "tta")},
        "channels_last": dict(help="keep weights and image batches channels-last (NHWC), which speeds up "
                                   "convolutions on CPUs (" + default_help("channels_last") + ")"),
    },
    "lr-find": {
        "data": dict(help=_train_vision_data_help() + "; with --task lm: TEXT as for train-lm"),
        "valid_pct": dict(help="hold out this fraction at random (default: the valid/ folder, else 0.2; "
                               "fashion-mnist 0.1; 0.1 with --task lm)"),
        "arch": dict(help="model (default: as train-vision's for --task vision, awd_lstm for --task lm)"),
        "bs": dict(default=None, help="batch size (default: as train-vision's for --task vision, 64 for --task lm)"),
        "augment": dict(default=None, help=OPTIONS["augment"][1]["help"] + " (default: as train-vision's)"),
        "seed": dict(help="random seed"),
        "out": dict(default=".", help="folder for lr_find.png"),
    },
    "train-lm": {
        "text": dict(help="a text file, a folder of text files, a fortunes file/folder (entries split at '%%' "
                          "lines), or a CSV file with a 'text' column; split by the CSV's is_valid column or "
                          "TEXT/train/ and TEXT/valid/ when given"),
        "valid_pct": dict(help="hold out this fraction at random when TEXT gives no split (default: 0.1)"),
        "arch": dict(choices=tuple(LM_ARCHS), default="awd_lstm", help="language model"),
        "freeze_epochs": dict(default=None, help="with --from: first train only the embeddings and the decoder for "
                                                 "this many epochs (default: 1 with --from)"),
        "drop_mult": dict(default=None, help="multiplies every dropout (AWD-LSTM; default: "
                                             "deepfit.text.learner's LM_DROP_MULT)"),
        "epochs": dict(default=1),
        "lr": dict(default=None, help="peak learning rate, or 'auto' to run lr_find and use a rate safe for a "
                                      "language model (default: deepfit.text.learner's LM_LR for awd_lstm, 2e-3 for "
                                      "char models)"),
        "bs": dict(default=32),
    },
    "train-classifier": {
        "data": dict(help="a folder with one subfolder of .txt files per class, a fortunes folder (one file per "
                          "class), or a CSV file with 'text' and 'label' columns; split by the CSV's is_valid "
                          "column or DATA/train/ and DATA/valid/ when given"),
        "valid_pct": dict(help="hold out this fraction at random when DATA gives no split (default: 0.2)"),
        "n_train": dict(help="train on a seeded random subset of this many of the training texts (fewer labels; "
                             "the validation texts stay)"),
        "tokenizer": dict(help="word (spaCy rules) or char; default: the --lm run's, else word"),
        "multi_label": dict(help="several labels per text: DATA is a CSV file whose 'label' column holds them "
                                 "separated by spaces (binary cross-entropy, accuracy_multi and F1)"),
        "arch": dict(choices=tuple(CLASSIFIER_ARCHS), help="classifier; default awd_lstm with --lm, else bilstm"),
        "emb_sz": dict(default=100, help="embedding size (lstm/bilstm without --embeddings)"),
        "n_hid": dict(default=128, help="hidden size (lstm/bilstm; AWD-LSTM from scratch)"),
        "n_layers": dict(default=1, help="recurrent layers (lstm/bilstm)"),
        "epochs": dict(default=3, help="number of epochs (one-cycle schedule; with --lm, --stages instead)"),
        "lr": dict(default=None, help="peak learning rate (with --lm: of the head stage, fit_ulmfit's base rate), "
                                      "or 'auto' to run lr_find and use a rate safe for the stage (default: "
                                      "fit_ulmfit's with --lm, else 1e-2)"),
        "bs": dict(default=32),
    },
    "generate": {
        "run_dir": dict(help="a run folder written by train-lm"),
        "seed": dict(default=None, help="random seed for a reproducible sample"),
    },
    "predict": {"run_dir": dict(help="a run folder written by train-vision or train-classifier")},
}

# command -> (module in deepfit.commands, function); imported only when the command runs.
HANDLERS: dict[str, tuple[str, str]] = {
    "train-vision": ("vision", "cmd_train_vision"),
    "lr-find": ("vision", "cmd_lr_find"),
    "train-lm": ("lm", "cmd_train_lm"),
    "train-classifier": ("classifier", "cmd_train_classifier"),
    "generate": ("lm", "cmd_generate"),
    "predict": ("predict", "cmd_predict"),
    "summary": ("summary", "cmd_summary"),
    "export": ("export", "cmd_export"),
    "download": ("download", "cmd_download"),
    "corpus": ("corpus", "cmd_corpus"),
    "models": ("models", "cmd_models"),
}


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every option's default, also `None` ones, and keeps wide help readable."""

    def __init__(self, prog: str):
        super().__init__(prog, max_help_position=32, width=110)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is argparse.SUPPRESS:
            return text
        if action.option_strings or action.nargs in ("?", "*"):
            return text + " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    """argparse with deepfit's error format: one `deepfit: error:` line plus a hint, exit status 2."""

    def error(self, message: str):
        print(f"deepfit: error: {message}", file=sys.stderr)
        print(f"hint: see `{self.prog} --help`", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def add_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup, name: str, **overrides: Any) -> None:
    """Add the option `name` of `OPTIONS` (with `overrides` replacing some of its keywords)."""
    flags, kwargs = OPTIONS[name]
    parser.add_argument(*flags, **{**kwargs, **overrides})


def build_parser() -> argparse.ArgumentParser:
    """The `deepfit` argument parser with one sub-parser per command."""
    parser = _Parser(prog="deepfit", description="Train and use deep-learning models from the command line.",
                     formatter_class=_Formatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for command, (help, groups) in COMMANDS.items():
        p = sub.add_parser(command, help=help, description=help, formatter_class=_Formatter)
        p.set_defaults(command=command)
        overrides = OVERRIDES.get(command, {})
        for title, names in groups:
            group = p if title is None else p.add_argument_group(title)
            for name in names:
                add_option(group, name, **overrides.get(name, {}))
    return parser


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[command]


def apply_run_config(parser: argparse.ArgumentParser, argv: Sequence[str],
                     args: argparse.Namespace) -> argparse.Namespace:
    """The options of a training command given `--config FILE` (the file's options, overridden by the command line)
    or `--resume RUN_DIR` (the run's options; only `--quiet` comes from the command line)."""
    if args.config is not None and args.resume is not None:
        raise UsageError("--config and --resume exclude each other",
                         hint="--resume continues a run; --config starts a new run with a run's options")
    if args.resume is not None:
        config = RunDir.open(args.resume).read_config()
        source, flag = args.resume, "--resume"
    else:
        config = read_config_file(args.config)
        source, flag = args.config, "--config"
    if config["command"] != args.command:
        raise UsageError(f"{flag}: {str(source)!r} is a {config['command']!r} run, not {args.command!r}",
                         hint=f"use `deepfit {config['command']} {flag} {source}`")
    sub = _subparser(parser, args.command)
    known = {a.dest for a in sub._actions}
    options = {k: v for k, v in config["options"].items() if k in known and k not in ("name", "config", "resume")}
    # as text, so that each value goes through its option's type check as if typed on the command line
    sub.set_defaults(**{k: _as_text(v) for k, v in options.items()})
    if args.resume is not None:  # options as the run was started; only RESUME_MAY_CHANGE may be given
        merged = parser.parse_args([args.command])
        _check_resume_options(argv, args.command, merged, source)
        merged.resume, merged.quiet = args.resume, args.quiet
    else:
        merged = parser.parse_args(argv)
        merged.config = None
    for action in sub._actions:  # argparse checks the choices of typed values only
        value = getattr(merged, action.dest, None)
        if action.choices is not None and value is not None and value not in action.choices:
            raise UsageError(f"{flag}: {action.dest} {value!r} in {source} is not one of {', '.join(action.choices)}",
                             hint="fix the file, or give the option on the command line")
    return merged


#: the options a resumed run takes from the command line: more epochs, and settings of the machine, not the run
MACHINE_SETTINGS = ("threads", "workers", "cache")
RESUME_MAY_CHANGE = ("epochs", "quiet", "resume", *MACHINE_SETTINGS)


def given_options(argv: Sequence[str], command: str) -> dict[str, Any]:
    """The options (and positionals) typed on the command line `argv`, without any default."""
    probe = build_parser()
    for action in _subparser(probe, command)._actions:
        if action.dest != "help":
            action.default = argparse.SUPPRESS
    return {k: v for k, v in vars(probe.parse_args(argv)).items() if k != "command"}


def _check_resume_options(argv: Sequence[str], command: str, merged: argparse.Namespace, source: Any) -> None:
    """Refuse options that would change a resumed run; take a larger `--epochs` (the run then trains longer) and
    the machine settings given (`MACHINE_SETTINGS`: threads, data workers, the decoded-image cache)."""
    given = given_options(argv, command)
    changed = {k: v for k, v in given.items() if k not in RESUME_MAY_CHANGE and v != getattr(merged, k, None)}
    if changed:
        flags = ", ".join(f"{_flag(k)} {_as_text(v)}" for k, v in changed.items())
        was = ", ".join(f"{_flag(k)} {_as_text(getattr(merged, k, None))}" for k in changed)
        raise UsageError(f"--resume continues {source} as it was started: {flags} cannot change (the run has {was})",
                         hint="only --epochs (more), --quiet and the machine settings --threads, --workers and "
                              f"--cache go with --resume; for other options start a new run with --config {source}")
    epochs = given.get("epochs")
    if epochs is not None and epochs < merged.epochs:
        raise UsageError(f"--resume: --epochs {epochs} is fewer than the {merged.epochs} the run was started with",
                         hint="--epochs can only grow when resuming")
    if epochs is not None:
        merged.epochs = epochs
    for name in MACHINE_SETTINGS:
        if name in given:
            setattr(merged, name, given[name])


def _flag(dest: str) -> str:
    return dest if dest in ("data", "text") else "--" + dest.replace("_", "-")


def _as_text(value: Any) -> Any:
    """A config value as the command line would give it (lists as `1,0,0,1`); flags and None stay as they are."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _handler(command: str) -> Callable[[argparse.Namespace], int]:
    module, name = HANDLERS[command]
    return getattr(importlib.import_module(f".commands.{module}", __package__), name)


def _run_command(args: argparse.Namespace) -> int:
    """Run the command's handler; a command with `--threads` runs with that many torch threads (default:
    `deepfit.threads.choose_threads()`), and the thread count is put back afterwards (for callers in-process)."""
    handler = _handler(args.command)
    if "threads" not in vars(args):
        return handler(args)
    import torch

    from .threads import set_threads

    before = torch.get_num_threads()
    set_threads(args.threads)
    try:
        return handler(args)
    finally:
        torch.set_num_threads(before)


def main(argv: Sequence[str] | None = None) -> int:
    """Run `deepfit` with `argv` (default: `sys.argv[1:]`); returns the exit status."""
    prefer_passive_wait()  # OpenMP threads that sleep while they wait: only possible before torch is imported
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2, already printed)
        return int(e.code or 0)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        if getattr(args, "config", None) is not None or getattr(args, "resume", None) is not None:
            args = apply_run_config(parser, argv, args)
        return _run_command(args)
    except SystemExit as e:  # a usage error in the options of a --config file (already printed)
        return int(e.code or 0)
    except CLIError as e:
        _report(str(e), e.hint or f"see `deepfit {args.command} --help`")
        return e.code
    except RunDirError as e:
        _report(str(e), e.hint or f"see `deepfit {args.command} --help`")
        return EXIT_USAGE if e.usage else EXIT_FAILURE
    except BrokenPipeError:  # output piped into `head` and the like
        return 0
    except KeyboardInterrupt:
        _report("interrupted", "a training run can be continued with --resume RUN_DIR")
        return 130
    except Exception as e:  # noqa: BLE001 - every other failure is reported as one line
        if os.environ.get("DEEPFIT_TRACEBACK"):
            raise
        message, hint = describe(e)
        _report(message, hint)
        return EXIT_FAILURE


def _report(message: str, hint: str | None) -> None:
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    print(f"deepfit: error: {first}", file=sys.stderr)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)


__all__ = ["COMMANDS", "OPTIONS", "OVERRIDES", "CLIError", "add_option", "build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
