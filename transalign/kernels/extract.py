"""Word links of a whole batch of sentence pairs: a checked wrapper over two kernels.

The engine packs the content rows (language code and </s> dropped) of every sentence of a
batch into one float32 array; pair p is described by row offsets and lengths of its two
sides. All pairs are processed at once, in two passes:

1. `_word_matrices`, parallel over pairs (prange): scores, both softmaxes, the threshold
   intersection and the subword -> word reduction into the pair's own slice of a scratch
   buffer (a small word matrix); the number of distinct word links per pair;
2. `_gather_links`: a prefix sum of the counts gives each pair a disjoint slice of the
   output, filled from the word matrices (no second GEMM, no Python loop per pair).

The wrapper normalises every argument to one dtype/layout (float32 C-contiguous hidden,
int64 everything else, float64 threshold) so numba compiles exactly one specialisation.
No `cache=True`: on-disk caching of `parallel=True` kernels has crashed when the thread count
changed between runs (STYLE.md).
"""

from __future__ import annotations

import numbers

import numpy as np
from numba import njit, prange

from transalign.kernels.pair import _emit_links, _pair_word_matrix

_INT32_MAX = np.iinfo(np.int32).max


@njit(parallel=True)
def _word_matrices(hidden, src_offsets, src_lengths, tgt_offsets, tgt_lengths, src_word_ids, tgt_word_ids,
                   threshold, scratch_starts, scratch, counts):
    """Pass 1, parallel over pairs: each pair's word matrix and its number of word links.

    Only the prange loop lives in this function: everything else a parallel function holds
    goes through numba's parfor analysis too and costs compile time at every CLI start.
    """
    for p in prange(src_offsets.shape[0]):
        n = src_lengths[p]
        m = tgt_lengths[p]
        if n == 0 or m == 0:
            counts[p] = 0
            continue
        s0 = src_offsets[p]
        t0 = tgt_offsets[p]
        counts[p] = _pair_word_matrix(hidden[s0:s0 + n], hidden[t0:t0 + m], src_word_ids[s0:s0 + n],
                                      tgt_word_ids[t0:t0 + m], threshold,
                                      scratch[scratch_starts[p]:scratch_starts[p + 1]])


@njit
def _gather_links(src_offsets, src_lengths, tgt_offsets, tgt_lengths, src_word_ids, tgt_word_ids,
                  scratch_starts, scratch, counts):
    """Pass 2: a prefix sum of the counts, then each pair's links copied out of its matrix.

    Serial: this is a cheap scan of at most n x m bytes per pair, far below the cost of the
    scores, and a prange loop here would cost more compile time than it saves at run time.
    """
    n_pairs = src_offsets.shape[0]
    pair_starts = np.zeros(n_pairs + 1, dtype=np.int64)
    for p in range(n_pairs):
        pair_starts[p + 1] = pair_starts[p] + counts[p]
    links = np.empty((pair_starts[n_pairs], 2), dtype=np.int32)
    for p in range(n_pairs):
        if counts[p] == 0:
            continue
        s0 = src_offsets[p]
        t0 = tgt_offsets[p]
        _emit_links(src_word_ids[s0:s0 + src_lengths[p]], tgt_word_ids[t0:t0 + tgt_lengths[p]],
                    scratch[scratch_starts[p]:scratch_starts[p + 1]], links[pair_starts[p]:pair_starts[p + 1]])
    return pair_starts, links


