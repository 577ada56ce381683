"""Greedy against least-cost batch plans: what padding costs when few sentences share a call.

The service merges a few concurrent requests into one `Aligner.align` call; their sentences have
mixed lengths. The former plan (sort longest first, fill each batch up to the token budget)
padded all of them to the longest; `transalign.engine.batching.plan_batches` now cuts the sorted
order where padding costs more than another ONNX Runtime run. Results are identical either way
(the engine is batch-invariant; checked here too); this measures the time, interleaved, in one
process, for calls of ``--group`` pairs and for one call of all pairs:

    python -m benchmarks.batch_plan BUNDLE [--pairs 240] [--groups 240,16,4] [--rounds 2]

The greedy plan is restated here (the engine no longer has it). Prints a markdown table; writes
benchmarks/results/<date>-batch-plan.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.serve_load import LANGS, RESULTS, load_pairs
from transalign.bench.machine import machine_info
from transalign.engine import aligner as aligner_module
from transalign.engine.aligner import Aligner
from transalign.engine.batching import BatchPlan, plan_batches


def greedy_plan(lengths, batch_tokens: int, overhead_tokens: int = 0) -> BatchPlan:
    """The former plan: longest first, each batch filled while count * longest <= budget."""
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    batches, start, padded = [], 0, 0
    while start < len(order):
        longest = int(lengths[order[start]])
        stop = min(len(order), start + max(1, batch_tokens // max(longest, 1)))
        batches.append(order[start:stop])
        padded += (stop - start) * longest
        start = stop
    return BatchPlan(batches, int(lengths.sum()), padded)


def timed(aligner, src, tgt, group: int, langs) -> tuple[float, float, list]:
    """(pairs/s, mean padding share, links) of aligning in calls of ``group`` pairs."""
    start, waste, links = time.perf_counter(), [], []
    for k in range(0, len(src), group):
        results = aligner.align(src[k:k + group], tgt[k:k + group], *langs)
        waste.append(results.stats.padding_waste)
        links += [r.links for r in results]
    return len(src) / (time.perf_counter() - start), float(np.mean(waste)), links


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.batch_plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--pairs", type=int, default=240)
    parser.add_argument("--groups", default="240,16,4")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    pairs, langs = load_pairs(args.bundle, args.pairs)
    src, tgt = [p[0] for p in pairs], [p[1] for p in pairs]
    aligner = Aligner.load(args.bundle, precision=args.precision)
    aligner.align(src[:8], tgt[:8], *langs)  # warm-up
    plans = {"greedy": greedy_plan, "least-cost": plan_batches}
    rows, truth = [], None
    try:
        for round_ in range(args.rounds):
            for name, plan in plans.items():
                aligner_module.plan_batches = plan
                for group in map(int, args.groups.split(",")):
                    rate, waste, links = timed(aligner, src, tgt, group, langs)
                    truth = truth or links
                    assert links == truth, f"{name} plan changed links: the engine must be batch-invariant"
                    rows.append({"round": round_, "plan": name, "pairs_per_call": group,
                                 "pairs_per_s": round(rate, 2), "padding": round(waste, 3)})
                    print(rows[-1], flush=True)
    finally:
        aligner_module.plan_batches = plan_batches
    report = {"benchmark": "batch_plan", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "machine": machine_info(), "bundle": str(args.bundle), "precision": args.precision,
              "pairs": len(src), "languages": list(LANGS), "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{dt.date.today().isoformat()}-batch-plan.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print("\n| plan | pairs per call | pairs/s (rounds) | padding |\n|---|---|---|---|")
    for name in plans:
        for group in map(int, args.groups.split(",")):
            mine = [r for r in rows if r["plan"] == name and r["pairs_per_call"] == group]
            rates = " / ".join(f"{r['pairs_per_s']:.1f}" for r in mine)
            print(f"| {name} | {group} | {rates} | {mine[0]['padding']:.1%} |")
    print(f"\nresults in {out}")


if __name__ == "__main__":
    main()
