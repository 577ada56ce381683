"""The measuring run: every variant loaded in its own worker, then interleaved rounds.

Per round the reference aligns its next block of pairs (cut at multiples of 100, its batch
size, so its batches are those of a full run) and every other variant aligns all pairs in one
call, as a user would; the order of the variants rotates, so machine drift hits all alike.
Then single-pair latency on pairs of median and 90th-percentile length.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np

from benchmarks.worker import Worker
from transalign.bench.stats import nearest_to_quantile as latency_pairs


@dataclass(frozen=True)
class RoundSettings:
    """How the variants are run: the command line's choices that shape the measurement."""

    variants: tuple[str, ...]
    provider: str
    threads: int
    batch_tokens: int
    rounds: int
    warmup_pairs: int
    latency_pairs: int
    latency_repeats: int


def round_blocks(n: int, rounds: int) -> list[tuple[int, int]]:
    """The reference's share of each round: ``rounds`` blocks cut at multiples of 100."""
    bounds = sorted({0, n} | {min(n, round(n * r / rounds / 100) * 100) for r in range(1, rounds)})
    return list(zip(bounds[:-1], bounds[1:]))


def combine(name: str, runs: list[dict]) -> dict:
    """One record per variant: lengths laid out [all sources..., all targets...].

    The reference's runs are consecutive blocks (times add up); every other variant's runs are
    repeats over all pairs (times are averaged, outputs must be identical).
    """
    if name == "reference":
        halves = [len(r["lengths"]) // 2 for r in runs]
        lengths = [x for r, k in zip(runs, halves) for x in r["lengths"][:k]] + \
                  [x for r, k in zip(runs, halves) for x in r["lengths"][k:]]
        seconds = {key: sum(r["seconds"].get(key, 0.0) for r in runs) for key in runs[0]["seconds"]}
        return {"e2e": sum(r["e2e"] for r in runs), "seconds": seconds, "lengths": lengths,
                "padded_tokens": sum(r["padded_tokens"] for r in runs), "text": "".join(r["text"] for r in runs),
                "e2e_runs": [r["e2e"] for r in runs], "runs_are": "consecutive blocks (summed)"}
    seconds = {key: float(np.mean([r["seconds"].get(key, 0.0) for r in runs])) for key in runs[0]["seconds"]}
    return {"e2e": float(np.mean([r["e2e"] for r in runs])), "seconds": seconds, "lengths": runs[0]["lengths"],
            "padded_tokens": runs[0]["padded_tokens"], "text": runs[0]["text"],
            "e2e_runs": [r["e2e"] for r in runs], "runs_are": "repeats over all pairs (mean)",
            "identical_across_runs": all(r["text"] == runs[0]["text"] for r in runs)}


def run_variants(settings: RoundSettings, paths: dict, n: int) -> dict:
    """Load every worker, then interleave: per round the reference aligns its next block, every
    other variant aligns all pairs in one call (as a user would: its batching sees them all)."""
    names = list(settings.variants)
    raw, runs, workers = {}, {v: [] for v in names}, {}
    for name in names:  # loaded one after another: load times do not compete
        spec = {**paths, "variant": name, "provider": settings.provider, "threads": settings.threads,
                "batch_tokens": settings.batch_tokens, "pairs": n}
        workers[name] = Worker(spec)
        clock = time.perf_counter()
        workers[name].request(cmd="block", start=0, stop=min(n, settings.warmup_pairs))  # JIT, allocator, caches
        raw[name] = {"load": workers[name].ready, "warmup_s": time.perf_counter() - clock}
        print(f"{name}: loaded in {raw[name]['load']['load_s']:.1f} s, warm-up {raw[name]['warmup_s']:.1f} s",
              file=sys.stderr)
    for r, (a, z) in enumerate(round_blocks(n, settings.rounds)):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start, stop = (a, z) if name == "reference" else (0, n)
            runs[name].append(workers[name].request(cmd="block", start=start, stop=stop))
            print(f"round {r}: {name} pairs {start}-{stop}: {runs[name][-1]['e2e']:.2f} s", file=sys.stderr)
    for name in names:
        raw[name].update(combine(name, runs[name]))
    lengths = np.asarray(raw[names[0]]["lengths"])
    pair_tokens = lengths[:n] + lengths[n:]
    buckets = {"median": latency_pairs(pair_tokens, 0.5, settings.latency_pairs),
               "p90": latency_pairs(pair_tokens, 0.9, settings.latency_pairs)}
    for name in names:
        raw[name]["latency"] = {
            bucket: {"pair_tokens_mean": float(pair_tokens[idx].mean()),
                     "samples_s": workers[name].request(cmd="latency", indices=idx,
                                                        repeats=settings.latency_repeats)["samples_s"]}
            for bucket, idx in buckets.items()}
        raw[name]["exit"] = workers[name].close()
    return raw
