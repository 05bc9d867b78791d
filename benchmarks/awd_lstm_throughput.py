"""AWD-LSTM language-model training throughput (tokens/s), optionally side by side with fastai.

Times full training steps (forward, cross-entropy, backward, Adam step) of deepfit's AWD-LSTM
language model (all dropouts on, as in training) on fixed batches of real fortunes text (a simple
lower-case word split, vocabulary capped at `--vocab`). With `--fastai-python PATH`, the same
batches (written to a file) are timed with fastai's `AWD_LSTM` language model of the same sizes in
that interpreter, and the ratio is printed. Repeats alternate between the two engines.

    python benchmarks/awd_lstm_throughput.py [--emb-sz 400] [--n-hid 1152] [--n-layers 3] [--bs 32] [--bptt 70]
        [--vocab 10000] [--steps 8] [--warmup 2] [--repeats 3] [--device cpu] [--threads 0] [--flush-denormal]
        [--fastai-python /path/to/python] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
FORTUNES = Path("/usr/share/games/fortunes")


def make_batches(vocab_sz: int, bs: int, bptt: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` consecutive LM batches `(x, y)` of shape `(n, bs, bptt)` from the fortunes corpus (random ids if absent)."""
    words: list[str] = []
    if FORTUNES.is_dir():
        for p in sorted(FORTUNES.iterdir()):
            if p.is_file() and p.suffix not in (".dat", ".u8"):
                text = p.read_bytes().decode("utf-8", errors="replace")
                words += re.findall(r"[a-z]+|[^\sa-z%]", text.lower())
    need = n * bs * bptt + 1
    if len(words) >= need:
        common = [w for w, _ in Counter(words).most_common(vocab_sz - 2)]
        index = {w: i + 2 for i, w in enumerate(common)}  # 0: unknown, 1: padding
        stream = torch.tensor([index.get(w, 0) for w in words[:need]], dtype=torch.long)
    else:
        stream = torch.randint(2, vocab_sz, (need,), generator=torch.Generator().manual_seed(seed))
    # bs parallel streams, cut into bptt-long pieces
    rows = stream[:-1].view(bs, -1)
    rows_y = stream[1:].view(bs, -1)
    x = torch.stack([rows[:, i * bptt:(i + 1) * bptt] for i in range(n)])
    y = torch.stack([rows_y[:, i * bptt:(i + 1) * bptt] for i in range(n)])
    return x, y


def build_deepfit(vocab_sz: int, emb_sz: int, n_hid: int, n_layers: int):
    sys.path.insert(0, str(ROOT))
    from deepfit.models.awd_lstm import get_language_model

    model = get_language_model("awd_lstm", vocab_sz, emb_sz=emb_sz, n_hid=n_hid, n_layers=n_layers)
    return model, lambda out: out


def build_fastai(vocab_sz: int, emb_sz: int, n_hid: int, n_layers: int):
    from fastai.text.models.awdlstm import AWD_LSTM, awd_lstm_lm_config
    from fastai.text.models.core import get_language_model

    config = dict(awd_lstm_lm_config, emb_sz=emb_sz, n_hid=n_hid, n_layers=n_layers)
    model = get_language_model(AWD_LSTM, vocab_sz, config=config)
    return model, lambda out: out[0] if isinstance(out, (tuple, list)) else out


def time_engine(engine: str, batches: Path, args: argparse.Namespace) -> list[float]:
    """tokens/s of each repeat (`steps` timed steps after `warmup` steps)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.flush_denormal:
        torch.set_flush_denormal(True)
    data = torch.load(batches)
    x, y = data["x"], data["y"]
    device = torch.device(args.device)
    builder = build_deepfit if engine == "deepfit" else build_fastai
    torch.manual_seed(args.seed)
    model, logits_of = builder(args.vocab, args.emb_sz, args.n_hid, args.n_layers)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    x, y = x.to(device), y.to(device)

    def step(i: int) -> torch.Tensor:
        out = logits_of(model(x[i % len(x)]))
        loss = loss_fn(out.reshape(-1, out.shape[-1]), y[i % len(y)].reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    results = []
    model.reset()
    for i in range(args.warmup):
        step(i)
    sync()
    tokens = args.steps * x.shape[1] * x.shape[2]
    for _ in range(args.repeats):
        start = time.perf_counter()
        for i in range(args.steps):
            last = step(i)
        sync()
        results.append(tokens / (time.perf_counter() - start))
    if not torch.isfinite(last):
        raise RuntimeError(f"{engine}: non-finite loss")
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--emb-sz", type=int, default=400)
    ap.add_argument("--n-hid", type=int, default=1152)
    ap.add_argument("--n-layers", type=int, default=3)
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--bptt", type=int, default=70)
    ap.add_argument("--vocab", type=int, default=10000)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--flush-denormal", action="store_true", help="torch.set_flush_denormal(True) in both engines")
    ap.add_argument("--fastai-python", default=None, help="an interpreter where fastai is importable")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--engine", choices=["deepfit", "fastai"], default=None, help=argparse.SUPPRESS)
    ap.add_argument("--batches", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.engine is not None:  # child process: time one engine, print JSON
        print(json.dumps(time_engine(args.engine, Path(args.batches), args)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        batches = Path(tmp) / "batches.pt"
        x, y = make_batches(args.vocab, args.bs, args.bptt, max(args.steps, args.warmup), args.seed)
        torch.save({"x": x, "y": y}, batches)
        engines = {"deepfit": sys.executable}
        if args.fastai_python:
            engines["fastai"] = args.fastai_python
        passthrough = []
        for k in ("emb_sz", "n_hid", "n_layers", "vocab", "steps", "warmup", "seed", "device", "threads"):
            passthrough += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
        if args.flush_denormal:
            passthrough.append("--flush-denormal")
        runs: dict[str, list[float]] = {e: [] for e in engines}
        for _ in range(args.repeats):  # alternate engines, one timed repeat per process
            for engine, python in engines.items():
                cmd = [python, str(Path(__file__).resolve()), "--engine", engine, "--batches", str(batches),
                       "--repeats", "1", *passthrough]
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
                if proc.returncode != 0:
                    raise SystemExit(f"{engine} run failed:\n{proc.stderr[-3000:]}")
                runs[engine] += json.loads(proc.stdout.strip().splitlines()[-1])

    summary = {
        "sizes": dict(emb_sz=args.emb_sz, n_hid=args.n_hid, n_layers=args.n_layers, vocab=args.vocab, bs=args.bs,
                      bptt=args.bptt),
        "device": args.device, "threads": args.threads or torch.get_num_threads(),
        "tokens_per_s": {e: statistics.median(v) for e, v in runs.items()},
        "runs": runs,
    }
    if "fastai" in runs:
        summary["ratio_deepfit_over_fastai"] = summary["tokens_per_s"]["deepfit"] / summary["tokens_per_s"]["fastai"]
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    s = summary["sizes"]
    print(f"AWD-LSTM LM training, emb {s['emb_sz']}, hidden {s['n_hid']}, {s['n_layers']} layers, vocab {s['vocab']}, "
          f"batch {s['bs']}x{s['bptt']}, {args.device}, {summary['threads']} threads")
    for e, v in runs.items():
        print(f"  {e:8s} median {statistics.median(v):9.0f} tokens/s  (runs: {', '.join(f'{r:.0f}' for r in v)})")
    if "ratio_deepfit_over_fastai" in summary:
        print(f"  deepfit / fastai: {summary['ratio_deepfit_over_fastai']:.2f}")


if __name__ == "__main__":
    main()
