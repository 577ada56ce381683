"""Label projection through word alignments (translate-test / translate-train, DESIGN.md step 6).

BIO entity labels of the LABELLED side are carried over to the UNLABELLED side of each sentence
pair. A link ``i-j`` joins word ``i`` of the UNLABELLED side (the one receiving labels) and word
``j`` of the LABELLED side, as in the reference pipeline; ``reverse=True`` reads files written
the other way round (``i`` labelled, ``j`` unlabelled).

Rules, reverse-engineered from the authors' sample (``reference/bam-sample``: English
predictions projected onto Bambara; the default options reproduce their output byte for byte):

1. Entities of the labelled side: ``B-X`` starts an entity of type X; ``I-X`` continues the
   current entity when it has type X, otherwise it *starts* one (an "orphan" ``I-`` after ``O``,
   at the sentence start or after another type is tolerated, not an error). ``O`` ends it.
   Labels must be ``O``, ``B-X`` or ``I-X``; anything else is an error.
2. The image of an entity is the set of unlabelled words linked to any of its words. An entity
   with an empty image is dropped.
3. The projected span runs from the smallest to the largest index of the image, gaps included
   (words inside it without a link are labelled too).
4. The first word of the span gets the entity's first tag unchanged (``B-X``, or ``I-X`` for an
   orphan start); the other words get ``I-X``. Words outside all spans get ``O``.
5. Entities are projected left to right in labelled order; where spans overlap, the later
   entity overwrites the labels of the earlier one (it may leave a fragment of it behind).
6. Output: one ``TOKEN LABEL`` line per unlabelled word (TOKEN = first column of the
   unlabelled file, one space, the projected label; any other columns, e.g. gold labels, are
   not copied), and an empty line after every sentence, the last one included. Input files
   are CoNLL style: one word per line, columns separated by spaces or tabs, the label in the
   last column of the labelled file, sentences separated by one or more blank lines. The
   alignment file has one line per sentence pair (empty = no links); its ids are not used.

Options (the reference's filters), each dropping or trimming an entity before it is written:

- ``complete_from``: drop the entity if any of its labelled words has no link;
- ``complete_to``: drop it if its image is not contiguous (rule 3 would fill a gap);
- ``restrict_to``: a single-word entity keeps only its first tag (the ``B-`` word) even when it
  is linked to several unlabelled words.

Counts (:class:`ProjectionStats`) satisfy ``entities_in = projected + dropped_unaligned +
dropped_complete_from + dropped_complete_to``; an entity without any link counts as
``dropped_unaligned`` whatever the options.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields

from transalign.formats.alignments import AlignmentLine, FormatError, Link, alignment_lines, atomic_open

__all__ = ["Entity", "ProjectionResult", "ProjectionStats", "extract_entities", "project_labels", "project_sentence"]


@dataclass(frozen=True)
class Entity:
    """Words ``start..end`` (inclusive) of type ``type``; ``tag`` is its first word's label."""

    type: str
    start: int
    end: int
    tag: str

    @property
    def orphan(self) -> bool:
        return self.tag.startswith("I-")


@dataclass(frozen=True)
class ProjectionStats:
    sentences: int = 0
    entities_in: int = 0  # entities on the labelled side
    orphan_starts: int = 0  # ... of which began with an orphan I- tag (tolerated, rule 1)
    projected: int = 0  # entities written on the unlabelled side
    dropped_unaligned: int = 0  # no word of the entity has a link
    dropped_complete_from: int = 0  # complete_from: some word of the entity has no link
    dropped_complete_to: int = 0  # complete_to: the image has a gap
    restricted: int = 0  # restrict_to: single-word entities cut to their first linked word
    overlapping: int = 0  # projected entities that overwrote part of an earlier one (rule 5)
    entities_out: int = 0  # entities in the written labels (counted as in rule 1)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ProjectionResult:
    """``labels``: the projected labels of each sentence, kept only when no output file is written."""

    stats: ProjectionStats
    labels: tuple[tuple[str, ...], ...] | None = None


def _check_label(label: str) -> None:
    if label != "O" and not (label[:2] in ("B-", "I-") and len(label) > 2):
        raise ValueError(f"label {label!r} is not BIO: expected O, B-TYPE or I-TYPE")


def extract_entities(labels: Sequence[str]) -> list[Entity]:
    """The entities of a BIO label sequence, by rule 1 of the module docstring."""
    entities: list[Entity] = []
    current: Entity | None = None
    for k, label in enumerate(labels):
        _check_label(label)
        if label == "O":
            current = None
            continue
        kind = label[2:]
        if label.startswith("I-") and current is not None and current.type == kind:
            current = entities[-1] = Entity(kind, current.start, k, current.tag)
        else:
            current = Entity(kind, k, k, label)
            entities.append(current)
    return entities


