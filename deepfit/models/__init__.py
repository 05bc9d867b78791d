"""Plain `nn.Module`s; nothing here imports the Learner.

`MODELS` maps a registered architecture name to its constructor; `get_model(name, **kwargs)`
builds one. The CLI and `export`/`load_learner` use these names.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .awd_lstm import (
    AWD_LSTM,
    EmbeddingDropout,
    LinearDecoder,
    RNNDropout,
    SequentialRNN,
    WeightDropout,
    awd_lstm_lm,
    awd_lstm_lm_split,
    get_language_model,
)
from .char_rnn import (
    CHAR_MODELS,
    CharLoopModel,
    CharRnn,
    CharSeqGru,
    CharSeqLstm,
    CharSeqRnn,
    CharSeqRnnCell,
    StatefulCharModel,
)
from .classic import VGG, AlexNet, BatchNorm, GoogLeNet, Inception, LeNet, NiN, lenet_bn, vgg, vgg11, vgg_block
from .cnn import SimpleCNN, conv_bn_relu
from .convnets import (
    BnLayer,
    ConvBnNet,
    ConvBnNet2,
    ConvLayer,
    ConvNet,
    ConvNet2,
    Resnet,
    Resnet2,
    ResnetLayer,
    SimpleNet,
)
from .heads import AdaptiveConcatPool2d, VisionModel, create_body, create_head, num_features, vision_splitter
from .init import apply_init, init_cnn
from .mlp import MLP
from .text_classifiers import (
    LSTMClassifier,
    PoolingLinearClassifier,
    SentenceEncoder,
    awd_lstm_clas_split,
    awd_lstm_classifier,
    get_text_classifier,
    lstm_classifier_split,
    masked_concat_pool,
)
from .xresnet import ResBlock, XResNet, to_channels_last, xresnet18, xresnet34, xresnet50, xresnet101, xresnet152

MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "simple_cnn": SimpleCNN,
    # the notes' CIFAR progression (convnets.py)
    "simple_net": SimpleNet,
    "conv_net": ConvNet,
    "conv_net2": ConvNet2,
    "conv_bn_net": ConvBnNet,
    "conv_bn_net2": ConvBnNet2,
    "resnet": Resnet,
    "resnet2": Resnet2,
    # Dive into Deep Learning's classic CNNs (classic.py)
    "lenet": LeNet,
    "lenet_bn": lenet_bn,
    "alexnet": AlexNet,
    "vgg": VGG,
    "vgg11": vgg11,
    "nin": NiN,
    "googlenet": GoogLeNet,
    # XResNet (xresnet.py)
    "xresnet": XResNet,
    "xresnet18": xresnet18,
    "xresnet34": xresnet34,
    "xresnet50": xresnet50,
    "xresnet101": xresnet101,
    "xresnet152": xresnet152,
}

# ULMFiT and LSTM text models (awd_lstm.py, text_classifiers.py)
MODELS.update({
    "awd_lstm": AWD_LSTM,
    "awd_lstm_lm": awd_lstm_lm,
    "awd_lstm_classifier": awd_lstm_classifier,
    "lstm_classifier": LSTMClassifier,
})


# character-level language models, lesson 7 (char_rnn.py)
MODELS.update(CHAR_MODELS)


def get_model(name: str, **kwargs) -> nn.Module:
    """Build the registered architecture `name` with `kwargs`."""
    try:
        builder = MODELS[name]
    except KeyError:
        raise KeyError(f"unknown architecture {name!r}; registered: {', '.join(sorted(MODELS))}") from None
    model = builder(**kwargs)
    model.arch_name = name  # lets `learn.export` name models built by factory functions
    return model


__all__ = [
    "MLP", "MODELS", "VGG", "AlexNet", "BatchNorm", "BnLayer", "ConvBnNet", "ConvBnNet2", "ConvLayer", "ConvNet",
    "ConvNet2", "GoogLeNet", "Inception", "LeNet", "NiN", "ResBlock", "Resnet", "Resnet2", "ResnetLayer",
    "SimpleCNN", "SimpleNet", "XResNet", "apply_init", "conv_bn_relu", "get_model", "init_cnn", "lenet_bn",
    "to_channels_last", "vgg", "vgg11", "vgg_block", "xresnet18", "xresnet34", "xresnet50", "xresnet101",
    "xresnet152",
]
__all__ += [
    "AWD_LSTM", "EmbeddingDropout", "LSTMClassifier", "LinearDecoder", "PoolingLinearClassifier", "RNNDropout",
    "SentenceEncoder", "SequentialRNN", "WeightDropout", "awd_lstm_clas_split", "awd_lstm_classifier", "awd_lstm_lm",
    "awd_lstm_lm_split", "get_language_model", "get_text_classifier", "lstm_classifier_split", "masked_concat_pool",
]
__all__ += ["CharLoopModel", "CharRnn", "CharSeqGru", "CharSeqLstm", "CharSeqRnn", "CharSeqRnnCell",
            "StatefulCharModel"]
__all__ += ["AdaptiveConcatPool2d", "VisionModel", "create_body", "create_head", "num_features", "vision_splitter"]
MODELS["vision_model"] = VisionModel  # vision_learner models: a body cut from an architecture + a new head
