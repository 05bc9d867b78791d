"""Sampling text from a language model, one token at a time, with `torch.multinomial`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .callbacks import reset_model_state
from .rules import EOS, SPECIAL_TOKENS, UNK
from .tokenize import Tokenizer, decode_chars, detokenize
from .vocab import Vocab


def _has_state(model: nn.Module) -> bool:
    return any(callable(getattr(m, "reset", None)) for m in model.modules())


def _is_char_vocab(itos: Sequence[str]) -> bool:
    special = set(SPECIAL_TOKENS)
    ordinary = [t for t in itos if t not in special]
    return bool(ordinary) and all(len(t) == 1 for t in ordinary)


def sample_next(scores: Tensor, temperature: float = 1.0, top_k: int | None = None,
                generator: torch.Generator | None = None) -> int:
    """Draw one index from `softmax(scores / temperature)` (restricted to the `top_k` best when given)."""
    scores = scores.detach().float().cpu()
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    scores = scores / temperature
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        k = min(top_k, scores.shape[-1])
        kth = scores.topk(k).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator).item())


def generate(learn_or_model: Any, prompt: str, n_tokens: int, temperature: float = 1.0, top_k: int | None = None,
             seed: int | None = None, vocab: Vocab | Sequence[str] | None = None,
             tokenizer: Callable[[str], list[str]] | None = None, level: str = "auto",
             context: int = 200) -> str:
    """Continue `prompt` with `n_tokens` sampled tokens and return the whole text.

    Args:
        learn_or_model: a `Learner` (its model, and `dls.vocab` unless `vocab` is given) or a language model
            mapping `(1, seq_len)` ids to `(1, seq_len, vocab_size)` scores.
        prompt: the start of the text.
        n_tokens: how many tokens (characters for a char model) to sample.
        temperature: scores are divided by it before the softmax (< 1: safer text, > 1: wilder).
        top_k: sample only among the `k` most likely tokens.
        seed: makes the sample reproducible.
        vocab: a `Vocab` or token list.
        tokenizer: `str -> tokens` for word models (default: `Tokenizer().tokenize1` without the final `xxeos`).
        level: `'char'`, `'word'` or `'auto'` (char when all ordinary tokens are single characters).
        context: for stateless models, how many of the last tokens are fed at each step.
    """
    model: nn.Module = getattr(learn_or_model, "model", learn_or_model)
    if vocab is None:
        dls = getattr(learn_or_model, "dls", None)
        vocab = getattr(dls, "text_vocab", None) or getattr(dls, "vocab", None)
    if vocab is None:
        raise ValueError("generate: no vocabulary; pass vocab= (a Vocab or a list of tokens)")
    if not isinstance(vocab, Vocab):
        vocab = Vocab(vocab)
    if n_tokens < 0:
        raise ValueError(f"generate: n_tokens must be >= 0, got {n_tokens}")
    if level == "auto":
        level = "char" if _is_char_vocab(vocab.itos) else "word"
    if level not in ("char", "word"):
        raise ValueError(f"generate: level must be 'char', 'word' or 'auto', got {level!r}")
    if level == "char":
        tokens = list(prompt)
    else:
        tokenize = tokenizer if tokenizer is not None else Tokenizer().tokenize1
        tokens = tokenize(prompt)
        if tokens and tokens[-1] == EOS:
            tokens = tokens[:-1]
    if not tokens:
        raise ValueError("generate: the prompt gives no tokens; a model needs at least one to start from")

    ids = vocab.numericalize(tokens).tolist()
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    g = torch.Generator().manual_seed(seed) if seed is not None else None
    stateful = _has_state(model)
    was_training = model.training
    model.eval()
    new: list[int] = []
    try:
        with torch.no_grad():
            reset_model_state(model)
            feed = ids
            for _ in range(n_tokens):
                if not stateful:
                    feed = (ids + new)[-context:]
                out = model(torch.tensor([feed], dtype=torch.long, device=device))
                out = out[0] if isinstance(out, (tuple, list)) else out
                nxt = sample_next(out[0, -1], temperature, top_k, g)
                new.append(nxt)
                feed = [nxt]
    finally:
        reset_model_state(model)
        model.train(was_training)
    all_tokens = tokens + vocab.textify(new)
    if level == "char":
        return decode_chars(all_tokens)
    unk_token = vocab.unk_token or UNK
    return detokenize(all_tokens, unk_token=unk_token, drop=set(vocab.specials) - {unk_token})
