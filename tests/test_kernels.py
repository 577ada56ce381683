"""transalign.kernels.extract_links against the naive oracle of tests/naive.py.

Two kinds of comparison (tests/naive.py explains the bounds):
- integer-valued vectors with small products: the kernel's float32 scores are exact, so its
  links must equal `naive_links` exactly, except for subword pairs deliberately put on the
  threshold, which are asserted separately;
- real-valued vectors: sure <= kernel <= possible, with the undecided band checked to be
  small so the comparison stays sharp.
"""

from __future__ import annotations

import numpy as np
import pytest

from naive import naive_link_bounds, naive_links, pair_inputs, subword_bounds
from transalign.kernels import extract_links, split_links
from transalign.kernels.extract import _balanced_ranges

T = 0.001


def pack(pairs, d=None):
    """Pack [(x, y, src_words, tgt_words), ...] into extract_links' batch arguments."""
    blocks, words, offsets, lengths = [], [], [], []
    row = 0
    for x, y, sw, tw in pairs:
        for block, ids in ((x, sw), (y, tw)):
            block = np.asarray(block, dtype=np.float32).reshape(len(ids), -1 if d is None else d)
            blocks.append(block)
            words.append(np.asarray(ids, dtype=np.int64))
            offsets.append(row)
            lengths.append(len(ids))
            row += len(ids)
    dim = d if d is not None else max(b.shape[1] for b in blocks if b.shape[0])
    hidden = np.concatenate([b if b.shape[0] else np.zeros((0, dim), np.float32) for b in blocks])
    offsets = np.array(offsets, dtype=np.int64)
    lengths = np.array(lengths, dtype=np.int64)
    word_ids = np.concatenate(words)
    return hidden, offsets[0::2], lengths[0::2], offsets[1::2], lengths[1::2], word_ids, word_ids


def run(batch, t=T, **kwargs):
    return split_links(*extract_links(*batch, t, **kwargs))


def naive_batch(batch, t=T):
    return [naive_links(*pair_inputs(*batch, p), t) for p in range(len(batch[1]))]


def int_vectors(rng, n, d, low=-3, high=4):
    return rng.integers(low, high, size=(n, d)).astype(np.float32)


def word_ids(rng, n, max_pieces=3):
    """Word index of each of n subwords, words of 1..max_pieces subwords."""
    ids, word = [], 0
    while len(ids) < n:
        ids.extend([word] * int(rng.integers(1, max_pieces + 1)))
        word += 1
    return np.array(ids[:n], dtype=np.int64)


def assert_exact(batch, t=T):
    got, want = run(batch, t), naive_batch(batch, t)
    assert got == want


# ---- shapes ----

@pytest.mark.parametrize("n, m", [(1, 1), (1, 9), (9, 1), (5, 13), (13, 5), (4, 4), (7, 2)])
def test_shapes_match_naive_exactly(n, m):
    rng = np.random.default_rng(n * 100 + m)
    x, y = int_vectors(rng, n, 6), int_vectors(rng, m, 6)
    batch = pack([(x, y, word_ids(rng, n), word_ids(rng, m))])
    assert_exact(batch)
    assert run(batch) != [[]] or n * m == 0  # a real pair always has a link (argmax of F and B)


def test_one_by_one_is_the_single_link():
    batch = pack([([[0.5, -2.0]], [[3.0, 1.0]], [4], [7])])
    assert run(batch) == [[(4, 7)]] == naive_batch(batch)


def test_batch_with_empty_sides_and_different_lengths():
    rng = np.random.default_rng(1)
    shapes = [(3, 4), (0, 5), (6, 0), (0, 0), (1, 1), (12, 7), (2, 9), (0, 3), (8, 8)]
    pairs = [(int_vectors(rng, n, 5), int_vectors(rng, m, 5), word_ids(rng, n), word_ids(rng, m)) for n, m in shapes]
    batch = pack(pairs, d=5)
    got = run(batch)
    assert got == naive_batch(batch)
    assert [len(g) == 0 for g in got] == [n * m == 0 for n, m in shapes]


