"""The options of each CLI command (kept apart from the commands so `--help` does not import torch)."""

from __future__ import annotations

import argparse

from .common import add_training_options, non_negative_float, non_negative_int, positive_int, probability

BUILTIN = ("fashion-mnist",)
AUGMENT_PRESETS = {
    "none": "no augmentation",
    "flip": "random horizontal flips",
    "standard": "flips + pad-and-crop by 10%% of the size",
    "heavy": "flips + pad-and-crop + rotations up to 10 degrees + colour jitter",
}
LM_ARCHS = ("awd_lstm", "char_lstm", "char_gru", "char_rnn")
CLASSIFIER_ARCHS = ("awd_lstm", "lstm", "bilstm")
TOKENIZERS = ("word", "char")


def stage_epochs(text: str) -> list[int]:
    """`--stages 1,1,1,2`: epochs of ULMFiT's four gradual-unfreezing stages."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 4 comma-separated whole numbers, got {text!r}") from None
    if len(values) != 4 or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected 4 comma-separated whole numbers >= 0, got {text!r}")
    return values


# ---------------------------------------------------------------------------------------------- vision
def add_vision_data_options(p: argparse.ArgumentParser, arch_default: str | None = "simple_cnn") -> None:
    p.add_argument("data", metavar="DATA", nargs="?", default=None,
                   help="an image folder (class subfolders, optionally under train/ and valid/) or a built-in "
                        f"dataset: {', '.join(BUILTIN)}")
    p.add_argument("--arch", default=arch_default,
                   help="a registered architecture (see `deepfit models`)" if arch_default else
                   "model (default: simple_cnn for --task vision, awd_lstm for --task lm)")
    p.add_argument("--size", type=positive_int, default=None,
                   help="resize (and centre-crop) every image to SIZE×SIZE (image folders; needed when sizes differ)")
    p.add_argument("--augment", choices=sorted(AUGMENT_PRESETS), default="none",
                   help="batch augmentation preset: " + "; ".join(f"{k}: {v}" for k, v in AUGMENT_PRESETS.items()))
    p.add_argument("--valid-pct", type=probability, default=None,
                   help="hold out this fraction at random (default: the valid/ folder, else 0.2; fashion-mnist 0.1)")
    p.add_argument("--n-train", type=positive_int, default=None, help="train on a seeded random subset of this size")
    p.add_argument("--n-valid", type=positive_int, default=None,
                   help="validate on a seeded random subset of this size (fashion-mnist)")
    p.add_argument("--weights", default=None, metavar="FILE",
                   help="local pretrained weights (state dict or deepfit checkpoint) for the architecture's body; "
                        "a new head is trained on top")


def add_train_vision_options(p: argparse.ArgumentParser) -> None:
    add_vision_data_options(p)
    add_training_options(p, epochs=3, lr="3e-3", bs=64)
    p.add_argument("--mixup", type=non_negative_float, default=0.0, help="MixUp alpha (0: off)")
    p.add_argument("--label-smoothing", type=probability, default=0.0, help="label smoothing epsilon (0: off)")
    p.add_argument("--freeze-epochs", type=non_negative_int, default=0,
                   help="first train only the new head for this many epochs (needs --weights)")
    p.add_argument("--tta", action="store_true", help="also report test-time-augmentation accuracy on validation")


# ---------------------------------------------------------------------------------------------- text
def add_text_data_options(p: argparse.ArgumentParser,
                          tokenizer_default: str = "char for char_* models, else word") -> None:
    p.add_argument("--tokenizer", choices=TOKENIZERS, default=None,
                   help=f"word (spaCy rules) or char; default: {tokenizer_default}")
    p.add_argument("--max-texts", type=positive_int, default=None,
                   help="use a seeded random sample of at most this many texts")
    p.add_argument("--max-vocab", type=positive_int, default=30000, help="largest vocabulary")
    p.add_argument("--min-freq", type=positive_int, default=2, help="rarest token kept in the vocabulary (word level)")


def add_lm_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bptt", type=positive_int, default=70, help="tokens per sequence (backpropagation through time)")
    p.add_argument("--emb-sz", type=positive_int, default=200, help="embedding size (AWD-LSTM) / n_fac (char models)")
    p.add_argument("--n-hid", type=positive_int, default=512, help="hidden size")
    p.add_argument("--n-layers", type=positive_int, default=2, help="number of recurrent layers")
    p.add_argument("--drop-mult", type=non_negative_float, default=0.3, help="multiplies every dropout (AWD-LSTM)")


def add_train_lm_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("text", metavar="TEXT", nargs="?", default=None,
                   help="a text file, a folder of text files, or a fortunes file/folder (entries split at '%%' lines)")
    p.add_argument("--arch", choices=LM_ARCHS, default="awd_lstm", help="language model")
    add_text_data_options(p)
    add_lm_model_options(p)
    p.add_argument("--valid-pct", type=probability, default=0.1, help="fraction of the texts held out")
    add_training_options(p, epochs=1, lr="2e-3", bs=32)
    p.add_argument("--sample", type=non_negative_int, default=100,
                   help="print a sample of this many tokens at the end (0: none)")


def add_train_classifier_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", metavar="DATA", nargs="?", default=None,
                   help="a folder with one subfolder of .txt files per class, a fortunes folder (one file per "
                        "class), or a CSV file with 'text' and 'label' columns")
    p.add_argument("--lm", metavar="RUN_DIR", default=None,
                   help="a train-lm run (AWD-LSTM): ULMFiT fine-tuning with gradual unfreezing on its encoder")
    p.add_argument("--arch", choices=CLASSIFIER_ARCHS, default=None,
                   help="classifier; default awd_lstm with --lm, else bilstm")
    p.add_argument("--embeddings", metavar="FILE", default=None,
                   help="GloVe-format text file of pretrained word vectors for the lstm/bilstm embedding")
    add_text_data_options(p, tokenizer_default="the --lm run's, else word")
    p.add_argument("--valid-pct", type=probability, default=0.2, help="fraction of the texts held out")
    p.add_argument("--emb-sz", type=positive_int, default=100, help="embedding size (lstm/bilstm without --embeddings)")
    p.add_argument("--n-hid", type=positive_int, default=128, help="hidden size (lstm/bilstm; AWD-LSTM from scratch)")
    p.add_argument("--n-layers", type=positive_int, default=1, help="recurrent layers (lstm/bilstm)")
    p.add_argument("--stages", type=stage_epochs, default="1,1,1,2",
                   help="ULMFiT: epochs of the 4 stages (head, last 2 groups, last 3, all)")
    add_training_options(p, epochs=3, lr="1e-2", bs=32)


def add_lr_find_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", choices=("vision", "lm"), default="vision",
                   help="vision: DATA and options as train-vision; lm: DATA is TEXT, options as train-lm")
    add_vision_data_options(p, arch_default=None)
    add_text_data_options(p)
    add_lm_model_options(p)
    p.add_argument("--bs", type=positive_int, default=64, help="batch size")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--num-it", type=positive_int, default=100, help="learning rates tried (one batch each)")
    p.add_argument("--out", default=".", help="folder for lr_find.png")
