"""The names the parser offers: built-in datasets, and the architectures each command's `--arch` accepts.

The parser imports this module, so it imports nothing (no torch). `--arch` of `train-lm` and `train-classifier`
takes the short names below, each standing for a registered architecture (`deepfit.models.registry`);
`train-vision` takes every registered vision architecture (`commands.models.vision_archs`).
"""

from __future__ import annotations

BUILTIN = ("fashion-mnist",)

#: the commands that take `--arch` (`deepfit models COMMAND` lists its names); lr-find takes train-vision's
#: names, or train-lm's with `--task lm`
ARCH_COMMANDS = ("train-vision", "train-lm", "train-classifier")

#: train-lm --arch NAME -> the registered language model it builds
LM_ARCHS = {"awd_lstm": "awd_lstm_lm", "char_lstm": "char_seq_lstm", "char_gru": "char_seq_gru",
            "char_rnn": "char_seq_rnn"}

#: train-classifier --arch NAME -> the registered classifier it builds
CLASSIFIER_ARCHS = {"awd_lstm": "awd_lstm_classifier", "lstm": "lstm_classifier", "bilstm": "bilstm_classifier"}