def _check_links(links: Iterable[Link], target_length: int, labelled_length: int, reverse: bool = False) -> None:
    """Raise ValueError for a link outside the sentences, described as written in the file."""
    first, second = ("labelled", "unlabelled") if reverse else ("unlabelled", "labelled")
    sizes = {"unlabelled": target_length, "labelled": labelled_length}
    for a, b in links:
        if not (0 <= a < sizes[first] and 0 <= b < sizes[second]):
            hint = "" if reverse else "; if the file has the labelled side first, use --reverse"
            raise ValueError(
                f"link {a}-{b} is out of range: {'with --reverse, ' if reverse else ''}I indexes the {first} "
                f"sentence ({sizes[first]} words) and J the {second} one ({sizes[second]} words){hint}"
            )


def _project(
    labels: Sequence[str], target_length: int, links: Iterable[Link], options: dict, counts: dict
) -> list[str]:
    """Rules 2-5 for one sentence pair; ``links`` are (unlabelled i, labelled j); adds to ``counts``."""
    images: dict[int, set[int]] = {}
    for i, j in links:
        images.setdefault(j, set()).add(i)
    out = ["O"] * target_length
    written = [False] * target_length
    for entity in extract_entities(labels):
        counts["entities_in"] += 1
        counts["orphan_starts"] += entity.orphan
        words = range(entity.start, entity.end + 1)
        image = sorted(set().union(*(images.get(j, ()) for j in words)))
        if not image:
            counts["dropped_unaligned"] += 1
            continue
        if options["complete_from"] and any(j not in images for j in words):
            counts["dropped_complete_from"] += 1
            continue
        low, high = image[0], image[-1]
        if options["complete_to"] and len(image) != high - low + 1:
            counts["dropped_complete_to"] += 1
            continue
        if options["restrict_to"] and entity.start == entity.end and high > low:
            counts["restricted"] += 1
            high = low
        counts["projected"] += 1
        counts["overlapping"] += any(written[low : high + 1])
        out[low] = entity.tag
        out[low + 1 : high + 1] = [f"I-{entity.type}"] * (high - low)
        written[low : high + 1] = [True] * (high - low + 1)
    counts["entities_out"] += len(extract_entities(out))
    return out


def project_sentence(
    labels: Sequence[str],
    target_length: int,
    links: Iterable[Link],
    *,
    complete_from: bool = False,
    complete_to: bool = False,
    restrict_to: bool = False,
) -> list[str]:
    """Project one sentence's BIO ``labels`` onto ``target_length`` unlabelled words.

    ``links`` are ``(i, j)`` pairs, ``i`` an unlabelled and ``j`` a labelled word index.
    Raises ValueError for a non-BIO label or a link out of range."""
    links = list(links)
    _check_links(links, target_length, len(labels))
    counts = dict.fromkeys((f.name for f in fields(ProjectionStats)), 0)
    options = {"complete_from": complete_from, "complete_to": complete_to, "restrict_to": restrict_to}
    return _project(labels, target_length, links, options, counts)


# ---------------------------------------------------------------- reading the inputs


def _conll_sentences(path: str | os.PathLike, labelled: bool) -> Iterator[tuple[int, list[str], list[str]]]:
    """Yield ``(first line number, tokens, labels)`` per sentence; labels only if ``labelled``.

    Read with the one CoNLL reader every command uses (`transalign.formats.text.iter_conll`)."""
    from transalign.formats.text import InputError, iter_conll

    try:
        for first, rows in iter_conll(path):
            labels = []
            if labelled:
                for offset, columns in enumerate(rows):
                    labels.append(_label_of(columns, path, first + offset))
            yield first, [columns[0] for columns in rows], labels
    except InputError as exc:
        raise FormatError(str(exc)) from None


def _label_of(columns: list[str], path, lineno: int) -> str:
    if len(columns) < 2:
        raise FormatError(f"expected TOKEN ... LABEL (label in the last column), got {' '.join(columns)!r}", path,
                          lineno)
    try:
        _check_label(columns[-1])
    except ValueError as exc:
        raise FormatError(str(exc), path, lineno) from None
    return columns[-1]


