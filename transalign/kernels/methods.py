"""Extraction methods beyond the reference, and per-link scores: the checked public wrapper.

One similarity matrix per pair, S = X @ Y.T in float32 (X, Y: the two sides' vectors), then a
rule that picks the linked cells (the compiled kernels are in `jit.py`):

- ``softmax`` (the reference, default): F = softmax(S, axis=1), B = softmax(S, axis=0), cell
  (i, j) linked iff F[i, j] > t and B[i, j] > t. Score of a cell: min(F[i, j], B[i, j]).
- ``argmax`` (SimAlign's ArgMax): (i, j) linked iff j is the first maximum of row i of S and
  i the first maximum of column j (ties go to the lowest index, as numpy's argmax). Score: S[i, j].
- ``itermax`` (SimAlign's IterMax, max_count 2, alpha 0.9, without distortion, exactly
  `SentenceAligner.iter_max` of cisnlp/simalign): A = the argmax links of S. If min(n, m) <= 2,
  or every row or every column has a link in A, the result is A. Otherwise, with r_i = 1 when
  row i has no link in A (else 0) and c_j likewise for columns, M[i, j] = S[i, j] *
  min(1, 0.9 r_i + 0.9 c_j) (in float64), and the result is A plus the argmax links of M whose
  row or column is free (r_i = 1 or c_j = 1). Score: S[i, j].

A row or column of S containing a NaN has no argmax (no links), as with softmax.

Word level (``word_level``):

- ``any`` (the reference): the rule runs on the subword matrix; word pair (a, b) is linked when
  any subword of a is linked with any subword of b; its score is the largest score among those
  subword cells.
- ``mean`` (SimAlign's word level): each word's vector is the mean of its subword vectors
  (float64 sum in row order divided by the count, rounded to float32); the rule runs on the
  word matrix.

The threshold is used by ``softmax`` only. Every pair is computed from its own rows alone, so
links and scores do not depend on the batch, the threads or the order of the pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from transalign.kernels.extract import as_threshold, checked_batch, extract_batch
from transalign.kernels.names import DEFAULT_METHOD, DEFAULT_WORD_LEVEL, METHODS, WORD_LEVELS


@dataclass(frozen=True)
class Extraction:
    """How links are extracted from the hidden states: method, word level, threshold, scores."""

    method: str = DEFAULT_METHOD
    word_level: str = DEFAULT_WORD_LEVEL
    threshold: float = 0.001  # softmax only
    scores: bool = False  # also compute each link's score

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method {self.method!r} is not one of {', '.join(METHODS)}")
        if self.word_level not in WORD_LEVELS:
            raise ValueError(f"word_level {self.word_level!r} is not one of {', '.join(WORD_LEVELS)}")
        object.__setattr__(self, "threshold", as_threshold(self.threshold))
        if not isinstance(self.scores, bool):
            raise ValueError(f"scores must be True or False, got {self.scores!r}")

    @property
    def is_reference(self) -> bool:
        """The reference procedure without scores: served by `extract_links` itself."""
        return self.method == "softmax" and self.word_level == "any" and not self.scores

    def label(self) -> str:
        """'softmax/any t=0.001', 'argmax/mean': the setting as tables print it."""
        name = f"{self.method}/{self.word_level}"
        return f"{name} t={self.threshold:g}" if self.method == "softmax" else name


def extract_with(hidden: np.ndarray, src_offsets: np.ndarray, src_lengths: np.ndarray,
                 tgt_offsets: np.ndarray, tgt_lengths: np.ndarray, src_word_ids: np.ndarray,
                 tgt_word_ids: np.ndarray, extraction: Extraction, *, threads: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Word links (and scores) of every pair of a batch by `extraction` (module docstring).

    Arguments as `extract_links`. Returns (pair_starts int64 [n_pairs + 1], links int32
    [n_links, 2], scores float64 [n_links] or None when extraction.scores is False); pair p's
    links are links[pair_starts[p]:pair_starts[p + 1]], distinct and sorted by (source, target),
    and scores[k] is the score of links[k]. One kernel pipeline serves every setting
    (`extract.extract_batch`), `extract_links` included.
    """
    if not isinstance(extraction, Extraction):
        raise ValueError(f"extraction must be an Extraction, got {extraction!r}")
    batch = checked_batch(hidden, src_offsets, src_lengths, tgt_offsets, tgt_lengths, src_word_ids, tgt_word_ids)
    return extract_batch(batch, METHODS.index(extraction.method), WORD_LEVELS.index(extraction.word_level),
                         extraction.threshold, extraction.scores, threads)
