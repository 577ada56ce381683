"""`transalign align-corpus`: a whole parallel corpus into resumable alignment shards."""

from __future__ import annotations

# Choice lists and defaults come from the modules that own them (all light: no engine, no Ray).
from transalign.corpus.formats import INPUT_FORMATS, OUTPUT_FORMATS
from transalign.corpus.job import DEFAULT_SHARD_PAIRS
from transalign.engine.bundle import PRECISIONS
from transalign.engine.defaults import DEFAULT_BATCH_TOKENS
from transalign.engine.session import PROVIDER_CHOICES


def register(sub) -> None:
    p = sub.add_parser(
        "align-corpus",
        help="align a parallel corpus file into resumable shards (in process or on Ray)",
        description="Align every pair of INPUT into OUTDIR/part-00000.EXT, part-00001.EXT, ... (SHARD_PAIRS "
                    "pairs each, written atomically) and OUTDIR/manifest.json. The shards in name order are the "
                    "whole result in input order; for pharaoh, exactly what `transalign align` writes.",
    )
    p.add_argument("bundle", help="bundle directory made by `transalign export`")
    p.add_argument("input", help="parallel corpus: `src ||| tgt` lines, TSV, JSONL or Parquet")
    p.add_argument("-o", "--outdir", required=True, help="output directory (new or empty, or the job to --resume)")
    p.add_argument("--input-format", choices=INPUT_FORMATS,
                   help="default: from the extension (.tsv .jsonl .parquet), else from the first line")
    p.add_argument("--src-lang", help="source language code for rows without a src_lang column (NLLB bundles)")
    p.add_argument("--tgt-lang", help="target language code for rows without a tgt_lang column (NLLB bundles)")
    p.add_argument("--output-format", choices=OUTPUT_FORMATS, default="pharaoh",
                   help="pharaoh: `i-j ...`; id: `ID<TAB>i-j ...` (the input's id, else the pair's 0-based row "
                        "position in the input); "
                        "jsonl: {\"id\", \"links\"}; parquet: columns id, links, skipped (default: pharaoh)")
    p.add_argument("--shard-pairs", type=int, default=DEFAULT_SHARD_PAIRS,
                   help=f"pairs per shard (default {DEFAULT_SHARD_PAIRS:,})")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted job in OUTDIR (same input, bundle and options)")
    p.add_argument("--ray", nargs="?", const=True, default=False, metavar="ADDRESS",
                   help="run on Ray Data actors: the cluster at ADDRESS, or a local one (needs the `ray` extra)")
    p.add_argument("--workers", type=int, default=1, help="Ray actors, one Aligner each (default 1)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per Ray actor (default 0)")
    p.add_argument("--threads", type=int, help="CPU threads (per Ray actor with --ray; default: all cores, "
                                               "1 per actor with --ray)")
    p.add_argument("--threshold", type=float, help="alignment threshold (default: the bundle's)")
    p.add_argument("--provider", choices=PROVIDER_CHOICES, default="auto")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32")
    p.add_argument("--batch-tokens", type=int, help="padded tokens per encoder batch (default "
                   f"{DEFAULT_BATCH_TOKENS['cpu']} CPU, {DEFAULT_BATCH_TOKENS['cuda']} CUDA)")
    p.add_argument("--skip-long", action="store_true",
                   help="write pairs longer than the model's maximum with no links instead of failing")
    p.add_argument("--rejects", metavar="FILE",
                   help="set malformed rows aside instead of stopping at the first (no `|||`, wrong column count, "
                        "bad JSON or types, invalid UTF-8, unknown language code, too long without --skip-long): "
                        "FILE gets one JSON line per row {file, line, reason, raw}, in input order, when the job "
                        "completes (empty if none); the other rows keep their input positions as ids")
    p.add_argument("--quiet", action="store_true", help="no line per shard on stderr")
    p.set_defaults(func=run)


def run(args) -> int:
    from transalign.cli import UserError
    from transalign.corpus.job import align_corpus, stderr_log

    try:
        summary = align_corpus(
            args.bundle, args.input, args.outdir, input_format=args.input_format, src_lang=args.src_lang,
            tgt_lang=args.tgt_lang, output_format=args.output_format, shard_pairs=args.shard_pairs,
            resume=args.resume, ray=args.ray, workers=args.workers, gpus_per_worker=args.gpus_per_worker,
            precision=args.precision, provider=args.provider, threshold=args.threshold,
            batch_tokens=args.batch_tokens, skip_long=args.skip_long, rejects=args.rejects, threads=args.threads,
            log=None if args.quiet else stderr_log)
    except ImportError as exc:  # the `ray` extra (Ray Data, pyarrow) is not installed
        raise UserError(str(exc)) from None
    if not args.quiet:
        stderr_log(f"{summary.outdir}: {summary.pairs} pairs in {summary.shards} shards "
                   f"({summary.written} written now)" + (f", {summary.skipped} too long" if summary.skipped else "")
                   + (f", {summary.rejected} rows rejected (see {summary.rejects})" if summary.rejects else ""))
    return 0
