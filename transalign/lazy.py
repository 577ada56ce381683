"""Public names of a package that load on first use (PEP 562 module ``__getattr__``).

Several packages (``transalign``, ``transalign.corpus``, ``transalign.train``, ...) offer names
whose homes import heavy dependencies (torch, pyarrow, ray, numba). Importing the package must
stay cheap, so each package maps its public names to their home modules and gets its
``__getattr__`` / ``__dir__`` from `lazy_exports`. Standard library only.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping


def lazy_exports(package: str, homes: Mapping[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``homes`` maps each public name to the module
    (full dotted path) that defines it; that module is imported when the name is first read."""

    def __getattr__(name: str):
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(home), name)

    def __dir__() -> list[str]:
        """The package's own names and the lazy ones (not in its dict until first read)."""
        return sorted(set(vars(sys.modules[package])) | set(homes))

    return __getattr__, __dir__
