"""Numba kernels for the TransAlign extraction (DESIGN.md "The method, exactly", steps 4-5).

Hidden states in, word links out: similarity, row and column softmax, the strict threshold
intersection (or SimAlign's argmax / itermax and mean-pooled words, `methods.py`) and the
subword -> word reduction, fused and parallel over the pairs of a batch.
Depends on numpy and numba only. The public names load on first use, so `kernels.names` (the
method names the CLI offers) can be read without compiling anything.
"""

from __future__ import annotations

from transalign.lazy import lazy_exports

__all__ = ["METHODS", "WORD_LEVELS", "Extraction", "extract_links", "extract_with", "split_links"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "METHODS": "transalign.kernels.names",
    "WORD_LEVELS": "transalign.kernels.names",
    "Extraction": "transalign.kernels.methods",
    "extract_with": "transalign.kernels.methods",
    "extract_links": "transalign.kernels.extract",
    "split_links": "transalign.kernels.extract",
})
