"""`transalign eval GOLD PRED`: precision, recall, F1 and AER of predicted word alignments."""

from __future__ import annotations

import argparse
import json

_DESCRIPTION = """\
Score predicted word alignments against a gold standard (Och & Ney 2003, as in SimAlign):
P = |A∩P|/|A|, R = |A∩S|/|S|, F1 = 2PR/(P+R), AER = 1 - (|A∩S| + |A∩P|)/(|A| + |S|),
with A the predicted links, S the gold sure links and P the gold possible links (sure included).
Numbers are corpus-level (micro: counts summed over all pairs). Empty sets: P = 1 when nothing
is predicted, R = 1 when there is no sure link, AER = 0 when both are empty, F1 = 0 when P+R = 0.

GOLD: one line per sentence pair, links I-J (sure) and IpJ (possible), 0-based, optionally
prefixed by ID<TAB>. PRED: the aligner's pharaoh or id output, same line order. An empty line is
a pair without links. If both files carry ids they must match line by line."""


def register(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="score alignments against gold links: precision, recall, F1, AER",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("gold", metavar="GOLD", help="gold alignment file (I-J sure, IpJ possible links)")
    p.add_argument("pred", metavar="PRED", help="predicted alignment file (pharaoh or id format)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--per-sentence", action="store_true",
                   help="also give the scores of every sentence pair (line number, id, counts)")
    p.add_argument("--digits", type=int, default=4, metavar="N", help="decimals in the text output (default 4)")
    p.set_defaults(func=run)


def _text(result, digits: int) -> str:
    c = result.corpus
    f = f"{{:.{digits}f}}"
    lines = [
        f"sentences  {c.sentences}",
        f"links      predicted {c.predicted}, gold sure {c.sure}, gold possible {c.possible} (sure included)",
        f"hits       sure {c.hits_sure}, possible {c.hits_possible}",
        f"precision  {f.format(c.precision)}",
        f"recall     {f.format(c.recall)}",
        f"F1         {f.format(c.f1)}",
        f"AER        {f.format(c.aer)}",
    ]
    if result.per_sentence is not None:
        lines += ["", "line\tid\tprecision\trecall\tF1\tAER\tpredicted\tsure\tpossible"]
        for k, (ident, s) in enumerate(zip(result.ids, result.per_sentence), start=1):
            scores = "\t".join(f.format(v) for v in (s.precision, s.recall, s.f1, s.aer))
            lines.append(f"{k}\t{'' if ident is None else ident}\t{scores}\t{s.predicted}\t{s.sure}\t{s.possible}")
    return "\n".join(lines)


def run(args) -> int:
    from transalign.cli import UserError
    from transalign.evaluation import evaluate_alignments

    if not 0 <= args.digits <= 17:
        raise UserError(f"--digits must be between 0 and 17, got {args.digits}")
    result = evaluate_alignments(args.gold, args.pred, per_sentence=args.per_sentence)
    print(json.dumps(result.to_dict(), indent=2) if args.json else _text(result, args.digits))
    return 0
