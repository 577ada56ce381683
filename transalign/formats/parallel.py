"""Parallel-text files: one sentence pair per line, read one way by every command that takes
them (``finetune --parallel``, ``align --input``).

A line is ``source ||| target`` (the fast_align / awesome-align format) or ``source<TAB>target``;
each side is split into words on whitespace as ``str.split()`` defines it (so the spaces around
``|||`` do not matter). Lines end at ``\\n`` (one ``\\r`` before it is dropped, for CRLF files); a
UTF-8 byte-order mark at the start of the file is dropped; ``-`` reads standard input. Files are
streamed (constant memory).

Every line yields exactly one row, in file order, so nothing is ever dropped silently:
:class:`ParallelPair` for a usable pair, :class:`RejectedRow` (file, 1-based line, reason, the
raw text) for a line that is not one. A line is rejected when

- it holds no separator (``|||`` or a tab), or more than one (counting both kinds: a tab inside a
  ``|||`` line is refused rather than guessed at), or a run of four or more ``|``;
- one side (or both) holds no word;
- it is not valid UTF-8 (a lone surrogate, which strict UTF-8 cannot encode, is named as such;
  the raw text then shows the bad bytes as ``\\xNN``).

What to do with rejected rows (count and skip, or stop) is the caller's policy. A file that
cannot be opened at all is an :class:`~transalign.formats.text.InputError`. Standard library only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

from transalign.formats.text import STDIN, InputError, _binary

__all__ = ["InputError", "PARALLEL_SEPARATORS", "ParallelPair", "RejectedRow", "STDIN", "read_parallel"]

PARALLEL_SEPARATORS = ("|||", "\t")
_BARS = re.compile(r"\|{3,}")


@dataclass(frozen=True)
class ParallelPair:
    """A usable line: its 1-based number and the words of each side (both non-empty)."""

    line: int
    src: tuple[str, ...]
    tgt: tuple[str, ...]


@dataclass(frozen=True)
class RejectedRow:
    """A line that is not a sentence pair; ``str()`` reads ``FILE:LINE: reason``."""

    path: str
    line: int
    reason: str
    raw: str  # the line without its line end; undecodable bytes shown as \\xNN

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


def read_parallel(path: str | os.PathLike) -> Iterator[ParallelPair | RejectedRow]:
    """One row per line of ``path`` (``-``: standard input), in order; see the module docstring."""
    name = os.fspath(path)
    with _binary(path) as handle:
        for number, raw in enumerate(handle, 1):
            raw = raw[:-1] if raw.endswith(b"\n") else raw
            raw = raw[:-1] if raw.endswith(b"\r") else raw
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # a byte-order mark is not part of the first word
            yield _row(name, number, raw)


def _row(path: str, number: int, raw: bytes) -> ParallelPair | RejectedRow:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return RejectedRow(path, number, _decode_reason(raw, exc), raw.decode("utf-8", "backslashreplace"))
    reason, sides = _split(text)
    if reason:
        return RejectedRow(path, number, reason, text)
    src, tgt = (tuple(side.split()) for side in sides)
    if not src or not tgt:
        reason = ("neither side holds a word" if not src and not tgt
                  else f"the {'source' if not src else 'target'} side holds no word")
        return RejectedRow(path, number, reason, text)
    return ParallelPair(number, src, tgt)


def _split(text: str) -> tuple[str | None, tuple[str, str]]:
    """(reason the line is refused or None, (source text, target text))."""
    runs = _BARS.findall(text)
    long_runs = [run for run in runs if len(run) > 3]
    if long_runs:
        return (f"a run of {len(long_runs[0])} '|' characters; the separator is exactly '|||'", ("", ""))
    tabs = text.count("\t")
    if not runs and not tabs:
        what = "an empty line" if not text.strip() else "no separator"
        return (f"{what}: expected 'source ||| target' or 'source<TAB>target'", ("", ""))
    if len(runs) + tabs > 1:
        found = ", ".join(f"{count} {name}" for name, count in (("'|||'", len(runs)), ("tab(s)", tabs)) if count)
        return (f"more than one separator ({found}); a line holds exactly one '|||' or one tab", ("", ""))
    separator = "|||" if runs else "\t"
    src, tgt = text.split(separator)
    return None, (src, tgt)


def _decode_reason(raw: bytes, exc: UnicodeDecodeError) -> str:
    bad = raw[exc.start:exc.start + 3]
    if len(bad) == 3 and bad[0] == 0xED and 0xA0 <= bad[1] <= 0xBF:
        point = bad.decode("utf-8", "surrogatepass")
        return (f"a lone surrogate U+{ord(point):04X} at byte {exc.start} (not valid UTF-8); "
                "convert the file to UTF-8")
    return (f"not valid UTF-8 (bad byte at {exc.start}: {raw[max(exc.start - 8, 0):exc.start + 8]!r}); "
            "convert the file to UTF-8")
