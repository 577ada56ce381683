"""Word links of a whole batch of sentence pairs: the checked public wrapper.

The engine packs the content rows (language code and </s> dropped) of every sentence of a
batch into one float32 array; pair p is described by row offsets and lengths of its two
sides. All pairs are processed at once, in two passes (kernels in `jit.py`):

1. `_method_matrices`, parallel over pairs: scores, both softmaxes, the threshold
   intersection (or another method of `methods.py`) and the subword -> word reduction into the
   pair's own slice of a scratch buffer (a small word matrix), plus the pair's number of
   distinct word links. The pairs are cut into
   contiguous ranges of about equal work, run by a thread pool; the kernel releases the GIL,
   so the ranges run truly in parallel, each writing only its own pairs' outputs.
2. `_gather_links`: a prefix sum of the counts gives each pair a disjoint slice of the
   output, filled from the word matrices (no second GEMM, no Python loop per pair).

The wrapper normalises every argument to one dtype/layout so numba compiles (and caches) a
single specialisation of each kernel.
"""

from __future__ import annotations

import numbers
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numba
import numpy as np

from transalign.kernels.jit import ANY, SOFTMAX, _gather_links, _gather_scores, _method_matrices

_INT32_MAX = np.iinfo(np.int32).max
# Below this many multiply-adds a batch runs on the calling thread: starting threads would
# cost more than it saves (~0.1 ms of work).
_MIN_PARALLEL_WORK = 1 << 22
# Ranges per thread: more, smaller ranges let an idle thread take over from a slow one.
_RANGES_PER_THREAD = 4


