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
    results = run.read_results()
    _print_epochs(run.read_metrics(), results, (config.get("resolved") or {}).get("stages"))
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


def _print_epochs(rows: list[dict[str, str]], results: dict | None, stages: list[str] | None = None) -> None:
    """The metrics.csv table, numbers to 4 decimals, then the best epoch (the exported one; by the first metric,
    else the validation loss) and the last epoch: from metrics.json, or from the table while a run trains."""
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
                v = f"{float(v):.4f}" if n not in ("epoch", "stage") else v
            except (TypeError, ValueError):
                pass
            cells.append(str(v).ljust(w))
        say("  ".join(cells).rstrip())
    best, last = (results or {}).get("best"), (results or {}).get("last")
    if not best or "monitor" not in best:
        best, last = _best_of_table(rows, names), rows[-1]
    if best is None:
        return
    monitor, which = best["monitor"], "highest" if best["mode"] == "max" else "lowest"
    exported = ", exported (export/, models/best.pth)" if best.get("exported") else ""
    say(f"best epoch by {monitor} ({which}): {best['epoch']} ({_number(best.get(monitor))}){exported}"
        + _stage_of(rows, best.get("epoch"), stages))
    if last:
        say(f"last epoch: {last.get('epoch')} ({monitor} {_number(last.get(monitor))})")


def _stage_of(rows: list[dict[str, str]], epoch, stages: list[str] | None) -> str:
    """`', in stage 4/4 (all groups)'` for a staged run (metrics.csv has a `stage` column), else `''`."""
    row = next((r for r in rows if str(r.get("epoch")) == str(epoch)), None)
    if row is None or not str(row.get("stage") or "").isdigit():
        return ""
    k = int(row["stage"])
    n = len(stages) if stages else max(int(r["stage"]) for r in rows if str(r.get("stage") or "").isdigit())
    what = f" ({stages[k - 1]})" if stages and 0 < k <= len(stages) else ""
    return f", in stage {k}/{n}{what}"


def _best_of_table(rows: list[dict[str, str]], names: list[str]) -> dict | None:
    """The best row of metrics.csv by SaveBestModel's rule: the first metric, else the validation loss."""
    from ..learner.callbacks.training import monitor_mode

    metrics = [n for n in names[names.index("valid_loss") + 1:] if n != "time"] if "valid_loss" in names else []
    monitor = metrics[0] if metrics else "valid_loss" if "valid_loss" in names else None
    if monitor is None:
        return None
    mode = monitor_mode(monitor)
    scored = [r for r in rows if _float(r.get(monitor)) is not None]
    if not scored:
        return None
    pick = max if mode == "max" else min
    best = pick(scored, key=lambda r: _float(r[monitor]))
    return {**best, "monitor": monitor, "mode": mode}


def _float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _number(value) -> str:
    v = _float(value)
    return "n/a" if v is None else f"{v:.4f}"
