import pytest
import torch
from torch import nn

from deepfit.interpret import Hook, Hooks, hook_output, hook_outputs
from deepfit.interpret.hooks import active_hook_count


def small_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))


def test_hook_output_stores_forward_output_and_is_removed():
    model = small_model()
    x = torch.randn(5, 4)
    with hook_output(model[0]) as h:
        model(x)
        assert active_hook_count(model) == 1
    assert torch.allclose(h.stored, model[0](x))
    assert not h.stored.requires_grad
    assert h.removed and active_hook_count(model) == 0
    model(x)  # no longer recorded
    assert h.calls == 1


def test_hooks_removed_after_exception_inside_with():
    model = small_model()
    with pytest.raises(RuntimeError, match="boom"):
        with hook_outputs(list(model)) as hooks:
            model(torch.randn(2, 4))
            assert active_hook_count(model) == 3
            raise RuntimeError("boom")
    assert active_hook_count(model) == 0
    assert all(h.removed for h in hooks)
    with pytest.raises(ValueError):
        with Hook(model[0], lambda h, m, i, o: o.shape):
            raise ValueError("inside a single Hook")
    assert active_hook_count(model) == 0


def test_hooks_constructor_failure_removes_registered_hooks():
    model = small_model()
    with pytest.raises(TypeError, match="nn.Module"):
        Hooks([model[0], model[1], "not a module"], lambda h, m, i, o: None)
    assert active_hook_count(model) == 0


def test_hooks_store_function_results_in_module_order():
    model = small_model()
    with Hooks(model, lambda h, m, i, o: (type(m).__name__, tuple(o.shape))) as hooks:
        model(torch.randn(7, 4))
    assert hooks.stored == [("Linear", (7, 6)), ("Tanh", (7, 6)), ("Linear", (7, 3))]
    assert len(hooks) == 3 and hooks[1].module is model[1]


def test_backward_hook_gets_output_gradient():
    model = small_model()
    x = torch.randn(5, 4)
    with hook_output(model[1], grad=True) as h:
        out = model(x)
        out.sum().backward()
    hidden = model[1](model[0](x)).detach().requires_grad_(True)
    (expected,) = torch.autograd.grad(model[2](hidden).sum(), hidden)
    assert torch.allclose(h.stored, expected)
    assert active_hook_count(model) == 0
