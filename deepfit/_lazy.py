"""Lazy re-exports for package `__init__` files (PEP 562).

A package lists which names each of its modules provides; a name is imported the first time someone asks for
it (`from deepfit import Learner`, `deepfit.Learner`). Importing a package therefore runs none of its modules,
so `import deepfit.cli` loads no torch and no package import can form a circle through an `__init__`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, list[str]]) -> tuple[Callable[[str], Any], Callable[[], list[str]],
                                                                        list[str]]:
    """`(__getattr__, __dir__, __all__)` for `package`, from `{".module": ["Name", ...]}`."""
    where = {name: module for module, names in exports.items() for name in names}
    package_globals = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        try:
            module = where[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module, package), name)
        package_globals[name] = value  # later look-ups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(package_globals) | set(where))

    return __getattr__, __dir__, sorted(where)
