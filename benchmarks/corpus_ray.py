"""Corpus-job throughput in process against Ray Data actors, same pairs, same run, interleaved.

    python -m benchmarks.corpus_ray [BUNDLE] [--pairs 20000] [--shard-pairs 2000] [--rounds 2]

In process: ``align_corpus(..., threads=2)``; Ray: a local cluster started here with 2 CPUs,
``ray=True, workers=2, threads=1`` (2 actors x 1 thread: the same 2 cores). The modes alternate
(in process, Ray, in process, Ray, ...) so a change in the machine's load hits both. Each run
reports its wall and this process's CPU seconds, and, from the time each shard is written:

- ``first_shard_s``: start to the first shard on disk (in process: loading the model and one
  shard; Ray: the driver's scan of the input, actor start-up with one model load each, one shard);
- ``steady_pairs_per_s``: pairs of the later shards over the time from the first shard to the
  last (start-up excluded), the rate a long job approaches (Ray hands shards to the driver in
  bursts, so give it many shards: with a handful this rate is noise).

Ray's start-up, separately: ``startup_over_in_process_s`` = Ray's first_shard_s minus in
process's. Every run's shards are checked to equal the first in-process run's, byte for byte.
Writes benchmarks/results/DATE-corpus-ray.json and prints a markdown table. BUNDLE defaults to
the tiny test bundle (benchmarks/corpus_memory.py: ``tiny_bundle``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

from benchmarks.corpus_memory import RESULTS, tiny_bundle, write_corpus


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def one_run(mode: str, bundle: Path, corpus: Path, outdir: Path, args) -> tuple[dict, bytes]:
    """One job; (measurements, the concatenated shards)."""
    from transalign.corpus import align_corpus

    stamps: list[float] = []
    start, cpu_start = time.perf_counter(), cpu_seconds()
    kwargs = {"ray": True, "workers": 2, "threads": 1} if mode == "ray" else {"threads": 2}
    summary = align_corpus(bundle, corpus, outdir, src_lang="eng_Latn", tgt_lang="ces_Latn",
                           shard_pairs=args.shard_pairs, precision=args.precision,
                           log=lambda message: stamps.append(time.perf_counter()), **kwargs)
    wall = time.perf_counter() - start
    assert summary.pairs == args.pairs and len(stamps) == summary.shards, (summary, len(stamps))
    later = args.pairs - args.shard_pairs  # pairs of the shards after the first
    steady = later / (stamps[-1] - stamps[0]) if summary.shards > 1 and stamps[-1] > stamps[0] else None
    result = {"mode": mode, "wall_s": round(wall, 2), "pairs_per_s": round(args.pairs / wall, 1),
              "cpu_s_this_process": round(cpu_seconds() - cpu_start, 1),
              "first_shard_s": round(stamps[0] - start, 2),
              "steady_pairs_per_s": None if steady is None else round(steady, 1),
              "load_average_1min": round(os.getloadavg()[0], 1)}
    return result, b"".join(p.read_bytes() for p in sorted(outdir.glob("part-*")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", nargs="?", help="bundle directory (default: the tiny test bundle)")
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--shard-pairs", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--out", type=Path, help="results JSON (default benchmarks/results/DATE-corpus-ray.json)")
    args = parser.parse_args()
    if args.pairs <= args.shard_pairs:
        parser.error("--pairs must exceed --shard-pairs (the steady rate needs more than one shard)")
    bundle = Path(args.bundle) if args.bundle else tiny_bundle()

    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    runs, reference = [], None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            corpus = Path(tmp) / "corpus.txt"
            write_corpus(corpus, args.pairs)
            for round_ in range(args.rounds):
                for mode in ("in_process", "ray"):
                    result, output = one_run(mode, bundle, corpus, Path(tmp) / f"{mode}-{round_}", args)
                    reference = reference or output
                    result["round"] = round_
                    result["output_equals_first_in_process_run"] = output == reference
                    assert output == reference, f"{mode} round {round_}: shards differ from the in-process run"
                    runs.append(result)
                    print(json.dumps(result))
    finally:
        ray.shutdown()

    def best(mode: str, key: str, pick=max):
        values = [r[key] for r in runs if r["mode"] == mode and r[key] is not None]
        return pick(values) if values else None

    summary = {
        "ray_over_in_process_wall": round(best("in_process", "wall_s", min) / best("ray", "wall_s", min), 3),
        "ray_over_in_process_steady": (round(best("ray", "steady_pairs_per_s") / best("in_process", "steady_pairs_per_s"), 3)
                                       if best("ray", "steady_pairs_per_s") and best("in_process", "steady_pairs_per_s")
                                       else None),
        "startup_over_in_process_s": round(best("ray", "first_shard_s", min) - best("in_process", "first_shard_s", min), 2),
    }
    report = {"benchmark": "corpus_ray", "date": datetime.date.today().isoformat(), "bundle": str(bundle),
              "pairs": args.pairs, "shard_pairs": args.shard_pairs, "precision": args.precision,
              "in_process": "threads=2", "ray": "local cluster num_cpus=2, 2 actors x 1 thread",
              "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "runs": runs,
              "summary": summary}
    out = args.out or RESULTS / f"{report['date']}-corpus-ray.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print("| round | mode | wall s | pairs/s | first shard s | steady pairs/s | driver CPU s | load |")
    print("|---|---|---|---|---|---|---|---|")
    for r in runs:
        print(f"| {r['round']} | {r['mode']} | {r['wall_s']} | {r['pairs_per_s']} | {r['first_shard_s']} | "
              f"{r['steady_pairs_per_s']} | {r['cpu_s_this_process']} | {r['load_average_1min']} |")
    print(f"\nRay / in process (best of each): wall rate {summary['ray_over_in_process_wall']}x, steady rate "
          f"{summary['ray_over_in_process_steady']}x; Ray start-up +{summary['startup_over_in_process_s']} s")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
