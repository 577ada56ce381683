"""Reading and writing word-alignment files (``pharaoh`` and ``id`` formats, and the scored
output formats ``pharaoh-scores`` and ``jsonl``).

One line per sentence pair, links separated by whitespace, 0-based word indices::

    pharaoh:         0-1 2-3 4-4
    id:              ID<TAB>0-1 2-3 4-4
    pharaoh-scores:  0-1:0.873 2-3:0.0412 4-4:0.5      (each link's score, 6 significant digits)
    jsonl:           {"id": 7, "links": [[0, 1], [2, 3], [4, 4]], "scores": [0.873, ...]}

``jsonl`` is one record schema for every command that writes or reads it (``align``,
``align-corpus``, ``eval``, ``project``): ``id`` (the 0-based pair index, or the corpus row's id),
``links``, and, only when present, ``scores`` (6 significant digits, one per link) and
``skipped`` (why the pair got no links, e.g. ``"too_long"``). The readers accept ``pharaoh-scores``
lines (a ``:SCORE`` suffix is checked and dropped) and ``jsonl`` records too, so ``eval`` and
``project`` read every output format of ``align``.

``i-j`` links word ``i`` of the source side to word ``j`` of the target side. Gold files may
also hold *possible* links written ``ipj`` (Och & Ney 2003); a link given both as sure and as
possible counts as sure. An empty line (or ``ID<TAB>`` with nothing after it) is a sentence pair
without links, never an error.

Both the aligner runtime (writer) and the evaluation / projection commands (reader) use this
module (`alignment_lines` reads a file or in-memory links for either), so it depends on the
standard library only. Errors are :class:`FormatError` (a
``ValueError``) naming the file and the 1-based line number.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

__all__ = [
    "AlignmentLine",
    "FormatError",
    "Link",
    "FORMATS",
    "OUTPUT_FORMATS",
    "SCORED_FORMATS",
    "alignment_lines",
    "atomic_open",
    "format_line",
    "format_links",
    "format_record",
    "format_scored_line",
    "iter_alignments",
    "iter_lines",
    "parse_line",
    "read_alignments",
    "write_alignments",
]

FORMATS = ("pharaoh", "id")
READ_FORMATS = FORMATS + ("jsonl",)
SCORED_FORMATS = ("jsonl", "pharaoh-scores")  # written with each link's score
OUTPUT_FORMATS = FORMATS + SCORED_FORMATS
Link = tuple[int, int]  # (source word, target word), 0-based


class FormatError(ValueError):
    """A malformed line in an alignment (or CoNLL) file; ``str()`` reads ``FILE:LINE: message``."""

    def __init__(self, message: str, path: str | os.PathLike | None = None, lineno: int | None = None):
        self.message = message
        self.path = None if path is None else os.fspath(path)
        self.lineno = lineno
        where = ":".join(str(part) for part in (self.path, lineno) if part is not None)
        super().__init__(f"{where}: {message}" if where else message)


@dataclass(frozen=True)
class AlignmentLine:
    """The links of one sentence pair.

    ``sure`` holds the ``i-j`` links, ``possible`` the ``ipj`` links that are not also sure
    (so the gold "possible" set P of Och & Ney is ``sure | possible``). ``id`` is the text
    before the tab in the ``id`` format, else ``None``.
    """

    sure: frozenset[Link] = frozenset()
    possible: frozenset[Link] = frozenset()
    id: str | None = None
    lineno: int | None = field(default=None, compare=False)

    @property
    def links(self) -> frozenset[Link]:
        """All links, sure and possible."""
        return self.sure | self.possible


def _parse_link(token: str, allow_possible: bool) -> tuple[Link, bool]:
    """``'3-4'`` -> ((3, 4), True); ``'3p4'`` -> ((3, 4), False); ``'3-4:0.87'`` -> ((3, 4), True).
    Raises ValueError."""
    if ":" in token:  # pharaoh-scores
        link, _, score = token.partition(":")
        try:
            if not math.isfinite(float(score)):
                raise ValueError
            return _parse_link(link, allow_possible)
        except ValueError:
            raise ValueError(f"malformed link {token!r}: expected I-J or I-J:SCORE, as in 3-4:0.87") from None
    sep = "-" if "-" in token else "p" if "p" in token else None
    if sep is None:
        raise ValueError(f"malformed link {token!r}: expected I-J" + (" or IpJ" if allow_possible else ""))
    left, _, right = token.partition(sep)
    if not (left.isascii() and left.isdigit() and right.isascii() and right.isdigit()):
        raise ValueError(
            f"malformed link {token!r}: expected two non-negative integers, as in 3-4"
            + (" or 3p4" if allow_possible else "")
        )
    if sep == "p" and not allow_possible:
        raise ValueError(
            f"possible link {token!r} (IpJ) is only allowed in gold files; a prediction has sure links I-J only"
        )
    return (int(left), int(right)), sep == "-"


def parse_line(text: str, *, allow_possible: bool = False, fmt: str = "auto") -> AlignmentLine:
    """Parse one line (without its newline). ``fmt`` is ``"auto"`` (an ``ID<TAB>`` prefix is
    recognised by its tab), ``"pharaoh"`` (no id allowed) or ``"id"`` (id required).
    Raises :class:`FormatError` without a location; readers add file and line."""
    if fmt not in ("auto", *READ_FORMATS):
        raise ValueError(f"unknown alignment format {fmt!r}; expected one of: auto, {', '.join(READ_FORMATS)}")
    if fmt == "jsonl" or (fmt == "auto" and text.lstrip().startswith("{")):
        return _parse_record(text)
    ident: str | None = None
    body = text
    if "\t" in text:
        if fmt == "pharaoh":
            raise FormatError("found an ID<TAB> prefix in a pharaoh file (use the id format)")
        ident, _, body = text.partition("\t")
        ident = ident.strip()
        if not ident:
            raise FormatError("empty ID before the tab")
        if "\t" in body:
            raise FormatError("more than one tab; expected ID<TAB>links")
    elif fmt == "id":
        raise FormatError("missing ID<TAB> prefix (id format)")
    sure: set[Link] = set()
    possible: set[Link] = set()
    for token in body.split():
        try:
            link, is_sure = _parse_link(token, allow_possible)
        except ValueError as exc:
            raise FormatError(str(exc)) from None
        (sure if is_sure else possible).add(link)
    return AlignmentLine(frozenset(sure), frozenset(possible - sure), ident)


def _parse_record(text: str) -> AlignmentLine:
    """One ``jsonl`` record (module docstring) as an AlignmentLine (its id as text)."""
    try:
        record = json.loads(text)
    except (json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise FormatError(f"not a JSON record ({exc}); expected {{\"id\": ..., \"links\": [[i, j], ...]}}") from None
    if not isinstance(record, dict) or not isinstance(record.get("links"), list):
        raise FormatError('a jsonl record needs "links": a list of [i, j] pairs')
    links = set()
    for link in record["links"]:
        if not (isinstance(link, list) and len(link) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in link)):
            raise FormatError(f"malformed link {json.dumps(link)[:40]}: expected [i, j] with non-negative integers")
        links.add((link[0], link[1]))
    ident = record.get("id")
    return AlignmentLine(frozenset(links), frozenset(), None if ident is None else str(ident))


def iter_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """``(line number, text without its line end)`` for each line of a UTF-8 text file, read as
    every sentence file is (`transalign.formats.text.iter_text_lines`: lines end at ``\n``,
    a leading byte-order mark is dropped); undecodable bytes raise a FormatError."""
    from transalign.formats.text import InputError, iter_text_lines

    try:
        yield from iter_text_lines(path)
    except InputError as exc:
        raise FormatError(str(exc)) from None


def iter_alignments(
    path: str | os.PathLike, *, allow_possible: bool = False, fmt: str = "auto"
) -> Iterator[AlignmentLine]:
    """Yield one :class:`AlignmentLine` per line of ``path`` (streaming, for large files).

    With ``fmt="auto"`` the first line decides: if it has an ``ID<TAB>`` prefix every line must
    have one, otherwise none may (so a stray tab or a missing id is caught at its line)."""
    decided_by_first_line = fmt == "auto"
    for lineno, text in iter_lines(path):
        if decided_by_first_line and lineno == 1:
            fmt = "jsonl" if text.lstrip().startswith("{") else "id" if "\t" in text else "pharaoh"
        try:
            parsed = parse_line(text, allow_possible=allow_possible, fmt=fmt)
        except FormatError as exc:
            message = exc.message
            if decided_by_first_line and message.startswith(("found an ID", "missing ID")):
                message += f" (line 1 is in the {fmt} format; a file may not mix formats)"
            raise FormatError(message, path, lineno) from None
        yield AlignmentLine(parsed.sure, parsed.possible, parsed.id, lineno)


def read_alignments(
    path: str | os.PathLike, *, allow_possible: bool = False, fmt: str = "auto"
) -> list[AlignmentLine]:
    """All lines of ``path`` as :class:`AlignmentLine` objects (see :func:`iter_alignments`)."""
    return list(iter_alignments(path, allow_possible=allow_possible, fmt=fmt))


def alignment_lines(source, name: str = "alignments", *, allow_possible: bool = False
                    ) -> tuple[Iterator[AlignmentLine], str]:
    """``(lines, name)`` of an alignment input: a path -> its parsed lines (streamed), named by the
    path; in memory, one `AlignmentLine` or iterable of ``(i, j)`` links per sentence pair,
    named ``<name>``."""
    if isinstance(source, (str, os.PathLike)):
        return iter_alignments(source, allow_possible=allow_possible), os.fspath(source)
    lines = (
        item if isinstance(item, AlignmentLine)
        else AlignmentLine(frozenset((int(i), int(j)) for i, j in item), lineno=k)
        for k, item in enumerate(source, start=1)
    )
    return lines, f"<{name}>"


def format_links(sure: Iterable[Link], possible: Iterable[Link] = ()) -> str:
    """``"0-1 2-3 4p4"``: links sorted by (i, j); a link in both sets is written once, as sure."""
    sure_set = set(sure)
    items = [(i, j, "-") for i, j in sure_set] + [(i, j, "p") for i, j in set(possible) - sure_set]
    for i, j, _ in items:
        if i < 0 or j < 0:
            raise ValueError(f"link ({i}, {j}) has a negative index")
    return " ".join(f"{i}{sep}{j}" for i, j, sep in sorted(items))


def format_line(links: Iterable[Link], *, id: str | int | None = None, possible: Iterable[Link] = ()) -> str:
    """One line without its newline: ``format_links`` output, prefixed by ``ID<TAB>`` if ``id`` is given."""
    body = format_links(links, possible)
    if id is None:
        return body
    ident = str(id)
    if not ident or any(ch in ident for ch in "\t\n\r"):
        raise ValueError(f"alignment id {ident!r} must be non-empty and free of tabs and newlines")
    return f"{ident}\t{body}"


def format_record(links: Sequence[Link], *, id: str | int, scores: Sequence[float] | None = None,
                  skipped: str | None = None) -> str:
    """One ``jsonl`` record (module docstring) without its newline; links in the given order."""
    links = [[int(i), int(j)] for i, j in links]
    if any(i < 0 or j < 0 for i, j in links):
        raise ValueError(f"a link has a negative index: {links}")
    record: dict = {"id": id, "links": links}
    if scores is not None:
        if len(scores) != len(links):
            raise ValueError(f"{len(links)} links but {len(scores)} scores; they must pair up")
        record["scores"] = [float(f"{float(v):.6g}") for v in scores]
    if skipped is not None:
        record["skipped"] = skipped
    return json.dumps(record, allow_nan=False, ensure_ascii=False)


def format_scored_line(links: Sequence[Link], scores: Sequence[float], fmt: str) -> str:
    """One ``pharaoh-scores`` line without its newline (``jsonl``: `format_record`); the links
    are written in the given order (the aligner's are sorted), each with its score."""
    links, scores = list(links), [float(v) for v in scores]
    if len(links) != len(scores):
        raise ValueError(f"{len(links)} links but {len(scores)} scores; they must pair up")
    for i, j in links:
        if i < 0 or j < 0:
            raise ValueError(f"link ({i}, {j}) has a negative index")
    if fmt == "pharaoh-scores":
        return " ".join(f"{i}-{j}:{v:.6g}" for (i, j), v in zip(links, scores))
    raise ValueError(f"unknown scored format {fmt!r}; expected one of: {', '.join(SCORED_FORMATS)}")


def atomic_open(path: str | os.PathLike, inputs: Iterable[str | os.PathLike] = ()):
    """Open ``path`` for writing text so that a file only appears, complete, when the block ends
    without an exception (``-``, FIFOs and devices are streamed): see :mod:`transalign.outputs`."""
    from transalign.outputs import open_output

    return open_output(path, inputs)


def write_alignments(
    path: str | os.PathLike,
    alignments: Iterable[Iterable[Link]],
    *,
    fmt: str = "pharaoh",
    ids: Sequence[str | int] | None = None,
) -> int:
    """Write one line per sentence pair, atomically (see :func:`atomic_open`); returns the count.

    ``alignments`` yields the links of each pair (any iterable of ``(i, j)``, or an
    :class:`AlignmentLine`, whose possible links are kept). With ``fmt="id"`` each line starts
    with ``ids[k]``, or with the 0-based line number ``k`` when ``ids`` is None."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown alignment format {fmt!r}; expected one of: {', '.join(FORMATS)}")
    if ids is not None and fmt != "id":
        raise ValueError("ids are only written in the 'id' format")
    count = 0
    with atomic_open(path) as out:
        for count, links in enumerate(alignments, start=1):
            k = count - 1
            if ids is not None and k >= len(ids):
                raise ValueError(f"more alignments than ids ({len(ids)}); nothing was written")
            ident = None if fmt == "pharaoh" else (k if ids is None else ids[k])
            if isinstance(links, AlignmentLine):
                out.write(format_line(links.sure, id=ident, possible=links.possible) + "\n")
            else:
                out.write(format_line(links, id=ident) + "\n")
        if ids is not None and count != len(ids):
            raise ValueError(f"{len(ids)} ids for {count} alignments; nothing was written")
    return count
