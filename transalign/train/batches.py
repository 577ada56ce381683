"""Seeded batching and padding: batches never mix gold sets (one language pair per batch)."""

from __future__ import annotations

import random

import numpy as np


def epoch_batches(sets: list[list], batch_size: int, rng: random.Random) -> list[list]:
    """Shuffle each set, cut it into batches, shuffle the batch order (all from ``rng``)."""
    batches = []
    for examples in sets:
        order = list(range(len(examples)))
        rng.shuffle(order)
        batches += [[examples[k] for k in order[s:s + batch_size]] for s in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def pad(rows: list[tuple[int, ...]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask) int64 [len(rows), longest]."""
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for k, row in enumerate(rows):
        ids[k, :len(row)] = row
        mask[k, :len(row)] = 1
    return ids, mask
