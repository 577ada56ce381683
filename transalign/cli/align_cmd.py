"""`transalign align`: align two sentence files with a bundle."""

from __future__ import annotations

import contextlib
import sys
import warnings

from transalign.engine.defaults import DEFAULT_BATCH_TOKENS

PROGRESS_MIN_PAIRS = 1000


def register(sub) -> None:
    p = sub.add_parser(
        "align",
        help="align sentence pairs from two files",
        description="Align SRC[k] with TGT[k] for every k and write one line of links `i-j` per pair "
                    "(i: source word, j: target word, 0-based).",
    )
    p.add_argument("bundle", help="bundle directory made by `transalign export`")
    p.add_argument("--src", required=True, help="source sentences")
    p.add_argument("--tgt", required=True, help="target sentences")
    p.add_argument("--src-lang", help="source language code, e.g. bam_Latn (required for NLLB bundles)")
    p.add_argument("--tgt-lang", help="target language code, e.g. eng_Latn (required for NLLB bundles)")
    p.add_argument("--threshold", type=float, help="alignment threshold (default: the bundle's, 0.001 for NLLB)")
    p.add_argument("--input-format", choices=("lines", "conll"), default="lines",
                   help="lines: one sentence per line, words split on whitespace; conll: one token per line "
                        "(first column), blank line between sentences (default: lines)")
    p.add_argument("--output-format", choices=("pharaoh", "id"), default="pharaoh",
                   help="pharaoh: `i-j i-j` per line; id: `ID<TAB>i-j ...` with ID the 0-based pair index")
    p.add_argument("-o", "--output", help="output file (written atomically; default: stdout)")
    p.add_argument("--provider", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--precision", choices=("fp32", "int8", "fp16"), default="fp32")
    p.add_argument("--batch-tokens", type=int, help="padded tokens per encoder batch (default "
                   f"{DEFAULT_BATCH_TOKENS['cpu']} CPU, {DEFAULT_BATCH_TOKENS['cuda']} CUDA)")
    p.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    p.add_argument("--skip-long", action="store_true",
                   help="give pairs with a sentence longer than the model's maximum an empty line instead of "
                        "failing (the count is reported)")
    p.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                   help=f"progress on stderr (auto: on a terminal, for {PROGRESS_MIN_PAIRS}+ pairs)")
    p.set_defaults(func=run)


def run(args) -> int:
    from transalign.alignment_io import atomic_open, format_line
    from transalign.cli import UserError
    from transalign.cli.progress import Progress
    from transalign.engine.aligner import Aligner
    from transalign.engine.textio import read_sentences

    src = read_sentences(args.src, args.input_format)
    tgt = read_sentences(args.tgt, args.input_format)
    if len(src) != len(tgt):
        unit = "lines" if args.input_format == "lines" else "sentences"
        raise UserError(f"{args.src} has {len(src)} {unit} but {args.tgt} has {len(tgt)}; "
                        "every source sentence needs exactly one target sentence (nothing was written)")
    aligner = Aligner.load(args.bundle, provider=args.provider, precision=args.precision, threads=args.threads)
    show = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty()
                                         and len(src) >= PROGRESS_MIN_PAIRS)
    progress = Progress(len(src), "aligned pairs", show)
    results = aligner.align_iter(src, tgt, args.src_lang, args.tgt_lang, args.threshold,
                                 batch_tokens=args.batch_tokens, on_too_long="skip" if args.skip_long else "error")
    with (atomic_open(args.output) if args.output else contextlib.nullcontext(sys.stdout)) as out, \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the skipped-pairs count is reported below, once
        for index, result in enumerate(results):
            out.write(format_line(result.links, id=index if args.output_format == "id" else None) + "\n")
            progress.update()
    progress.close()
    if aligner.stats.skipped:
        print(f"transalign align: {aligner.stats.skipped} of {len(src)} pairs were longer than the model's "
              f"{aligner.manifest.max_positions} tokens and got an empty line", file=sys.stderr)
    return 0
