"""`transalign project-with BUNDLE LABELED UNLABELED -o OUT`: align and project in one pass."""

from __future__ import annotations

import argparse
import sys
import warnings

from transalign.cli import project_cmd
from transalign.cli.options import add_extraction_flags, add_language_flags, add_load_flags

_DESCRIPTION = """\
Align the words of UNLABELED and LABELED (CoNLL files, one token per line in the first column)
with BUNDLE and project the BIO labels of LABELED (last column) onto UNLABELED through the
links as they are computed, without an alignment file: exactly what `transalign align` on the
two files (--input-format conll) followed by `transalign project` gives, in one pass.

Sides, as in the reference pipeline (the authors' bam-en alignments): the alignment's source is
UNLABELED and its target LABELED, so --src-lang is UNLABELED's language and --tgt-lang
LABELED's; the links I-J have I on UNLABELED. With --reverse the alignment runs from LABELED
(--src-lang) to UNLABELED (--tgt-lang), as `align --src LABELED --tgt UNLABELED` followed by
`project --reverse` would."""


def register(sub) -> None:
    p = sub.add_parser("project-with", help="align with a bundle and project BIO labels in one pass",
                       description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", help="bundle directory made by `transalign export`")
    project_cmd.add_labeled_inputs(p)
    add_language_flags(p, "language of the alignment's source side: UNLABELED's (LABELED's with --reverse); "
                          "required for NLLB bundles",
                       "language of the alignment's target side: LABELED's (UNLABELED's with --reverse); "
                       "required for NLLB bundles")
    project_cmd.add_projection_options(
        p, reverse_help="align LABELED (source) with UNLABELED (target) instead of the other way round")
    add_extraction_flags(p)
    add_load_flags(p, pipeline=True)
    p.add_argument("--skip-long", action="store_true",
                   help="pairs with a sentence longer than the model's maximum get no links (nothing projected) "
                        "instead of failing")
    p.set_defaults(func=run)


def run(args) -> int:
    from transalign.cli import UserError, options
    from transalign.engine.aligner import AlignStats, Aligner
    from transalign.formats.text import iter_sentences
    from transalign.projection import project_labels

    load = options.load_options(args)
    counts = [sum(1 for _ in iter_sentences(path, "conll")) for path in (args.labeled, args.unlabeled)]
    if counts[0] != counts[1]:
        raise UserError(f"{args.labeled} has {counts[0]} sentences but {args.unlabeled} has {counts[1]}; "
                        "every labeled sentence needs exactly one unlabeled one (nothing was written)")
    # streamed, with the reader `align --input-format conll` uses
    labeled = (words for _, words in iter_sentences(args.labeled, "conll"))
    unlabeled = (words for _, words in iter_sentences(args.unlabeled, "conll"))
    src, tgt = (labeled, unlabeled) if args.reverse else (unlabeled, labeled)
    aligner = Aligner.load(args.bundle, options=load)
    langs = options.languages(args, aligner.manifest, "project-with")
    stats = AlignStats()
    results = aligner.align_iter(src, tgt, langs.src, langs.tgt, on_too_long="skip" if args.skip_long else "error",
                                 extraction=options.extraction(args, aligner.manifest), stats=stats)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the skipped-pairs count is reported below, once
        result = project_labels(args.labeled, args.unlabeled, (r.links for r in results), args.output,
                                **project_cmd.projection_options(args))
    if stats.skipped:
        print(f"transalign project-with: {stats.skipped} of {counts[0]} pairs were longer than the model's "
              f"{aligner.manifest.max_positions} tokens and got no links", file=sys.stderr)
    project_cmd.report(args, result.stats)
    return 0
