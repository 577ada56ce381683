"""Slow, obvious restatements of the TransAlign extraction: the oracle for transalign.kernels.

DESIGN.md, "The method, exactly", steps 4-5, written the way the formulas read: S = X @ Y.T,
F = softmax(S, axis=1), B = softmax(S, axis=0), (i, j) aligned iff F[i, j] > t and
B[i, j] > t (strict), word links = {(src_word[i], tgt_word[j])}, and the reference's Python
double loop. Nothing from the transalign package is used here.

Precision, precisely. The inputs are rounded to float32 (the kernels' input precision) and
everything after that is float64, so this oracle is the exact method up to ~1e-13 relative.
The kernel computes S in float32 (any summation order, possibly fused multiply-add); by the
standard bound its score error is at most

    err[i, j] = gamma_d * sum_k |x_ik * y_jk|,      gamma_d = d*u / (1 - d*u),  u = 2**-24

and 0 when every x, y is an integer and sum_k |x_ik y_jk| < 2**24 (then every partial sum
is an integer below 2**24: exact in float32 in any order). As log F[i, j] = S[i, j] -
logsumexp(S[i, :]) and logsumexp moves by at most the largest change of its arguments,
|log F_kernel[i, j] - log F[i, j]| <= 2 * max_k err[i, k] (B likewise with the column), plus
~1e-12 for evaluating the softmax in float64 in another order. `naive_link_bounds` uses this
to split word links into *sure* (every implementation within those bounds must produce them)
and *possible* (one within them may produce them); a correct kernel satisfies
sure <= kernel <= possible. Near-ties of the threshold fall in between, by construction.
"""

from __future__ import annotations

import math

import numpy as np

U32 = 2.0 ** -24
U64 = 2.0 ** -53
# Softmax evaluation in float64 (two implementations, different summation orders).
EVAL_SLACK = 1e-9
# For t == 0 the decision is "exp(...) did not underflow to 0" in float64, around
# log(2**-1074) = -744.4; treat a band of width 2 around it as undecided.
UNDERFLOW_LOG = -745.0
UNDERFLOW_SLACK = 2.0


def _inputs(x, y):
    """float32-rounded inputs (what the kernel sees), as float64 for the arithmetic below."""
    return np.asarray(x, dtype=np.float32).astype(np.float64), np.asarray(y, dtype=np.float32).astype(np.float64)


def naive_scores(x, y) -> np.ndarray:
    """S = X @ Y.T in float64 from float32 inputs (products are exact; sums to ~1e-16)."""
    x64, y64 = _inputs(x, y)
    return x64 @ y64.T


