"""Reading sentence files for alignment: `lines` (one sentence per line) or `conll`.

Errors name the file and line: invalid UTF-8 is reported where it occurs, never replaced
silently, because a replaced character would shift nothing but still change the words aligned.
"""

from __future__ import annotations

from pathlib import Path

INPUT_FORMATS = ("lines", "conll")


class InputError(ValueError):
    """A sentence file cannot be read as the requested format."""


def _decoded_lines(path: Path) -> list[str]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a text file") from None
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for number, line in enumerate(lines, 1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}, line {number}: invalid UTF-8 at byte {exc.start} "
                             f"({line[max(exc.start - 8, 0):exc.start + 8]!r}); convert the file to UTF-8") from None
        out.append(text[:-1] if text.endswith("\r") else text)
    if out and out[0].startswith("\ufeff"):
        out[0] = out[0][1:]  # a UTF-8 byte-order mark is not part of the first word
    return out


def read_sentences(path: str | Path, fmt: str = "lines") -> list[list[str]]:
    """Sentences as word lists. `lines`: whitespace-split lines (an empty line is an empty
    sentence). `conll`: first column of each non-blank line, blank lines end sentences."""
    if fmt not in INPUT_FORMATS:
        raise InputError(f"input format {fmt!r} is not one of {', '.join(INPUT_FORMATS)}")
    lines = _decoded_lines(Path(path))
    if fmt == "lines":
        return [line.split() for line in lines]
    sentences, current = [], []
    for line in lines:
        fields = line.split()
        if fields:
            current.append(fields[0])
        elif current:
            sentences.append(current)
            current = []
    if current:
        sentences.append(current)
    return sentences
