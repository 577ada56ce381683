"""The parallel-text reader (transalign.formats.parallel): one row per line, pairs or rejected
rows with a reason, never a line dropped. Expectations are written out by hand per line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from transalign.formats.parallel import PARALLEL_SEPARATORS, ParallelPair, RejectedRow, read_parallel
from transalign.formats.text import InputError

ROOT = Path(__file__).resolve().parents[1]


def _rows(tmp_path: Path, data: bytes) -> list:
    path = tmp_path / "pairs.txt"
    path.write_bytes(data)
    return list(read_parallel(path))


def test_separators_are_the_two_documented_ones():
    assert PARALLEL_SEPARATORS == ("|||", "\t")


def test_bar_and_tab_lines_give_pairs_in_order(tmp_path):
    rows = _rows(tmp_path, "a b ||| x y z\nc\td e\n  f  |||g\n".encode())
    assert rows == [ParallelPair(1, ("a", "b"), ("x", "y", "z")),
                    ParallelPair(2, ("c",), ("d", "e")),
                    ParallelPair(3, ("f",), ("g",))]


def test_crlf_bom_and_missing_final_newline(tmp_path):
    rows = _rows(tmp_path, b"\xef\xbb\xbfa ||| b\r\nc ||| d")
    assert rows == [ParallelPair(1, ("a",), ("b",)), ParallelPair(2, ("c",), ("d",))]


def test_every_bad_line_is_a_rejected_row_with_its_line(tmp_path):
    lines = [
        b"ok ||| fine",          # 1 pair
        b"",                     # 2 empty line
        b"no separator here",    # 3
        b" ||| target only",     # 4 empty source
        b"source only |||   ",   # 5 empty target
        b"a ||| b ||| c",        # 6 two bars
        b"a ||| b\tc",           # 7 bar and tab
        b"a\tb\tc",              # 8 two tabs
        b"a |||| b",             # 9 four bars
        b"caf\xe9 ||| cafe",     # 10 latin-1 byte
        b"\xed\xa0\x80 ||| x",   # 11 UTF-8 encoded lone surrogate U+D800
        b"|||",                  # 12 both sides empty
        b"last\tone",            # 13 pair
    ]
    rows = _rows(tmp_path, b"\n".join(lines) + b"\n")
    assert len(rows) == len(lines)
    assert [r.line for r in rows] == list(range(1, 14))
    assert rows[0] == ParallelPair(1, ("ok",), ("fine",))
    assert rows[12] == ParallelPair(13, ("last",), ("one",))
    rejected = rows[1:12]
    assert all(isinstance(r, RejectedRow) for r in rejected)
    assert all(r.path == str(tmp_path / "pairs.txt") for r in rejected)
    reasons = [r.reason for r in rejected]
    assert reasons[0].startswith("an empty line")
    assert reasons[1].startswith("no separator")
    assert reasons[2] == "the source side holds no word"
    assert reasons[3] == "the target side holds no word"
    assert reasons[4].startswith("more than one separator (2 '|||')")
    assert reasons[5].startswith("more than one separator (1 '|||', 1 tab(s))")
    assert reasons[6].startswith("more than one separator (2 tab(s))")
    assert reasons[7].startswith("a run of 4 '|' characters")
    assert reasons[8].startswith("not valid UTF-8 (bad byte at 3")
    assert reasons[9].startswith("a lone surrogate U+D800 at byte 0")
    assert reasons[10] == "neither side holds a word"
    # raw text kept for the log: decoded text, or the bytes escaped
    assert rejected[1].raw == "no separator here"
    assert rejected[8].raw == "caf\\xe9 ||| cafe"
    assert rejected[9].raw == "\\xed\\xa0\\x80 ||| x"
    assert str(rejected[2]) == f"{tmp_path / 'pairs.txt'}:4: the source side holds no word"


def test_whitespace_inside_sides_is_word_separation(tmp_path):
    # NBSP and form feed separate words as str.split() says, like the sentence reader
    rows = _rows(tmp_path, "a\u00a0b ||| c\x0cd\n".encode())
    assert rows == [ParallelPair(1, ("a", "b"), ("c", "d"))]


def test_streamed_lazily(tmp_path):
    path = tmp_path / "big.txt"
    path.write_bytes(b"a ||| b\n" * 1000 + b"\xff\n")
    it = read_parallel(path)
    assert next(it) == ParallelPair(1, ("a",), ("b",))
    rows = list(it)
    assert len(rows) == 1000 and isinstance(rows[-1], RejectedRow) and rows[-1].line == 1001


def test_missing_file_and_directory_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        list(read_parallel(tmp_path / "nope.txt"))
    with pytest.raises(InputError, match="is a directory"):
        list(read_parallel(tmp_path))


def test_dash_reads_stdin():
    code = ("from transalign.formats.parallel import read_parallel\n"
            "for r in read_parallel('-'): print(repr(r))\n")
    out = subprocess.run([sys.executable, "-c", code], input=b"a ||| b\nbad\n", capture_output=True,
                         check=True, cwd=ROOT).stdout.decode()
    assert out.splitlines() == [repr(ParallelPair(1, ("a",), ("b",))),
                                repr(RejectedRow("-", 2, "no separator: expected 'source ||| target' or "
                                                 "'source<TAB>target'", "bad"))]


def test_import_is_stdlib_only():
    code = ("import sys, transalign.formats.parallel\n"
            "heavy = [m for m in ('numpy', 'torch', 'onnxruntime', 'transformers') if m in sys.modules]\n"
            "print(heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, cwd=ROOT).stdout
    assert out.decode().strip() == "[]"
