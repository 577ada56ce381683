"""Peak RSS and throughput of a corpus job (`transalign.corpus.align_corpus`) at a given size.

    python -m benchmarks.corpus_memory [BUNDLE] --pairs 20000 [--shard-pairs 10000] [--ray --workers 2]
    python -m benchmarks.corpus_memory [BUNDLE] --sweep [--sizes 10000,100000,1000000]

One size: writes N synthetic `src ||| tgt` pairs (random sentences of tests/data/corpus.txt, 1-30
words) to a temporary directory, aligns them in this process and prints one JSON line: pairs,
seconds, pairs/s, this process's peak RSS (ru_maxrss) and CPU seconds (on Ray: the driver's
only), and the load average (on a shared machine wall time means little without it).

``--sweep``: the question of issue 16 -- does memory stay flat as the corpus grows? Runs each size
(default 1e4, 1e5, 1e6 pairs, the default shard size) in a fresh process of this script, so the
peaks do not mix, then writes benchmarks/results/DATE-corpus-memory.json and prints a markdown
table with each peak's ratio to the smallest size's peak. BUNDLE defaults to the tiny test bundle
(built, or reused, exactly as the tests' ``tiny_bundle`` fixture does).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "data" / "corpus.txt"
RESULTS = ROOT / "benchmarks" / "results"
SWEEP_SIZES = (10_000, 100_000, 1_000_000)


def tiny_bundle() -> Path:
    """The tiny test bundle under .cache/fixtures, built if missing, with the same cache keys as
    tests/conftest.py (so a benchmark and the tests share one export)."""
    sys.path.insert(0, str(ROOT / "tests"))
    import conftest
    from fixture_models import build_tiny_lora, build_tiny_nllb, cache_key, cached_dir

    nllb = cached_dir(conftest.FIXTURE_CACHE, f"tiny-nllb-{cache_key()}", build_tiny_nllb)
    lora = cached_dir(conftest.FIXTURE_CACHE, f"tiny-lora-{cache_key()}", lambda out: build_tiny_lora(nllb, out))

    def build(out: Path) -> None:
        from transalign.export.api import export

        export(str(nllb), out / "bundle", lora=str(lora), layer=conftest.TINY_LAYER, precisions="fp32,int8,fp16",
               force=True)

    return cached_dir(conftest.FIXTURE_CACHE, f"tiny-bundle-{cache_key(conftest._export_sources())}", build) / "bundle"


def write_corpus(path: Path, pairs: int, seed: int = 0) -> None:
    lines = [line.split() for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as out:
        for _ in range(pairs):
            src = rng.choice(lines)[: rng.randint(1, 30)]
            tgt = rng.choice(lines)[: rng.randint(1, 30)]
            out.write(f"{' '.join(src)} ||| {' '.join(tgt)}\n")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(args) -> dict:
    """One job in this process (the whole process's peak RSS is the job's: run it fresh)."""
    from transalign.corpus import align_corpus

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        write_corpus(corpus, args.pairs)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if args.ray:
            import ray

            ray.init(include_dashboard=False, log_to_driver=False)
        cpu_start, start = cpu_seconds(), time.perf_counter()
        summary = align_corpus(args.bundle, corpus, Path(tmp) / "out", src_lang="eng_Latn", tgt_lang="ces_Latn",
                               shard_pairs=args.shard_pairs, precision=args.precision, threads=args.threads,
                               ray=args.ray, workers=args.workers)
        seconds, cpu_job = time.perf_counter() - start, cpu_seconds() - cpu_start
        assert summary.pairs == args.pairs
    return {"pairs": args.pairs, "shard_pairs": args.shard_pairs, "shards": summary.shards, "ray": args.ray,
            "workers": args.workers, "seconds": round(seconds, 2), "pairs_per_s": round(args.pairs / seconds, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "rss_before_job_mb": round(rss_before / 1024, 1), "cpu_s_job": round(cpu_job, 1),
            "cpu_s_this_process": round(cpu_seconds(), 1), "load_average_1min": round(os.getloadavg()[0], 1)}


def sweep(args) -> dict:
    """Each size in a fresh process of this script; the JSON file and a markdown table."""
    sizes = [int(float(x)) for x in args.sizes.split(",")]
    runs = []
    for pairs in sizes:
        command = [sys.executable, "-m", "benchmarks.corpus_memory", str(args.bundle), "--pairs", str(pairs),
                   "--shard-pairs", str(args.shard_pairs), "--precision", args.precision]
        if args.threads:
            command += ["--threads", str(args.threads)]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
        run = json.loads(done.stdout.strip().splitlines()[-1])
        run["process_wall_s"] = round(time.perf_counter() - start, 2)
        runs.append(run)
        print(json.dumps(run), file=sys.stderr)
    base = runs[0]["peak_rss_mb"]
    for run in runs:
        run["peak_over_smallest"] = round(run["peak_rss_mb"] / base, 3)
    report = {"benchmark": "corpus_memory sweep", "date": datetime.date.today().isoformat(),
              "bundle": str(args.bundle), "precision": args.precision, "threads": args.threads,
              "shard_pairs": args.shard_pairs, "cpu": platform.processor() or platform.machine(),
              "cores": os.cpu_count(), "runs": runs}
    out = args.out or RESULTS / f"{report['date']}-corpus-memory.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"| pairs | shards | wall s | CPU s (job) | pairs per CPU s | peak RSS | vs {sizes[0]:,} | load |")
    print("|---|---|---|---|---|---|---|---|")
    for run in runs:
        print(f"| {run['pairs']:,} | {run['shards']} | {run['seconds']} | {run['cpu_s_job']} | "
              f"{run['pairs'] / max(run['cpu_s_job'], 1e-9):.0f} | {run['peak_rss_mb']:.0f} MB | "
              f"{run['peak_over_smallest']:.2f}x | {run['load_average_1min']} |")
    print(f"\nwritten to {out}")
    return report


def main() -> None:
    from transalign.corpus.job import DEFAULT_SHARD_PAIRS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", nargs="?", help="bundle directory (default: the tiny test bundle)")
    parser.add_argument("--pairs", type=int, help="one size, measured in this process")
    parser.add_argument("--sweep", action="store_true", help="each of --sizes in a fresh process, JSON + table")
    parser.add_argument("--sizes", default=",".join(str(n) for n in SWEEP_SIZES))
    parser.add_argument("--shard-pairs", type=int, default=DEFAULT_SHARD_PAIRS)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--ray", action="store_true")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", type=Path, help="sweep results JSON (default benchmarks/results/DATE-corpus-memory.json)")
    args = parser.parse_args()
    if (args.pairs is None) == (not args.sweep):
        parser.error("give --pairs N (one size) or --sweep")
    args.bundle = Path(args.bundle) if args.bundle else tiny_bundle()
    if args.sweep:
        sweep(args)
    else:
        print(json.dumps(measure(args)))


if __name__ == "__main__":
    main()
