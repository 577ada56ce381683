"""`transalign align`: align two sentence files with a bundle."""

from __future__ import annotations

import sys
import warnings
from collections import deque

from transalign.formats.alignments import OUTPUT_FORMATS, SCORED_FORMATS
from transalign.formats.text import INPUT_FORMATS

PROGRESS_MIN_PAIRS = 1000
PROGRESS_MODES = ("auto", "always", "never")


def register(sub) -> None:
    from transalign.cli.options import add_bundle_argument, add_extraction_flags, add_language_flags, add_load_flags

    p = sub.add_parser(
        "align",
        help="align sentence pairs from two files, or one `src ||| tgt` file",
        description="Align SRC[k] with TGT[k] for every k (or the two sides of each line of --input) and write "
                    "one line of links `i-j` per pair (i: source word, j: target word, 0-based). "
                    "`transalign align BUNDLE --help` also shows BUNDLE's default extraction.",
        add_help=False,
    )
    add_bundle_argument(p)
    p.add_argument("--src", help="source sentences (- reads standard input)")
    p.add_argument("--tgt", help="target sentences (- reads standard input)")
    p.add_argument("--input", help="instead of --src/--tgt: one pair per line, `source ||| target` (fast_align, "
                   "awesome-align) or `source<TAB>target`; - reads standard input")
    add_language_flags(p)
    add_extraction_flags(p)
    p.add_argument("--input-format", choices=INPUT_FORMATS, default=INPUT_FORMATS[0],
                   help="of --src/--tgt: lines: one sentence per line, words split on whitespace; conll: one token "
                        "per line (first column), blank line between sentences (default: lines)")
    p.add_argument("--output-format", choices=OUTPUT_FORMATS, default=OUTPUT_FORMATS[0],
                   help="pharaoh: `i-j i-j` per line; id: `ID<TAB>i-j ...` with ID the 0-based pair index; "
                        'jsonl: `{"id": 0, "links": [[i, j], ...], "scores": [...]}` per line; pharaoh-scores: '
                        "`i-j:0.873 ...`; a link's score is min(F, B) for softmax, the similarity for argmax / "
                        "itermax (docs/extraction-methods.md; default: pharaoh)")
    p.add_argument("-o", "--output", help="output file, written atomically (a FIFO, a device or - is streamed; "
                   "default: stdout); a directory or an input file is refused before any work")
    add_load_flags(p, pipeline=True)
    p.add_argument("--skip-long", action="store_true",
                   help="give pairs with a sentence longer than the model's maximum an empty line instead of "
                        "failing (the count is reported)")
    p.add_argument("--progress", choices=PROGRESS_MODES, nargs="?", const="always", default="auto",
                   help=f"progress with rate and ETA on stderr: always (also the bare flag), never, or auto: on a "
                        f"terminal, for {PROGRESS_MIN_PAIRS}+ pairs or unknown counts (default: auto)")
    p.set_defaults(func=run)


def run(args) -> int:
    from transalign.cli import UserError
    from transalign.cli import options
    from transalign.cli.progress import Progress
    from transalign.engine.aligner import Aligner, TooLongError
    from transalign.outputs import check_output, open_output

    inputs = _inputs(args)
    check_output(args.output, inputs=inputs, flag="-o")
    for flag, path in zip(("--input",) if args.input else ("--src", "--tgt"), inputs):
        _check_input(flag, path)
    aligner = Aligner.load(args.bundle, options=options.load_options(args))
    langs = options.languages(args, aligner.manifest, "align")
    extraction = options.extraction(args, aligner.manifest, scores=args.output_format in SCORED_FORMATS)
    total = _count_pairs(inputs[0], "lines" if args.input else args.input_format)
    show = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty()
                                         and (total is None or total >= PROGRESS_MIN_PAIRS))
    progress = Progress(total, "aligned pairs", show)
    progress.ran(aligner.provider, aligner.precision)
    sides = _ParallelSides(args.input) if args.input else \
        (_Side(args.src, args.input_format), _Side(args.tgt, args.input_format))
    src, tgt = sides.sides() if args.input else sides
    results = aligner.align_iter(iter(src), iter(tgt), langs.src, langs.tgt, batch_tokens=args.batch_tokens,
                                 on_too_long="skip" if args.skip_long else "error", extraction=extraction,
                                 progress=lambda sentences: progress.update(sentences / 2))
    empty = _EmptyCount()
    skipped = 0
    try:
        with open_output(args.output or "-", inputs=inputs) as out, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the skipped-pairs count is reported below, once
            for k, result in enumerate(results):
                empty.check(k, src, tgt)
                skipped += result.skipped is not None
                out.write(_format(result, k, args.output_format) + "\n")
    except TooLongError as exc:
        side = src if exc.side == "source" else tgt
        raise UserError(f"{side.path}, line {side.line_of(exc.pair)}: {exc.describe()}; split it, or pass "
                        "--skip-long to give such pairs an empty line (nothing was written)") from None
    except ValueError as exc:
        if "more sentences than" not in str(exc):
            raise
        unit = "lines" if args.input_format == "lines" else "sentences"
        raise UserError(f"{args.src} has {src.total()} {unit} but {args.tgt} has {tgt.total()}; every source "
                        "sentence needs exactly one target sentence (nothing was written)") from None
    progress.close()
    if skipped:
        print(f"transalign align: {skipped} of {empty.pairs} pairs were longer than the model's "
              f"{aligner.manifest.max_positions} tokens and got an empty line", file=sys.stderr)
    empty.report()
    return 0


