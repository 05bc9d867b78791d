"""Every registered model: built with the shared keywords, forward, backward, rebuilt from its config."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from torch import nn

from deepfit.models import MODELS, TASKS, arch_names, get_model, model_config, rebuild, register, spec
from deepfit.models.registry import COMMAND_TASKS

V, N_OUT, BS = 13, 3, 4

#: the shared keywords of each task, at small sizes
SHARED: dict[str, dict] = {
    "vision": dict(c_in=2, n_out=N_OUT),
    "lm": dict(vocab_sz=V, emb_sz=6, n_hid=8, n_layers=1),
    "classifier": dict(vocab_sz=V, n_out=N_OUT),
    "next_token": dict(vocab_sz=V, emb_sz=6, n_hid=8),
    "encoder": dict(vocab_sz=V),
    "transfer": dict(c_in=2, n_out=N_OUT),
}
_AWD = dict(emb_sz=6, n_hid=8, n_layers=2)
_XRES = dict(widths=(4, 4, 8, 8), stem_widths=(4, 4, 8))
#: per-model extras that keep each one small (every registered name must appear here)
SMALL: dict[str, dict] = {
    "mlp": dict(hidden=[8], img_size=16),
    "simple_cnn": dict(width=4, hidden=8),
    "fast_cnn": dict(widths=(4, 8), n_convs=(1, 2), pool_size=2, hidden=8),
    "simple_net": dict(hidden=[8], img_size=16),
    "conv_net": dict(widths=(4, 8, 8)),
    "conv_net2": dict(widths=(4, 8, 8)),
    "conv_bn_net": dict(widths=(4, 4, 8)),
    "conv_bn_net2": dict(widths=(4, 4, 8)),
    "resnet": dict(widths=(4, 4, 8)),
    "resnet2": dict(widths=(4, 4, 8)),
    "lenet": {},
    "lenet_bn": {},
    "alexnet": dict(widths=(4, 8, 8, 8, 8), hidden=8),
    "vgg": dict(conv_arch=((1, 4), (1, 8)), hidden=8),
    "vgg11": dict(conv_arch=((1, 4), (1, 8), (2, 8)), hidden=8),
    "nin": dict(widths=(4, 8, 8)),
    "googlenet": dict(width_div=16),
    "xresnet": dict(layers=(1, 1, 1, 1), **_XRES),
    "xresnet18": _XRES,
    "xresnet34": _XRES,
    "xresnet50": _XRES,
    "xresnet101": _XRES,
    "xresnet152": _XRES,
    "vision_model": dict(body_arch="simple_cnn", arch_kwargs=dict(width=4), lin_ftrs=[8]),
    "awd_lstm": _AWD,
    "awd_lstm_lm": dict(n_layers=2),
    "awd_lstm_classifier": dict(**_AWD, bptt=4, lin_ftrs=[8]),
    "lstm_classifier": dict(emb_sz=6, n_hid=8),
    "bilstm_classifier": dict(emb_sz=6, n_hid=8),
    "char_loop": {},
    "char_rnn": {},
    "char_seq_rnn": {},
    "char_seq_rnncell": {},
    "char_seq_grucell": {},
    "char_seq_gru": {},
    "char_seq_lstm": {},
    "char3": {},
    "char3_concat": {},
    "char_loop_last": {},
}


def sample_input(task: str, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if task in ("vision", "transfer"):
        return torch.randn(BS, 2, 16, 16, generator=g)
    if task == "next_token":
        return torch.randint(0, V, (BS, 3), generator=g)
    x = torch.randint(2, V, (BS, 7), generator=g)
    x[0, -2:] = 1  # some padding (pad index 1) for the classifiers
    return x


def expected_shape(task: str) -> tuple[int, ...]:
    return {"vision": (BS, N_OUT), "transfer": (BS, N_OUT), "classifier": (BS, N_OUT), "lm": (BS, 7, V),
            "next_token": (BS, V), "encoder": (BS, 7, 6)}[task]


def build(name: str) -> nn.Module:
    return get_model(name, **{**SHARED[spec(name).task], **SMALL[name]})


def forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if hasattr(model, "reset"):
        model.reset()
    return model(x)


def test_every_registered_model_is_covered():
    assert set(SMALL) == set(MODELS), "give each registered model small test kwargs in SMALL"
    assert {spec(n).task for n in MODELS} <= set(TASKS)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_build_forward_backward_rebuild(name):
    torch.manual_seed(0)
    task = spec(name).task
    model = build(name)
    assert model.config["arch"] == name
    x = sample_input(task)
    out = forward(model.train(), x)
    assert out.shape == expected_shape(task)
    out.float().pow(2).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)

    config = json.loads(json.dumps(model.config))  # JSON-safe: what an export writes
    torch.manual_seed(1)
    rebuilt = get_model(**config)
    assert type(rebuilt) is type(model) and rebuilt.config == model.config
    rebuilt.load_state_dict(model.state_dict())
    model.eval(), rebuilt.eval()
    with torch.no_grad():
        assert torch.equal(forward(model, x), forward(rebuilt, x))
    assert type(rebuild(model)) is type(model)


def test_model_built_by_its_class_gets_its_name_from_the_registry():
    from deepfit.models import SimpleCNN, xresnet18

    cnn = SimpleCNN(c_in=1, n_out=4, width=4)
    assert "arch" not in cnn.config and model_config(cnn)["arch"] == "simple_cnn"
    xres = xresnet18(c_in=1, n_out=4, **_XRES)  # a factory: its class is registered as "xresnet"
    cfg = model_config(xres)
    assert cfg["arch"] == "xresnet" and cfg["layers"] == [2, 2, 2, 2]
    assert rebuild(xres).state_dict().keys() == xres.state_dict().keys()
    class Custom(nn.Module):
        config = {"width": 3}

    with pytest.raises(ValueError, match="not registered"):
        model_config(Custom())
    with pytest.raises(ValueError, match="not registered"):
        model_config(nn.Linear(2, 2))
    headless = SimpleCNN(c_in=1, n_out=4, width=4)
    del headless.config
    with pytest.raises(ValueError, match="no `config`"):
        model_config(headless)


def test_unknown_name_lists_the_registered_ones():
    with pytest.raises(KeyError, match="unknown architecture 'resnet9000'.*xresnet18"):
        get_model("resnet9000")


def test_arch_names_per_task_and_command():
    assert arch_names("train-vision") == arch_names("vision")
    assert "xresnet18" in arch_names("vision") and "vision_model" not in arch_names("vision")
    assert arch_names("train-lm") == sorted(n for n in MODELS if spec(n).task == "lm")
    assert {"awd_lstm_lm", "char_seq_lstm", "char_seq_gru", "char_seq_rnn"} <= set(arch_names("lm"))
    assert arch_names("train-classifier") == ["awd_lstm_classifier", "bilstm_classifier", "lstm_classifier"]
    assert set(COMMAND_TASKS.values()) <= set(TASKS)
    # every name of every command builds with that command's shared keywords
    for name in arch_names("lm"):
        assert get_model(name, **SHARED["lm"])(torch.randint(0, V, (2, 5))).shape == (2, 5, V)
    with pytest.raises(ValueError, match="unknown task"):
        arch_names("train-everything")


def test_register_rejects_duplicates_and_unknown_tasks():
    with pytest.raises(ValueError, match="already registered"):
        register("xresnet18", lambda **kw: nn.Linear(1, 1), "vision")
    with pytest.raises(ValueError, match="unknown task"):
        register("thing", lambda **kw: nn.Linear(1, 1), "tabular")


def test_old_keyword_names_still_build_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match="'n_class' is now 'n_out'"):
        clf = get_model("lstm_classifier", vocab_sz=V, n_class=2, emb_sz=4, n_hid=4)
    assert clf.config["n_out"] == 2 and "n_class" not in clf.config
    with pytest.warns(DeprecationWarning) as caught:
        lm = get_model("char_seq_gru", vocab_size=V, n_fac=4, n_hidden=8)
    assert {str(w.message).split("keyword ")[1] for w in caught} == {
        "'vocab_size' is now 'vocab_sz'", "'n_fac' is now 'emb_sz'", "'n_hidden' is now 'n_hid'"}
    assert (lm.config["vocab_sz"], lm.config["emb_sz"], lm.config["n_hid"]) == (V, 4, 8)
    with pytest.warns(DeprecationWarning, match="n_in=N is now c_in=N, img_size=1"):
        mlp = get_model("mlp", n_in=6, hidden=[4], n_out=2)
    assert mlp(torch.randn(3, 6)).shape == (3, 2)
    with pytest.raises(TypeError, match="both 'n_class' and 'n_out'"):
        get_model("lstm_classifier", vocab_sz=V, n_class=2, n_out=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        get_model("lstm_classifier", vocab_sz=V, n_out=2, emb_sz=4, n_hid=4)  # today's names: no warning


def test_xresnet_reads_the_notes_c_out_with_a_warning():
    from deepfit.models import xresnet18

    with pytest.warns(DeprecationWarning, match="c_out"):
        model = xresnet18(c_in=1, c_out=7, **_XRES)
    assert model.config["n_out"] == 7 and model[-1].out_features == 7
    with pytest.warns(DeprecationWarning, match="c_out"):
        assert get_model("xresnet34", c_in=1, c_out=5, **_XRES).config["n_out"] == 5
    with pytest.raises(TypeError, match="c_out"):
        xresnet18(c_out=7, n_out=7)


def test_exports_of_earlier_releases_still_rebuild():
    """learner.json of earlier releases kept the body/encoder architecture as an "arch" among the kwargs."""
    from deepfit.models.registry import upgrade_kwargs

    old_vision = {"arch": "simple_cnn", "n_out": 3, "c_in": 1, "arch_kwargs": {"width": 4}, "lin_ftrs": [8]}
    model = get_model("vision_model", **upgrade_kwargs("vision_model", old_vision))
    assert model.config["body_arch"] == "simple_cnn" and model(torch.randn(2, 1, 16, 16)).shape == (2, 3)
    old_lm = {"arch": "awd_lstm", "vocab_sz": V, "drop_mult": 1.0, **_AWD}
    lm = get_model("awd_lstm_lm", **upgrade_kwargs("awd_lstm_lm", old_lm))
    assert lm.config["arch"] == "awd_lstm_lm" and lm(torch.randint(0, V, (2, 5))).shape == (2, 5, V)
    with pytest.warns(DeprecationWarning):
        old_clf = upgrade_kwargs("lstm_classifier", {"vocab_sz": V, "n_class": 2, "emb_sz": 4, "n_hid": 4})
    assert get_model("lstm_classifier", **old_clf).config["n_out"] == 2


def test_summaries_are_one_sentence():
    assert spec("xresnet18").summary == "XResNet-18: basic blocks, [2, 2, 2, 2]."
    for name in MODELS:
        summary = spec(name).summary
        assert summary and "\n" not in summary, name
