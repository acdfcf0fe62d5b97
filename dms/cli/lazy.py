"""Modules the CLI loads on first use, so that `nunet --help` does not pay for rich, http.client or pydantic.

`importlib.util.LazyLoader` (standard library) puts a module in `sys.modules` whose body runs on the first
attribute access. The CLI's command modules bind their heavy helpers this way and import them normally only
for the type checker.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_module(name: str) -> ModuleType:
    """`name`, imported when one of its attributes is first used (at once if it is already imported)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"no module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