def _inputs(args) -> tuple[str, ...]:
    from transalign.cli import UserError

    if args.input is not None:
        if args.src is not None or args.tgt is not None:
            raise UserError("--input replaces --src and --tgt; give either --input FILE or both --src and --tgt")
        if args.input_format != "lines":
            raise UserError("--input-format applies to --src/--tgt; --input lines are `source ||| target`")
        return (args.input,)
    if args.src is None or args.tgt is None:
        raise UserError("give --src and --tgt (two sentence files), or --input (one `source ||| target` file)")
    if args.src == "-" and args.tgt == "-":
        raise UserError("--src - and --tgt - both name standard input; at most one side can be read from it "
                        "(for one stream holding both sides use --input -, lines `source ||| target`)")
    return (args.src, args.tgt)


def _format(result, k: int, fmt: str) -> str:
    from transalign.formats.alignments import format_line, format_record, format_scored_line

    if fmt == "jsonl":
        return format_record(result.links, id=k, scores=result.scores, skipped=result.skipped)
    if fmt in SCORED_FORMATS:
        return format_scored_line(result.links, result.scores, fmt)
    return format_line(result.links, id=k if fmt == "id" else None)


class _EmptyCount:
    """Pairs with an empty sentence get an empty line like any pair without links; they are
    counted and reported once, naming the first, so an empty line is never silent."""

    def __init__(self):
        self.pairs, self.count, self.first = 0, 0, None

    def check(self, k: int, src, tgt) -> None:
        self.pairs = k + 1
        for side in (src, tgt):
            if side.is_empty(k):
                self.count += 1
                self.first = self.first or f"{side.path}, line {side.line_of(k)}"
                return

    def report(self) -> None:
        if self.count:
            print(f"transalign align: warning: {self.count} of {self.pairs} pairs have an empty sentence (first: "
                  f"{self.first}) and got an empty line", file=sys.stderr)


class _Side:
    """One input file streamed sentence by sentence, remembering where each sentence starts
    (so an error about pair k can name the file's 1-based line)."""

    def __init__(self, path: str, fmt: str):
        self.path, self.fmt, self.count = path, fmt, 0
        self._lines: dict[int, int] = {}
        self._empty: set[int] = set()

    def __iter__(self):
        from transalign.formats.text import iter_sentences

        for number, words in iter_sentences(self.path, self.fmt):
            if self.fmt == "conll":  # lines: the line number is the pair index + 1
                self._lines[self.count] = number
            if not words:
                self._empty.add(self.count)
            self.count += 1
            yield words

    def is_empty(self, pair: int) -> bool:
        """Whether sentence ``pair`` was empty (asked once per pair, in order)."""
        if pair in self._empty:
            self._empty.discard(pair)
            return True
        return False

    def total(self) -> str:
        """How many sentences the whole input has (standard input: how many were read)."""
        if self.path == "-":
            return f"at least {self.count}"
        from transalign.formats.text import iter_sentences

        return str(sum(1 for _ in iter_sentences(self.path, self.fmt)))

    def line_of(self, pair: int) -> int:
        return pair + 1 if self.fmt == "lines" else self._lines.get(pair, pair + 1)


class _ParallelSides:
    """The two sides of a `source ||| target` file (`transalign.formats.parallel`) as the two
    streams `Aligner.align_iter` reads: the source stream reads the file and keeps each target
    until the target stream takes it (the aligner reads at most a chunk ahead). A line that is not
    a pair stops the job naming its line; every line is a pair, so pair k is line k + 1."""

    def __init__(self, path: str):
        self.path = path
        self._targets: deque = deque()

    def sides(self) -> tuple["_ParallelSides", "_ParallelTargets"]:
        return self, _ParallelTargets(self)

    def __iter__(self):
        from transalign.cli import UserError
        from transalign.formats.parallel import RejectedRow, read_parallel

        for row in read_parallel(self.path):
            if isinstance(row, RejectedRow):
                raise UserError(f"{row}; every line must be `source ||| target` or `source<TAB>target` with words "
                                "on both sides (nothing was written)")
            self._targets.append(list(row.tgt))
            yield list(row.src)

    def line_of(self, pair: int) -> int:
        return pair + 1

    def is_empty(self, pair: int) -> bool:
        return False  # the reader refuses a line with an empty side


class _ParallelTargets:
    def __init__(self, sides: _ParallelSides):
        self.sides, self.path = sides, sides.path
        self.line_of, self.is_empty = sides.line_of, sides.is_empty

    def __iter__(self):
        while self.sides._targets:
            yield self.sides._targets.popleft()


def _check_input(flag: str, path: str) -> None:
    import os

    from transalign.cli import UserError

    if path == "-":
        return
    if os.path.isdir(path):
        raise UserError(f"{flag} {path} is a directory; expected a text file")
    if not os.path.exists(path):
        raise UserError(f"{flag} {path}: file not found")


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
