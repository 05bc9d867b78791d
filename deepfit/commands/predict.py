"""`deepfit predict`: classes of image files or texts from a run's exported model."""

from __future__ import annotations

import argparse
import json
import unicodedata
from pathlib import Path
from typing import Any

from ..run import RunDir
from ..text.datasets import read_text
from .errors import UsageError
from .export import load_export


def predict_items(inf, items: list[str]) -> list[dict[str, Any]]:
    """One result dict per item: the input, the predicted class, its probability and the top 3."""
    is_text = inf.spec.get("text") is not None
    results = []
    for item in items:
        path = Path(item)
        if is_text:
            source = read_text(path) if path.is_file() else item  # UTF-8, or train-classifier's error
        else:
            if not path.is_file():
                raise UsageError(f"image file '{item}' does not exist", hint="give paths of image files")
            source = path
        label, idx, probs = inf.predict(source)
        top = probs.float().topk(min(3, len(probs)))
        if isinstance(label, list):  # multi-label: every label above the threshold, idx is their mask
            hits = [int(i) for i in idx.nonzero().flatten()]
            idx, probability = hits, [float(probs[i]) for i in hits]
        else:
            probability = float(probs[idx])
        results.append({"input": item, "prediction": label, "index": idx, "probability": probability,
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
        print(escape_json_controls(json.dumps(results, indent=2, ensure_ascii=False)))
    else:
        for r in results:
            shown = r["input"] if len(r["input"]) <= 60 else r["input"][:57] + "..."
            pred, prob = r["prediction"], r["probability"]
            if isinstance(pred, list):  # multi-label: the labels and their probabilities, space-separated
                pred, prob = " ".join(map(str, pred)), " ".join(f"{p:.4f}" for p in prob)
            else:
                prob = f"{prob:.4f}"
            print(f"{escape_controls(shown)}\t{escape_controls(str(pred))}\t{prob}")
    return 0


def _is_control(ch: str) -> bool:
    """Characters a terminal may act on: C0/C1 controls, DEL, and format characters (bidi overrides...)."""
    return unicodedata.category(ch) in ("Cc", "Cf")


def escape_controls(text: str) -> str:
    """`text` with control and format characters written as escapes (`\\x1b`, `\\u202e`), so that a class name
    or an input cannot send escape sequences to the terminal."""
    if not any(_is_control(ch) for ch in text):
        return text
    return "".join(ch.encode("unicode_escape").decode("ascii") if _is_control(ch) else ch for ch in text)


def escape_json_controls(text: str) -> str:
    """JSON text with every control and format character as a `\\uXXXX` escape (the same JSON values)."""
    return "".join(_json_escape(ch) if _is_control(ch) and ch != "\n" else ch for ch in text)


def _json_escape(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # a UTF-16 surrogate pair, as JSON writes characters beyond the BMP
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
