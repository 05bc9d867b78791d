"""Synthetic multi-label data for the learner and command-line tests: bar images and labelled texts."""

from __future__ import annotations

import random
from pathlib import Path

import torch
from PIL import Image

BARS = ["horizontal", "vertical"]


def bar_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """16×16 grey uint8 images with a horizontal bar, a vertical bar, both or neither (each with probability
    1/2), and their multi-hot targets over `BARS`."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 60, (n, 1, 16, 16), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 2, (n, 2), generator=g).float()
    pos = torch.randint(2, 14, (n, 2), generator=g)
    for i in range(n):
        if y[i, 0]:
            x[i, 0, pos[i, 0], :] = 255
        if y[i, 1]:
            x[i, 0, :, pos[i, 1]] = 255
    return x, y


def write_bar_folder(root: Path, n: int, seed: int, prefix: str = "") -> torch.Tensor:
    """PNG files of `bar_images` in `root/images/` and `root/labels.csv` (a header row, then the file name as
    `prefix + '<i>.png'` and the space-separated labels); returns the multi-hot targets."""
    x, y = bar_images(n, seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        Image.fromarray(x[i, 0].numpy(), mode="L").save(root / "images" / f"{i}.png")
        rows.append(f"{prefix}{i}.png,{' '.join(BARS[j] for j in range(2) if y[i, j])}")
    (root / "labels.csv").write_text("name,tags\n" + "\n".join(rows) + "\n")
    return y


def labelled_texts(n: int, seed: int) -> tuple[list[str], list[list[str]]]:
    """Short texts naming a fruit (label 'fruit'), a vehicle ('vehicle'), both or neither, among filler words."""
    rng = random.Random(seed)
    fruit, vehicles, filler = ["apple", "banana", "pear"], ["car", "bus", "train"], ["we", "saw", "a", "today", "nice"]
    texts, labels = [], []
    for _ in range(n):
        words, lbl = rng.sample(filler, 3), []
        if rng.random() < 0.5:
            words.append(rng.choice(fruit))
            lbl.append("fruit")
        if rng.random() < 0.5:
            words.append(rng.choice(vehicles))
            lbl.append("vehicle")
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(lbl)
    return texts, labels


def write_text_csv(path: Path, n: int, seed: int) -> list[list[str]]:
    """A CSV with 'text' and 'label' columns (labels separated by spaces) of `labelled_texts`."""
    texts, labels = labelled_texts(n, seed)
    path.write_text("text,label\n" + "".join(f"{t},{' '.join(lbl)}\n" for t, lbl in zip(texts, labels)))
    return labels
