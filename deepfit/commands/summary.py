"""`deepfit summary`: a run's configuration, results per epoch, model and files."""

from __future__ import annotations

import argparse

from ..run import TENSORBOARD_DIR, RunDir
from .export import load_export
from .training import say


def cmd_summary(args: argparse.Namespace) -> int:
    """Print a run's configuration, results per epoch, model size and files."""
    run = RunDir.open(args.run_dir)
    config = run.read_config()
    say(f"run folder: {run.path}")
    say(f"command:    {config.get('rerun', config.get('command'))}")
    for k, v in (config.get("resolved") or {}).items():
        if isinstance(v, list) and len(v) > 12:
            v = v[:12] + ["..."]
        say(f"  {k}: {v}")
    _print_epochs(run.read_metrics())
    results = run.read_results()
    if results is not None:
        for key, label in (("valid_best", "validation (best model)"), ("test", "test")):
            if results.get(key):
                say(f"{label}: " + "  ".join(f"{k} {v:.4f}" for k, v in results[key].items()))
        if results.get("valid_tta_accuracy") is not None:
            say(f"validation with TTA: accuracy {results['valid_tta_accuracy']:.4f}")
        say(f"training time: {results.get('train_seconds', float('nan')):.1f}s")
    if run.export_dir.is_dir():
        inf = load_export(run)
        n = sum(p.numel() for p in inf.model.parameters())
        say(f"model: {inf.spec['arch']} ({n:,} parameters)"
            + (f", {len(inf.vocab)} {'tokens' if config.get('command') == 'train-lm' else 'classes'}"
               if inf.vocab else ""))
    files = run.files()
    say(f"files ({len(files)}):")
    for f in files:
        if f.parts[0] != TENSORBOARD_DIR:
            say(f"  {f}")
    if any(f.parts[0] == TENSORBOARD_DIR for f in files):
        say(f"  {TENSORBOARD_DIR}/ (view with: tensorboard --logdir {run.file(TENSORBOARD_DIR)})")
    return 0


def _print_epochs(rows: list[dict[str, str]]) -> None:
    """The metrics.csv table, numbers to 4 decimals, and the best epoch by validation loss."""
    if not rows:
        say("no epochs recorded yet")
        return
    names = list(rows[0])
    widths = [max(len(n), 9) for n in names]
    say("  ".join(n.ljust(w) for n, w in zip(names, widths)))
    for r in rows:
        cells = []
        for n, w in zip(names, widths):
            v = r[n]
            try:
                v = f"{float(v):.4f}" if n != "epoch" else v
            except (TypeError, ValueError):
                pass
            cells.append(str(v).ljust(w))
        say("  ".join(cells).rstrip())
    if "valid_loss" in names:
        best = min(rows, key=lambda r: float(r["valid_loss"]))
        say(f"best epoch by valid_loss: {best['epoch']} ({float(best['valid_loss']):.4f})")