def test_offsets_in_any_order_and_shared_rows():
    """Pairs may point anywhere in hidden: target before source, a sentence with itself."""
    rng = np.random.default_rng(2)
    hidden = int_vectors(rng, 30, 4)
    words = np.concatenate([word_ids(rng, 10), word_ids(rng, 12), word_ids(rng, 8)])
    batch = (hidden, np.array([22, 0, 10, 3]), np.array([8, 10, 12, 5]),
             np.array([0, 0, 22, 5]), np.array([10, 10, 8, 10]), words, words)
    assert_exact(batch)


def test_word_ids_are_reduced_sorted_and_unique():
    """Multi-subword words, scrambled ids, gaps and large ids: links are distinct, sorted word ids."""
    rng = np.random.default_rng(3)
    x, y = int_vectors(rng, 9, 4, -1, 2), int_vectors(rng, 8, 4, -1, 2)
    src_words = np.array([5, 5, 0, 2, 2, 2, 1_000_000, 0, 5])
    tgt_words = np.array([3, 1, 1, 40, 3, 0, 0, 7])
    batch = pack([(x, y, src_words, tgt_words)])
    (got,) = run(batch)
    assert got == naive_batch(batch)[0]
    assert got == sorted(set(got))
    assert {s for s, _ in got} >= {0, 5, 1_000_000} and {t for _, t in got} >= {0, 1, 3}


def test_output_layout():
    rng = np.random.default_rng(4)
    batch = pack([(int_vectors(rng, n, 3), int_vectors(rng, m, 3), word_ids(rng, n), word_ids(rng, m))
                  for n, m in [(4, 5), (0, 2), (3, 3)]], d=3)
    pair_starts, links = extract_links(*batch, T)
    assert pair_starts.dtype == np.int64 and pair_starts.shape == (4,)
    assert links.dtype == np.int32 and links.ndim == 2 and links.shape[1] == 2
    assert pair_starts[0] == 0 and pair_starts[-1] == len(links) and pair_starts[2] == pair_starts[1]
    flat = [link for pair in naive_batch(batch) for link in pair]
    assert [tuple(r) for r in links.tolist()] == flat


def test_no_pairs():
    pair_starts, links = extract_links(np.zeros((3, 2), np.float32), [], [], [], [], [0, 1, 2], [0, 1, 2], T)
    assert pair_starts.tolist() == [0] and links.shape == (0, 2)


# ---- ties at the threshold: the semantics is strict >, F or B equal to t is not aligned ----

@pytest.mark.parametrize("value", [0.0, 3.0, -7.0, 1e4])
def test_uniform_row_exactly_at_threshold_is_not_aligned(value):
    """All-equal scores over 1000 targets: F = 1/1000 exactly, not > 0.001: no links at all.

    With 999 targets F = 1/999 > t and B = 1/3 > t: every subword pair is aligned.
    The float64 quotient 1.0 / 1000.0 is the double nearest 0.001 both here and in the
    oracle, so this tie is exact in both and asserted, not tolerated.
    """
    for m, expect_all in ((1000, False), (999, True)):
        x = np.full((3, 1), 1.0, np.float32)
        y = np.full((m, 1), value, np.float32)
        batch = pack([(x, y, [0, 1, 2], np.arange(m))])
        (got,) = run(batch)
        want = [(i, j) for i in range(3) for j in range(m)] if expect_all else []
        assert got == want == naive_batch(batch)[0]


def test_uniform_column_exactly_at_threshold_is_not_aligned():
    x = np.full((1000, 1), 2.0, np.float32)
    y = np.array([[1.0], [1.0]], np.float32)
    batch = pack([(x, y, np.arange(1000), [0, 1])])
    assert run(batch) == [[]] == naive_batch(batch)
    batch = pack([(x[:999], y, np.arange(999), [0, 1])])
    assert run(batch) == naive_batch(batch) and len(run(batch)[0]) == 999 * 2


