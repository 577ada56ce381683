"""Microbenchmarks of the extraction: Numba kernels vs vectorised numpy vs the reference loop.

    python -m pytest benchmarks/bench_kernels.py --benchmark-enable

One realistic batch (200 pairs, 20-40 subwords a side, d = 1024, float32, words of 1-3
subwords, the target a noisy permutation of the source) goes through
- `numba`:  transalign.kernels.extract_links (all pairs, parallel over pairs);
- `numpy`:  the whole batch padded to [pairs, 40, d], one batched matmul, masked float32
            softmaxes, word pairs deduplicated with np.unique (no Python loop per pair);
- `python`: the authors' way, per pair: numpy float32 scores and softmaxes, then the Python
            double loop over subword pairs into a set.
Every measurement is followed by an assertion that its links equal the reference loop's.
On a busy machine OpenBLAS's own threads make the numpy variants several times slower
(spinning threads competing for cores); `OPENBLAS_NUM_THREADS=1` gives them their best case.
With the benchmark plugin disabled (pyproject's default) each runs once, as a plain test.
`test_compile_time` reports the kernels' first-call time with a cold and a warm numba cache.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from transalign.kernels import extract_links, split_links

ROOT = Path(__file__).resolve().parents[1]
THRESHOLD = 1e-3
PAIRS, MIN_LEN, MAX_LEN, DIM = 200, 20, 40, 1024


def make_batch(seed: int = 0, pairs: int = PAIRS, dim: int = DIM):
    """A packed batch shaped like the engine's: (hidden, src_off, src_len, tgt_off, tgt_len, ids, ids)."""
    rng = np.random.default_rng(seed)
    scale = np.sqrt(30.0 / dim)  # matched subwords score ~30, unrelated ones ~N(0, 1)
    blocks, words, offsets, lengths = [], [], [], []
    row = 0
    for _ in range(pairs):
        n_words = int(rng.integers(10, 20))
        vectors = rng.standard_normal((n_words, dim)) * scale
        for order in (np.arange(n_words), rng.permutation(n_words)):
            pieces = rng.integers(1, 4, size=n_words)
            ids = np.repeat(np.arange(n_words), pieces)[:MAX_LEN]
            while len(ids) < MIN_LEN:
                ids = np.sort(np.append(ids, rng.integers(0, n_words)))
            sub = vectors[order[ids]] + 0.5 * scale * rng.standard_normal((len(ids), dim))
            blocks.append(sub.astype(np.float32))
            words.append(ids)
            offsets.append(row)
            lengths.append(len(ids))
            row += len(ids)
    offsets = np.array(offsets, dtype=np.int64)
    lengths = np.array(lengths, dtype=np.int64)
    ids = np.concatenate(words).astype(np.int64)
    return np.concatenate(blocks), offsets[0::2], lengths[0::2], offsets[1::2], lengths[1::2], ids, ids


def python_loop(hidden, so, sl, to, tl, sw, tw, t):
    """The reference procedure per pair (align.py): float32 numpy, then the double loop."""
    result = []
    for p in range(len(so)):
        x = hidden[so[p]:so[p] + sl[p]]
        y = hidden[to[p]:to[p] + tl[p]]
        src_words, tgt_words = sw[so[p]:so[p] + sl[p]], tw[to[p]:to[p] + tl[p]]
        sim = x @ y.T
        forward = np.exp(sim - sim.max(axis=1, keepdims=True))
        forward /= forward.sum(axis=1, keepdims=True)
        backward = np.exp(sim - sim.max(axis=0, keepdims=True))
        backward /= backward.sum(axis=0, keepdims=True)
        links = set()
        for i in range(sim.shape[0]):
            for j in range(sim.shape[1]):
                if forward[i, j] > t and backward[i, j] > t:
                    links.add((int(src_words[i]), int(tgt_words[j])))
        result.append(sorted(links))
    return result


