"""`transalign align`: align two sentence files with a bundle."""

from __future__ import annotations

import sys
import warnings

from transalign.engine.bundle import PRECISIONS
from transalign.engine.defaults import DEFAULT_BATCH_TOKENS, MAX_BATCH_TOKENS
from transalign.engine.session import PROVIDER_CHOICES
from transalign.formats.alignments import OUTPUT_FORMATS
from transalign.formats.text import INPUT_FORMATS
from transalign.kernels.names import DEFAULT_METHOD, DEFAULT_WORD_LEVEL, METHODS, WORD_LEVELS

PROGRESS_MIN_PAIRS = 1000
PROGRESS_MODES = ("auto", "always", "never")


def register(sub) -> None:
    p = sub.add_parser(
        "align",
        help="align sentence pairs from two files",
        description="Align SRC[k] with TGT[k] for every k and write one line of links `i-j` per pair "
                    "(i: source word, j: target word, 0-based).",
    )
    p.add_argument("bundle", help="bundle directory made by `transalign export`")
    p.add_argument("--src", required=True, help="source sentences (- reads standard input)")
    p.add_argument("--tgt", required=True, help="target sentences (- reads standard input)")
    p.add_argument("--src-lang", help="source language code, e.g. bam_Latn (required for NLLB bundles)")
    p.add_argument("--tgt-lang", help="target language code, e.g. eng_Latn (required for NLLB bundles)")
    p.add_argument("--threshold", type=float, help="alignment threshold of --method softmax (default: the bundle's, "
                                                   "0.001 for NLLB)")
    p.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD,
                   help="softmax: both softmaxes of the similarities above the threshold (the paper's, default); "
                        "argmax: row and column maximum of the similarities (SimAlign's ArgMax); "
                        "itermax: SimAlign's IterMax, argmax plus a second round for unaligned words")
    p.add_argument("--word-level", choices=WORD_LEVELS, default=DEFAULT_WORD_LEVEL,
                   help="any: words are linked when any of their subwords are (the paper's, default); "
                        "mean: align mean-pooled subword vectors of each word (SimAlign's word level)")
    p.add_argument("--input-format", choices=INPUT_FORMATS, default=INPUT_FORMATS[0],
                   help="lines: one sentence per line, words split on whitespace; conll: one token per line "
                        "(first column), blank line between sentences (default: lines)")
    p.add_argument("--output-format", choices=OUTPUT_FORMATS, default=OUTPUT_FORMATS[0],
                   help="pharaoh: `i-j i-j` per line; id: `ID<TAB>i-j ...` with ID the 0-based pair index; "
                        'jsonl: `{"links": [[i, j], ...], "scores": [...]}` per line; pharaoh-scores: `i-j:0.873 ...`; '
                        "a link's score is min(F, B) for softmax, the similarity for argmax / itermax (default: pharaoh)")
    p.add_argument("-o", "--output", help="output file, written atomically (a FIFO, a device or - is streamed; "
                   "default: stdout); a directory or an input file is refused before any work")
    p.add_argument("--provider", choices=PROVIDER_CHOICES, default="auto",
                   help="execution provider: auto = CUDA when this onnxruntime has it, else CPU (default: auto)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32: exact; int8: CPU, fastest there; fp16: CUDA (default: fp32)")
    p.add_argument("--batch-tokens", type=int, help=f"padded tokens per encoder batch, 1..{MAX_BATCH_TOKENS} (default "
                   f"{DEFAULT_BATCH_TOKENS['cpu']} CPU, {DEFAULT_BATCH_TOKENS['cuda']} CUDA); results do not depend on it")
    p.add_argument("--threads", type=int, help="CPU threads, at most the number of cores (more are clamped, "
                   "with a warning; default: all cores)")
    p.add_argument("--skip-long", action="store_true",
                   help="give pairs with a sentence longer than the model's maximum an empty line instead of "
                        "failing (the count is reported)")
    p.add_argument("--progress", choices=PROGRESS_MODES, default="auto",
                   help=f"progress on stderr (auto: on a terminal, for {PROGRESS_MIN_PAIRS}+ pairs or unknown counts; "
                        "default: auto)")
    p.set_defaults(func=run)