def test_near_tie_only_the_tied_pair_is_undecided():
    """One score set so that F[0, 0] = t in exact arithmetic; every other decision is exact.

    Row 0 of S is (s*, 0, ..., 0) over m targets: F[0, 0] = e^s* / (e^s* + m - 1) = t for
    s* = log(t (m - 1) / (1 - t)). s* is not a float, so whether F[0, 0] > t depends on
    rounding: the oracle must report that pair as undecided and everything else as decided,
    and the kernel must agree with the oracle on everything else.
    """
    m = 50
    s_star = np.log(T * (m - 1) / (1 - T))  # ~ -3.0
    y = np.eye(m, dtype=np.float32)  # S = X exactly: one non-zero product per score
    x = np.zeros((4, m), np.float32)
    x[0, 0] = s_star
    x[1, 3] = 9.0
    x[2, 5:9] = [2.0, -1.0, 4.0, 0.5]
    sure, possible = subword_bounds(x, y, T)
    undecided = np.argwhere(possible & ~sure).tolist()
    assert undecided == [[0, 0]]
    # Elsewhere in row 0, F = 1/(e^s* + m - 1) ~ 0.02: far from t. Decided pairs agree.
    src_words, tgt_words = np.arange(4), np.arange(m)
    batch = pack([(x, y, src_words, tgt_words)])
    (got,) = run(batch)
    decided = [(i, j) for i, j in zip(*np.nonzero(sure))]
    assert set(decided) <= set(got) <= set(decided) | {(0, 0)}
    lo, hi = naive_link_bounds(x, y, src_words, tgt_words, T)
    assert set(lo) <= set(got) <= set(hi) and set(hi) - set(lo) == {(0, 0)}


# ---- extreme scores ----

def test_huge_scores_do_not_overflow():
    """Scores up to ~1e5 (exact in float32): the max-subtracted softmax must not give nan/inf."""
    rng = np.random.default_rng(5)
    x = 100.0 * int_vectors(rng, 7, 3, -5, 6)
    y = 100.0 * int_vectors(rng, 6, 3, -5, 6)
    x[3] = 0.0  # an all-zero row: its scores are all 0 (a uniform row next to huge ones)
    batch = pack([(x, y, np.arange(7), np.arange(6))])
    assert np.abs(x @ y.T).max() >= 1e4
    got = run(batch)
    assert got == naive_batch(batch)
    assert len(got[0]) > 0


def test_huge_equal_scores_in_a_row():
    x = np.full((2, 1), 100.0, np.float32)
    y = np.full((5, 1), 100.0, np.float32)  # every score 1e4: F = 1/5, B = 1/2
    batch = pack([(x, y, [0, 1], np.arange(5))])
    assert run(batch) == [[(i, j) for i in range(2) for j in range(5)]] == naive_batch(batch)


def test_tiny_scores_near_uniform():
    """Scores ~1e-6: F ~ 1/m, B ~ 1/n. Below 1/t targets everything aligns; at m = 1000 the
    float64 softmax still decides most pairs, and the kernel must match those."""
    rng = np.random.default_rng(6)
    x = (1e-3 * rng.standard_normal((4, 8))).astype(np.float32)
    for m, everything in ((7, True), (1000, False)):
        y = (1e-3 * rng.standard_normal((m, 8))).astype(np.float32)
        batch = pack([(x, y, np.arange(4), np.arange(m))])
        (got,) = run(batch)
        sure, possible = naive_link_bounds(x, y, np.arange(4), np.arange(m), T)
        assert set(sure) <= set(got) <= set(possible)
        if everything:
            assert got == sure == [(i, j) for i in range(4) for j in range(m)]
        else:
            assert len(possible) - len(sure) < 0.01 * 4 * m and 0 < len(sure) < 4 * m


def test_threshold_resolution_is_float32():
    """1000 values of F packed within +-1% of t: float32 decides all but a handful of them.

    S[i, j] = 1 * y_j with y_j in [5, 5.02] (d = 1): F[i, j] ~ t * exp(y_j - 5.01), B = 1/4.
    Losing precision anywhere (float16 inputs, a float32 softmax with large rounding, a
    biased sum) flips many of these decisions and leaves the proven bounds.
    """
    rng = np.random.default_rng(9)
    x = np.ones((4, 1), np.float32)
    y = (5.0 + 0.02 * rng.random((1000, 1))).astype(np.float32)
    batch = pack([(x, y, np.arange(4), np.arange(1000))])
    (got,) = run(batch)
    sure, possible = naive_link_bounds(x, y, np.arange(4), np.arange(1000), T)
    assert set(sure) <= set(got) <= set(possible)
    assert len(possible) - len(sure) <= 8 and 1000 < len(sure) < 3000


