"""engine.batching: the batch plan is an exact least-cost cut, checked against brute force.

The plan only decides time, never results (the engine is batch-invariant; test_batch_invariance
checks that); here: every sequence exactly once, the budget kept, and the cost minimal among all
ways to cut the length-sorted order, found by enumerating every cut of small inputs.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from transalign.engine.batching import plan_batches


def _cost(lengths: np.ndarray, batches, overhead: int) -> int:
    return sum(len(b) * int(lengths[b].max()) + overhead for b in batches)


def brute_force_cost(lengths: np.ndarray, budget: int, overhead: int) -> int:
    """Least cost over every cut of the longest-first order that keeps the budget."""
    ordered = sorted(lengths.tolist(), reverse=True)
    n, best = len(ordered), None
    for mask in itertools.product((False, True), repeat=n - 1):
        cuts = [0] + [k + 1 for k, cut in enumerate(mask) if cut] + [n]
        groups = [ordered[a:b] for a, b in zip(cuts[:-1], cuts[1:])]
        if any(len(g) > 1 and len(g) * g[0] > budget for g in groups):
            continue
        cost = sum(len(g) * g[0] + overhead for g in groups)
        best = cost if best is None else min(best, cost)
    return best


@pytest.mark.parametrize("seed", range(12))
def test_plan_is_the_least_cost_cut(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 11))
    lengths = rng.integers(1, 40, n)
    budget = int(rng.integers(20, 160))
    overhead = int(rng.choice([0, 5, 20, 200]))
    plan = plan_batches(lengths, budget, overhead)
    flat = np.concatenate(plan.batches)
    assert sorted(flat.tolist()) == list(range(n))
    for batch in plan.batches:
        assert len(batch) == 1 or len(batch) * lengths[batch].max() <= budget
        assert list(lengths[batch]) == sorted(lengths[batch], reverse=True)  # longest first
    assert plan.real_tokens == int(lengths.sum())
    assert plan.padded_tokens == sum(len(b) * int(lengths[b].max()) for b in plan.batches)
    assert _cost(lengths, plan.batches, overhead) == brute_force_cost(lengths, budget, overhead)


def test_equal_lengths_fill_the_budget_and_mixed_lengths_pad_less_than_greedy():
    plan = plan_batches(np.full(10, 8), 32, 20)
    assert [len(b) for b in plan.batches] == [4, 4, 2]
    mixed = np.array([120, 100, 90, 60, 50, 40, 30, 30, 20, 12, 10, 8])
    greedy_padded = 12 * 120  # greedy (longest first, fill to 2048) puts all twelve in one batch
    plan = plan_batches(mixed, 2048, 20)
    assert plan.padded_tokens + 20 * len(plan.batches) < greedy_padded + 20


def test_oversized_sequence_gets_its_own_batch_and_bad_arguments_are_refused():
    plan = plan_batches(np.array([500, 3, 3]), 100, 0)
    assert [b.tolist() for b in plan.batches][0] == [0]
    assert plan_batches(np.array([], dtype=np.int64), 100).batches == []
    with pytest.raises(ValueError, match="batch_tokens"):
        plan_batches(np.array([3]), 0)
    with pytest.raises(ValueError, match="overhead_tokens"):
        plan_batches(np.array([3]), 10, -1)