def run(args) -> int:
    from transalign.formats.alignments import SCORED_FORMATS, format_line, format_scored_line
    from transalign.cli import UserError
    from transalign.cli.progress import Progress
    from transalign.engine.aligner import Aligner, TooLongError
    from transalign.outputs import check_output, open_output

    if args.threshold is not None and args.method != "softmax":
        raise UserError(f"--threshold applies to --method softmax only, not to --method {args.method}")
    if args.src == "-" and args.tgt == "-":
        raise UserError("--src - and --tgt - both name standard input; at most one side can be read from it")
    check_output(args.output, inputs=(args.src, args.tgt), flag="-o")
    for flag, path in (("--src", args.src), ("--tgt", args.tgt)):
        _check_input(flag, path)
    aligner = Aligner.load(args.bundle, provider=args.provider, precision=args.precision, threads=args.threads)
    _check_langs(aligner, args)
    total = _count_pairs(args.src, args.input_format)
    show = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty()
                                         and (total is None or total >= PROGRESS_MIN_PAIRS))
    progress = Progress(total, "aligned pairs", show)
    aligner.progress_hook = lambda sentences: progress.update(sentences / 2)
    src, tgt = _Side(args.src, args.input_format), _Side(args.tgt, args.input_format)
    results = aligner.align_iter(iter(src), iter(tgt), args.src_lang, args.tgt_lang, args.threshold,
                                 batch_tokens=args.batch_tokens, on_too_long="skip" if args.skip_long else "error",
                                 method=args.method, word_level=args.word_level,
                                 with_scores=args.output_format in SCORED_FORMATS)
    count = 0
    try:
        with open_output(args.output or "-", inputs=(args.src, args.tgt)) as out, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the skipped-pairs count is reported below, once
            for count, result in enumerate(results, 1):
                if args.output_format in SCORED_FORMATS:
                    out.write(format_scored_line(result.links, result.scores, args.output_format) + "\n")
                else:
                    out.write(format_line(result.links, id=count - 1 if args.output_format == "id" else None) + "\n")
    except TooLongError as exc:
        side = src if exc.side == "source" else tgt
        raise UserError(f"{side.path}, line {side.line_of(exc.pair)}: sentence has {exc.tokens} tokens (special tokens "
                        f"included), more than the model's maximum of {exc.limit}; split it, or pass --skip-long "
                        "to give such pairs an empty line (nothing was written)") from None
    except ValueError as exc:
        if "more sentences than" not in str(exc):
            raise
        unit = "lines" if args.input_format == "lines" else "sentences"
        raise UserError(f"{args.src} has {src.total()} {unit} but {args.tgt} has {tgt.total()}; every source "
                        "sentence needs exactly one target sentence (nothing was written)") from None
    progress.close()
    if aligner.stats.skipped:
        print(f"transalign align: {aligner.stats.skipped} of {count} pairs were longer than the model's "
              f"{aligner.manifest.max_positions} tokens and got an empty line", file=sys.stderr)
    return 0


class _Side:
    """One input file streamed sentence by sentence, remembering where each sentence starts
    (so an error about pair k can name the file's 1-based line)."""

    def __init__(self, path: str, fmt: str):
        self.path, self.fmt, self.count = path, fmt, 0
        self._lines: dict[int, int] = {}

    def __iter__(self):
        from transalign.formats.text import iter_sentences

        for number, words in iter_sentences(self.path, self.fmt):
            if self.fmt == "conll":  # lines: the line number is the pair index + 1
                self._lines[self.count] = number
            self.count += 1
            yield words

    def total(self) -> str:
        """How many sentences the whole input has (standard input: how many were read)."""
        if self.path == "-":
            return f"at least {self.count}"
        from transalign.formats.text import iter_sentences

        return str(sum(1 for _ in iter_sentences(self.path, self.fmt)))

    def line_of(self, pair: int) -> int:
        return pair + 1 if self.fmt == "lines" else self._lines.get(pair, pair + 1)


def _check_input(flag: str, path: str) -> None:
    import os

    from transalign.cli import UserError

    if path == "-":
        return
    if os.path.isdir(path):
        raise UserError(f"{flag} {path} is a directory; expected a text file")
    if not os.path.exists(path):
        raise UserError(f"{flag} {path}: file not found")


def _check_langs(aligner, args) -> None:
    """NLLB bundles need both codes; a bundle without codes must not be given any."""
    from transalign.cli import UserError

    has_codes = bool(aligner.manifest.tokenizer.lang_code_ids)
    for flag, value in (("--src-lang", args.src_lang), ("--tgt-lang", args.tgt_lang)):
        if has_codes and value is None:
            raise UserError(f"{flag} is required for this bundle ({aligner.manifest.architecture}: every sentence "
                            "starts with its language code), e.g. eng_Latn")
        if not has_codes and value is not None:
            print(f"transalign align: warning: {flag} {value} is ignored: this {aligner.manifest.architecture} "
                  "bundle has no language codes", file=sys.stderr)
    if not has_codes:
        args.src_lang = args.tgt_lang = None


def _count_pairs(path: str, fmt: str) -> int | None:
    """Lines of a regular `lines` file, for the progress percentage (one fast pass); else None."""
    import os

    if fmt != "lines" or path == "-" or not os.path.isfile(path):
        return None
    count, last = 0, b"\n"
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")
