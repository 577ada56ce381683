"""The measuring arithmetic shared by `transalign bench` and `benchmarks/`: one copy of each.

Pure functions on the raw measurements (seconds, sample lists, link sets), plus the process's
peak RSS, so that every figure a report shows can be recomputed from what it stores.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import numpy as np

LATENCY_PERCENTILES = (50, 95, 99)


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of repeated measurements (the median of an even count is the mean
    of the middle two, ``statistics.median``)."""
    if not values:
        raise ValueError("spread of no measurements")
    return {"median": float(statistics.median(values)), "min": float(min(values)), "max": float(max(values))}


def percentiles(samples: Sequence[float], qs: Sequence[float] = LATENCY_PERCENTILES) -> dict[str, float]:
    """``{"p50": ..., "p95": ..., "p99": ...}`` of the samples, linear interpolation (numpy's default)."""
    if not len(samples):
        raise ValueError("percentiles of no samples")
    values = np.percentile(np.asarray(samples, dtype=np.float64), list(qs))
    return {f"p{q:g}": float(v) for q, v in zip(qs, values)}


def nearest_to_quantile(lengths: Sequence[float], quantile: float, k: int) -> list[int]:
    """Indices (sorted) of the k items whose length is nearest the given quantile of all lengths;
    ties go to the earlier item, so the choice is deterministic."""
    lengths = np.asarray(lengths, dtype=np.float64)
    target = np.quantile(lengths, quantile)
    return sorted(np.argsort(np.abs(lengths - target), kind="stable")[:k].tolist())


def agreement(candidate: Sequence[frozenset], reference: Sequence[frozenset]) -> dict[str, float]:
    """Share of pairs whose link sets are identical, and link precision / recall / F1 of the
    candidate's links against the reference's, over all links of all pairs."""
    if len(candidate) != len(reference):
        raise ValueError(f"agreement of {len(candidate)} pairs against {len(reference)}")
    both = sum(len(c & r) for c, r in zip(candidate, reference))
    n_c, n_r = sum(map(len, candidate)), sum(map(len, reference))
    p, r = (both / n_c if n_c else 1.0), (both / n_r if n_r else 1.0)
    return {"identical_pairs": sum(c == r for c, r in zip(candidate, reference)) / len(reference) if reference else 1.0,
            "precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def parse_links(text: str) -> list[frozenset]:
    """Pharaoh lines (optionally ``ID<TAB>`` first) -> one frozenset of (i, j) per line."""
    out = []
    for line in text.splitlines():
        links = line.rpartition("\t")[2]
        out.append(frozenset(tuple(map(int, link.split("-"))) for link in links.split()))
    return out


def peak_rss_mb() -> float:
    """This process's peak RSS in MB (VmHWM).

    Not ru_maxrss: on Linux a child started with fork+exec inherits the parent's peak at the fork
    into ru_maxrss (exec saves the old mm's high-water mark), so after an in-process export
    (8 GB) every worker would report 8 GB. VmHWM belongs to the process's own, post-exec memory.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e6  # kB
    except OSError:
        pass
    import resource  # not on Windows; only reached where /proc is missing

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6  # Linux: KiB
