"""Numba kernels for the TransAlign extraction (DESIGN.md "The method, exactly", steps 4-5).

Hidden states in, word links out: similarity, row and column softmax, the strict threshold
intersection (or SimAlign's argmax / itermax and mean-pooled words, `methods.py`) and the
subword -> word reduction, fused and parallel over the pairs of a batch.
Depends on numpy and numba only.
"""

from transalign.kernels.extract import extract_links, split_links
from transalign.kernels.methods import METHODS, WORD_LEVELS, Extraction, extract_with

__all__ = ["METHODS", "WORD_LEVELS", "Extraction", "extract_links", "extract_with", "split_links"]
