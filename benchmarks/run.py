"""Speed, memory and agreement of the engine against the reference method, at full size.

    python -m benchmarks.run                 # all 1274 bam-en pairs, every variant; updates README.md
    python -m benchmarks.run --pairs 200     # a quick subset (table printed, README untouched)

Workload (cached in benchmarks/work/, `workload.py`): the NLLB-600M-shaped random encoder with a
stand-in sentencepiece tokenizer (benchmarks/full_size.py), the authors' LoRA adapter with lora_B
scaled by ``--lora-scale`` (random base weights + the exact adapter collapse all vectors onto one
direction), and a bundle exported from both at layer 12. The reference and the engine use the
very same scaled adapter.

Each variant (`variants.py`) runs in its own persistent worker process (`worker.py`), so load
time and peak RSS are its own. The run is interleaved in rounds (`interleave.py`), rotating the
order: per round the reference aligns its next block of pairs (cut at multiples of 100, its
batch size, so its batches are those of a full run) and every other variant aligns all pairs in
one call, as a user would; machine drift thus hits all variants alike. The reference's links
are the yardstick for every other variant (`results.py`, then `report.py`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from benchmarks import peak, report
from benchmarks.interleave import RoundSettings, run_variants
from benchmarks.results import Measured, assemble, profile_engines
from benchmarks.variants import PRECISION
from benchmarks.workload import batch_tokens, load_pairs, setup

HERE = Path(__file__).resolve().parent
DEFAULT_VARIANTS = {"cpu": "reference,engine-fp32,engine-int8,torch-int8",
                    "cuda": "reference,engine-fp32,engine-fp16,torch-fp16"}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--pairs", type=int, default=None, help="first N pairs only (default: all 1274)")
    p.add_argument("--variants", default=None,
                   help=f"comma list (default cpu: {DEFAULT_VARIANTS['cpu']}; cuda: {DEFAULT_VARIANTS['cuda']})")
    p.add_argument("--provider", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--batch-tokens", type=int, default=None, help="engine/torch token budget (engine default)")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--rounds", type=int, default=3,
                   help="interleaved rounds: the reference does 1/rounds of the pairs per round, "
                        "every other variant all of them")
    p.add_argument("--lora-scale", type=float, default=0.1)
    p.add_argument("--warmup-pairs", type=int, default=16)
    p.add_argument("--latency-pairs", type=int, default=20)
    p.add_argument("--latency-repeats", type=int, default=3)
    p.add_argument("--reexport", action="store_true",
                   help="export the bundle again (after changes to the export stage)")
    p.add_argument("--no-profile", action="store_true", help="skip the ONNX Runtime op profile")
    p.add_argument("--work", type=Path, default=HERE / "work")
    p.add_argument("--out", type=Path, default=None, help="results JSON (default benchmarks/results/...)")
    p.add_argument("--readme", choices=("auto", "yes", "no"), default="auto",
                   help="rewrite the README table (auto: only for a run over all pairs)")
    return p


def main(argv=None) -> None:
    cli = parser()
    args = cli.parse_args(argv)
    if args.worker:  # the former way to start a worker; benchmarks.worker is the module now
        from benchmarks.worker import worker_main

        return worker_main(json.loads(args.worker))
    if args.rounds < 1:
        cli.error(f"--rounds {args.rounds} must be >= 1")
    variants = (args.variants or DEFAULT_VARIANTS[args.provider]).split(",")
    unknown = [v for v in variants if v not in PRECISION]
    if unknown:
        cli.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(PRECISION)}")
    settings = RoundSettings(variants=tuple(variants), provider=args.provider, threads=args.threads,
                             batch_tokens=batch_tokens(args.batch_tokens, args.provider), rounds=args.rounds,
                             warmup_pairs=args.warmup_pairs, latency_pairs=args.latency_pairs,
                             latency_repeats=args.latency_repeats)

    n = min(args.pairs or 10**9, len(load_pairs()[0]))
    loadavg_start = os.getloadavg()
    paths = setup(args.work, args.lora_scale, args.provider, args.reexport)
    peak_precisions = sorted({PRECISION[v] for v in variants} | {"fp32"})

    def measure_peaks() -> dict:
        return peak.measure_peaks(peak_precisions, settings.threads, rows=settings.batch_tokens,
                                  provider=settings.provider)

    peaks_before = measure_peaks()
    raw = run_variants(settings, paths, n)
    peaks_after = measure_peaks()
    profiles = {} if args.no_profile else profile_engines(settings, paths, raw)
    measured = Measured(raw, peaks_before, peaks_after, profiles, loadavg_start)
    results = assemble(settings, paths, n, measured, lora_scale=args.lora_scale, work=args.work)
    out = args.out or HERE / "results" / results["results_file"].split("/")[-1]
    report.save(results, out)
    print(report.render(results))
    print(f"results: {out}", file=sys.stderr)
    if args.readme == "yes" or (args.readme == "auto" and not results["settings"]["subset"]):
        report.update_readme(results)
        print(f"updated {report.README}", file=sys.stderr)


if __name__ == "__main__":
    main()
