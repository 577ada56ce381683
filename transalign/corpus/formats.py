"""Parallel-corpus readers and alignment shard writers for corpus jobs.

Input formats (one sentence pair per line or row, words split on whitespace):

    fast_align  ``src ||| tgt`` (fast_align, eflomal, awesome-align)
    tsv         ``src<TAB>tgt``; 3 columns ``id src tgt``; 4 ``src tgt src_lang tgt_lang``;
                5 ``id src tgt src_lang tgt_lang``; or any of those columns named in a header line
    jsonl       ``{"id", "src", "tgt", "src_lang", "tgt_lang"}`` per line (src and tgt required;
                each a string or a list of words)
    parquet     columns ``src``, ``tgt`` (string or list of strings), optional ``id``,
                ``src_lang``, ``tgt_lang`` (needs pyarrow: the ``ray`` extra)

Readers stream (one line or one Parquet batch at a time) and can start at a recorded position
(a byte offset, or a row for Parquet), so a resumed or distributed job reads only its part.
Every row yields exactly one item, in order: a :class:`Pair`, or a :class:`Rejected` (line, reason,
raw text) for a malformed row, so a pair is never dropped or shifted silently and the caller can
count positions past a bad row. Whether a rejected row stops the job (``FILE:LINE: reason``) or is
set aside (``--rejects``) is the caller's policy (``shards.RowPolicy``), decided in one place.

A JSONL string that is valid JSON but not text (a lone surrogate such as ``"\\ud800"``, which no
UTF-8 file can hold) is a malformed row like any other, named by file and line.

Output formats (the shard writers) are in ``writers.py``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from transalign.formats.alignments import FormatError

INPUT_FORMATS = ("fast_align", "tsv", "jsonl", "parquet")
TSV_LAYOUTS = {2: ("src", "tgt"), 3: ("id", "src", "tgt"), 4: ("src", "tgt", "src_lang", "tgt_lang"),
               5: ("id", "src", "tgt", "src_lang", "tgt_lang")}
COLUMNS = ("id", "src", "tgt", "src_lang", "tgt_lang")
PARQUET_BATCH_ROWS = 8192


class RowError(FormatError):
    """A malformed *row* (as opposed to a file that cannot be read at all): the corpus job's
    rejects option sets such rows aside; without it they stop the job with ``FILE:LINE: message``."""


class Pair(NamedTuple):
    """One input pair. ``pos``: where its line starts (byte offset; Parquet: 0-based row), so a
    reader can restart there; ``lineno``: 1-based line (Parquet: row) for messages."""

    src: list[str]
    tgt: list[str]
    id: str | None
    src_lang: str | None
    tgt_lang: str | None
    pos: int
    lineno: int


class Rejected(NamedTuple):
    """A malformed row, in its place in the input. ``pos`` and
    ``lineno`` as for :class:`Pair`; ``reason``: the message the error would have had; ``raw``: the
    line as read (Parquet: the row as JSON), None when not read yet (see :func:`raw_row`)."""

    pos: int
    lineno: int
    reason: str
    raw: str | None = None


def reject_line(input_name: str, rejected: Rejected) -> str:
    """One line of a rejects file: ``{"file", "line", "reason", "raw"}`` (``line``: 1-based line,
    Parquet: 1-based row), so a user can find, fix and re-run exactly the rows set aside."""
    return json.dumps({"file": input_name, "line": rejected.lineno, "reason": rejected.reason,
                       "raw": rejected.raw}, ensure_ascii=False) + "\n"


def detect_format(path: str | os.PathLike) -> str:
    """The input format from the extension, else from the first line; an error if unclear."""
    path = Path(path)
    suffix = path.suffix.lower()
    by_suffix = {".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl",
                 ".json": "jsonl", ".tsv": "tsv"}
    if suffix in by_suffix:
        return by_suffix[suffix]
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
            handle.seek(0)
            first = handle.readline(1 << 20)
    except FileNotFoundError:
        raise FormatError("file not found", path) from None
    except IsADirectoryError:
        raise FormatError("is a directory, expected a parallel corpus file", path) from None
    if head == b"PAR1":
        return "parquet"
    text = first.decode("utf-8", errors="replace").lstrip("\ufeff")
    if text.lstrip().startswith("{"):
        return "jsonl"
    if "|||" in text:
        return "fast_align"
    if "\t" in text:
        return "tsv"
    raise FormatError("cannot tell the input format from the first line (no `|||`, tab or JSON object); "
                      f"give --input-format ({', '.join(INPUT_FORMATS)})", path, 1)


def iter_pairs(path: str | os.PathLike, fmt: str, start: int = 0, start_lineno: int = 1) -> Iterator[Pair | Rejected]:
    """Stream the pairs of ``path`` from position ``start`` (a ``Pair.pos`` from an earlier read,
    or 0) on; ``start_lineno`` is the line number of that position.

    A malformed row comes out as a :class:`Rejected` in its place. Errors about the whole file (not found, not Parquet, no src/tgt column, a TSV first line
    that fits no layout) always raise: no row of such a file can be trusted."""
    if fmt not in INPUT_FORMATS:
        raise ValueError(f"input format {fmt!r} is not one of {', '.join(INPUT_FORMATS)}")
    if fmt == "parquet":
        yield from _iter_parquet(Path(path), start)
        return
    parse = {"fast_align": _parse_fast_align, "jsonl": _parse_jsonl}.get(fmt)
    if fmt == "tsv":
        layout, header = _tsv_layout(Path(path))
        parse = _tsv_parser(layout)
        if header and start == 0:
            start, start_lineno = header, 2  # header = byte length of the header line
    for pos, lineno, raw in _iter_lines(Path(path), start, start_lineno):
        try:
            text = _decode(raw, pos)
            src, tgt, ident, src_lang, tgt_lang = parse(text)
        except ValueError as exc:
            yield Rejected(pos, lineno, str(exc), _decode(raw, pos, "backslashreplace"))
            continue
        yield Pair(src, tgt, ident, src_lang, tgt_lang, pos, lineno)


def count_rows(path: str | os.PathLike, fmt: str) -> int | None:
    """How many rows ``path`` holds (lines, less a TSV header; Parquet: from its metadata), for a
    progress display; None if it cannot be told cheaply."""
    path = Path(path)
    if fmt == "parquet":
        try:
            return _pyarrow()[1].ParquetFile(path).metadata.num_rows
        except Exception:  # an unreadable file is reported by the reader, with its reason
            return None
    lines, last = 0, b"\n"
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            lines, last = lines + block.count(b"\n"), block[-1:]
    lines += last != b"\n"
    return max(lines - (fmt == "tsv" and _tsv_layout(path)[1] > 0), 0)


def _decode(raw: bytes, pos: int, errors: str = "strict") -> str:
    """A line's text without its line end (and without the BOM of a file's first line)."""
    try:
        text = raw.decode("utf-8", errors)
    except UnicodeDecodeError as exc:
        raise ValueError(f"invalid UTF-8 at byte {exc.start} of the line; convert the file to UTF-8") from None
    if pos == 0 and text.startswith("\ufeff"):
        text = text[1:]
    return text.rstrip("\r\n")


def _iter_lines(path: Path, start: int, lineno: int) -> Iterator[tuple[int, int, bytes]]:
    """(byte offset, 1-based line number, the line's bytes) from ``start`` on."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise FormatError("file not found", path) from None
    with handle:
        handle.seek(start)
        pos = start
        for raw in handle:
            yield pos, lineno, raw
            pos += len(raw)
            lineno += 1


def raw_row(path: str | os.PathLike, fmt: str, pos: int) -> str:
    """The raw text of the row at ``pos`` (a ``Pair.pos``): the line without its end, or for
    Parquet the row as JSON. For rejects found after reading (unknown language, too long)."""
    if fmt == "parquet":
        _, pq = _pyarrow()
        pf = pq.ParquetFile(path)
        first = 0
        for g in range(pf.metadata.num_row_groups):
            rows = pf.metadata.row_group(g).num_rows
            if pos < first + rows:
                names = [c for c in COLUMNS if c in pf.schema_arrow.names]
                row = pf.read_row_group(g, columns=names).slice(pos - first, 1).to_pylist()[0]
                return json.dumps(row, ensure_ascii=False, default=str)
            first += rows
        raise IndexError(f"{path}: no row {pos + 1}")
    with open(path, "rb") as handle:
        handle.seek(pos)
        return _decode(handle.readline(), pos, "backslashreplace")


def _parse_fast_align(text: str):
    if "|||" not in text:
        raise ValueError("missing ` ||| ` between source and target (fast_align format: `src ||| tgt`)")
    src, _, tgt = text.partition("|||")
    if "|||" in tgt:
        raise ValueError("more than one `|||` on the line; expected `src ||| tgt`")
    return src.split(), tgt.split(), None, None, None


def _tsv_layout(path: Path) -> tuple[tuple[str, ...], int]:
    """(column names, byte length of the header line or 0) from the first line."""
    first = next(_iter_lines(path, 0, 1), None)
    if first is None:
        return TSV_LAYOUTS[2], 0
    try:
        fields = _decode(first[2], 0).split("\t")
    except ValueError as exc:
        raise FormatError(str(exc), path, 1) from None
    names = tuple(f.strip().lower() for f in fields)
    if {"src", "tgt"} <= set(names) and set(names) <= set(COLUMNS) and len(set(names)) == len(names):
        with open(path, "rb") as handle:
            return names, len(handle.readline())
    if len(fields) not in TSV_LAYOUTS:
        raise FormatError(f"{len(fields)} tab-separated columns; expected 2 (src tgt), 3 (id src tgt), "
                          "4 (src tgt src_lang tgt_lang), 5 (id src tgt src_lang tgt_lang) or a header line "
                          f"naming columns among {', '.join(COLUMNS)}", path, 1)
    return TSV_LAYOUTS[len(fields)], 0


def _tsv_parser(layout: tuple[str, ...]):
    where = {name: layout.index(name) if name in layout else None for name in COLUMNS}

    def parse(text: str):
        fields = text.split("\t")
        if len(fields) != len(layout):
            raise ValueError(f"{len(fields)} tab-separated columns, expected {len(layout)} "
                             f"({' '.join(layout)}) as on the first line")

        def get(name):
            k = where[name]
            return None if k is None else fields[k].strip() or None

        ident = get("id")
        if where["id"] is not None and ident is None:
            raise ValueError("empty id column")
        return fields[where["src"]].split(), fields[where["tgt"]].split(), ident, get("src_lang"), get("tgt_lang")

    return parse


def _words(value, name: str) -> list[str]:
    if isinstance(value, str):
        return _text(value, name).split()
    if isinstance(value, list) and all(isinstance(w, str) for w in value):
        return [_text(w, name) for w in value]
    raise ValueError(f"{name!r} must be a string or a list of strings, got {type(value).__name__}")


def _text(value: str, name: str) -> str:
    """``value`` if it is text; a JSON escape can decode to a lone surrogate, which is not (no
    UTF-8 file or tokenizer can hold it), so such a row is refused here, naming the field."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        point = ord(value[exc.start])
        raise ValueError(f"{name!r} holds a lone surrogate U+{point:04X} (JSON \\u{point:04x} without its pair), "
                         "which is not text; fix the row or drop it") from None
    return value


def _ident(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"'id' must be a string or an integer, got {value!r}")
    ident = _text(str(value), "id")
    if not ident or any(ch in ident for ch in "\t\n\r"):
        raise ValueError(f"'id' {ident!r} must be non-empty and free of tabs and newlines")
    return ident


def _lang(value, name: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name!r} must be a string, got {value!r}")
    return _text(value, name)


def _parse_jsonl(text: str):
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"bad JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object with src and tgt, got {type(record).__name__}")
    for name in ("src", "tgt"):
        if name not in record:
            raise ValueError(f"missing {name!r} (a JSON line needs src and tgt)")
    return (_words(record["src"], "src"), _words(record["tgt"], "tgt"), _ident(record.get("id")),
            _lang(record.get("src_lang"), "src_lang"), _lang(record.get("tgt_lang"), "tgt_lang"))


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise ImportError("Parquet corpora need pyarrow: pip install 'transalign[ray]' (or just pyarrow)") from None
    return pyarrow, pyarrow.parquet


def _iter_parquet(path: Path, start: int) -> Iterator[Pair | Rejected]:
    _, pq = _pyarrow()

    try:
        pf = pq.ParquetFile(path)
    except FileNotFoundError:
        raise FormatError("file not found", path) from None
    except Exception as exc:  # pyarrow raises ArrowInvalid for a file that is not Parquet
        raise FormatError(f"cannot read as Parquet ({exc})", path) from None
    names = set(pf.schema_arrow.names)
    missing = [c for c in ("src", "tgt") if c not in names]
    if missing:
        raise FormatError(f"no column {' or '.join(missing)} (columns: {', '.join(sorted(names))})", path)
    columns = [c for c in COLUMNS if c in names]
    meta = pf.metadata
    first_row, groups = 0, []
    for g in range(meta.num_row_groups):
        rows = meta.row_group(g).num_rows
        if not groups and first_row + rows <= start:
            first_row += rows  # a whole row group before the start: not read at all
        else:
            groups.append(g)
    if not groups:
        return
    row = first_row
    for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, row_groups=groups, columns=columns):
        data = {c: batch.column(c).to_pylist() for c in columns}
        for k in range(batch.num_rows):
            if row >= start:
                yield _parquet_pair(data, k, row)
            row += 1


def _parquet_pair(data: dict, k: int, row: int) -> Pair | Rejected:
    values = {c: data[c][k] if c in data else None for c in COLUMNS}
    try:
        for name in ("src", "tgt"):
            if values[name] is None:
                raise ValueError(f"{name} is null")
        return Pair(_words(values["src"], "src"), _words(values["tgt"], "tgt"), _ident(values["id"]),
                    _lang(values["src_lang"], "src_lang"), _lang(values["tgt_lang"], "tgt_lang"), row, row + 1)
    except ValueError as exc:
        present = {c: v for c, v in values.items() if c in data}
        return Rejected(row, row + 1, str(exc), json.dumps(present, ensure_ascii=False, default=str))
