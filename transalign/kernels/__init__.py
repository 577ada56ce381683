"""Numba kernels for the TransAlign extraction (DESIGN.md "The method, exactly", steps 4-5).

Hidden states in, word links out: similarity, row and column softmax, the strict threshold
intersection (or SimAlign's argmax / itermax and mean-pooled words, `methods.py`) and the
subword -> word reduction, fused and parallel over the pairs of a batch.
Depends on numpy and numba only. The public names load on first use, so `kernels.names` (the
method names the CLI offers) can be read without compiling anything.
"""

from __future__ import annotations

import importlib

__all__ = ["METHODS", "WORD_LEVELS", "Extraction", "extract_links", "extract_with", "split_links"]

_HOMES = {"METHODS": "names", "WORD_LEVELS": "names", "Extraction": "methods", "extract_with": "methods",
          "extract_links": "extract", "split_links": "extract"}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f"transalign.kernels.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'transalign.kernels' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
