"""Every compiled function of the extraction, in one module, as serial `nogil` kernels.

DESIGN.md, "The method, exactly", steps 4-5, for one sentence pair:

    S = X @ Y.T                      (plain dot product, float32 like the reference)
    F = softmax(S, axis=1)           (row softmax: over target subwords)
    B = softmax(S, axis=0)           (column softmax: over source subwords)
    (i, j) aligned  <=>  F[i, j] > t  and  B[i, j] > t        (strict >)
    word links = { (src_word[i], tgt_word[j]) : (i, j) aligned }

Why serial kernels with `cache=True`, and why one module:
- numba links (and re-optimises) every callee into each caller, so a `parallel=True` prange
  kernel over this code cost 4-9 s of LLVM work at *every* process start (measured on a busy
  2-core machine; it cannot be cached: STYLE.md, parallel kernels crashed with cache=True
  when the thread count changed). Serial kernels cache safely; the wrapper in `extract.py`
  runs them on disjoint ranges of pairs from a thread pool (they release the GIL), the same
  parallelism as a prange over pairs, and it degrades gracefully when cores are busy (OpenMP
  prange threads spin-waited and ran 3x slower than one thread under load).
  First call with a cold cache: ~3.5 s; every later process: ~0.15 s.
- numba's cache checks only the *defining file* of a cached function; a caller cached with
  an inlined copy of a callee from another file would go stale when that file changes.
  Keeping all kernels in this file means any edit here invalidates all of them together.
- Every argument arrives with one dtype/layout (float32 C-contiguous hidden, int64 indices
  and word ids, float64 threshold), so each function has exactly one specialisation.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


def _kernel(**options):
    """njit(nogil=True, cache=True, **options), without the cache where none can be written.

    numba refuses `cache=True` at decoration time when neither the package's __pycache__ nor
    a user cache directory is writable (read-only installs); compiling each run is then the
    price, not an import error.
    """
    def decorate(function):
        try:
            return njit(nogil=True, cache=True, **options)(function)
        except RuntimeError:
            return njit(nogil=True, **options)(function)
    return decorate


# Reassociation lets LLVM vectorise the k-loop reductions and keep several accumulators;
# 'contract' allows fused multiply-add. Both only change float32 rounding order, i.e. the
# result stays within the usual dot-product bound gamma_d * sum_k |x_k y_k| of the exact value,
# the same guarantee a BLAS sgemm gives. No 'nnan'/'ninf': non-finite inputs must stay visible.
_GEMM_FASTMATH = {"reassoc", "contract"}


@_kernel(fastmath=_GEMM_FASTMATH)
def _scores(x, y, s):
    """s[i, j] = dot(x[i], y[j]) in float32: a register-blocked (4 x 2) x @ y.T.

    numba's np.dot needs SciPy's BLAS bindings, which are not a dependency, so the GEMM is
    written out. Blocking 4 rows of x against 2 rows of y loads 6 vectors per 8 fused
    multiply-adds; on an AVX2 core this reaches ~75 GFLOP/s on 30 x 30 x 1024 pairs, close to
    OpenBLAS (~85) on the same shapes, without a BLAS thread pool fighting `prange`.
    """
    n, d = x.shape
    m = y.shape[0]
    n4 = n - n % 4
    m2 = m - m % 2
    for i in range(0, n4, 4):
        for j in range(0, m2, 2):
            a00 = np.float32(0.0)
            a01 = np.float32(0.0)
            a10 = np.float32(0.0)
            a11 = np.float32(0.0)
            a20 = np.float32(0.0)
            a21 = np.float32(0.0)
            a30 = np.float32(0.0)
            a31 = np.float32(0.0)
            for k in range(d):
                y0 = y[j, k]
                y1 = y[j + 1, k]
                v = x[i, k]
                a00 += v * y0
                a01 += v * y1
                v = x[i + 1, k]
                a10 += v * y0
                a11 += v * y1
                v = x[i + 2, k]
                a20 += v * y0
                a21 += v * y1
                v = x[i + 3, k]
                a30 += v * y0
                a31 += v * y1
            s[i, j] = a00
            s[i, j + 1] = a01
            s[i + 1, j] = a10
            s[i + 1, j + 1] = a11
            s[i + 2, j] = a20
            s[i + 2, j + 1] = a21
            s[i + 3, j] = a30
            s[i + 3, j + 1] = a31
    # The ragged edge (last n % 4 rows, last column when m is odd): plain dot products.
    for i in range(n):
        for j in range(m):
            if i < n4 and j < m2:
                continue
            acc = np.float32(0.0)
            for k in range(d):
                acc += x[i, k] * y[j, k]
            s[i, j] = acc


@_kernel()
def _softmax_terms(s):
    """The pieces of both softmaxes of the float32 scores `s`, in float64, shared by
    `_mark_aligned` and `_softmax_min` so that both compute F and B by the very same operations:

    row_exp[i, j] = exp(s[i, j] - max_j s[i, :]) and row_sum[i] = its sum over j (F = row_exp /
    row_sum); col_max[j] = max_i s[:, j] and col_sum[j] = sum_i exp(s[i, j] - col_max[j])
    (B[i, j] = exp(s[i, j] - col_max[j]) / col_sum[j], recomputed by the caller only where
    needed). Subtracting the maximum keeps every exponent <= 0, so huge scores cannot overflow.
    """
    n, m = s.shape
    row_max = np.full(n, -np.inf)
    col_max = np.full(m, -np.inf)
    for i in range(n):
        for j in range(m):
            v = np.float64(s[i, j])
            if v > row_max[i]:
                row_max[i] = v
            if v > col_max[j]:
                col_max[j] = v
    row_exp = np.empty((n, m))
    row_sum = np.zeros(n)
    col_sum = np.zeros(m)
    for i in range(n):
        for j in range(m):
            v = np.float64(s[i, j])
            e = math.exp(v - row_max[i])
            row_exp[i, j] = e
            row_sum[i] += e
            col_sum[j] += math.exp(v - col_max[j])
    return row_exp, row_sum, col_max, col_sum


@_kernel()
def _mark_aligned(s, threshold, aligned):
    """aligned[i, j] = F[i, j] > t and B[i, j] > t, both softmaxes of the float32 scores `s`.

    Evaluated in float64 as exp(s - max) / sum(exp(s - max)): subtracting the row (column)
    maximum keeps every exponent <= 0, so scores of 1e4 or more cannot overflow, and float64
    makes the result agree with the exact softmax of `s` to ~1e-15 relative, i.e. with a
    float32 reference to float32 rounding. A value exactly equal to t is *not* aligned
    (strict >), e.g. a uniform row of 1000 scores gives F = 1/1000, not > 0.001.
    NaN scores compare false, so a row or column containing one yields no links.
    """
    n, m = s.shape
    row_exp, row_sum, col_max, col_sum = _softmax_terms(s)
    for i in range(n):
        for j in range(m):
            # F first: it fails for almost every cell, which skips the second exp.
            aligned[i, j] = (row_exp[i, j] / row_sum[i] > threshold
                             and math.exp(np.float64(s[i, j]) - col_max[j]) / col_sum[j] > threshold)
    # A NaN score: the comparisons above skipped it for the maxima, but its exp is NaN, so
    # every sum it enters is NaN and every F / B of that row / column compares false.


@_kernel()
def _distinct_sorted(word_ids):
    """The distinct values of `word_ids`, ascending.

    Insertion sort on a copy: linear for the usual non-decreasing word ids of a sentence,
    quadratic only for scrambled ids of one (short) sentence; hand-written because numba's
    np.unique / np.searchsorted add seconds of compile time to every CLI start.
    """
    values = word_ids.copy()
    for a in range(1, values.shape[0]):
        v = values[a]
        b = a - 1
        while b >= 0 and values[b] > v:
            values[b + 1] = values[b]
            b -= 1
        values[b + 1] = v
    count = 0
    for a in range(values.shape[0]):
        if count == 0 or values[a] != values[count - 1]:
            values[count] = values[a]
            count += 1
    return values[:count]


@_kernel()
def _ranks(word_ids, distinct):
    """Position of each word id in `distinct` (ascending, containing it): binary search."""
    ranks = np.empty(word_ids.shape[0], dtype=np.int64)
    for a in range(word_ids.shape[0]):
        lo = 0
        hi = distinct.shape[0] - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if distinct[mid] < word_ids[a]:
                lo = mid + 1
            else:
                hi = mid
        ranks[a] = lo
    return ranks


@_kernel()
def _word_ranks(src_words, tgt_words):
    """Each side's distinct word ids (ascending) and every row's rank among them: a pair's word
    matrix is indexed by ranks, so it is at most n x m cells whatever the id values are."""
    src_distinct = _distinct_sorted(src_words)
    tgt_distinct = _distinct_sorted(tgt_words)
    return src_distinct, tgt_distinct, _ranks(src_words, src_distinct), _ranks(tgt_words, tgt_distinct)


@_kernel()
def _emit_links(src_words, tgt_words, matrix, out):
    """Write the word links marked in `matrix` into `out` ([count, 2] int32), sorted by (src, tgt)."""
    src_distinct = _distinct_sorted(src_words)
    tgt_distinct = _distinct_sorted(tgt_words)
    width = tgt_distinct.shape[0]
    row = 0
    for a in range(src_distinct.shape[0]):
        for b in range(width):
            if matrix[a * width + b]:
                out[row, 0] = src_distinct[a]
                out[row, 1] = tgt_distinct[b]
                row += 1
    return row


@_kernel()
def _gather_links(src_offsets, src_lengths, tgt_offsets, tgt_lengths, src_word_ids, tgt_word_ids,
                  scratch_starts, scratch, counts):
    """Pass 2: a prefix sum of the counts, then each pair's links copied out of its matrix.

    Serial: a scan of at most n x m bytes per pair, ~1% of pass 1.
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


