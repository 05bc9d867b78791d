"""Plain `nn.Module`s; nothing here imports the Learner.

Every architecture is registered by name in `deepfit.models.registry` (each model file registers its own
when imported; this package imports them all). `get_model(arch, **kwargs)` builds one and records
`model.config = {"arch": arch, ...}`, so `get_model(**model.config)` rebuilds it; the CLI's `--arch`,
`learn.export` and `load_learner` use these names. Shared keywords: `c_in`/`n_out` for vision models,
`vocab_sz` for text models (`n_out` for classifiers).
"""

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
    CellLoopModel,
    CharLoopModel,
    CharRnn,
    CharSeqGru,
    CharSeqGruCell,
    CharSeqLstm,
    CharSeqRnn,
    CharSeqRnnCell,
    StatefulCharModel,
)
from .char_window import Char3ConcatModel, Char3Model, CharLoopLastModel, char_windows
from .classic import VGG, AlexNet, BatchNorm, GoogLeNet, Inception, LeNet, NiN, lenet_bn, vgg, vgg11, vgg_block
from .cnn import FastCNN, SimpleCNN, conv_bn_relu
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
from .explicit_state import ExplicitState, has_hidden_state
from .heads import AdaptiveConcatPool2d, VisionModel, create_body, create_head, num_features, vision_splitter
from .init import apply_init, init_cnn
from .mlp import MLP
from .registry import (
    MODELS,
    TASKS,
    ModelSpec,
    arch_names,
    get_model,
    model_config,
    rebuild,
    register,
    spec,
)
from .rnn_cells import GRUCell, RNNCell
from .text_classifiers import (
    LSTMClassifier,
    PoolingLinearClassifier,
    SentenceEncoder,
    awd_lstm_clas_split,
    awd_lstm_classifier,
    bilstm_classifier,
    get_text_classifier,
    lstm_classifier_split,
    masked_concat_pool,
)
from .xresnet import ResBlock, XResNet, to_channels_last, xresnet18, xresnet34, xresnet50, xresnet101, xresnet152

__all__ = [
    # registry
    "MODELS", "TASKS", "ModelSpec", "arch_names", "get_model", "model_config", "rebuild", "register", "spec",
    # vision
    "MLP", "FastCNN", "VGG", "AlexNet", "BatchNorm", "BnLayer", "ConvBnNet", "ConvBnNet2", "ConvLayer", "ConvNet",
    "ConvNet2",
    "GoogLeNet", "Inception", "LeNet", "NiN", "ResBlock", "Resnet", "Resnet2", "ResnetLayer", "SimpleCNN",
    "SimpleNet", "XResNet", "apply_init", "conv_bn_relu", "init_cnn", "lenet_bn", "to_channels_last", "vgg",
    "vgg11", "vgg_block", "xresnet18", "xresnet34", "xresnet50", "xresnet101", "xresnet152",
    # transfer learning
    "AdaptiveConcatPool2d", "VisionModel", "create_body", "create_head", "num_features", "vision_splitter",
    # text: ULMFiT and LSTM classifiers
    "AWD_LSTM", "EmbeddingDropout", "LSTMClassifier", "LinearDecoder", "PoolingLinearClassifier", "RNNDropout",
    "SentenceEncoder", "SequentialRNN", "WeightDropout", "awd_lstm_clas_split", "awd_lstm_classifier", "awd_lstm_lm",
    "awd_lstm_lm_split", "bilstm_classifier", "get_language_model", "get_text_classifier", "lstm_classifier_split",
    "masked_concat_pool",
    # text: the lesson-7 character models and cells
    "CellLoopModel", "Char3ConcatModel", "Char3Model", "CharLoopLastModel", "CharLoopModel", "CharRnn", "CharSeqGru",
    "CharSeqGruCell", "CharSeqLstm", "CharSeqRnn", "CharSeqRnnCell", "GRUCell", "RNNCell", "StatefulCharModel",
    "char_windows",
    # recurrent models with their hidden state as explicit inputs and outputs (ONNX/TorchScript export)
    "ExplicitState", "has_hidden_state",
]
