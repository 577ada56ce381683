"""The protobuf wire format, read by hand: enough to walk the two serialized models the runtime
opens without their libraries' Python bindings (an ONNX graph for its tables' shapes,
`engine.graph_facts`; a sentencepiece model for its normalizer, `tokenizers.nllb`). Standard
library only. Messages are walked in place: a length-delimited value is a (start, end) span of
the buffer, so a multi-GB graph is never copied.
"""

from __future__ import annotations

from collections.abc import Iterator

VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5


class WireError(ValueError):
    """Bytes that are not protobuf (truncated, or an unknown wire type)."""


def read_varint(buf, pos: int) -> tuple[int, int]:
    """(value, position after it) of the base-128 varint at ``pos``."""
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise WireError("truncated or malformed varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def fields(buf, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int, object, int]]:
    """(field number, wire type, value, offset of the field's key) of each field of the message
    in ``buf[start:end]``; value: an int (varint) or the (start, end) span of the field's bytes."""
    pos, end = start, len(buf) if end is None else end
    while pos < end:
        key_at = pos
        key, pos = read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            value, pos = read_varint(buf, pos)
        elif wire in (LENGTH_DELIMITED, FIXED64, FIXED32):
            size, pos = read_varint(buf, pos) if wire == LENGTH_DELIMITED else (8 if wire == FIXED64 else 4, pos)
            value = (pos, pos + size)
            pos += size
        else:
            raise WireError(f"unsupported protobuf wire type {wire} at byte {key_at}")
        if pos > end:
            raise WireError("a field runs past the end of its message (truncated)")
        yield number, wire, value, key_at