# ---- the other extraction methods (transalign.kernels.methods): argmax, itermax, mean pooling ----
# Kept in this file for the cache reason of the module docstring: they call `_scores` and
# `_mark_aligned`, and a cached caller in another file would keep a stale inlined copy.

SOFTMAX, ARGMAX, ITERMAX = 0, 1, 2  # method codes (transalign.kernels.names.METHODS order)
ANY, MEAN = 0, 1  # word-level codes (transalign.kernels.names.WORD_LEVELS order)
ITERMAX_ALPHA = 0.9  # SimAlign's alpha_ratio


@_kernel()
def _argmax_rows_cols(s, row_arg, col_arg):
    """row_arg[i] = first j of the maximum of row i, col_arg[j] = first i of column j's; -1 for a
    row / column containing a NaN (it has no argmax, as a NaN gets no softmax link either)."""
    n, m = s.shape
    for i in range(n):
        row_arg[i] = -1
    for j in range(m):
        col_arg[j] = -1
    row_nan = np.zeros(n, dtype=np.bool_)
    col_nan = np.zeros(m, dtype=np.bool_)
    for i in range(n):
        for j in range(m):
            v = s[i, j]
            if v != v:
                row_nan[i] = True
                col_nan[j] = True
                continue
            if row_arg[i] < 0 or v > s[i, row_arg[i]]:
                row_arg[i] = j
            if col_arg[j] < 0 or v > s[col_arg[j], j]:
                col_arg[j] = i
    for i in range(n):
        if row_nan[i]:
            row_arg[i] = -1
    for j in range(m):
        if col_nan[j]:
            col_arg[j] = -1