def naive_softmaxes(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """F = softmax(S, axis=1), B = softmax(S, axis=0), literally: exp(S - max) / sum."""
    forward = np.exp(s - s.max(axis=1, keepdims=True))
    forward = forward / forward.sum(axis=1, keepdims=True)
    backward = np.exp(s - s.max(axis=0, keepdims=True))
    backward = backward / backward.sum(axis=0, keepdims=True)
    return forward, backward


def naive_links(x, y, src_word_ids, tgt_word_ids, t: float) -> list[tuple[int, int]]:
    """Word links of one pair, as the reference computes them (double loop), sorted."""
    x = np.asarray(x)
    y = np.asarray(y)
    if x.shape[0] == 0 or y.shape[0] == 0:
        return []
    forward, backward = naive_softmaxes(naive_scores(x, y))
    links = set()
    for i in range(forward.shape[0]):
        for j in range(forward.shape[1]):
            if forward[i, j] > t and backward[i, j] > t:
                links.add((int(src_word_ids[i]), int(tgt_word_ids[j])))
    return sorted(links)


def score_error_bound(x, y) -> np.ndarray:
    """Per-cell bound on |S_kernel - S_naive| (see the module docstring)."""
    x64, y64 = _inputs(x, y)
    d = x64.shape[1]
    magnitude = np.abs(x64) @ np.abs(y64).T
    gamma32 = d * U32 / (1 - d * U32)
    gamma64 = d * U64 / (1 - d * U64)
    bound = (gamma32 + gamma64) * magnitude
    integral = np.all(x64 == np.round(x64)) and np.all(y64 == np.round(y64))
    if integral:
        bound[magnitude < 2.0 ** 24] = 0.0
    return bound


def subword_bounds(x, y, t: float) -> tuple[np.ndarray, np.ndarray]:
    """(sure, possible) boolean [n, m] matrices of aligned subword pairs, in log space."""
    s = naive_scores(x, y)
    err = score_error_bound(x, y)
    row_err = 2.0 * err.max(axis=1, keepdims=True)
    col_err = 2.0 * err.max(axis=0, keepdims=True)
    row_max = s.max(axis=1, keepdims=True)
    col_max = s.max(axis=0, keepdims=True)
    log_f = s - (row_max + np.log(np.exp(s - row_max).sum(axis=1, keepdims=True)))
    log_b = s - (col_max + np.log(np.exp(s - col_max).sum(axis=0, keepdims=True)))
    if t > 0 and math.log(t) > UNDERFLOW_LOG + UNDERFLOW_SLACK:
        log_t, slack = math.log(t), EVAL_SLACK
    else:
        log_t, slack = UNDERFLOW_LOG, UNDERFLOW_SLACK
    sure = (log_f - row_err - slack > log_t) & (log_b - col_err - slack > log_t)
    possible = (log_f + row_err + slack > log_t) & (log_b + col_err + slack > log_t)
    return sure, possible


def naive_link_bounds(x, y, src_word_ids, tgt_word_ids, t: float):
    """(sure, possible): sorted word links every / some correct float32 kernel may produce."""
    x = np.asarray(x)
    y = np.asarray(y)
    if x.shape[0] == 0 or y.shape[0] == 0:
        return [], []
    sure, possible = subword_bounds(x, y, t)
    return _word_links(sure, src_word_ids, tgt_word_ids), _word_links(possible, src_word_ids, tgt_word_ids)


def _word_links(aligned: np.ndarray, src_word_ids, tgt_word_ids) -> list[tuple[int, int]]:
    links = set()
    for i in range(aligned.shape[0]):
        for j in range(aligned.shape[1]):
            if aligned[i, j]:
                links.add((int(src_word_ids[i]), int(tgt_word_ids[j])))
    return sorted(links)


def pair_inputs(hidden, src_offsets, src_lengths, tgt_offsets, tgt_lengths, src_word_ids, tgt_word_ids, p: int):
    """(x, y, src words, tgt words) of pair p of a packed batch."""
    s0, n, t0, m = int(src_offsets[p]), int(src_lengths[p]), int(tgt_offsets[p]), int(tgt_lengths[p])
    return hidden[s0:s0 + n], hidden[t0:t0 + m], src_word_ids[s0:s0 + n], tgt_word_ids[t0:t0 + m]


# ---- the other extraction methods (transalign.kernels.methods), restated literally ----
# SimAlign's formulas (cisnlp/simalign, SentenceAligner.get_alignment_matrix / iter_max) on
# the float64 scores of the float32 inputs; with inputs whose products and sums are exact in
# float32 (small integers or dyadic fractions) the kernels must match these exactly.

def naive_pool(x, word_ids):
    """(distinct word ids ascending, float32 mean vector of each word's rows)."""
    x64 = np.asarray(x, dtype=np.float32).astype(np.float64)
    word_ids = np.asarray(word_ids)
    words = sorted(set(int(w) for w in word_ids))
    pooled = np.stack([x64[word_ids == w].mean(axis=0) for w in words]).astype(np.float32)
    return words, pooled


def naive_argmax_onehots(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SimAlign's forward = eye(m)[S.argmax(1)], backward = eye(n)[S.argmax(0)].T, both n x m;
    a row (column) containing a NaN gets no one (transalign's rule for NaN)."""
    n, m = s.shape
    forward = np.eye(m)[s.argmax(axis=1)]
    forward[np.isnan(s).any(axis=1)] = 0.0
    backward = np.eye(n)[s.argmax(axis=0)].T.copy()
    backward[:, np.isnan(s).any(axis=0)] = 0.0
    return forward, backward


def naive_argmax(s: np.ndarray) -> np.ndarray:
    forward, backward = naive_argmax_onehots(s)
    return forward * backward > 0


def naive_itermax(s: np.ndarray, max_count: int = 2, alpha_ratio: float = 0.9) -> np.ndarray:
    """SimAlign's iter_max, line for line (distortion 0)."""
    m, n = s.shape
    forward, backward = naive_argmax_onehots(s)
    inter = forward * backward
    if min(m, n) <= 2:
        return inter > 0
    count = 1
    while count < max_count:
        mask_x = 1.0 - np.tile(inter.sum(1)[:, np.newaxis], (1, n)).clip(0.0, 1.0)
        mask_y = 1.0 - np.tile(inter.sum(0)[np.newaxis, :], (m, 1)).clip(0.0, 1.0)
        mask = ((alpha_ratio * mask_x) + (alpha_ratio * mask_y)).clip(0.0, 1.0)
        mask_zeros = 1.0 - ((1.0 - mask_x) * (1.0 - mask_y))
        if mask_x.sum() < 1.0 or mask_y.sum() < 1.0:
            mask *= 0.0
            mask_zeros *= 0.0
        new_sim = s * mask
        fwd, bac = naive_argmax_onehots(new_sim)
        new_inter = fwd * mask_zeros * bac * mask_zeros
        if np.array_equal(inter + new_inter, inter):
            break
        inter = inter + new_inter
        count += 1
    return inter > 0


def naive_method_links(x, y, src_word_ids, tgt_word_ids, method: str, word_level: str = "any",
                       t: float = 0.001) -> tuple[list[tuple[int, int]], list[float]]:
    """(sorted word links, their scores) of one pair by `method` / `word_level`.

    Score of a cell: min(F, B) for softmax, S for argmax / itermax; of a word link: the
    largest score of the cells that make it."""
    x = np.asarray(x)
    y = np.asarray(y)
    if x.shape[0] == 0 or y.shape[0] == 0:
        return [], []
    if word_level == "mean":
        rows, x = naive_pool(x, src_word_ids)
        cols, y = naive_pool(y, tgt_word_ids)
    else:
        rows, cols = [int(w) for w in src_word_ids], [int(w) for w in tgt_word_ids]
    s = naive_scores(x, y)
    if method == "softmax":
        forward, backward = naive_softmaxes(s)
        cell_score = np.minimum(forward, backward)
        linked = (forward > t) & (backward > t)
    else:
        cell_score = s
        linked = naive_argmax(s) if method == "argmax" else naive_itermax(s)
    best: dict[tuple[int, int], float] = {}
    for i, j in zip(*np.nonzero(linked)):
        key = (rows[i], cols[j])
        best[key] = max(best.get(key, -np.inf), float(cell_score[i, j]))
    links = sorted(best)
    return links, [best[k] for k in links]
