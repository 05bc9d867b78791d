"""`deepfit predict`: classes of image files or texts from a run's exported model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..run import RunDir
from .errors import UsageError
from .export import load_export


def predict_items(inf, items: list[str]) -> list[dict[str, Any]]:
    """One result dict per item: the input, the predicted class, its probability and the top 3."""
    is_text = inf.spec.get("text") is not None
    results = []
    for item in items:
        path = Path(item)
        if is_text:
            source = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else item
        else:
            if not path.is_file():
                raise UsageError(f"image file '{item}' does not exist", hint="give paths of image files")
            source = path
        label, idx, probs = inf.predict(source)
        top = probs.float().topk(min(3, len(probs)))
        results.append({"input": item, "prediction": label, "index": idx, "probability": float(probs[idx]),
                        "top": [{"class": inf.vocab[int(i)] if inf.vocab else int(i), "probability": float(v)}
                                for v, i in zip(top.values, top.indices)]})
    return results


def cmd_predict(args: argparse.Namespace) -> int:
    """Predict the class of image files or texts with a run's exported model."""
    run = RunDir.open(args.run_dir)
    if run.read_config().get("command") == "train-lm":
        raise UsageError(f"'{run.path}' is a language model: it predicts text, not classes",
                         hint=f"use `deepfit generate {run.path} --prompt ...`")
    results = predict_items(load_export(run), args.items)
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
    else:
        for r in results:
            shown = r["input"] if len(r["input"]) <= 60 else r["input"][:57] + "..."
            print(f"{shown}\t{r['prediction']}\t{r['probability']:.4f}")
    return 0
