"""Sharded, resumable corpus jobs: a parallel corpus in, alignment shards out.

The input is streamed in shards of ``shard_pairs`` pairs; shard ``k`` holds pairs
``k * shard_pairs ...`` in input order and is written atomically as ``OUTDIR/part-0000k.EXT``,
then recorded as complete in ``OUTDIR/manifest.json`` (see ``manifest.py``). Concatenating the
shards in name order is the whole result in input order; for ``pharaoh`` it is byte for byte
the file ``transalign align`` writes for the same pairs. A shard is read, aligned and written
``CHUNK_PAIRS`` pairs at a time, so memory holds one chunk whatever the input and shard sizes.

Within a chunk, pairs are grouped by (source language, target language): each group goes to
one ``Aligner.align`` call and the results are put back in input order. Per-row language
columns override the job's ``src_lang``/``tgt_lang``.

Shards count input *rows*: shard ``k`` holds rows ``k * shard_pairs ...``, and a pair's index
(its ``id`` when the input has none) is its 0-based row position in the input. Without
``rejects`` every row is a pair or stops the job (``FILE:LINE: message``). With ``rejects=FILE``
a malformed row (no ``|||``, wrong column count, bad JSON or types, invalid UTF-8, unknown
language code, too long for the model without ``skip_long``) gets no output record; it goes to
``OUTDIR/rejects-0000k.jsonl``, written atomically before shard ``k`` itself and counted in the
manifest with it, and FILE is rebuilt from those parts (in input order) when the job completes.
A rejected row therefore never shifts the index of the rows after it, and a resumed job rewrites
exactly the parts of the shards it aligns: FILE equals the uninterrupted run's.

In process (default) or on Ray Data actors (``ray=True`` or an address; ``ray_job.py``): both
write the same shards, from the same ``align_pairs``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import sys
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from transalign.formats.alignments import FormatError, atomic_open
from transalign.corpus.formats import EXTENSIONS, INPUT_FORMATS, OUTPUT_FORMATS, CommitOnSuccess, Pair, Record, \
    Rejected, RowError, ShardWriter, detect_format, iter_pairs, raw_row, reject_line
from transalign.corpus.manifest import JobManifest, describe_job, prepare_outdir

DEFAULT_SHARD_PAIRS = 100_000
# Pairs aligned and written at a time inside a shard (the Aligner's own chunk): memory holds this
# many pairs and results, whatever the shard size.
CHUNK_PAIRS = 4096


@dataclass(frozen=True)
class JobSummary:
    """What a call of `align_corpus` did."""

    outdir: Path
    shards: int  # shards of the whole job
    written: int  # shards written by this call (the others were complete already)
    pairs: int  # output records of the whole job (input rows less the rejected ones)
    skipped: int  # pairs too long for the model, written with no links (skip_long), by this call
    rejected: int = 0  # rows of the whole job set aside in the rejects file (rejects option)
    rejects: Path | None = None  # the rejects file


def shard_name(k: int, output_format: str) -> str:
    return f"part-{k:05d}.{EXTENSIONS[output_format]}"


def rejects_part_name(k: int) -> str:
    """The rejected rows of shard ``k`` (rejects option; only for a shard that has some)."""
    return f"rejects-{k:05d}.jsonl"


REJECTS_HINT = "; to write such rows to a file and align the rest, pass --rejects FILE (Python: rejects=FILE)"


def align_corpus(bundle: str | Path, input: str | Path, outdir: str | Path, *, input_format: str | None = None,
                 src_lang: str | None = None, tgt_lang: str | None = None, output_format: str = "pharaoh",
                 shard_pairs: int = DEFAULT_SHARD_PAIRS, resume: bool = False, ray: bool | str = False,
                 workers: int = 1, gpus_per_worker: float = 0.0, precision: str = "fp32", provider: str = "auto",
                 threshold: float | None = None, batch_tokens: int | None = None, skip_long: bool = False,
                 rejects: str | Path | None = None, threads: int | None = None, log=None) -> JobSummary:
    """Align every pair of a parallel corpus file into shards in ``outdir``.

    ``input_format``: fast_align, tsv, jsonl or parquet (None: detected from the file).
    ``src_lang``/``tgt_lang`` apply to rows without language columns. ``resume`` continues an
    interrupted job (same input, bundle and options, else refused); without it a non-empty
    ``outdir`` is refused. ``ray``: False (this process), True (a local Ray cluster, or the one
    this process already joined) or a cluster address; ``workers`` actors each load one Aligner,
    with ``gpus_per_worker`` GPUs and ``threads`` CPU threads each.

    ``rejects``: a file for malformed rows (JSONL ``{"file", "line", "reason", "raw"}``, in input
    order, written when the job completes, empty when none) instead of stopping at the first; the
    other rows keep their input positions as indexes. Part of the job's identity, like every
    option that changes the result.
    """
    input_path, outdir, bundle = Path(input), Path(outdir), Path(bundle)
    fmt = input_format or detect_format(input_path)
    if fmt not in INPUT_FORMATS:
        raise ValueError(f"input format {fmt!r} is not one of {', '.join(INPUT_FORMATS)}")
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output format {output_format!r} is not one of {', '.join(OUTPUT_FORMATS)}")
    if shard_pairs < 1 or workers < 1 or gpus_per_worker < 0:
        raise ValueError(f"shard_pairs ({shard_pairs}) and workers ({workers}) must be >= 1 and "
                         f"gpus_per_worker ({gpus_per_worker}) >= 0")
    if ray is False and (workers != 1 or gpus_per_worker):
        raise ValueError("workers and gpus_per_worker are Ray actor settings: add ray=True (CLI --ray) or drop them")
    if not input_path.is_file():
        raise FormatError("file not found" if not input_path.exists() else "not a file", input_path)
    rejects_path = None if rejects is None else Path(rejects).resolve()
    if rejects_path is not None:
        from transalign.outputs import check_output

        if rejects_path.parent == outdir.resolve():
            if rejects_path.name.startswith(("part-", "rejects-", ".")) or rejects_path.name == "manifest.json":
                raise ValueError(f"rejects file {rejects_path} would clash with the job's own files in {outdir}; "
                                 "choose another name")
            outdir.mkdir(parents=True, exist_ok=True)
        check_output(rejects_path, [input_path], flag="--rejects")  # not a directory, not the input, writable
    options = {"src_lang": src_lang, "tgt_lang": tgt_lang, "output_format": output_format,
               "shard_pairs": shard_pairs, "precision": precision, "threshold": threshold,
               "batch_tokens": batch_tokens, "skip_long": skip_long,
               "rejects": None if rejects_path is None else str(rejects_path)}
    job = prepare_outdir(outdir, describe_job(input_path, fmt, bundle, options), resume)
    settings = AlignSettings(src_lang, tgt_lang, threshold, batch_tokens, skip_long, str(input_path),
                             rejects_path is not None)
    load = {"bundle": str(bundle), "provider": provider, "precision": precision, "threads": threads}
    log = log or (lambda message: None)
    if job.complete:
        if rejects_path is not None and not rejects_path.exists():
            write_rejects_file(job, outdir, rejects_path)
        log(f"{outdir}: complete already ({job.shards} shards, {job.pairs} pairs)")
        return JobSummary(outdir, job.shards, 0, job.pairs, 0, sum(job.rejected.values()), rejects_path)
    try:
        if ray is not False:
            from transalign.corpus.ray_job import run_on_ray

            written, skipped, rows = run_on_ray(job, input_path, fmt, outdir, settings, load, address=ray,
                                                workers=workers, gpus_per_worker=gpus_per_worker, log=log)
        else:
            written, skipped, rows = _run_in_process(job, input_path, fmt, outdir, settings, load, log)
    except RowError as exc:  # only raised without the rejects option
        raise RowError(exc.message + REJECTS_HINT, exc.path, exc.lineno) from None
    rejected = sum(job.rejected.values())
    job.pairs = rows - rejected
    if rejects_path is not None:
        write_rejects_file(job, outdir, rejects_path)  # before "complete": a kill here is resumed
    job.complete = True
    job.save(outdir)
    return JobSummary(outdir, job.shards, written, job.pairs, skipped, rejected, rejects_path)


def write_rejects_file(job: JobManifest, outdir: Path, path: Path) -> None:
    """FILE from the shards' rejects parts, in shard (= input) order, atomically: it is rebuilt
    whole from parts that were each written with their shard, so a kill and resume can neither
    lose nor repeat a line."""
    with atomic_open(path) as out:
        for k in range(job.shards or 0):
            if job.rejected.get(str(k)):
                with open(outdir / rejects_part_name(k), encoding="utf-8") as part:
                    shutil.copyfileobj(part, out)


@dataclass(frozen=True)
class AlignSettings:
    """Per-pair alignment settings shared by the in-process and Ray paths."""

    src_lang: str | None
    tgt_lang: str | None
    threshold: float | None
    batch_tokens: int | None
    skip_long: bool
    input_name: str  # for messages
    rejects: bool = False  # malformed rows become Rejected items instead of errors


def align_pairs(aligner, pairs: Sequence[Pair], indexes: Sequence[int],
                settings: AlignSettings) -> list[Record | Rejected]:
    """Records for ``pairs`` (pair ``k`` has global index ``indexes[k]``, its row position), in
    input order.

    One ``Aligner.align`` call per language pair present. An unknown language code, or a pair too
    long for the model (without skip_long, which gives a record with no links and
    skipped="too_long"), is an error naming the row's line, or with ``settings.rejects`` a
    :class:`Rejected` in that pair's place.
    """
    from transalign.engine.aligner import TooLongError

    groups: dict[tuple[str | None, str | None], list[int]] = {}
    for k, pair in enumerate(pairs):
        key = (pair.src_lang or settings.src_lang, pair.tgt_lang or settings.tgt_lang)
        groups.setdefault(key, []).append(k)
    records: list[Record | Rejected | None] = [None] * len(pairs)
    for (src_lang, tgt_lang), members in groups.items():
        reason = None
        for lang in (src_lang, tgt_lang):
            try:
                aligner.tokenizer.check_lang(lang)
            except ValueError as exc:
                hint = "" if lang else " (no language column on this row and no --src-lang/--tgt-lang)"
                reason = f"{exc}{hint}"
                break
        if reason is not None:
            if not settings.rejects:
                raise RowError(reason, settings.input_name, pairs[members[0]].lineno)
            for k in members:
                records[k] = Rejected(pairs[k].pos, pairs[k].lineno, reason)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # skipped pairs are counted by the caller
            try:
                results = aligner.align([pairs[k].src for k in members], [pairs[k].tgt for k in members],
                                        src_lang, tgt_lang, settings.threshold, batch_tokens=settings.batch_tokens,
                                        on_too_long="skip")
            except TooLongError as exc:  # not raised with "skip"; kept for safety
                raise FormatError(str(exc), settings.input_name) from None
        for k, result in zip(members, results):
            pair = pairs[k]
            if result.skipped and not settings.skip_long:
                reason = (f"a sentence of this pair has more tokens than the model's maximum of "
                          f"{aligner.manifest.max_positions}; split it, or pass --skip-long to write it with no links")
                if not settings.rejects:
                    raise RowError(reason, settings.input_name, pair.lineno)
                records[k] = Rejected(pair.pos, pair.lineno, reason)
                continue
            records[k] = Record(pair.id if pair.id is not None else str(indexes[k]), result.links, result.skipped)
    return records  # type: ignore[return-value]


def align_rows(aligner, rows: Sequence[Pair | Rejected], first_index: int,
               settings: AlignSettings) -> list[Record | Rejected]:
    """``align_pairs`` over a run of input rows (row ``k`` is at position ``first_index + k``),
    rows rejected by the reader passed through in place."""
    members = [k for k, row in enumerate(rows) if isinstance(row, Pair)]
    out: list[Record | Rejected] = list(rows)  # type: ignore[arg-type]
    if members:
        results = align_pairs(aligner, [rows[k] for k in members], [first_index + k for k in members], settings)
        for k, result in zip(members, results):
            out[k] = result
    return out


class ShardOutput(CommitOnSuccess):
    """Shard ``k``'s alignment file and, with the rejects option, its rejects part, committed
    together: the part first, then the shard, and the caller marks the shard complete in the
    manifest only after both are in place. A part that lacks raw text (rejected after reading:
    unknown language, too long) gets it from the input. Memory holds one chunk."""

    def __init__(self, outdir: Path, k: int, output_format: str, input_path: Path, input_format: str):
        self.writer = ShardWriter(outdir / shard_name(k, output_format), output_format)
        self.part_path = outdir / rejects_part_name(k)
        self.input_path, self.input_format = input_path, input_format
        self._part = None  # the atomic_open context of the rejects part, opened at the first reject
        self._part_out = None
        self.skipped = self.rejected = 0

    def write(self, items: Sequence[Record | Rejected]) -> None:
        records = [item for item in items if isinstance(item, Record)]
        self.writer.write(records)
        self.skipped += sum(1 for r in records if r.skipped)
        rejected = [item for item in items if isinstance(item, Rejected)]
        if rejected:
            if self._part is None:
                self._part = atomic_open(self.part_path)
                self._part_out = self._part.__enter__()
            for item in rejected:
                if item.raw is None:
                    item = item._replace(raw=raw_row(self.input_path, self.input_format, item.pos))
                self._part_out.write(reject_line(str(self.input_path), item))
            self.rejected += len(rejected)

    def commit(self) -> None:
        try:
            if self._part is not None:
                self._part.__exit__(None, None, None)
                self._part = None
            else:
                with contextlib.suppress(FileNotFoundError):  # no rejects: no part (none is expected here;
                    os.unlink(self.part_path)                  # parts are deterministic, so this is tidiness)
        except BaseException:
            self.abort()
            raise
        self.writer.commit()

    def abort(self) -> None:
        if self._part is not None:
            with contextlib.suppress(RuntimeError):
                self._part.__exit__(RuntimeError, RuntimeError("aborted"), None)
            self._part = None
        self.writer.abort()


def batched(pairs: Iterable[Pair], size: int) -> Iterator[list[Pair]]:
    iterator = iter(pairs)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _run_in_process(job: JobManifest, input_path: Path, fmt: str, outdir: Path, settings: AlignSettings,
                    load: dict, log) -> tuple[int, int, int]:
    """Align the shards ``job`` lacks here; returns (shards written, pairs skipped, input rows)."""
    from transalign.engine.aligner import Aligner

    aligner = Aligner.load(load["bundle"], provider=load["provider"], precision=load["precision"],
                           threads=load["threads"])
    shard_pairs = job.options["shard_pairs"]
    output_format = job.options["output_format"]
    done = set(job.completed)
    # Seek to the last shard of the completed prefix (re-reading it is cheaper than the rest).
    first = job.last_start or {"shard": 0, "pos": 0, "lineno": 1}
    reader = iter_pairs(input_path, fmt, first["pos"], first["lineno"], rejects=settings.rejects)
    written = skipped = 0
    k, rows = first["shard"], first["shard"] * shard_pairs  # shards count input rows
    while chunk := list(itertools.islice(reader, min(CHUNK_PAIRS, shard_pairs))):
        first_row, count = chunk[0], 0
        if k in done:  # complete already: read past it
            count = len(chunk) + sum(1 for _ in itertools.islice(reader, shard_pairs - len(chunk)))
        else:
            with ShardOutput(outdir, k, output_format, input_path, fmt) as out:
                while chunk:
                    out.write(align_rows(aligner, chunk, k * shard_pairs + count, settings))
                    count += len(chunk)
                    chunk = list(itertools.islice(reader, min(CHUNK_PAIRS, shard_pairs - count)))
            record_shard(job, outdir, k, first_row, out.rejected if settings.rejects else None)
            skipped += out.skipped
            written += 1
            log(f"{shard_name(k, output_format)}: {count - out.rejected} pairs"
                + (f", {out.rejected} rejected" if out.rejected else ""))
        k, rows = k + 1, rows + count
        if count < shard_pairs:
            break  # the input ended inside this shard
    job.shards = k
    return written, skipped, rows


def record_shard(job: JobManifest, outdir: Path, k: int, first_row: Pair | Rejected,
                 rejected: int | None = None) -> None:
    """Mark shard ``k`` complete (its file, and its rejects part if any, are in place), with its
    count of rejected rows (rejects option), and save the manifest atomically."""
    done = set(job.completed)
    done.add(k)
    job.completed = sorted(done)
    if rejected is not None:
        job.rejected[str(k)] = rejected
    prefix = 0
    while prefix in done:
        prefix += 1
    if prefix - 1 == k:
        job.last_start = {"shard": k, "pos": first_row.pos, "lineno": first_row.lineno}
    job.save(outdir)


def stderr_log(message: str) -> None:
    print(f"transalign align-corpus: {message}", file=sys.stderr)
