"""transalign.kernels.extract_with (softmax / argmax / itermax, any / mean, scores) against
the literal restatements of tests/naive.py.

Inputs are small integers or dyadic fractions with few subwords per word (1, 2 or 4), so the
kernels' float32 scores and mean-pooled vectors are exact and links must equal the oracle's
exactly, ties included (ties go to the lowest index in both). Scores: argmax / itermax scores
are exact; softmax scores are float64 softmaxes evaluated in another order (rtol 1e-12).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from naive import naive_itermax, naive_links, naive_method_links, pair_inputs
from test_kernels import int_vectors, pack
from transalign.kernels import METHODS, WORD_LEVELS, Extraction, extract_links, extract_with, split_links

T = 0.001
SETTINGS = list(itertools.product(METHODS, WORD_LEVELS))


def pooled_word_ids(rng, n):
    """Word index of each of n subwords; words of 1, 2 or 4 subwords (exact float means)."""
    ids, word = [], 0
    while len(ids) < n:
        size = int(rng.choice([k for k in (1, 2, 4) if k <= n - len(ids)]))
        ids.extend([word] * size)
        word += 1
    return np.array(ids, dtype=np.int64)


def run(batch, method, word_level="any", t=T, threads=None):
    pair_starts, links, scores = extract_with(*batch, Extraction(method, word_level, t, scores=True),
                                              threads=threads)
    per_pair = split_links(pair_starts, links)
    bounds = pair_starts.tolist()
    return per_pair, [scores[a:b].tolist() for a, b in zip(bounds[:-1], bounds[1:])]


def assert_matches_naive(batch, method, word_level, t=T):
    links, scores = run(batch, method, word_level, t)
    for p in range(len(batch[1])):
        want_links, want_scores = naive_method_links(*pair_inputs(*batch, p), method, word_level, t)
        assert links[p] == want_links, (p, method, word_level)
        if method == "softmax":
            np.testing.assert_allclose(scores[p], want_scores, rtol=1e-12, atol=0)
        else:
            assert scores[p] == want_scores
    return links


@pytest.mark.parametrize("method, word_level", SETTINGS)
@pytest.mark.parametrize("n, m", [(1, 1), (1, 9), (9, 1), (5, 13), (13, 5), (4, 4), (3, 3), (2, 7), (16, 11)])
def test_shapes_match_naive_exactly(method, word_level, n, m):
    rng = np.random.default_rng(n * 100 + m)
    x, y = int_vectors(rng, n, 6), int_vectors(rng, m, 6)
    batch = pack([(x, y, pooled_word_ids(rng, n), pooled_word_ids(rng, m))])
    (links,) = assert_matches_naive(batch, method, word_level)
    assert links  # every method links at least the global maximum of a finite matrix


@pytest.mark.parametrize("method, word_level", SETTINGS)
def test_one_by_one_is_the_single_link(method, word_level):
    batch = pack([([[0.5, -2.0]], [[3.0, 1.0]], [4], [7])])
    links, scores = run(batch, method, word_level)
    assert links == [[(4, 7)]]
    assert scores[0] == ([1.0] if method == "softmax" else [0.5 * 3.0 - 2.0])


@pytest.mark.parametrize("method, word_level", SETTINGS)
def test_ties_and_constant_rows(method, word_level):
    """Equal scores everywhere, constant rows and columns: ties go to the lowest index."""
    constant = (np.ones((4, 3), np.float32), np.ones((5, 3), np.float32), np.arange(4), np.arange(5))
    rng = np.random.default_rng(11)
    x = int_vectors(rng, 6, 3, -1, 2)
    x[2] = 0.0  # a constant (all-zero) row of S
    x[4] = x[1]  # two identical rows: tied maxima in every column they win
    y = int_vectors(rng, 7, 3, -1, 2)
    y[3] = y[0]
    batch = pack([constant, (x, y, np.arange(6), np.arange(7))])
    links = assert_matches_naive(batch, method, word_level)
    if method == "argmax":
        assert links[0] == [(0, 0)]  # row and column argmax of an all-equal matrix are both 0
    if method == "itermax":  # then rows 1.. and columns 1.. are free: M = 3 there, 2.7 on row / column 0
        assert links[0] == [(0, 0), (1, 1)]


def test_itermax_adds_the_second_round_by_hand():
    """S = [[5, 1, 0], [4, 0, 0], [0, 0, 3]]: argmax gives (0,0), (2,2); row 1 and column 1 are
    free, so M = S * mask = [[0, .9, 0], [3.6, 0, 0], [0, 0, 0]] whose mutual argmaxes (0,1) and
    (1,0) each touch a free row or column: itermax = {(0,0), (0,1), (1,0), (2,2)}."""
    x = np.array([[5, 1, 0], [4, 0, 0], [0, 0, 3]], np.float32)
    batch = pack([(x, np.eye(3, dtype=np.float32), np.arange(3), np.arange(3))])
    assert run(batch, "argmax")[0] == [[(0, 0), (2, 2)]]
    assert run(batch, "itermax")[0] == [[(0, 0), (0, 1), (1, 0), (2, 2)]]
    assert naive_itermax(x.astype(np.float64)).nonzero()[0].tolist() == [0, 0, 1, 2]


@pytest.mark.parametrize("method, word_level", SETTINGS)
def test_batches_with_empty_sides_unequal_lengths_and_dyadic_values(method, word_level):
    rng = np.random.default_rng(12)
    shapes = [(3, 4), (0, 5), (6, 0), (0, 0), (1, 1), (12, 7), (2, 9), (1, 6), (8, 8), (20, 3)]
    pairs = []
    for n, m in shapes:
        x = rng.integers(-16, 17, size=(n, 8)) / 8.0  # multiples of 1/8: exact products and sums
        y = rng.integers(-16, 17, size=(m, 8)) / 8.0
        pairs.append((x, y, pooled_word_ids(rng, n), pooled_word_ids(rng, m)))
    batch = pack(pairs, d=8)
    links = assert_matches_naive(batch, method, word_level)
    assert [len(g) == 0 for g in links] == [n * m == 0 for n, m in shapes]


@pytest.mark.parametrize("method, word_level", SETTINGS)
def test_nan_rows_have_no_links(method, word_level):
    x = np.array([[1.0, 2.0], [np.nan, 0.0], [0.0, 1.0], [2.0, 2.0]], np.float32)
    y = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)
    batch = pack([(x, y, [0, 1, 2, 3], [0, 1, 2]), (x[[0, 2, 3]], y, [0, 1, 2], [0, 1, 2])])
    links = assert_matches_naive(batch, method, word_level)
    assert all(i != 1 for i, _ in links[0]) and links[1]


def test_softmax_any_links_are_the_reference_and_scores_exceed_the_threshold():
    """With scores the softmax kernel still gives extract_links' links exactly; each link's score
    is > t, and the links at a larger threshold t2 are exactly those with a score > t2."""
    rng = np.random.default_rng(13)
    pairs = []
    for _ in range(25):
        n, m = (int(v) for v in rng.integers(1, 25, size=2))
        pairs.append(((0.5 * rng.standard_normal((n, 32))).astype(np.float32),
                      (0.5 * rng.standard_normal((m, 32))).astype(np.float32),
                      pooled_word_ids(rng, n), pooled_word_ids(rng, m)))
    batch = pack(pairs, d=32)
    reference = split_links(*extract_links(*batch, T))
    links, scores = run(batch, "softmax", "any", T)
    assert links == reference
    assert all(s > T for pair in scores for s in pair)
    for t2 in (0.01, 0.1, 0.3):
        filtered = [[link for link, s in zip(pl, ps) if s > t2] for pl, ps in zip(links, scores)]
        assert filtered == split_links(*extract_links(*batch, t2)) == run(batch, "softmax", "any", t2)[0]
    assert sum(map(len, filtered)) < sum(map(len, reference))  # the filter did something


@pytest.mark.parametrize("method, word_level", SETTINGS)
def test_batching_and_threads_do_not_change_anything(method, word_level):
    """Real-valued fp32 vectors: one call, one pair per call, reversed order and 3 threads agree
    bit for bit (links and scores)."""
    rng = np.random.default_rng(14)
    pairs = []
    for _ in range(40):
        n, m = (int(v) for v in rng.integers(0, 40, size=2))
        pairs.append((rng.standard_normal((n, 256)).astype(np.float32),
                      rng.standard_normal((m, 256)).astype(np.float32),
                      pooled_word_ids(rng, n), pooled_word_ids(rng, m)))
    together = run(pack(pairs, d=256), method, word_level, threads=1)
    threaded = run(pack(pairs, d=256), method, word_level, threads=3)
    single = [run(pack([pair], d=256), method, word_level) for pair in pairs]
    backwards = run(pack(pairs[::-1], d=256), method, word_level)
    assert threaded == together
    assert [s[0][0] for s in single] == together[0] and [s[1][0] for s in single] == together[1]
    assert backwards[0][::-1] == together[0] and backwards[1][::-1] == together[1]
    assert sum(map(len, together[0])) > 40


def test_reference_setting_without_scores_is_extract_links():
    rng = np.random.default_rng(15)
    x, y = int_vectors(rng, 7, 5), int_vectors(rng, 9, 5)
    batch = pack([(x, y, pooled_word_ids(rng, 7), pooled_word_ids(rng, 9))])
    pair_starts, links, scores = extract_with(*batch, Extraction())
    assert scores is None
    assert split_links(pair_starts, links) == [naive_links(*pair_inputs(*batch, 0), T)]


def test_no_pairs():
    out = extract_with(np.zeros((2, 2), np.float32), [], [], [], [], [0, 1], [0, 1], Extraction("argmax", scores=True))
    assert out[0].tolist() == [0] and out[1].shape == (0, 2) and out[2].shape == (0,)


@pytest.mark.parametrize("kwargs, message", [
    (dict(method="max"), r"method 'max' is not one of softmax, argmax, itermax"),
    (dict(word_level="first"), r"word_level 'first' is not one of any, mean"),
    (dict(threshold=1.5), r"threshold must be finite and in \[0, 1\)"),
    (dict(scores="yes"), r"scores must be True or False"),
])
def test_extraction_validates(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Extraction(**kwargs)


def test_extract_with_checks_its_arguments():
    with pytest.raises(ValueError, match="extraction must be an Extraction"):
        extract_with(np.zeros((2, 2), np.float32), [0], [1], [1], [1], [0, 0], [0, 0], "argmax")
    with pytest.raises(ValueError, match=r"tgt_offsets\[0\] \+ tgt_lengths\[0\] = 1 \+ 2 = 3 is past the 2 rows"):
        extract_with(np.zeros((2, 2), np.float32), [0], [1], [1], [2], [0, 0], [0, 0], Extraction("itermax"))
