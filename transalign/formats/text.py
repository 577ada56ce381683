"""Sentence files, read one way by every command (``align``, ``eval``, ``project``, ...).

Lines end at ``\\n`` only (one ``\\r`` before it is dropped, for CRLF files); other characters
that some readers treat as line breaks (``\\r`` alone, form feed, ``\\x0b``, NEL, U+2028) stay
inside the line, where they separate words like any whitespace. A UTF-8 byte-order mark at the
start of the file is dropped. Words (and CoNLL columns) are split on whitespace as
``str.split()`` defines it, so a line holding only NBSP or a form feed is an empty sentence in
``lines`` files and a sentence break in ``conll`` files, for every command alike.

Formats: ``lines`` (one sentence per line) and ``conll`` (one token per line, first column;
blank lines end sentences). Files are streamed (constant memory); ``-`` reads standard input.
Errors name the file and the 1-based line: invalid UTF-8 is reported, never replaced.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

__all__ = ["INPUT_FORMATS", "InputError", "STDIN", "iter_conll", "iter_sentences", "iter_text_lines",
           "read_sentences"]

INPUT_FORMATS = ("lines", "conll")
STDIN = "-"


class InputError(ValueError):
    """A sentence file cannot be read as the requested format."""


@contextlib.contextmanager
def _binary(path: str | os.PathLike):
    if os.fspath(path) == STDIN:
        yield sys.stdin.buffer
        return
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a text file") from None
    with handle:
        yield handle


def iter_text_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """``(1-based line number, text without its line end)`` for each line, streamed."""
    with _binary(path) as handle:
        for number, raw in enumerate(handle, 1):
            raw = raw[:-1] if raw.endswith(b"\n") else raw
            raw = raw[:-1] if raw.endswith(b"\r") else raw
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"{path}, line {number}: not valid UTF-8 (bad byte at {exc.start}: "
                                 f"{raw[max(exc.start - 8, 0):exc.start + 8]!r}); convert the file to UTF-8") from None
            if number == 1 and text.startswith("\ufeff"):
                text = text[1:]  # a byte-order mark is not part of the first word
            yield number, text


def iter_conll(path: str | os.PathLike) -> Iterator[tuple[int, list[list[str]]]]:
    """``(line number of its first token, [columns of each token line])`` per CoNLL sentence."""
    rows: list[list[str]] = []
    first = 0
    for number, text in iter_text_lines(path):
        columns = text.split()
        if columns:
            first = first if rows else number
            rows.append(columns)
        elif rows:
            yield first, rows
            rows = []
    if rows:
        yield first, rows


def iter_sentences(path: str | os.PathLike, fmt: str = "lines") -> Iterator[tuple[int, list[str]]]:
    """``(line number, words)`` per sentence (for conll, the line of its first token), streamed.

    ``lines``: whitespace-split lines (an empty line is an empty sentence). ``conll``: the
    first column of each token line."""
    if fmt not in INPUT_FORMATS:
        raise InputError(f"input format {fmt!r} is not one of {', '.join(INPUT_FORMATS)}")
    if fmt == "lines":
        return ((number, text.split()) for number, text in iter_text_lines(path))
    return ((first, [row[0] for row in _same_columns(path, first, rows)]) for first, rows in iter_conll(path))


def _same_columns(path, first: int, rows: list[list[str]]) -> list[list[str]]:
    """Every token line of a sentence has the same columns (token, then labels); a file of plain
    sentences read as CoNLL breaks that at once (its lines hold varying numbers of words), and is
    refused naming the line, instead of being read as one giant sentence whose tokens are the
    first word of each line. (Labeled files get the projection's own, more specific checks.)"""
    for offset, row in enumerate(rows):
        if len(row) != len(rows[0]):
            raise InputError(f"{path}, line {first + offset}: {len(row)} columns where line {first} has "
                             f"{len(rows[0])}; this does not look like CoNLL (one token per line, the same columns "
                             "on every line, a blank line between sentences). For one sentence per line use "
                             "--input-format lines")
    return rows


def read_sentences(path: str | Path, fmt: str = "lines") -> list[list[str]]:
    """All sentences of a file as word lists (see `iter_sentences`)."""
    return [words for _, words in iter_sentences(path, fmt)]
