"""Peak RSS and throughput of a corpus job (`transalign.corpus.align_corpus`) at a given size.

    python -m benchmarks.corpus_memory BUNDLE --pairs 20000 [--shard-pairs 10000] [--ray --workers 2]

Writes N synthetic `src ||| tgt` pairs (random sentences of tests/data/corpus.txt, 1-30 words)
to a temporary directory, aligns them in a fresh process (this one) and prints one JSON line:
pairs, seconds, pairs/s, this process's peak RSS (ru_maxrss) and CPU seconds (on Ray: the driver's only), and the
load average (on a shared machine wall time means little without it).
Run each size in its own process so the peaks do not mix.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import tempfile
import time
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "data" / "corpus.txt"


def write_corpus(path: Path, pairs: int, seed: int = 0) -> None:
    lines = [line.split() for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as out:
        for _ in range(pairs):
            src = rng.choice(lines)[: rng.randint(1, 30)]
            tgt = rng.choice(lines)[: rng.randint(1, 30)]
            out.write(f"{' '.join(src)} ||| {' '.join(tgt)}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("--pairs", type=int, required=True)
    parser.add_argument("--shard-pairs", type=int, default=10_000)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--ray", action="store_true")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    from transalign.corpus import align_corpus

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        write_corpus(corpus, args.pairs)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if args.ray:
            import ray

            ray.init(include_dashboard=False, log_to_driver=False)
        start = time.perf_counter()
        summary = align_corpus(args.bundle, corpus, Path(tmp) / "out", src_lang="eng_Latn", tgt_lang="ces_Latn",
                               shard_pairs=args.shard_pairs, precision=args.precision, threads=args.threads,
                               ray=args.ray, workers=args.workers)
        seconds = time.perf_counter() - start
        assert summary.pairs == args.pairs
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"pairs": args.pairs, "shard_pairs": args.shard_pairs, "ray": args.ray,
                      "workers": args.workers, "seconds": round(seconds, 2),
                      "pairs_per_s": round(args.pairs / seconds, 1),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "rss_before_job_mb": round(rss_before / 1024, 1),
                      "cpu_s_this_process": round(usage.ru_utime + usage.ru_stime, 1),
                      "load_average_1min": round(os.getloadavg()[0], 1)}))


if __name__ == "__main__":
    main()
