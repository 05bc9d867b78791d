"""Run folders shared by the command tests: small real data (Fashion-MNIST PNGs, fortunes files) in tmp folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepfit.cli import main
from tests.helpers.cli import TINY
from tests.helpers.data import FORTUNES_DIR, fashion_mnist_available


@pytest.fixture(scope="session")
def png_dir(tmp_path_factory) -> Path:
    """8 training and 4 validation Fashion-MNIST images per class, as PNG class folders."""
    from tests.helpers.vision import write_fmnist_folder

    if not fashion_mnist_available():
        pytest.skip("Fashion-MNIST not installed; run `make data`")
    return write_fmnist_folder(tmp_path_factory.mktemp("fmnist_png"), n_train=8, n_valid=4)


@pytest.fixture(scope="session")
def vision_run(png_dir, tmp_path_factory) -> Path:
    """One train-vision run with --lr auto, augmentation, label smoothing, MixUp and TTA."""
    out = tmp_path_factory.mktemp("runs")
    rc = main(["train-vision", str(png_dir), "--lr", "auto", "--augment", "standard", "--label-smoothing", "0.1",
               "--mixup", "0.4", "--tta", "--out", str(out), "--name", "v", *TINY])
    assert rc == 0
    return out / "v"


@pytest.fixture(scope="session")
def fortunes_dir(tmp_path_factory) -> Path:
    """Two fortunes topics, cut to their first 40 entries each."""
    if not (FORTUNES_DIR / "love").exists() or not (FORTUNES_DIR / "food").exists():
        pytest.skip("fortunes not installed; run `make data`")
    from deepfit.text.datasets import read_fortunes

    folder = tmp_path_factory.mktemp("fortunes")
    for topic in ("love", "food"):
        entries = read_fortunes(FORTUNES_DIR / topic)[:40]
        (folder / topic).write_text("\n%\n".join(entries) + "\n%\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def awd_lm_run(fortunes_dir, tmp_path_factory) -> Path:
    """A tiny AWD-LSTM language model run (with its encoder for train-classifier --lm)."""
    out = tmp_path_factory.mktemp("lm")
    rc = main(["train-lm", str(fortunes_dir), "--arch", "awd_lstm", "--bptt", "20", "--emb-sz", "16", "--n-hid", "32",
               "--n-layers", "2", "--sample", "5", "--out", str(out), "--name", "awd", *TINY])
    assert rc == 0
    return out / "awd"
