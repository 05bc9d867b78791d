"""Tokenizer throughput (tokens/s) on the whole fortunes corpus, with 1 and 2 worker processes.

Uses `deepfit.text.Tokenizer` (spaCy `blank('en')` tokenizer) with each rule set asked for: `notes` (the
default rules, as in the course notes: casing per spaCy token, every token lowercased) and `fastai`
(`Tokenizer.fastai()`: fastai v2's rules). spaCy is loaded before timing; no cache. Checks that every worker
count gives the same tokens. With `--fastai-python PATH`, the same texts also go through fastai's
`tokenize_texts` (fastai v2, `WordTokenizer`, its default rules) in that interpreter (a separate environment
where fastai is installed), for a side-by-side speed ratio and, for each deepfit rule set, the share of texts
whose token sequences are identical (`xxbos`/`xxeos` ignored, since fastai adds no `xxeos`).

    python benchmarks/tokenizer_throughput.py [--workers 1,2] [--rules notes,fastai] [--chunksize 500]
        [--max-texts N] [--fastai-python /path/to/venv/bin/python] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepfit.text import BOS, EOS, Tokenizer, fortunes_texts  # noqa: E402

FASTAI_SCRIPT = r"""
import json, sys, time
from fastai.text.core import WordTokenizer, tokenize_texts
src, dst, n_workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
texts = json.load(open(src, encoding="utf-8"))
tok = WordTokenizer()
list(tok(["warm up"]))
start = time.perf_counter()
toks = tokenize_texts(texts, n_workers=n_workers, tok=tok)
seconds = time.perf_counter() - start
json.dump({"seconds": seconds, "tokens": [list(map(str, t)) for t in toks]}, open(dst, "w", encoding="utf-8"))
"""


def run_fastai(python: str, texts: list[str], n_workers: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "texts.json", Path(d) / "tokens.json"
        src.write_text(json.dumps(texts), encoding="utf-8")
        proc = subprocess.run([python, "-c", FASTAI_SCRIPT, str(src), str(dst), str(n_workers)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"fastai run with {python} failed:\n{proc.stderr[-2000:]}")
        return json.loads(dst.read_text(encoding="utf-8"))


def strip_bos_eos(tokens: list[str]) -> list[str]:
    return [t for t in tokens if t not in (BOS, EOS)]


RULE_SETS = {"notes": Tokenizer, "fastai": Tokenizer.fastai}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    p.add_argument("--rules", default="notes,fastai", help="comma-separated deepfit rule sets: notes, fastai")
    p.add_argument("--chunksize", type=int, default=500)
    p.add_argument("--max-texts", type=int, default=None, help="only the first N texts (quick runs)")
    p.add_argument("--fastai-python", default=None, help="an interpreter where fastai is importable")
    p.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = p.parse_args(argv)
    workers = [int(w) for w in args.workers.split(",")]
    rule_sets = args.rules.split(",")
    for r in rule_sets:
        if r not in RULE_SETS:
            p.error(f"unknown rule set {r!r} (choose from {', '.join(RULE_SETS)})")

    items = fortunes_texts()
    texts = items.texts[:args.max_texts] if args.max_texts else items.texts
    n_chars = sum(len(t) for t in texts)
    print(f"fortunes: {len(texts)} texts, {n_chars} characters")
    Tokenizer().tokenize1("warm up: load spaCy before timing")

    results, tokens_of = [], {}
    for rules in rule_sets:
        for n in workers:
            tok = RULE_SETS[rules](n_workers=n, chunksize=args.chunksize, progress=False)
            start = time.perf_counter()
            toks = tok(texts)
            seconds = time.perf_counter() - start
            n_tokens = sum(len(t) for t in toks)
            if rules not in tokens_of:
                tokens_of[rules] = toks
            elif toks != tokens_of[rules]:
                raise RuntimeError(f"rules {rules}: {n} workers gave different tokens than {workers[0]}")
            results.append({"tokenizer": f"deepfit ({rules} rules)", "rules": rules, "workers": n,
                            "seconds": seconds, "tokens": n_tokens, "tokens_per_s": n_tokens / seconds})

    if args.fastai_python:
        for n in workers:
            out = run_fastai(args.fastai_python, texts, n)
            fa_toks = out["tokens"]
            n_tokens = sum(len(t) for t in fa_toks)
            fa_speed = n_tokens / out["seconds"]
            row = {"tokenizer": "fastai", "workers": n, "seconds": out["seconds"], "tokens": n_tokens,
                   "tokens_per_s": fa_speed}
            for rules, ours in tokens_of.items():
                same = sum(strip_bos_eos(a) == strip_bos_eos(b) for a, b in zip(ours, fa_toks)) / len(texts)
                mine = next(r for r in results if r.get("rules") == rules and r["workers"] == n)
                mine["identical_to_fastai"] = same
                mine["speed_ratio_vs_fastai"] = mine["tokens_per_s"] / fa_speed
            results.append(row)

    print("\n| tokenizer | processes | tokens | seconds | tokens/s | texts identical to fastai | speed vs fastai |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        same = f"{r['identical_to_fastai']:.1%}" if "identical_to_fastai" in r else "-"
        ratio = f"{r['speed_ratio_vs_fastai']:.2f}x" if "speed_ratio_vs_fastai" in r else "-"
        print(f"| {r['tokenizer']} | {r['workers']} | {r['tokens']} | {r['seconds']:.2f} | {r['tokens_per_s']:,.0f} "
              f"| {same} | {ratio} |")
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