def extract_links(hidden: np.ndarray, src_offsets: np.ndarray, src_lengths: np.ndarray,
                  tgt_offsets: np.ndarray, tgt_lengths: np.ndarray,
                  src_word_ids: np.ndarray, tgt_word_ids: np.ndarray,
                  threshold: float, *, threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """TransAlign word links of every pair of a batch (DESIGN.md "The method, exactly", 4-5).

    hidden: [rows, d] subword vectors of all sentences, packed row-wise (float32; float16 and
        float64 are converted to float32, the precision of the reference's similarity).
    src_offsets, src_lengths, tgt_offsets, tgt_lengths: int [n_pairs]; pair p's source rows
        are hidden[src_offsets[p] : src_offsets[p] + src_lengths[p]], its target rows likewise.
        A length may be 0: such a pair has no links.
    src_word_ids, tgt_word_ids: int [rows], the word index (within its sentence) of each row;
        the engine passes the same array twice.
    threshold: t in [0, 1); subword pair (i, j) is aligned iff F[i, j] > t and B[i, j] > t.
    threads: how many pairs run at once; default numba's thread count (NUMBA_NUM_THREADS,
        else the number of CPUs).

    Returns (pair_starts int64 [n_pairs + 1], links int32 [n_links, 2]): the (source word,
    target word) links of pair p are links[pair_starts[p]:pair_starts[p + 1]], distinct and
    sorted by (source, target).
    """
    batch = checked_batch(hidden, src_offsets, src_lengths, tgt_offsets, tgt_lengths, src_word_ids, tgt_word_ids)
    pair_starts, links, _ = extract_batch(batch, SOFTMAX, ANY, as_threshold(threshold), False, threads)
    return pair_starts, links


def extract_batch(batch: "CheckedBatch", method: int, word_level: int, threshold: float, want_scores: bool,
                  threads: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The one extraction pipeline (both passes of the module docstring) for every method:
    (pair_starts, links, scores or None). ``method`` / ``word_level``: the kernels' integer codes."""
    if batch.n_pairs == 0:
        return np.zeros(1, dtype=np.int64), np.empty((0, 2), dtype=np.int32), np.empty(0) if want_scores else None
    threads = _as_threads(threads)
    cells, scratch_starts = scratch_layout(batch)
    scratch = np.empty(int(scratch_starts[-1]), dtype=np.uint8)
    score_scratch = np.empty(int(scratch_starts[-1]) if want_scores else 0)
    counts = np.empty(batch.n_pairs, dtype=np.int64)
    run_over_pairs(_method_matrices, batch, cells, threads,
                   (*batch, method, word_level, threshold, want_scores, scratch_starts, scratch, score_scratch, counts))
    pair_starts, links = _gather_links(*batch.spans, scratch_starts, scratch, counts)
    if not want_scores:
        return pair_starts, links, None
    scores = np.empty(links.shape[0])
    _gather_scores(*batch.spans, scratch_starts, scratch, score_scratch, pair_starts, scores)
    return pair_starts, links, scores


class CheckedBatch(NamedTuple):
    """The arguments of `extract_links` / `extract_with`, checked and normalised to the one
    dtype/layout each kernel is compiled for; in the kernels' argument order."""

    hidden: np.ndarray  # float32 [rows, d], C-contiguous
    src_offsets: np.ndarray  # int64 [n_pairs]
    src_lengths: np.ndarray
    tgt_offsets: np.ndarray
    tgt_lengths: np.ndarray
    src_word_ids: np.ndarray  # int64 [rows]
    tgt_word_ids: np.ndarray

    @property
    def n_pairs(self) -> int:
        return self.src_offsets.shape[0]

    @property
    def spans(self) -> tuple[np.ndarray, ...]:
        """Everything but ``hidden``: what the gathering kernels take."""
        return tuple(self)[1:]


def checked_batch(hidden, src_offsets, src_lengths, tgt_offsets, tgt_lengths, src_word_ids,
                  tgt_word_ids) -> CheckedBatch:
    """The batch's arrays checked (a ValueError names the argument and the bad value) and converted."""
    hidden = _as_hidden(hidden)
    rows = hidden.shape[0]
    src_offsets = _as_index("src_offsets", src_offsets)
    n_pairs = src_offsets.shape[0]
    src_lengths = _as_index("src_lengths", src_lengths, n_pairs)
    tgt_offsets = _as_index("tgt_offsets", tgt_offsets, n_pairs)
    tgt_lengths = _as_index("tgt_lengths", tgt_lengths, n_pairs)
    _check_spans("src", src_offsets, src_lengths, rows)
    _check_spans("tgt", tgt_offsets, tgt_lengths, rows)
    return CheckedBatch(hidden, src_offsets, src_lengths, tgt_offsets, tgt_lengths,
                        _as_word_ids("src_word_ids", src_word_ids, rows), _as_word_ids("tgt_word_ids", tgt_word_ids, rows))


def scratch_layout(batch: CheckedBatch) -> tuple[np.ndarray, np.ndarray]:
    """(cells, scratch_starts): a pair has at most n_src x n_tgt distinct word links (words <=
    subwords), which bounds its word matrix; pair p's matrix is scratch[starts[p]:starts[p + 1]]."""
    cells = batch.src_lengths * batch.tgt_lengths
    scratch_starts = np.zeros(batch.n_pairs + 1, dtype=np.int64)
    np.cumsum(cells, out=scratch_starts[1:])
    return cells, scratch_starts


def run_over_pairs(kernel, batch: CheckedBatch, cells: np.ndarray, threads: int, args: tuple) -> None:
    """``kernel(first, stop, *args)`` over all pairs: on this thread for a small batch, else on
    ranges of about equal work in a thread pool (the kernels release the GIL)."""
    n_pairs = batch.n_pairs
    ranges = _balanced_ranges(cells * (batch.hidden.shape[1] + 16), threads)
    if len(ranges) == 1:
        kernel(0, n_pairs, *args)
        return
    if not kernel.signatures:
        kernel(0, 0, *args)  # compile / load from cache once, before the threads race to
    with ThreadPoolExecutor(min(threads, len(ranges))) as pool:
        for _ in pool.map(lambda r: kernel(r[0], r[1], *args), ranges):
            pass  # re-raises a worker's exception here


def _balanced_ranges(work: np.ndarray, threads: int) -> list[tuple[int, int]]:
    """Contiguous [first, stop) ranges of pairs covering all pairs, of about equal total work."""
    n_pairs = work.shape[0]
    total = int(work.sum())
    parts = min(n_pairs, threads * _RANGES_PER_THREAD)
    if threads == 1 or parts <= 1 or total < _MIN_PARALLEL_WORK:
        return [(0, n_pairs)]
    cuts = np.searchsorted(np.cumsum(work), np.arange(1, parts) * (total / parts), side="left") + 1
    bounds = np.unique(np.concatenate([[0], np.minimum(cuts, n_pairs), [n_pairs]]))
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


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


def _as_threads(threads) -> int:
    if threads is None:
        return max(1, int(numba.config.NUMBA_NUM_THREADS))
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 1:
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    return int(threads)


def as_threshold(threshold) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise ValueError(f"threshold must be a real number in [0, 1), got {threshold!r}")
    value = float(threshold)
    if not (0.0 <= value < 1.0):  # also rejects nan
        raise ValueError(f"threshold must be finite and in [0, 1), got {threshold!r}")
    return value