@_kernel()
def _mark_argmax(s, aligned):
    """aligned[i, j] = (j = argmax of row i) and (i = argmax of column j), for float64 `s`."""
    n, m = s.shape
    row_arg = np.empty(n, dtype=np.int64)
    col_arg = np.empty(m, dtype=np.int64)
    _argmax_rows_cols(s, row_arg, col_arg)
    for i in range(n):
        for j in range(m):
            aligned[i, j] = False
    for i in range(n):
        j = row_arg[i]
        if j >= 0 and col_arg[j] == i:
            aligned[i, j] = True


@_kernel()
def _mark_itermax(s, aligned):
    """SimAlign's IterMax (max_count 2, alpha 0.9, no distortion) on float64 `s`; see methods.py."""
    n, m = s.shape
    _mark_argmax(s, aligned)
    if min(n, m) <= 2:
        return
    row_free = np.ones(n)  # SimAlign's mask_x: 1.0 for a row without a link
    col_free = np.ones(m)
    free_rows = n
    free_cols = m
    for i in range(n):
        for j in range(m):
            if aligned[i, j]:
                if row_free[i] == 1.0:
                    free_rows -= 1
                if col_free[j] == 1.0:
                    free_cols -= 1
                row_free[i] = 0.0
                col_free[j] = 0.0
    if free_rows == 0 or free_cols == 0:
        return
    masked = np.empty((n, m))
    for i in range(n):
        for j in range(m):
            mask = min(1.0, ITERMAX_ALPHA * row_free[i] + ITERMAX_ALPHA * col_free[j])
            masked[i, j] = s[i, j] * mask
    second = np.empty((n, m), dtype=np.bool_)
    _mark_argmax(masked, second)
    for i in range(n):
        for j in range(m):
            if second[i, j] and (row_free[i] == 1.0 or col_free[j] == 1.0):
                aligned[i, j] = True