def test_non_finite_scores_give_no_links_and_no_crash():
    x = np.array([[1.0, 2.0], [np.nan, 0.0], [0.0, 1.0]], np.float32)
    y = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    batch = pack([(x, y, [0, 1, 2], [0, 1]), (x[[0, 2]], y, [0, 1], [0, 1])])
    got = run(batch)
    assert got == naive_batch(batch)
    assert got[0] == [] and got[1] != []  # NaN poisons every column it is in, like the reference


# ---- random batches: real-valued vectors, compared within the proven float32 bounds ----

@pytest.mark.parametrize("d, t, scale", [
    (1, 0.001, 1.0), (3, 0.05, 4.0), (16, 0.001, 0.1), (16, 0.0, 4.0), (64, 0.001, 1.0),
    (64, 0.3, 1.0), (200, 0.001, 0.5), (200, 0.1, 0.2), (1024, 0.001, 0.05), (8, 0.6, 2.0),
])
def test_random_batches_within_float32_bounds(d, t, scale):
    rng = np.random.default_rng(d * 1000 + int(t * 100) + int(scale * 10))
    pairs = []
    for _ in range(10):
        n, m = (int(v) for v in rng.integers(0, 20, size=2))
        x = (scale * rng.standard_normal((n, d))).astype(np.float32)
        y = (scale * rng.standard_normal((m, d))).astype(np.float32)
        pairs.append((x, y, word_ids(rng, n), word_ids(rng, m)))
    batch = pack(pairs, d=d)
    got = run(batch, t)
    undecided = total = 0
    for p, links in enumerate(got):
        sure, possible = naive_link_bounds(*pair_inputs(*batch, p), t)
        assert set(sure) <= set(links) <= set(possible), p
        assert links == sorted(set(links))
        undecided += len(possible) - len(sure)
        total += len(sure)
    assert total >= 20  # links to compare: the case is not vacuous
    assert undecided <= max(1, 0.02 * total)  # the bounds are tight enough to mean something


def test_thread_ranges_give_the_same_links():
    """Enough work to be split across threads; every split must give the serial result."""
    rng = np.random.default_rng(7)
    pairs = [(int_vectors(rng, n, 256, -1, 2), int_vectors(rng, m, 256, -1, 2), word_ids(rng, n), word_ids(rng, m))
             for n, m in rng.integers(0, 40, size=(60, 2))]
    batch = pack(pairs, d=256)
    assert len(_balanced_ranges(batch[2] * batch[4] * 272, 3)) > 1
    serial = run(batch, threads=1)
    assert run(batch, threads=3) == serial == naive_batch(batch)


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_balanced_ranges_cover_all_pairs(threads):
    work = np.random.default_rng(threads).integers(0, 1 << 20, size=37)
    ranges = _balanced_ranges(work, threads)
    assert ranges[0][0] == 0 and ranges[-1][1] == 37
    assert all(a < b for a, b in ranges) and all(r[1] == s[0] for r, s in zip(ranges, ranges[1:]))


# ---- input conversion ----

def test_dtypes_and_layouts_are_normalised():
    rng = np.random.default_rng(8)
    pairs = [(int_vectors(rng, n, 6), int_vectors(rng, m, 6), word_ids(rng, n), word_ids(rng, m))
             for n, m in [(5, 4), (3, 7)]]
    hidden, so, sl, to, tl, words, _ = pack(pairs, d=6)
    want = naive_batch((hidden, so, sl, to, tl, words, words))
    wide = np.zeros((hidden.shape[0], 12), np.float32)
    wide[:, ::2] = hidden
    variants = [
        (hidden.astype(np.float16), so, sl, to, tl, words, words),  # small ints: exact in float16
        (hidden.astype(np.float64), so.astype(np.int32), sl.astype(np.uint16), to, tl, words, words),
        (np.asfortranarray(hidden), so, sl, to, tl, words.astype(np.int32), words.astype(np.uint8)),
        (wide[:, ::2], list(so), list(sl), tuple(to), tl, list(words), words),
    ]
    for batch in variants:
        assert run(batch) == want


