"""The knee of a token-budget sweep: the smallest budget that already gives (nearly) the best throughput.

A larger padded-token budget per encoder run amortises per-run overhead (kernel launches on a
GPU, thread start-up on a CPU) but costs memory and latency, and past some point buys nothing.
Measured curves are noisy and need not be monotone, so "where it stops rising" is read with one
stated rule instead of by eye:

    knee = the smallest budget measured whose throughput is at least (1 - tolerance) x the best
    throughput measured (tolerance 5% by default).

The rule only looks at what was measured: a knee at the smallest budget may mean smaller budgets
do as well, one at the largest that larger ones may do better (``edge`` says which). Used by
`transalign bench` (bench/report.py) and `benchmarks/device_check.py`, so both report the same knee.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass

KNEE_TOLERANCE = 0.05


def knee_rule(tolerance: float = KNEE_TOLERANCE, rate: str = "median pairs/s",
              group: str = "provider, precision and threads") -> str:
    """The rule in words, printed next to every knee and stored in the JSON."""
    return (f"knee = the smallest token budget whose {rate} is within {tolerance:.0%} of the best "
            f"measured for the same {group} (>= {1 - tolerance:.2f} x best)")


@dataclass(frozen=True)
class Knee:
    """The knee of one curve, with the best point it was judged against."""

    batch_tokens: int  # the knee
    rate: float  # throughput at the knee
    best_batch_tokens: int  # the fastest budget measured (the smallest of equally fast ones)
    best_rate: float
    tolerance: float
    budgets: tuple[int, ...]  # every budget measured, ascending
    edge: str | None  # "smallest" / "largest" when the knee is the first or last budget measured

    @property
    def share_of_best(self) -> float:
        return self.rate / self.best_rate

    def to_dict(self) -> dict:
        """The JSON form (results files): every field, the budgets as a list, the share of best."""
        return {"batch_tokens": self.batch_tokens, "rate": self.rate, "best_batch_tokens": self.best_batch_tokens,
                "best_rate": self.best_rate, "share_of_best": self.share_of_best, "tolerance": self.tolerance,
                "budgets": list(self.budgets), "edge": self.edge}

    @classmethod
    def from_dict(cls, d: dict) -> "Knee":
        return cls(d["batch_tokens"], d["rate"], d["best_batch_tokens"], d["best_rate"], d["tolerance"],
                   tuple(d["budgets"]), d["edge"])


def find_knee(curve: Mapping[int, float], tolerance: float = KNEE_TOLERANCE) -> Knee | None:
    """The knee of ``{budget: throughput}`` (see the module docstring); None for fewer than two
    budgets, where there is no curve to read. Throughputs must be finite and positive."""
    if not 0 <= tolerance < 1:
        raise ValueError(f"knee tolerance must be in [0, 1), got {tolerance}")
    for budget, rate in curve.items():
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise ValueError(f"token budgets must be positive integers, got {budget!r}")
        if not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0):
            raise ValueError(f"throughput at {budget} tokens must be a finite positive number, got {rate!r}")
    if len(curve) < 2:
        return None
    budgets = tuple(sorted(curve))
    best_rate = max(curve.values())
    best = next(b for b in budgets if curve[b] == best_rate)
    knee = next(b for b in budgets if curve[b] >= (1 - tolerance) * best_rate)
    edge = "smallest" if knee == budgets[0] else "largest" if knee == budgets[-1] else None
    return Knee(knee, float(curve[knee]), best, float(best_rate), tolerance, budgets, edge)


def knees_by(rows: Iterable[dict], group: Callable[[dict], Hashable], budget: Callable[[dict], int],
             rate: Callable[[dict], float], tolerance: float = KNEE_TOLERANCE) -> dict[Hashable, Knee | None]:
    """One knee per group of rows (e.g. per provider, precision and threads), in the order the
    groups first appear. Two rows of one group with the same budget are an error: which one
    counts would be arbitrary."""
    curves: dict[Hashable, dict[int, float]] = {}
    for row in rows:
        curve = curves.setdefault(group(row), {})
        b = budget(row)
        if b in curve:
            raise ValueError(f"two measurements of {b} tokens in group {group(row)!r}")
        curve[b] = rate(row)
    return {key: find_knee(curve, tolerance) for key, curve in curves.items()}


def describe(knee: Knee) -> str:
    """One line for a table's footnote: the knee, its share of the best, and an edge warning."""
    text = (f"knee {knee.batch_tokens} tokens ({knee.share_of_best:.1%} of the best, {knee.best_rate:,.2f} pairs/s at "
            f"{knee.best_batch_tokens}; measured {','.join(map(str, knee.budgets))})")
    if knee.edge == "smallest":
        text += "; the smallest budget measured: smaller ones may do as well"
    elif knee.edge == "largest":
        text += "; the largest budget measured: larger ones may do better"
    return text