@_kernel()
def _softmax_min(s, out):
    """out[i, j] = min(F[i, j], B[i, j]) of float32 `s`, by the very expressions of `_mark_aligned`,
    so that out[i, j] > t exactly when `_mark_aligned` marks (i, j) at threshold t."""
    n, m = s.shape
    row_exp, row_sum, col_max, col_sum = _softmax_terms(s)
    for i in range(n):
        for j in range(m):
            forward = row_exp[i, j] / row_sum[i]
            backward = math.exp(np.float64(s[i, j]) - col_max[j]) / col_sum[j]
            out[i, j] = forward if forward < backward else backward


@_kernel()
def _mean_pool(x, rank, n_words):
    """Word vectors: the mean of each word's subword rows (float64 sum in row order / count),
    rounded to float32; word r is the r-th distinct word id."""
    d = x.shape[1]
    sums = np.zeros((n_words, d))
    counts = np.zeros(n_words)
    for a in range(x.shape[0]):
        r = rank[a]
        counts[r] += 1.0
        for k in range(d):
            sums[r, k] += x[a, k]
    out = np.empty((n_words, d), dtype=np.float32)
    for r in range(n_words):
        for k in range(d):
            out[r, k] = np.float32(sums[r, k] / counts[r])
    return out


@_kernel()
def _mark_method(s, method, threshold, aligned, cell_scores, want_scores):
    """Mark the linked cells of the float32 score matrix `s` by `method`; the score of each cell
    (min(F, B) for softmax, the similarity S for argmax / itermax) into `cell_scores`."""
    if method == SOFTMAX:
        _mark_aligned(s, threshold, aligned)
        if want_scores:
            _softmax_min(s, cell_scores)
        return
    n, m = s.shape
    s64 = np.empty((n, m))
    for i in range(n):
        for j in range(m):
            s64[i, j] = s[i, j]
    if method == ARGMAX:
        _mark_argmax(s64, aligned)
    else:
        _mark_itermax(s64, aligned)
    if want_scores:
        for i in range(n):
            for j in range(m):
                cell_scores[i, j] = s64[i, j]


