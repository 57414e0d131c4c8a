"""Modules loaded on first use.

`flowlens --help` must answer at once and `flowlens tail` from a relay must not carry pandas:
a module names what it needs with `lazy("pandas")`, and the import happens when an attribute of
it is first read (for type checkers the same names are plain imports under TYPE_CHECKING).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class _LazyModule(ModuleType):
    def __getattr__(self, attr: str) -> Any:
        value = getattr(importlib.import_module(self.__name__), attr)
        setattr(self, attr, value)  # found by normal lookup from now on
        return value


def lazy(name: str) -> Any:
    """The module `name`, imported when one of its attributes is first read."""
    return _LazyModule(name)