def _labelled_input(source) -> tuple[Iterator[tuple[int, list[str], list[str]]], str]:
    """``(sentences, name)``: a CoNLL file, or in memory one label sequence per sentence."""
    if isinstance(source, (str, os.PathLike)):
        return _conll_sentences(source, labelled=True), os.fspath(source)

    def sentences():
        for k, labels in enumerate(source, start=1):
            labels = list(labels)
            for label in labels:
                try:
                    _check_label(label)
                except ValueError as exc:
                    raise FormatError(f"sentence {k}: {exc}") from None
            yield k, [""] * len(labels), labels

    return sentences(), "<labeled>"


def _unlabelled_input(source) -> tuple[Iterator[tuple[int, list[str], list[str]]], str]:
    """``(sentences, name)``: a CoNLL file, or in memory one token sequence per sentence."""
    if isinstance(source, (str, os.PathLike)):
        return _conll_sentences(source, labelled=False), os.fspath(source)
    return ((k, list(tokens), []) for k, tokens in enumerate(source, start=1)), "<unlabeled>"


def _zip_strict(named: list[tuple[str, Iterator]]) -> Iterator[tuple]:
    """Zip the inputs sentence by sentence; if one ends first, count them all and raise."""
    iterators = [it for _, it in named]
    done = object()
    complete = 0
    while True:
        items = [next(it, done) for it in iterators]
        if all(item is done for item in items):
            return
        if any(item is done for item in items):
            break
        complete += 1
        yield tuple(items)
    totals = [complete + (0 if item is done else 1 + sum(1 for _ in it)) for it, item in zip(iterators, items)]
    first_extra = next(item for item in items if item is not done)
    where = next(name for (name, _), item in zip(named, items) if item is not done)
    lineno = first_extra.lineno if isinstance(first_extra, AlignmentLine) else first_extra[0]
    raise FormatError(
        "different numbers of sentences: "
        + ", ".join(f"{name} has {total}" for (name, _), total in zip(named, totals))
        + f"; sentence {complete + 1} (line {lineno} of {where}) has no counterpart"
        " (the alignment file needs one line per sentence pair)"
    )


def project_labels(
    labeled: str | os.PathLike | Iterable[Sequence[str]],
    unlabeled: str | os.PathLike | Iterable[Sequence[str]],
    alignments: str | os.PathLike | Iterable[AlignmentLine | Iterable[Link]],
    output: str | os.PathLike | None = None,
    *,
    reverse: bool = False,
    complete_from: bool = False,
    complete_to: bool = False,
    restrict_to: bool = False,
) -> ProjectionResult:
    """Project the BIO labels of ``labeled`` onto ``unlabeled`` through ``alignments``.

    ``labeled``: CoNLL file (label in the last column), or per sentence a sequence of labels.
    ``unlabeled``: CoNLL file (token in the first column), or per sentence a sequence of tokens.
    ``alignments``: ``pharaoh`` / ``id`` file, or per sentence an iterable of ``(i, j)`` links,
    ``i`` on the unlabelled side unless ``reverse``.
    ``output``: file written atomically (rule 6 of the module docstring); when None the labels
    are returned in the result instead.
    Errors (FormatError, a ValueError) name the file and line: unequal sentence counts, a line
    without a label, a non-BIO label, a link out of range, a malformed alignment line.
    """
    options = {"complete_from": complete_from, "complete_to": complete_to, "restrict_to": restrict_to}
    lab_iter, lab_name = _labelled_input(labeled)
    unl_iter, unl_name = _unlabelled_input(unlabeled)
    ali_iter, ali_name = alignment_lines(alignments)
    counts = dict.fromkeys((f.name for f in fields(ProjectionStats)), 0)

    def projected_sentences() -> Iterator[tuple[list[str], list[str]]]:
        triples = _zip_strict([(lab_name, lab_iter), (unl_name, unl_iter), (ali_name, ali_iter)])
        for (_, _, labels), (_, tokens, _), line in triples:
            try:
                _check_links(line.links, len(tokens), len(labels), reverse)
            except ValueError as exc:
                raise FormatError(str(exc), ali_name, line.lineno) from None
            links = [(j, i) for i, j in line.links] if reverse else line.links
            out = _project(labels, len(tokens), links, options, counts)
            counts["sentences"] += 1
            yield tokens, out

    if output is None:
        kept = tuple(tuple(labels) for _, labels in projected_sentences())
        return ProjectionResult(ProjectionStats(**counts), kept)
    inputs = [p for p in (labeled, unlabeled, alignments) if isinstance(p, (str, os.PathLike))]
    with atomic_open(output, inputs=inputs) as handle:  # an input as output is refused before reading
        for tokens, labels in projected_sentences():
            handle.write("".join(f"{token} {label}\n" for token, label in zip(tokens, labels)))
            handle.write("\n")
    return ProjectionResult(ProjectionStats(**counts))