@_kernel()
def _pair_method_matrix(x, y, src_words, tgt_words, method, word_level, threshold, want_scores, matrix,
                        word_scores):
    """Fill `matrix` (flat, >= n_src_words * n_tgt_words bytes) with the pair's word links by
    `method` / `word_level`; returns the number of distinct word links. With the reference
    setting (softmax, any) this is the paper's steps 4-5: matrix[a * n_tgt_words + b] = 1 iff some
    subword of the a-th distinct source word is aligned with one of the b-th target word. Words
    are indexed by their rank among the pair's distinct ids, so the matrix is at most n x m
    cells whatever the id values are (gaps, huge ids), and reading it row-major yields the links
    sorted by id.

    word_scores[cell] = the largest score among the linked cells (subword pairs, or the word
    pair itself for mean pooling) that make the word link.
    """
    src_distinct, tgt_distinct, src_rank, tgt_rank = _word_ranks(src_words, tgt_words)
    n_src = src_distinct.shape[0]
    width = tgt_distinct.shape[0]
    if word_level == MEAN:
        xp = _mean_pool(x, src_rank, n_src)
        yp = _mean_pool(y, tgt_rank, width)
        row_word = np.arange(n_src)
        col_word = np.arange(width)
        s = np.empty((n_src, width), dtype=np.float32)
        _scores(xp, yp, s)
    else:
        row_word = src_rank
        col_word = tgt_rank
        s = np.empty((x.shape[0], y.shape[0]), dtype=np.float32)
        _scores(x, y, s)
    n, m = s.shape
    aligned = np.empty((n, m), dtype=np.bool_)
    kept = n if want_scores else 0
    cell_scores = np.empty((kept, m))
    _mark_method(s, method, threshold, aligned, cell_scores, want_scores)
    used = n_src * width
    matrix[:used] = 0
    count = 0
    for i in range(n):
        for j in range(m):
            if aligned[i, j]:
                cell = row_word[i] * width + col_word[j]
                if matrix[cell] == 0:
                    matrix[cell] = 1
                    count += 1
                    if want_scores:
                        word_scores[cell] = cell_scores[i, j]
                elif want_scores and cell_scores[i, j] > word_scores[cell]:
                    word_scores[cell] = cell_scores[i, j]
    return count


@_kernel()
def _method_matrices(first, stop, hidden, src_offsets, src_lengths, tgt_offsets, tgt_lengths, src_word_ids,
                     tgt_word_ids, method, word_level, threshold, want_scores, scratch_starts, scratch,
                     score_scratch, counts):
    """Pass 1 over pairs first..stop-1: each pair's word matrix and number of word links (and
    scores). Pair p writes only counts[p] and its own scratch slices, so ranges run concurrently.
    One kernel serves every method: the reference setting through it measured as fast as the
    former reference-only kernel (benchmarks/bench_kernels.py batch, 1,000 pairs, 2-core EPYC
    under load: 0.94-1.08x in three interleaved runs of 21 rounds)."""
    for p in range(first, stop):
        n = src_lengths[p]
        m = tgt_lengths[p]
        if n == 0 or m == 0:
            counts[p] = 0
            continue
        s0 = src_offsets[p]
        t0 = tgt_offsets[p]
        a = scratch_starts[p]
        b = scratch_starts[p + 1]
        counts[p] = _pair_method_matrix(hidden[s0:s0 + n], hidden[t0:t0 + m], src_word_ids[s0:s0 + n],
                                        tgt_word_ids[t0:t0 + m], method, word_level, threshold, want_scores,
                                        scratch[a:b], score_scratch[a:b])


@_kernel()
def _gather_scores(src_offsets, src_lengths, tgt_offsets, tgt_lengths, src_word_ids, tgt_word_ids,
                   scratch_starts, scratch, score_scratch, pair_starts, scores):
    """Each word link's score, in the order `_gather_links` wrote the links."""
    for p in range(src_offsets.shape[0]):
        if pair_starts[p + 1] == pair_starts[p]:
            continue
        src_distinct = _distinct_sorted(src_word_ids[src_offsets[p]:src_offsets[p] + src_lengths[p]])
        tgt_distinct = _distinct_sorted(tgt_word_ids[tgt_offsets[p]:tgt_offsets[p] + tgt_lengths[p]])
        width = tgt_distinct.shape[0]
        base = scratch_starts[p]
        row = pair_starts[p]
        for cell in range(src_distinct.shape[0] * width):
            if scratch[base + cell]:
                scores[row] = score_scratch[base + cell]
                row += 1
