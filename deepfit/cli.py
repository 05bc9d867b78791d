"""`deepfit <command>`: the command-line interface (also `python -m deepfit`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

EXIT_USAGE, EXIT_FAILURE = 2, 1


class CLIError(Exception):
    """A failure reported as one line, with an optional hint."""

    def __init__(self, message: str, hint: str | None = None, code: int = EXIT_FAILURE):
        super().__init__(message)
        self.hint, self.code = hint, code


def _new_run_dir(out: str | Path) -> Path:
    base = Path(out)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = base / stamp
    n = 1
    while run_dir.exists():
        n += 1
        run_dir = base / f"{stamp}-{n}"
    run_dir.mkdir(parents=True)
    return run_dir


def cmd_train_vision(args: argparse.Namespace) -> int:
    import torch

    from .data import fashion_mnist_loaders
    from .learner import Learner, accuracy
    from .models import get_model

    if args.data != "fashion-mnist":
        raise CLIError(f"unknown DATA {args.data!r}", hint="this version supports the built-in 'fashion-mnist'",
                       code=EXIT_USAGE)
    torch.manual_seed(args.seed)
    dls = fashion_mnist_loaders(bs=args.bs, seed=args.seed, n_train=args.n_train)
    kwargs = {"n_out": 10}
    kwargs.update({"c_in": 1} if args.arch != "mlp" else {"n_in": 784})
    model = get_model(args.arch, **kwargs)
    learn = Learner(model, dls, metrics=[accuracy], lr=args.lr)
    run_dir = _new_run_dir(args.out)
    print(f"deepfit: training {args.arch} on {args.data} ({dls}), run folder {run_dir}")
    start = time.perf_counter()
    if hasattr(learn, "fit_one_cycle"):
        learn.fit_one_cycle(args.epochs, args.lr)
    else:
        learn.fit(args.epochs, args.lr)
    train_time = time.perf_counter() - start
    test_loss, test_acc = learn.validate(dls.test)
    print(f"test: loss {test_loss:.4f}  accuracy {test_acc:.4f}  ({len(dls.test.y)} images)  "
          f"training time {train_time:.1f}s")
    metrics = {
        "data": args.data, "arch": args.arch, "epochs": args.epochs, "bs": args.bs, "lr": args.lr, "seed": args.seed,
        "history": learn.recorder.table(), "test_loss": test_loss, "test_accuracy": test_acc,
        "train_seconds": round(train_time, 2), "device": str(dls.device), "torch": torch.__version__,
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    learn.recorder.plot_loss(run_dir / "losses.png")
    print(f"wrote {run_dir / 'metrics.json'} and {run_dir / 'losses.png'}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from .data import fashion_mnist

    if args.name != "fashion-mnist":
        raise CLIError(f"unknown dataset {args.name!r}", hint="available: fashion-mnist", code=EXIT_USAGE)
    train, test = fashion_mnist(download=True)
    print(f"Fashion-MNIST ready: {len(train)} training and {len(test)} test images")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepfit", description="Train and use deep-learning models.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train-vision", help="train an image classifier",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("data", metavar="DATA", help="a built-in dataset name (fashion-mnist)")
    p.add_argument("--arch", default="simple_cnn", help="a registered architecture")
    p.add_argument("--epochs", type=int, default=3, help="number of epochs")
    p.add_argument("--lr", type=float, default=3e-3, help="learning rate (peak of the one-cycle schedule)")
    p.add_argument("--bs", type=int, default=256, help="batch size")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--n-train", type=int, default=None, help="train on a random subset of this many images")
    p.add_argument("--out", default="runs", help="parent folder of the run folder")
    p.set_defaults(func=cmd_train_vision)

    p = sub.add_parser("download", help="fetch a dataset into the cache folder ($DEEPFIT_DATA)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("name", help="dataset name (fashion-mnist)")
    p.set_defaults(func=cmd_download)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.func(args)
    except CLIError as e:
        print(f"deepfit: error: {e}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return e.code
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"deepfit: error: {e}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
