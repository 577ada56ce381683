"""Throughput, latency and memory of a bundle on this machine (`transalign bench`).

- ``runner``: options, the variants to measure, one worker process per variant, the results;
- ``worker``: a variant's process (load, warm-up, timed passes, latency, peak RSS);
- ``measure``: one timed pass, end to end, over the Aligner and its ``AlignStats``;
- ``stats``: the arithmetic (spread, percentiles, agreement, peak RSS) shared with ``benchmarks/``;
- ``report``: raw -> derived figures -> tables; ``machine``: what the machine is;
- ``knee``: the token budget past which throughput stops rising (``--batch-tokens sweep``);
- ``synthetic``: deterministic pairs from the bundle's own vocabulary.

Nothing here imports torch.
"""

from __future__ import annotations

__all__ = ["BenchOptions", "run_bench"]


def __getattr__(name: str):
    if name in __all__:
        from transalign.bench import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'transalign.bench' has no attribute {name!r}")
