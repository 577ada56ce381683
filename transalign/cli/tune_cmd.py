"""`transalign tune BUNDLE --gold-dir DIR`: pick the extraction setting with the lowest AER."""

from __future__ import annotations

import argparse
import json

from transalign.cli.options import add_language_flags, add_load_flags
from transalign.kernels.names import METHODS, WORD_LEVELS

_DESCRIPTION = """\
Align the gold set of DIR (src.txt, tgt.txt: one sentence per line, words split on whitespace;
gold.txt: I-J sure and IpJ possible links, 0-based) once through the encoder, extract links by
every method, word level and threshold from the same hidden states, and print precision,
recall, F1 and AER of each (as `transalign eval`) and the setting with the lowest AER, written
as the `transalign align` options that reproduce it. Ties keep the bundle's own setting.
With --write the best setting becomes the bundle's default (stored in its manifest.json, with
the gold set, pairs and AER it was chosen on): `align` then uses it when given no --method,
--word-level or --threshold. Tune on pairs you will not score on (--first N, then score the
rest), or the AER you report is optimistic."""


def _floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
    return values  # their range is the engine's rule, checked in run() (engine.options.check_threshold)


def _check_thresholds(thresholds: list[float]) -> None:
    from transalign.cli import UserError
    from transalign.engine.options import OptionError, check_threshold

    for value in thresholds:
        try:
            check_threshold(value)
        except OptionError as exc:
            raise UserError(exc.named("--thresholds")) from None


def _names(allowed: tuple[str, ...]):
    def parse(text: str) -> list[str]:
        names = [v.strip() for v in text.split(",") if v.strip()]
        bad = [v for v in names if v not in allowed]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"{', '.join(bad) or repr(text)}: expected a comma-separated subset "
                                             f"of {', '.join(allowed)}")
        return names
    return parse


def register(sub) -> None:
    from transalign.tuning import DEFAULT_THRESHOLDS

    p = sub.add_parser("tune", help="evaluate extraction methods and thresholds on gold alignments",
                       description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", help="bundle directory made by `transalign export`")
    p.add_argument("--gold-dir", required=True, metavar="DIR", help="directory with src.txt, tgt.txt, gold.txt")
    add_language_flags(p)
    p.add_argument("--thresholds", type=_floats, default=list(DEFAULT_THRESHOLDS),
                   help="softmax thresholds to try, comma-separated (default "
                        f"{','.join(f'{t:g}' for t in DEFAULT_THRESHOLDS)}; the bundle's own is always tried)")
    p.add_argument("--methods", type=_names(METHODS), default=list(METHODS),
                   help=f"methods to try (default {','.join(METHODS)})")
    p.add_argument("--word-levels", type=_names(WORD_LEVELS), default=list(WORD_LEVELS),
                   help=f"word levels to try (default {','.join(WORD_LEVELS)})")
    add_load_flags(p)
    p.add_argument("--first", type=int, metavar="N", help="tune on the first N pairs only (default: all)")
    p.add_argument("--write", action="store_true",
                   help="store the best setting in the bundle's manifest as its default extraction")
    p.add_argument("--json", action="store_true", help="print every row and the best setting as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from transalign.cli.options import languages, load_options
    from transalign.engine.aligner import Aligner
    from transalign.engine.bundle import MANIFEST_NAME
    from transalign.outputs import check_output
    from transalign.tuning import read_gold_dir, settings, tune, tuning_record, write_default

    options = load_options(args)
    _check_thresholds(args.thresholds)
    if args.write:  # a bundle we cannot write is refused before minutes of tuning
        check_output(Path(args.bundle) / MANIFEST_NAME, flag="--write")
    src, tgt, gold = read_gold_dir(args.gold_dir)
    if args.first is not None:
        if not 1 <= args.first <= len(src):
            raise ValueError(f"--first {args.first}: {args.gold_dir} has {len(src)} pairs; give 1..{len(src)}")
        src, tgt, gold = src[:args.first], tgt[:args.first], gold[:args.first]
    aligner = Aligner.load(args.bundle, options=options)
    langs = languages(args, aligner.manifest, "tune")
    extractions = settings(aligner, args.thresholds, args.methods, args.word_levels)
    result = tune(aligner, src, tgt, gold, extractions, langs.src, langs.tgt, batch_tokens=args.batch_tokens)
    if args.write:
        write_default(args.bundle, result.best.extraction, tuning_record(args.gold_dir, len(src), aligner.precision,
                                                                         result.best))
    if args.json:
        print(json.dumps({**result.to_dict(), "written": bool(args.write)}, indent=2))
        return 0
    print(f"{len(src)} pairs of {args.gold_dir}, {aligner.precision}, one encoder pass")
    print(f"{'setting':<24}{'AER':>8}{'P':>8}{'R':>8}{'F1':>8}{'links':>10}")
    for row in result.rows:
        s = row.scores
        mark = "  <- best" if row is result.best else ""
        print(f"{row.extraction.label():<24}{s.aer:>8.4f}{s.precision:>8.4f}{s.recall:>8.4f}{s.f1:>8.4f}"
              f"{s.predicted:>10}{mark}")
    if args.write:
        print(f"best: {result.best.extraction.label()} (AER {result.best.scores.aer:.4f}), stored as the default of "
              f"{args.bundle}: `transalign align {args.bundle} ...` now uses it")
    else:
        print(f"best: {result.best.extraction.label()} (AER {result.best.scores.aer:.4f}); "
              f"use: transalign align {args.bundle} {result.best.flags()} ... (or store it: --write)")
    return 0
