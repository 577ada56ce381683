"""`transalign bench`: throughput, latency and memory of a bundle on this machine."""

from __future__ import annotations

import json
import sys

from transalign.bench.defaults import (DEFAULT_LATENCY_PAIRS, DEFAULT_PRECISIONS, DEFAULT_REPEAT, DEFAULT_SYNTHETIC,
                                       SWEEP, SWEEP_BATCH_TOKENS)
from transalign.bench.knee import KNEE_TOLERANCE
from transalign.engine.bundle import PRECISIONS
from transalign.engine.defaults import DEFAULT_BATCH_TOKENS
from transalign.engine.session import PROVIDERS
from transalign.formats.text import INPUT_FORMATS


def _int_list(flag: str):
    def parse(text: str) -> tuple[int, ...]:
        import argparse

        try:
            values = tuple(int(x) for x in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
        return values  # their range is the engine's rule (LoadOptions), checked in run()

    parse.__name__ = flag  # argparse names the option in its error
    return parse


def _budgets(text: str) -> tuple[int, ...] | str:
    """``--batch-tokens``: a comma-separated list of integers, or ``sweep`` alone (each provider's
    SWEEP_BATCH_TOKENS, expanded once the providers are known)."""
    import argparse

    words = [x.strip().lower() for x in text.split(",")]
    if SWEEP in words:
        if len(words) > 1:
            raise argparse.ArgumentTypeError(f"{text!r}: '{SWEEP}' stands alone (it measures {_sweeps()}); "
                                             "give either sweep or a comma-separated list of integers")
        return SWEEP
    try:
        return _int_list("--batch-tokens")(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a comma-separated list of integers nor "
                                         f"'{SWEEP}'") from None


_budgets.__name__ = "--batch-tokens"


def _sweeps() -> str:
    return ", ".join(f"{','.join(map(str, b))} on {p}" for p, b in SWEEP_BATCH_TOKENS.items())


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(","))


def _per_provider(precisions: dict[str, tuple[str, ...]]) -> str:
    """'fp32,int8 on cpu, fp32,fp16 on cuda': the default precisions as help text."""
    return ", ".join(f"{','.join(chosen)} on {provider}" for provider, chosen in precisions.items())


def register(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="measure a bundle's throughput, latency and memory on this machine",
        description="Measure every combination of precision, provider, threads and token budget asked for: "
                    "pairs/s and real tokens/s (median of --repeat passes after a warm-up, with min and max), "
                    "where the time goes, padding, single-pair latency, load time, peak RSS (each variant "
                    "in its own process) and agreement of the links with fp32. Prints tables; --json writes "
                    "everything, raw measurements included.",
    )
    p.add_argument("bundle", help="bundle directory made by `transalign export`")
    p.add_argument("--src", help="source sentences, one per line (default: synthetic pairs)")
    p.add_argument("--tgt", help="target sentences, one per line")
    p.add_argument("--input-format", choices=INPUT_FORMATS, default=INPUT_FORMATS[0])
    p.add_argument("--synthetic", type=int, metavar="N",
                   help=f"N synthetic pairs from the bundle's vocabulary (default without files: {DEFAULT_SYNTHETIC})")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic pairs (default 0)")
    p.add_argument("--src-lang", help="source language code (NLLB bundles; synthetic pairs default to eng_Latn)")
    p.add_argument("--tgt-lang", help="target language code (NLLB bundles)")
    p.add_argument("--precision", type=_names, metavar="P[,P...]",
                   help=f"comma-separated, any of {', '.join(PRECISIONS)} (default: every precision of the bundle "
                        f"that suits each provider: {_per_provider(DEFAULT_PRECISIONS)})")
    p.add_argument("--provider", type=_names, metavar="P[,P...]",
                   help=f"{', '.join(PROVIDERS)} or {','.join(PROVIDERS)} (default: every available one)")
    p.add_argument("--threads", type=_int_list("--threads"), default=(None,), metavar="N[,N...]",
                   help="comma-separated thread counts, e.g. 1,2,4 (default: all cores)")
    p.add_argument("--batch-tokens", type=_budgets, default=(None,), metavar="N[,N...]|sweep",
                   help=f"comma-separated token budgets (default {DEFAULT_BATCH_TOKENS['cpu']} CPU, "
                        f"{DEFAULT_BATCH_TOKENS['cuda']} CUDA), or '{SWEEP}' for {_sweeps()}; with two or more "
                        "budgets the report names the knee: the smallest budget within "
                        f"{KNEE_TOLERANCE:.0%}% of the best pairs/s")
    p.add_argument("--latency-pairs", type=int, default=DEFAULT_LATENCY_PAIRS, metavar="N",
                   help=f"pairs of median length aligned one per call for latency (0: none; default "
                        f"{DEFAULT_LATENCY_PAIRS})")
    p.add_argument("--repeat", type=int, default=DEFAULT_REPEAT, metavar="R",
                   help=f"timed passes per variant (default {DEFAULT_REPEAT})")
    p.add_argument("--json", metavar="OUT", help="also write the results, raw measurements included, to OUT")
    p.set_defaults(func=run)


def run(args) -> int:
    from transalign.bench.report import render
    from pathlib import Path

    from transalign.bench.runner import BenchOptions, run_bench
    from transalign.engine.options import LoadOptions

    for threads in args.threads:  # every value checked by the engine's rule before any measuring
        LoadOptions(threads=threads)
    for budget in () if args.batch_tokens == SWEEP else args.batch_tokens:
        LoadOptions(batch_tokens=budget)
    if args.json and not Path(args.json).resolve().parent.is_dir():  # fail now, not after the measuring
        raise ValueError(f"--json {args.json}: directory {Path(args.json).resolve().parent} does not exist")
    options = BenchOptions(bundle=args.bundle, src=args.src, tgt=args.tgt, synthetic=args.synthetic, seed=args.seed,
                           src_lang=args.src_lang, tgt_lang=args.tgt_lang, precisions=args.precision,
                           providers=args.provider, threads=args.threads, batch_tokens=args.batch_tokens,
                           latency_pairs=args.latency_pairs, repeat=args.repeat, input_format=args.input_format)
    results = run_bench(options, log=lambda line: print(f"transalign bench: {line}", file=sys.stderr, flush=True))
    print(render(results), end="")
    if args.json:
        from transalign.formats.alignments import atomic_open

        with atomic_open(args.json) as out:
            json.dump(results, out, indent=1)
            out.write("\n")
    return 0