# ---- validation ----

def _valid():
    words = np.array([0, 0, 1, 0, 1, 2])
    return dict(hidden=np.ones((6, 2), np.float32), src_offsets=np.array([0]), src_lengths=np.array([3]),
                tgt_offsets=np.array([3]), tgt_lengths=np.array([3]), src_word_ids=words, tgt_word_ids=words,
                threshold=T)


@pytest.mark.parametrize("change, message", [
    (dict(hidden=np.ones(6, np.float32)), r"hidden must be a 2-D"),
    (dict(hidden=np.ones((6, 2), np.int32)), r"hidden must be float16, float32 or float64, got int32"),
    (dict(hidden=np.ones((6, 2), np.complex64)), r"got complex64"),
    (dict(src_offsets=np.array([[0]])), r"src_offsets must be 1-D"),
    (dict(src_lengths=np.array([3.0])), r"src_lengths must hold integers, got float64"),
    (dict(tgt_offsets=np.array([3, 0])), r"tgt_offsets has 2 entries but src_offsets has 1"),
    (dict(tgt_lengths=np.array([-1])), r"tgt_lengths\[0\] = -1 is negative"),
    (dict(src_offsets=np.array([4])), r"src_offsets\[0\] \+ src_lengths\[0\] = 4 \+ 3 = 7 is past the 6 rows"),
    (dict(tgt_lengths=np.array([4])), r"tgt_offsets\[0\] \+ tgt_lengths\[0\] = 3 \+ 4 = 7 is past the 6 rows"),
    (dict(src_word_ids=np.array([0, 1, 2])), r"src_word_ids must be 1-D with one entry per row of hidden \(6\)"),
    (dict(tgt_word_ids=np.array([0, 0, 1, -1, 1, 2])), r"tgt_word_ids\[3\] = -1 is negative"),
    (dict(src_word_ids=np.array([0, 0, 1, 0, 1, 2**31])), r"src_word_ids\[5\] = 2147483648 does not fit"),
    (dict(src_word_ids=np.zeros(6)), r"src_word_ids must hold integers, got float64"),
    (dict(threshold=1.0), r"threshold must be finite and in \[0, 1\), got 1.0"),
    (dict(threshold=-0.1), r"got -0.1"),
    (dict(threshold=float("nan")), r"got nan"),
    (dict(threshold=float("inf")), r"got inf"),
    (dict(threshold="0.1"), r"threshold must be a real number"),
    (dict(threshold=True), r"threshold must be a real number"),
])
def test_validation_errors_name_the_argument(change, message):
    args = {**_valid(), **change}
    with pytest.raises(ValueError, match=message):
        extract_links(**args)


def test_validation_threads():
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="threads must be a positive integer"):
            extract_links(**_valid(), threads=bad)


def test_valid_arguments_pass():
    got = split_links(*extract_links(**_valid()))
    args = _valid()
    assert got == [naive_links(args["hidden"][:3], args["hidden"][3:], [0, 0, 1], [0, 1, 2], T)]


def test_split_links_checks_its_input():
    links = np.array([[0, 1], [2, 3], [1, 1]], np.int32)
    assert split_links(np.array([0, 2, 2, 3]), links) == [[(0, 1), (2, 3)], [], [(1, 1)]]
    for bad in ([1, 3], [0, 2], [0, 3, 2, 3]):
        with pytest.raises(ValueError, match="pair_starts must rise from 0"):
            split_links(np.array(bad), links)
    with pytest.raises(ValueError, match=r"links must have shape \[n_links, 2\]"):
        split_links(np.array([0, 3]), np.zeros((3, 3), np.int32))