def numpy_batched(hidden, so, sl, to, tl, sw, tw, t):
    """The same in whole-batch numpy: pad, one batched matmul, masked softmaxes, np.unique."""
    n_pairs, n, m = len(so), int(sl.max()), int(tl.max())
    src_rows = so[:, None] + np.arange(n)
    tgt_rows = to[:, None] + np.arange(m)
    src_valid = np.arange(n) < sl[:, None]
    tgt_valid = np.arange(m) < tl[:, None]
    src_rows = np.where(src_valid, src_rows, 0)
    tgt_rows = np.where(tgt_valid, tgt_rows, 0)
    sim = np.matmul(hidden[src_rows], hidden[tgt_rows].transpose(0, 2, 1))  # [pairs, n, m]
    valid = src_valid[:, :, None] & tgt_valid[:, None, :]
    sim = np.where(valid, sim, -np.inf).astype(np.float32)
    with np.errstate(invalid="ignore"):
        forward = np.exp(sim - sim.max(axis=2, keepdims=True))
        forward /= forward.sum(axis=2, keepdims=True)
        backward = np.exp(sim - sim.max(axis=1, keepdims=True))
        backward /= backward.sum(axis=1, keepdims=True)
        aligned = valid & (forward > t) & (backward > t)
    p, i, j = np.nonzero(aligned)
    src_words = sw[src_rows[p, i]]
    tgt_words = tw[tgt_rows[p, j]]
    width = int(max(sw.max(), tw.max())) + 1
    keys = np.unique((p * width + src_words) * width + tgt_words)
    pairs_of, rest = np.divmod(keys, width * width)
    links = np.stack(np.divmod(rest, width), axis=1).astype(np.int32)
    starts = np.searchsorted(pairs_of, np.arange(n_pairs + 1))
    return split_links(starts, links)


@pytest.fixture(scope="module")
def batch():
    return make_batch()


@pytest.fixture(scope="module")
def expected(batch):
    links = python_loop(*batch, THRESHOLD)
    assert sum(map(len, links)) > 10 * PAIRS  # a batch with real work in it
    return links


def test_numba(benchmark, batch, expected):
    extract_links(*batch, THRESHOLD)  # compile (or load from the cache) outside the timing
    result = benchmark(extract_links, *batch, THRESHOLD)
    assert split_links(*result) == expected


def test_numba_one_thread(benchmark, batch, expected):
    extract_links(*batch, THRESHOLD, threads=1)
    result = benchmark(extract_links, *batch, THRESHOLD, threads=1)
    assert split_links(*result) == expected


def test_numpy(benchmark, batch, expected):
    assert benchmark(numpy_batched, *batch, THRESHOLD) == expected


def test_python_loop(benchmark, batch, expected):
    result = benchmark.pedantic(python_loop, args=(*batch, THRESHOLD), rounds=3, iterations=1)
    assert result == expected


_FIRST_CALL = """
import time
import numpy as np
start = time.perf_counter()
from transalign.kernels import extract_links
imported = time.perf_counter()
hidden = np.ones((4, 8), np.float32)
ids = np.zeros(4, np.int64)
extract_links(hidden, [0], [2], [2], [2], ids, ids, 0.001)
print(imported - start, time.perf_counter() - imported)
"""


def test_compile_time(benchmark):
    """Import + first call in fresh processes: a cold numba cache, then the cache it wrote."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}

        def first_call():
            out = subprocess.run([sys.executable, "-c", _FIRST_CALL], env=env, cwd=ROOT, check=True,
                                 capture_output=True, text=True).stdout
            return [float(v) for v in out.split()]

        cold = first_call()
        warm = benchmark.pedantic(first_call, rounds=1, iterations=1)
    benchmark.extra_info.update(import_s=warm[0], cold_first_call_s=cold[1], cached_first_call_s=warm[1])
    print(f"\nimport {warm[0]:.2f} s, first call: cold cache {cold[1]:.2f} s, warm cache {warm[1]:.2f} s")
    assert warm[1] < cold[1]
