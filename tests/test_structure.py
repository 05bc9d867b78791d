"""The package's shape: imports point downward, no circles, every module imports alone, one default per option."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import textwrap

import pytest

from tests.helpers.import_graph import (
    PACKAGE_ROOT,
    all_modules,
    cycles,
    every_import,
    function_body_imports,
    import_graph,
)

# Lowest first. A module may import its own layer or lower ones; the longest matching prefix decides.
LAYERS: list[tuple[str, ...]] = [
    ("deepfit", "deepfit._lazy", "deepfit.distributed", "deepfit.safe_io", "deepfit.rng", "deepfit.plotting",
     "deepfit.threads", "deepfit.progress", "deepfit.learner.events"),
    ("deepfit.data",),
    ("deepfit.models",),
    ("deepfit.text", "deepfit.interpret", "deepfit.inference", "deepfit.export_spec"),
    ("deepfit.learner",),
    ("deepfit.text.learner", "deepfit.recipes"),
    ("deepfit.run",),
    ("deepfit.commands",),
    ("deepfit.cli", "deepfit.__main__"),
]
# Old import paths kept for one release; each points upward on purpose.
ALIASES = {("deepfit.learner.text", "deepfit.text.learner")}


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = i, len(prefix)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best


def test_no_import_circle():
    assert cycles(import_graph()) == []


def test_imports_point_downward():
    upward = [f"{m} -> {t}" for m, targets in every_import().items() for t in targets
              if layer_of(t) > layer_of(m) and (m, t) not in ALIASES]
    assert upward == []


def test_every_module_imports_alone():
    """Each module imports first in a clean deepfit (torch stays loaded: only deepfit's order matters)."""
    names = sorted(all_modules())
    script = textwrap.dedent(f"""
        import importlib, sys, traceback
        import torch  # noqa: F401  (kept across modules: circles are a matter of deepfit's own order)
        failed = []
        for name in {names!r}:
            for loaded in [m for m in sys.modules if m == "deepfit" or m.startswith("deepfit.")]:
                del sys.modules[loaded]
            try:
                importlib.import_module(name)
            except Exception:
                failed.append(name + ": " + traceback.format_exc().strip().splitlines()[-1])
        print("\\n".join(failed))
        sys.exit(1 if failed else 0)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]


def test_learner_module_imports_at_the_top():
    assert function_body_imports(PACKAGE_ROOT / "learner" / "learner.py") == []


def test_importing_the_package_runs_no_module():
    script = ("import sys, deepfit; loaded = sorted(m for m in sys.modules if m.startswith('deepfit.'));"
              "assert loaded == ['deepfit._lazy'], loaded; assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)


def test_lazy_exports_resolve():
    import deepfit
    import deepfit.data
    import deepfit.interpret
    import deepfit.learner
    import deepfit.learner.callbacks
    import deepfit.text

    for package in (deepfit, deepfit.data, deepfit.interpret, deepfit.learner, deepfit.learner.callbacks,
                    deepfit.text):
        for name in package.__all__:
            assert getattr(package, name) is not None, f"{package.__name__}.{name}"
        assert set(package.__all__) <= set(dir(package))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        deepfit.nope  # noqa: B018


def _forwarding_pairs():
    from deepfit.interpret.summary import summary
    from deepfit.learner import checkpoint, export, freeze, learner, tta
    from deepfit.learner.callbacks import lr_finder, schedule
    from deepfit.learner.distributed import distrib_ctx

    L = learner.Learner
    return [
        (L.fit_one_cycle, schedule.fit_one_cycle), (L.fit_flat_cos, schedule.fit_flat_cos),
        (L.fit_sgdr, schedule.fit_sgdr), (L.lr_find, lr_finder.lr_find), (L.freeze_to, freeze.freeze_to),
        (L.tta, tta.tta), (L.save, checkpoint.save_checkpoint), (L.load, checkpoint.load_checkpoint),
        (L.export, export.export_learner), (L.to_onnx, export.to_onnx),
        (L.to_torchscript, export.to_torchscript), (L.distrib_ctx, distrib_ctx), (L.summary, summary),
    ]


@pytest.mark.parametrize("method,function", _forwarding_pairs(), ids=lambda f: getattr(f, "__qualname__", "?"))
def test_forwarding_methods_write_each_default_once(method, function):
    """A Learner method that forwards to a function takes the same parameters with the same defaults."""
    ours = list(inspect.signature(method).parameters.values())[1:]  # without self
    theirs = list(inspect.signature(function).parameters.values())[1:]  # without learn
    theirs_by_name = {p.name: p for p in theirs}
    for p in ours:
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        assert p.name in theirs_by_name, f"{method.__qualname__}: {p.name} is not a parameter of {function.__name__}"
        assert p.default == theirs_by_name[p.name].default, (
            f"{method.__qualname__}({p.name}={p.default!r}) but {function.__name__}({p.name}="
            f"{theirs_by_name[p.name].default!r})")


def test_test_helpers_live_in_tests_helpers():
    """Modules that tests import are in tests/helpers/; no test imports from a conftest."""
    tests_root = PACKAGE_ROOT.parent / "tests"
    stray = [str(p.relative_to(tests_root)) for p in tests_root.rglob("*.py")
             if p.parent.name != "helpers" and not p.name.startswith("test_")
             and p.name not in ("conftest.py", "__init__.py")]
    assert stray == []
    importing_conftest = [str(p.relative_to(tests_root)) for p in tests_root.rglob("*.py")
                          if re.search(r"^\s*from\s+(tests\.|\.+)([\w.]*\.)?conftest\s+import", p.read_text(), re.M)]
    assert importing_conftest == []
