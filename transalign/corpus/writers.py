"""Alignment shards: one record per input row, in input order, written atomically.

Output formats:

    pharaoh   ``i-j ...``: exactly the lines of ``transalign align``; a rejected row (rejects
              option) is an empty line, so line k of the output is always input row k
    id        ``ID<TAB>i-j ...`` (the input's id, else the row's 0-based position)
    jsonl     ``{"id", "links", "scores"?, "skipped"?}``: the one jsonl record schema of
              ``transalign.formats.alignments`` (``format_record``), as ``align`` writes it
    parquet   columns id, links, skipped (and scores with the scores option)

With the scores option the text formats write each link as ``align --output-format
pharaoh-scores`` does (``i-j:0.873``) and jsonl/parquet add the scores list. Rejected rows are not
records in id, jsonl and parquet: their ids keep every other row's position.

A shard is written through `transalign.outputs.open_output` (the one atomic writer): it appears
whole or not at all, Parquet included (pyarrow writes into the same temporary file).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, NamedTuple

from transalign.formats.alignments import format_line, format_record, format_scored_line

OUTPUT_FORMATS = ("pharaoh", "id", "jsonl", "parquet")
EXTENSIONS = {"pharaoh": "txt", "id": "txt", "jsonl": "jsonl", "parquet": "parquet"}


class Record(NamedTuple):
    """One output record: the pair's id (the input's, a string; else its 0-based row position,
    an int, written as `align` writes a pair index), links, skip reason, and the links' scores
    (scores option only)."""

    id: str | int
    links: Sequence[tuple[int, int]]
    skipped: str | None = None
    scores: Sequence[float] | None = None


def record_line(rec: Record | None, fmt: str) -> str | None:
    """The text line (no newline) of ``rec`` in a text format; ``rec`` None is a rejected row:
    an empty line in pharaoh (positions kept), nothing in the formats that carry ids."""
    if rec is None:
        return "" if fmt == "pharaoh" else None
    if fmt == "jsonl":
        return format_record(rec.links, id=rec.id, scores=rec.scores, skipped=rec.skipped or None)
    if rec.scores is not None:
        body = format_scored_line(rec.links, rec.scores, "pharaoh-scores")
        return body if fmt == "pharaoh" else f"{rec.id}\t{body}"
    return format_line(rec.links, id=rec.id if fmt == "id" else None)


def write_records(out: IO[str], items: Iterable[Record | None], fmt: str, parquet=None) -> None:
    """Append ``items`` (None: a rejected row) to an open shard: text lines to ``out``, or a
    row group to ``parquet`` (a `parquet_writer` of the same shard)."""
    if fmt == "parquet":
        records = [rec for rec in items if rec is not None]
        parquet.write_table(_parquet_table(records, scored=parquet.schema.get_field_index("scores") >= 0))
        return
    lines = [line for line in (record_line(rec, fmt) for rec in items) if line is not None]
    out.write("".join(line + "\n" for line in lines))


def parquet_writer(out: IO[str], scores: bool):
    """A pyarrow ParquetWriter into the binary buffer of the atomic text handle ``out``."""
    _, pq = _pyarrow()
    return pq.ParquetWriter(out.buffer, _parquet_schema(scores))


def _parquet_schema(scores: bool):
    pa, _ = _pyarrow()
    fields = [("id", pa.string()), ("links", pa.list_(pa.list_(pa.int32()))), ("skipped", pa.string())]
    return pa.schema(fields + ([("scores", pa.list_(pa.float64()))] if scores else []))


def _parquet_table(records: Sequence[Record], scored: bool):
    pa, _ = _pyarrow()
    columns = {"id": [str(r.id) for r in records], "links": [[list(link) for link in r.links] for r in records],
               "skipped": [r.skipped for r in records]}
    if scored:
        columns["scores"] = [[float(v) for v in r.scores] for r in records]
    return pa.table(columns, schema=_parquet_schema(scored))


def _pyarrow():
    from transalign.corpus.formats import _pyarrow

    return _pyarrow()


def read_shard(path: str | os.PathLike, fmt: str) -> list[Record]:
    """The records of a shard (for tests and for users checking a job), ids as text; a pharaoh
    shard's records are numbered by line, rejected rows' empty lines included."""
    if fmt == "parquet":
        _, pq = _pyarrow()
        table = pq.read_table(path).to_pydict()
        scores = table.get("scores") or [None] * len(table["id"])
        return [Record(i, [tuple(x) for x in links], s, v)
                for i, links, s, v in zip(table["id"], table["links"], table["skipped"], scores)]
    out = []
    for k, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines()):
        if fmt == "jsonl":
            item = json.loads(line)
            out.append(Record(str(item["id"]), [tuple(x) for x in item["links"]], item.get("skipped"),
                              item.get("scores")))
            continue
        ident, _, body = line.rpartition("\t") if fmt == "id" else ("", "", line)
        tokens = body.split()
        links = [tuple(map(int, tok.split(":")[0].split("-"))) for tok in tokens]
        scores = [float(tok.split(":")[1]) for tok in tokens] if tokens and ":" in tokens[0] else None
        out.append(Record(ident if fmt == "id" else str(k), links, None, scores))
    return out
