"""`Hook` and `Hooks`: PyTorch forward/backward hooks that are always removed.

A `Hook` registers a function on a module and keeps what the function returns in `hook.stored`.
Use it as a context manager: the hook is removed on exit, also when the block raises.

    with hook_outputs(model.features) as hooks:
        model(xb)
    shapes = [o.shape for o in hooks.stored]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from torch import Tensor, nn

HookFunc = Callable[["Hook", nn.Module, Any, Any], Any]


def _detach(o: Any, cpu: bool = False) -> Any:
    if isinstance(o, Tensor):
        o = o.detach()
        return o.cpu() if cpu else o
    if isinstance(o, (tuple, list)):
        return type(o)(_detach(x, cpu) for x in o)
    return o


class Hook:
    """Calls `fn(hook, module, input, output)` on every forward of `module` and stores its result.

    With `forward=False` it is a backward hook and `fn(hook, module, grad_input, grad_output)` is
    called when gradients reach the module (`register_full_backward_hook`; PyTorch refuses these
    when an in-place operation modifies the module's output, e.g. `ReLU(inplace=True)` right after it).
    Inputs and outputs are detached (and moved to the CPU with `cpu=True`) before `fn` sees them.
    """

    def __init__(self, module: nn.Module, fn: HookFunc, forward: bool = True, detach: bool = True,
                 cpu: bool = False):
        if not isinstance(module, nn.Module):
            raise TypeError(f"Hook needs an nn.Module, got {type(module).__name__}")
        self.module, self.fn, self.forward = module, fn, forward
        self.detach, self.cpu = detach, cpu
        self.stored: Any = None
        self.calls = 0
        if forward:
            self._handle = module.register_forward_hook(self._hook)
        else:
            self._handle = module.register_full_backward_hook(self._hook)
        self.removed = False

    def _hook(self, module: nn.Module, inp: Any, out: Any) -> None:
        if self.detach:
            inp, out = _detach(inp, self.cpu), _detach(out, self.cpu)
        self.calls += 1
        self.stored = self.fn(self, module, inp, out)

    def remove(self) -> None:
        """Unregister the hook (safe to call twice)."""
        if not self.removed:
            self._handle.remove()
            self.removed = True

    def __enter__(self) -> Hook:
        return self

    def __exit__(self, *exc_info) -> None:
        self.remove()

    def __repr__(self) -> str:
        kind = "forward" if self.forward else "backward"
        state = "removed" if self.removed else "active"
        return f"Hook({type(self.module).__name__}, {kind}, {state})"


class Hooks:
    """One `Hook` per module, removed together (on `remove()` or on leaving a `with` block)."""

    def __init__(self, modules: Iterable[nn.Module], fn: HookFunc, forward: bool = True, detach: bool = True,
                 cpu: bool = False):
        self.hooks: list[Hook] = []
        try:
            for m in modules:
                self.hooks.append(Hook(m, fn, forward=forward, detach=detach, cpu=cpu))
        except BaseException:
            self.remove()
            raise

    @property
    def stored(self) -> list[Any]:
        """What each hook's function last returned, in module order."""
        return [h.stored for h in self.hooks]

    def remove(self) -> None:
        for h in self.hooks:
            h.remove()

    def __getitem__(self, i: int) -> Hook:
        return self.hooks[i]

    def __len__(self) -> int:
        return len(self.hooks)

    def __iter__(self) -> Iterator[Hook]:
        return iter(self.hooks)

    def __enter__(self) -> Hooks:
        return self

    def __exit__(self, *exc_info) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"Hooks({len(self.hooks)} modules)"


def _store_output(hook: Hook, module: nn.Module, inp: Any, out: Any) -> Any:
    return out


def _store_grad_output(hook: Hook, module: nn.Module, grad_in: Any, grad_out: Any) -> Any:
    return grad_out[0] if isinstance(grad_out, tuple) and len(grad_out) == 1 else grad_out


def hook_output(module: nn.Module, grad: bool = False, detach: bool = True, cpu: bool = False) -> Hook:
    """A `Hook` keeping `module`'s last output (or, with `grad=True`, the gradient of its output)."""
    if grad:
        return Hook(module, _store_grad_output, forward=False, detach=detach, cpu=cpu)
    return Hook(module, _store_output, detach=detach, cpu=cpu)


def hook_outputs(modules: Iterable[nn.Module], grad: bool = False, detach: bool = True, cpu: bool = False) -> Hooks:
    """`Hooks` keeping the last output (or output gradient) of each module."""
    fn = _store_grad_output if grad else _store_output
    return Hooks(modules, fn, forward=not grad, detach=detach, cpu=cpu)


def active_hook_count(model: nn.Module) -> int:
    """Number of forward and backward hooks currently registered on `model` and its submodules."""
    return sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules())
