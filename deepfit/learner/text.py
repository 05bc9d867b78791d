"""Old home of the ULMFiT factories, kept as an alias for one release: use `deepfit.text.learner`."""

from ..text.learner import (  # noqa: F401
    RNNRegularizer,
    TextLearner,
    fit_ulmfit,
    language_model_learner,
    text_classifier_learner,
    transfer_vocab,
)
