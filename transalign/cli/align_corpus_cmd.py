"""`transalign align-corpus`: a whole parallel corpus into resumable alignment shards."""

from __future__ import annotations

# Choice lists and defaults come from the modules that own them (all light: no engine, no Ray).
from transalign.cli.options import add_extraction_flags, add_language_flags, add_load_flags, load_options
from transalign.corpus.formats import INPUT_FORMATS
from transalign.corpus.job import DEFAULT_SHARD_PAIRS
from transalign.corpus.writers import OUTPUT_FORMATS

PROGRESS_MODES = ("auto", "always", "never")


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
    add_language_flags(p, "source language code for rows without a src_lang column (NLLB bundles)",
                       "target language code for rows without a tgt_lang column (NLLB bundles)")
    p.add_argument("--output-format", choices=OUTPUT_FORMATS, default="pharaoh",
                   help="pharaoh: `i-j ...`, line k for input row k (a rejected row: an empty line); id: "
                        "`ID<TAB>i-j ...` (the input's id, else the pair's 0-based row position in the input); "
                        "jsonl: align's record {\"id\", \"links\", \"scores\"?, \"skipped\"?}; parquet: columns id, "
                        "links, skipped (default: pharaoh)")
    add_extraction_flags(p)
    p.add_argument("--scores", action="store_true",
                   help="write each link's score, as `align` does: `i-j:0.873` in pharaoh and id (align's "
                        "pharaoh-scores), a \"scores\" list in jsonl, a scores column in parquet")
    p.add_argument("--shard-pairs", type=int, default=DEFAULT_SHARD_PAIRS,
                   help=f"pairs per shard (default {DEFAULT_SHARD_PAIRS:,})")
    p.add_argument("--resume", action="store_true",
                   help="continue the job in OUTDIR (same input, bundle and options, --precision included); shards "
                        "whose files changed since they were written are aligned again, with a warning naming them; "
                        "another provider than the kept shards ran on is allowed, with a warning")
    p.add_argument("--ray", nargs="?", const=True, default=False, metavar="ADDRESS",
                   help="run on Ray Data actors: the cluster at ADDRESS, or a local one (needs the `ray` extra)")
    p.add_argument("--workers", type=int, default=1, help="Ray actors, one Aligner each (default 1)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per Ray actor (default 0)")
    add_load_flags(p)  # --threads: per Ray actor with --ray (default there: 1 per actor)
    p.add_argument("--skip-long", action="store_true",
                   help="write pairs longer than the model's maximum with no links instead of failing")
    p.add_argument("--rejects", metavar="FILE",
                   help="set malformed rows aside instead of stopping at the first (no `|||`, wrong column count, "
                        "bad JSON or types, invalid UTF-8, unknown language code, too long without --skip-long): "
                        "FILE gets one JSON line per row {file, line, reason, raw}, in input order, when the job "
                        "completes (empty if none); the other rows keep their input positions as ids")
    p.add_argument("--progress", choices=PROGRESS_MODES, default="auto",
                   help="a progress line on stderr, updated per encoder batch, with rate and ETA (auto: when stderr "
                        "is a terminal; default: auto)")
    p.add_argument("--quiet", action="store_true", help="no line per shard on stderr (damaged shards found by "
                   "--resume are still reported)")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    from transalign.cli import UserError
    from transalign.cli.progress import Progress
    from transalign.corpus.job import align_corpus, stderr_log, stderr_warn

    load = load_options(args)  # checked before any work; an OptionError names its flag
    show = args.progress == "always" or (args.progress == "auto" and not args.quiet and sys.stderr.isatty())
    bars: list[Progress] = []

    def progress(total):
        bars.append(Progress(total, "transalign align-corpus: pairs", show))
        return bars[-1]

    def log(message: str) -> None:
        if bars and bars[-1].last > bars[-1].start:  # a progress line was drawn
            sys.stderr.write("\n")  # end the progress line; it is drawn again below this one
        stderr_log(message)

    try:
        summary = align_corpus(
            args.bundle, args.input, args.outdir, input_format=args.input_format, src_lang=args.src_lang,
            tgt_lang=args.tgt_lang, output_format=args.output_format, shard_pairs=args.shard_pairs,
            resume=args.resume, ray=args.ray, workers=args.workers, gpus_per_worker=args.gpus_per_worker,
            precision=load.precision, provider=load.provider, threshold=args.threshold, method=args.method,
            word_level=args.word_level, scores=args.scores, batch_tokens=load.batch_tokens,
            skip_long=args.skip_long, rejects=args.rejects, threads=load.threads,
            log=None if args.quiet else log, warn=stderr_warn, progress=progress if show else None)
    except ImportError as exc:  # the `ray` extra (Ray Data, pyarrow) is not installed
        raise UserError(str(exc)) from None
    finally:
        for bar in bars:
            bar.close()
    if not args.quiet:
        stderr_log(f"{summary.outdir}: {summary.pairs} pairs in {summary.shards} shards "
                   f"({summary.written} written now)" + (f", {summary.skipped} too long" if summary.skipped else "")
                   + (f", {summary.rejected} rows rejected (see {summary.rejects})" if summary.rejects else "")
                   + (f", {len(summary.repaired)} damaged shards aligned again" if summary.repaired else "")
                   + (f"; ran on {', '.join(summary.ran)}" if summary.ran else ""))
    return 0