def extract_links(hidden: np.ndarray, src_offsets: np.ndarray, src_lengths: np.ndarray,
                  tgt_offsets: np.ndarray, tgt_lengths: np.ndarray,
                  src_word_ids: np.ndarray, tgt_word_ids: np.ndarray,
                  threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """TransAlign word links of every pair of a batch (DESIGN.md "The method, exactly", 4-5).

    hidden: [rows, d] subword vectors of all sentences, packed row-wise (float32; float16 and
        float64 are converted to float32, the precision of the reference's similarity).
    src_offsets, src_lengths, tgt_offsets, tgt_lengths: int [n_pairs]; pair p's source rows
        are hidden[src_offsets[p] : src_offsets[p] + src_lengths[p]], its target rows likewise.
        A length may be 0: such a pair has no links.
    src_word_ids, tgt_word_ids: int [rows], the word index (within its sentence) of each row;
        the engine passes the same array twice.
    threshold: t in [0, 1); subword pair (i, j) is aligned iff F[i, j] > t and B[i, j] > t.

    Returns (pair_starts int64 [n_pairs + 1], links int32 [n_links, 2]): the (source word,
    target word) links of pair p are links[pair_starts[p]:pair_starts[p + 1]], distinct and
    sorted by (source, target).
    """
    hidden = _as_hidden(hidden)
    rows = hidden.shape[0]
    src_offsets = _as_index("src_offsets", src_offsets)
    n_pairs = src_offsets.shape[0]
    src_lengths = _as_index("src_lengths", src_lengths, n_pairs)
    tgt_offsets = _as_index("tgt_offsets", tgt_offsets, n_pairs)
    tgt_lengths = _as_index("tgt_lengths", tgt_lengths, n_pairs)
    _check_spans("src", src_offsets, src_lengths, rows)
    _check_spans("tgt", tgt_offsets, tgt_lengths, rows)
    src_word_ids = _as_word_ids("src_word_ids", src_word_ids, rows)
    tgt_word_ids = _as_word_ids("tgt_word_ids", tgt_word_ids, rows)
    threshold = _as_threshold(threshold)
    if n_pairs == 0:
        return np.zeros(1, dtype=np.int64), np.empty((0, 2), dtype=np.int32)
    # A pair has at most n_src x n_tgt distinct word links: that bounds its word matrix.
    scratch_starts = np.zeros(n_pairs + 1, dtype=np.int64)
    np.cumsum(src_lengths * tgt_lengths, out=scratch_starts[1:])
    scratch = np.empty(int(scratch_starts[-1]), dtype=np.uint8)
    counts = np.empty(n_pairs, dtype=np.int64)
    _word_matrices(hidden, src_offsets, src_lengths, tgt_offsets, tgt_lengths, src_word_ids, tgt_word_ids,
                   threshold, scratch_starts, scratch, counts)
    return _gather_links(src_offsets, src_lengths, tgt_offsets, tgt_lengths, src_word_ids, tgt_word_ids,
                         scratch_starts, scratch, counts)


def split_links(pair_starts: np.ndarray, links: np.ndarray) -> list[list[tuple[int, int]]]:
    """The output of `extract_links` as one list of (source word, target word) tuples per pair."""
    pair_starts = np.asarray(pair_starts)
    links = np.asarray(links)
    if pair_starts.ndim != 1 or pair_starts.shape[0] < 1 or pair_starts[0] != 0 \
            or pair_starts[-1] != links.shape[0] or np.any(np.diff(pair_starts) < 0):
        raise ValueError(f"pair_starts must rise from 0 to len(links) = {links.shape[0]}, got {pair_starts!r}")
    if links.ndim != 2 or links.shape[1] != 2:
        raise ValueError(f"links must have shape [n_links, 2], got {links.shape}")
    rows = [tuple(link) for link in links.tolist()]
    bounds = pair_starts.tolist()
    return [rows[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


# ---- argument checks: specific messages naming the argument and the bad value ----

def _as_hidden(hidden) -> np.ndarray:
    hidden = np.asarray(hidden)
    if hidden.ndim != 2:
        raise ValueError(f"hidden must be a 2-D [rows, d] array, got shape {hidden.shape}")
    if hidden.dtype not in (np.float16, np.float32, np.float64):
        raise ValueError(f"hidden must be float16, float32 or float64, got {hidden.dtype}")
    return np.ascontiguousarray(hidden, dtype=np.float32)


def _as_index(name: str, values, n_pairs: int | None = None) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 1:
        raise ValueError(f"{name} must be 1-D [n_pairs], got shape {values.shape}")
    if values.size and values.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers, got {values.dtype}")
    if n_pairs is not None and values.shape[0] != n_pairs:
        raise ValueError(f"{name} has {values.shape[0]} entries but src_offsets has {n_pairs}")
    if values.size and values.min() < 0:
        p = int(np.argmin(values))
        raise ValueError(f"{name}[{p}] = {values[p]} is negative")
    return np.ascontiguousarray(values, dtype=np.int64)


def _check_spans(side: str, offsets: np.ndarray, lengths: np.ndarray, rows: int) -> None:
    ends = offsets + lengths
    if ends.size and ends.max() > rows:
        p = int(np.argmax(ends))
        raise ValueError(f"{side}_offsets[{p}] + {side}_lengths[{p}] = {offsets[p]} + {lengths[p]} = {ends[p]} "
                         f"is past the {rows} rows of hidden")


def _as_word_ids(name: str, values, rows: int) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 1 or values.shape[0] != rows:
        raise ValueError(f"{name} must be 1-D with one entry per row of hidden ({rows}), got shape {values.shape}")
    if values.size and values.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers, got {values.dtype}")
    if values.size:
        low, high = values.min(), values.max()
        if low < 0:
            row = int(np.argmin(values))
            raise ValueError(f"{name}[{row}] = {low} is negative; word ids must be >= 0 (drop special tokens)")
        if high > _INT32_MAX:
            row = int(np.argmax(values))
            raise ValueError(f"{name}[{row}] = {high} does not fit the int32 links")
    return np.ascontiguousarray(values, dtype=np.int64)


def _as_threshold(threshold) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise ValueError(f"threshold must be a real number in [0, 1), got {threshold!r}")
    value = float(threshold)
    if not (0.0 <= value < 1.0):  # also rejects nan
        raise ValueError(f"threshold must be finite and in [0, 1), got {threshold!r}")
    return value
