"""`deepfit <command>`: the command-line interface (also `python -m deepfit`).

The parser lives here; the commands live in `deepfit.commands` (vision, lm, classifier, inference). Errors are
one line `deepfit: error: ...` plus a `hint:` line; exit status 2 for usage errors, 1 for failures.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from .commands.common import EXIT_FAILURE, EXIT_USAGE, CLIError, positive_float, positive_int

# Imported lazily so that `deepfit --help` and usage errors answer without importing torch.
_COMMANDS: dict[str, tuple[str, str]] = {
    "train-vision": ("vision", "cmd_train_vision"),
    "lr-find": ("vision", "cmd_lr_find"),
    "train-lm": ("lm", "cmd_train_lm"),
    "train-classifier": ("classifier", "cmd_train_classifier"),
    "generate": ("lm", "cmd_generate"),
    "predict": ("inference", "cmd_predict"),
    "summary": ("inference", "cmd_summary"),
    "export": ("inference", "cmd_export"),
    "download": ("inference", "cmd_download"),
    "models": ("inference", "cmd_models"),
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


def _load(command: str) -> Callable[[argparse.Namespace], int]:
    import importlib

    module, name = _COMMANDS[command]
    return getattr(importlib.import_module(f".commands.{module}", __package__), name)


def build_parser() -> argparse.ArgumentParser:
    """The `deepfit` argument parser with one sub-parser per command."""
    from .commands import options

    parser = _Parser(prog="deepfit", description="Train and use deep-learning models from the command line.",
                     formatter_class=_Formatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=description or help, formatter_class=_Formatter)
        p.set_defaults(command=name)
        return p

    p = add("train-vision", "train an image classifier on a folder of images or fashion-mnist")
    options.add_train_vision_options(p)

    p = add("lr-find", "run the learning-rate finder, save its plot and print the suggested rate")
    options.add_lr_find_options(p)

    p = add("train-lm", "train a language model (AWD-LSTM or a char RNN) on a text file, folder or fortunes")
    options.add_train_lm_options(p)

    p = add("train-classifier", "train a text classifier: ULMFiT from a train-lm run (--lm), or an LSTM/BiLSTM")
    options.add_train_classifier_options(p)

    p = add("generate", "sample text from a train-lm run")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by train-lm")
    p.add_argument("--prompt", default="The", help="the start of the text")
    p.add_argument("--n", type=positive_int, default=200, help="tokens (characters for char models) to sample")
    p.add_argument("--temperature", type=positive_float, default=0.8,
                   help="sampling temperature (lower: safer text)")
    p.add_argument("--top-k", type=positive_int, default=None, help="sample among the k most likely tokens only")
    p.add_argument("--seed", type=int, default=None, help="random seed for a reproducible sample")

    p = add("predict", "predict classes of image files or texts with a run's exported model")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by train-vision or train-classifier")
    p.add_argument("items", metavar="FILES_OR_TEXT", nargs="+",
                   help="image files (vision runs) or texts / text files (text classifier runs)")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of tab-separated lines")

    p = add("summary", "print a run's configuration, results per epoch, model and files")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by a train-* command")

    p = add("export", "write ONNX / TorchScript files of a run's exported model")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by a train-* command")
    p.add_argument("--onnx", action="store_true", help="write export/model.onnx (needs onnx and onnxscript)")
    p.add_argument("--torchscript", action="store_true", help="write export/model.torchscript.pt")

    p = add("download", "fetch a dataset into the cache folder ($DEEPFIT_DATA)")
    p.add_argument("name", choices=["fashion-mnist"], help="dataset name")

    add("models", "list the registered architectures")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `deepfit` with `argv` (default: `sys.argv[1:]`); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2, already printed)
        return int(e.code or 0)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return _load(args.command)(args)
    except CLIError as e:
        _report(str(e), e.hint or f"see `deepfit {args.command} --help`")
        return e.code
    except BrokenPipeError:  # output piped into `head` and the like
        return 0
    except KeyboardInterrupt:
        _report("interrupted", "a training run can be continued with --resume RUN_DIR")
        return 130
    except Exception as e:  # noqa: BLE001 - every other failure is reported as one line
        if os.environ.get("DEEPFIT_TRACEBACK"):
            raise
        from .commands.errors import describe

        message, hint = describe(e)
        _report(message, hint)
        return EXIT_FAILURE


def _report(message: str, hint: str | None) -> None:
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    print(f"deepfit: error: {first}", file=sys.stderr)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)


__all__ = ["CLIError", "build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
