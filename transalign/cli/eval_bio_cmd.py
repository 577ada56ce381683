"""`transalign eval-bio PRED GOLD`: entity-level precision, recall and F1 of BIO labels (seqeval)."""

from __future__ import annotations

import argparse
import json

_DESCRIPTION = """\
Score predicted BIO labels (e.g. the output of `transalign project`) against gold labels with
the seqeval library in its default mode, as the TransAlign authors' evaluate_bio.py does
(through Hugging Face evaluate): entity-level micro precision, recall and F1 over all types,
token accuracy, and precision / recall / F1 / number of gold entities per type.

PRED and GOLD are CoNLL style: one token per line, the label in the last column, a blank line
between sentences, the same sentences and tokens in both. Needs seqeval: pip install 'transalign[eval]'."""


def register(sub) -> None:
    p = sub.add_parser("eval-bio", help="score BIO labels against gold labels: entity precision, recall, F1",
                       description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pred", metavar="PRED", help="predicted labels (CoNLL, label in the last column)")
    p.add_argument("gold", metavar="GOLD", help="gold labels (CoNLL, label in the last column)")
    p.add_argument("--json", action="store_true",
                   help='print {"overall": {"precision", "recall", "f1", "accuracy"}, "per_type": {...}}')
    p.set_defaults(func=run)


def run(args) -> int:
    from transalign.bio_eval import evaluate_bio
    from transalign.cli import UserError

    try:
        scores = evaluate_bio(args.pred, args.gold)
    except ImportError as exc:
        raise UserError(str(exc)) from None
    if args.json:
        print(json.dumps(scores.to_dict(), indent=2))
        return 0
    o = scores.overall
    print(f"{scores.sentences} sentences: precision {o['precision']:.4f}  recall {o['recall']:.4f}  "
          f"F1 {o['f1']:.4f}  accuracy {o['accuracy']:.4f}")
    print(f"{'type':<10}{'P':>8}{'R':>8}{'F1':>8}{'number':>8}")
    for name, v in scores.per_type.items():
        print(f"{name:<10}{v['precision']:>8.4f}{v['recall']:>8.4f}{v['f1']:>8.4f}{v['number']:>8}")
    return 0
