"""`transalign project LABELED UNLABELED ALIGNMENTS -o OUT`: BIO label projection."""

from __future__ import annotations

import argparse
import json

_DESCRIPTION = """\
Project BIO entity labels from the labelled side of each sentence pair onto the other side
through word alignments (translate-test / translate-train), as the TransAlign reference does:
an entity's span on the unlabelled side runs from the first to the last word linked to it.

Link direction: as in the reference, a link I-J has I on the UNLABELED side (the one receiving
labels) and J on the LABELED side. Use --reverse for files written the other way round.

LABELED and UNLABELED are CoNLL style (one word per line, columns separated by spaces or tabs,
blank line between sentences; LABELED has the label in its last column, UNLABELED the word in
its first). ALIGNMENTS has one pharaoh or id line per sentence pair. OUT gets 'WORD LABEL'
lines and a blank line after each sentence; it is written atomically."""


def register(sub) -> None:
    p = sub.add_parser(
        "project",
        help="project BIO labels through word alignments (translate-test / translate-train)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_labeled_inputs(p)
    p.add_argument("alignments", metavar="ALIGNMENTS",
                   help="alignment file (pharaoh or id format); link I-J: I unlabeled word, J labeled word")
    add_projection_options(p, reverse_help="links are written I-J with I on the LABELED side and J on the "
                                           "UNLABELED side")
    p.set_defaults(func=run)


def add_labeled_inputs(p) -> None:
    """LABELED, UNLABELED and -o OUT, as `project` and `project-with` both take them."""
    p.add_argument("labeled", metavar="LABELED", help="CoNLL file with BIO labels in the last column")
    p.add_argument("unlabeled", metavar="UNLABELED", help="CoNLL file of the side receiving labels (word first)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="projected CoNLL file to write")


def add_projection_options(p, reverse_help: str) -> None:
    """The projection's filters and --json, shared with `project-with`; ``reverse_help`` says what
    --reverse turns round in that command (the links of a file, or the alignment itself)."""
    p.add_argument("--reverse", action="store_true", help=reverse_help)
    p.add_argument("--complete-from", action="store_true",
                   help="drop an entity if any of its labeled words has no link")
    p.add_argument("--complete-to", action="store_true",
                   help="drop an entity if the unlabeled words linked to it are not contiguous")
    p.add_argument("--restrict-to", action="store_true",
                   help="a single-word entity labels only one word (its B- tag), even if linked to several")
    p.add_argument("--json", action="store_true", help="print the counts as JSON")


def projection_options(args) -> dict:
    """The `project_labels` keywords of the options `add_projection_options` added."""
    return {"reverse": args.reverse, "complete_from": args.complete_from, "complete_to": args.complete_to,
            "restrict_to": args.restrict_to}


def run(args) -> int:
    from transalign.projection import project_labels

    result = project_labels(args.labeled, args.unlabeled, args.alignments, args.output, **projection_options(args))
    report(args, result.stats)
    return 0


def report(args, s) -> None:
    """Print the projection counts `s` (ProjectionStats), as JSON with --json (also for project-with)."""
    if args.json:
        print(json.dumps(s.to_dict(), indent=2))
        return
    rows = [
        ("entities in", f"{s.entities_in} ({s.orphan_starts} starting with an orphan I- tag)"),
        ("projected", f"{s.projected} ({s.overlapping} overlapping an earlier one, "
                      f"{s.restricted} cut by --restrict-to)"),
        ("dropped, no link", s.dropped_unaligned),
        ("dropped, --complete-from", s.dropped_complete_from),
        ("dropped, --complete-to", s.dropped_complete_to),
        ("entities out", s.entities_out),
    ]
    print(f"wrote {args.output}: {s.sentences} sentences")
    print("\n".join(f"{name:<26}{value}" for name, value in rows))
