"""Length-sorted, token-budget batching of token sequences.

Sequences are sorted by length (longest first, so the largest batch is met early) and greedily
packed while ``batch_size * longest_length <= batch_tokens``; padded tokens are what the encoder
really computes, so the budget bounds memory and keeps batches equally expensive. One path
serves one sequence and millions: a batch is just a list of sequence indices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BatchPlan:
    batches: list[np.ndarray]  # sequence indices per batch, longest first within each
    real_tokens: int
    padded_tokens: int  # AlignStats.padding_waste reports the share of padding


def plan_batches(lengths: np.ndarray, batch_tokens: int) -> BatchPlan:
    """Sort by length and pack greedily under a padded-token budget.

    A sequence longer than the budget still gets a batch of its own (never dropped).
    """
    if batch_tokens < 1:
        raise ValueError(f"batch_tokens must be >= 1, got {batch_tokens}")
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    batches, start, padded = [], 0, 0
    n = len(order)
    while start < n:
        longest = int(lengths[order[start]])
        size = max(1, batch_tokens // max(longest, 1))
        stop = min(n, start + size)
        batches.append(order[start:stop])
        padded += (stop - start) * longest
        start = stop
    return BatchPlan(batches, int(lengths.sum()), padded)
