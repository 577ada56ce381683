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

In process (default) or on Ray Data actors (``ray=True`` or an address; ``ray_job.py``): both
write the same shards, from the same ``align_pairs``.
"""

from __future__ import annotations

import itertools
import sys
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from transalign.formats.alignments import FormatError
from transalign.corpus.formats import EXTENSIONS, INPUT_FORMATS, OUTPUT_FORMATS, Pair, Record, ShardWriter, \
    detect_format, iter_pairs
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
    pairs: int
    skipped: int  # pairs too long for the model, written with no links (skip_long)


def shard_name(k: int, output_format: str) -> str:
    return f"part-{k:05d}.{EXTENSIONS[output_format]}"


def align_corpus(bundle: str | Path, input: str | Path, outdir: str | Path, *, input_format: str | None = None,
                 src_lang: str | None = None, tgt_lang: str | None = None, output_format: str = "pharaoh",
                 shard_pairs: int = DEFAULT_SHARD_PAIRS, resume: bool = False, ray: bool | str = False,
                 workers: int = 1, gpus_per_worker: float = 0.0, precision: str = "fp32", provider: str = "auto",
                 threshold: float | None = None, batch_tokens: int | None = None, skip_long: bool = False,
                 threads: int | None = None, log=None) -> JobSummary:
    """Align every pair of a parallel corpus file into shards in ``outdir``.

    ``input_format``: fast_align, tsv, jsonl or parquet (None: detected from the file).
    ``src_lang``/``tgt_lang`` apply to rows without language columns. ``resume`` continues an
    interrupted job (same input, bundle and options, else refused); without it a non-empty
    ``outdir`` is refused. ``ray``: False (this process), True (a local Ray cluster, or the one
    this process already joined) or a cluster address; ``workers`` actors each load one Aligner,
    with ``gpus_per_worker`` GPUs and ``threads`` CPU threads each.
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
    options = {"src_lang": src_lang, "tgt_lang": tgt_lang, "output_format": output_format,
               "shard_pairs": shard_pairs, "precision": precision, "threshold": threshold,
               "batch_tokens": batch_tokens, "skip_long": skip_long}
    job = prepare_outdir(outdir, describe_job(input_path, fmt, bundle, options), resume)
    settings = AlignSettings(src_lang, tgt_lang, threshold, batch_tokens, skip_long, str(input_path))
    load = {"bundle": str(bundle), "provider": provider, "precision": precision, "threads": threads}
    log = log or (lambda message: None)
    if job.complete:
        log(f"{outdir}: complete already ({job.shards} shards, {job.pairs} pairs)")
        return JobSummary(outdir, job.shards, 0, job.pairs, 0)
    if ray is not False:
        from transalign.corpus.ray_job import run_on_ray

        written, skipped = run_on_ray(job, input_path, fmt, outdir, settings, load, address=ray,
                                      workers=workers, gpus_per_worker=gpus_per_worker, log=log)
    else:
        written, skipped = _run_in_process(job, input_path, fmt, outdir, settings, load, log)
    job.complete = True
    job.save(outdir)
    return JobSummary(outdir, job.shards, written, job.pairs, skipped)


@dataclass(frozen=True)
class AlignSettings:
    """Per-pair alignment settings shared by the in-process and Ray paths."""

    src_lang: str | None
    tgt_lang: str | None
    threshold: float | None
    batch_tokens: int | None
    skip_long: bool
    input_name: str  # for messages


def align_pairs(aligner, pairs: Sequence[Pair], first_index: int, settings: AlignSettings) -> list[Record]:
    """Records for ``pairs`` (pair ``k`` has global index ``first_index + k``), in input order.

    One ``Aligner.align`` call per language pair present; a pair too long for the model is an
    error naming its line, or (skip_long) a record with no links and skipped="too_long".
    """
    from transalign.engine.aligner import TooLongError

    groups: dict[tuple[str | None, str | None], list[int]] = {}
    for k, pair in enumerate(pairs):
        key = (pair.src_lang or settings.src_lang, pair.tgt_lang or settings.tgt_lang)
        groups.setdefault(key, []).append(k)
    records: list[Record | None] = [None] * len(pairs)
    for (src_lang, tgt_lang), members in groups.items():
        for lang in (src_lang, tgt_lang):
            try:
                aligner.tokenizer.check_lang(lang)
            except ValueError as exc:
                first = pairs[members[0]]
                hint = "" if lang else " (no language column on this row and no --src-lang/--tgt-lang)"
                raise FormatError(f"{exc}{hint}", settings.input_name, first.lineno) from None
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
                raise FormatError(f"a sentence of this pair has more tokens than the model's maximum of "
                                  f"{aligner.manifest.max_positions}; split it, or pass --skip-long to write "
                                  "it with no links", settings.input_name, pair.lineno)
            records[k] = Record(pair.id if pair.id is not None else str(first_index + k), result.links,
                                result.skipped)
    return records  # type: ignore[return-value]


def batched(pairs: Iterable[Pair], size: int) -> Iterator[list[Pair]]:
    iterator = iter(pairs)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _run_in_process(job: JobManifest, input_path: Path, fmt: str, outdir: Path, settings: AlignSettings,
                    load: dict, log) -> tuple[int, int]:
    from transalign.engine.aligner import Aligner

    aligner = Aligner.load(load["bundle"], provider=load["provider"], precision=load["precision"],
                           threads=load["threads"])
    shard_pairs = job.options["shard_pairs"]
    output_format = job.options["output_format"]
    done = set(job.completed)
    # Seek to the last shard of the completed prefix (re-reading it is cheaper than the rest).
    first = job.last_start or {"shard": 0, "pos": 0, "lineno": 1}
    reader = iter_pairs(input_path, fmt, first["pos"], first["lineno"])
    written = skipped = 0
    k, pairs = first["shard"], first["shard"] * shard_pairs
    while chunk := list(itertools.islice(reader, min(CHUNK_PAIRS, shard_pairs))):
        first_pair, count = chunk[0], 0
        if k in done:  # complete already: read past it
            count = len(chunk) + sum(1 for _ in itertools.islice(reader, shard_pairs - len(chunk)))
        else:
            with ShardWriter(outdir / shard_name(k, output_format), output_format) as out:
                while chunk:
                    records = align_pairs(aligner, chunk, k * shard_pairs + count, settings)
                    out.write(records)
                    skipped += sum(1 for r in records if r.skipped)
                    count += len(chunk)
                    chunk = list(itertools.islice(reader, min(CHUNK_PAIRS, shard_pairs - count)))
            record_shard(job, outdir, k, first_pair)
            written += 1
            log(f"{shard_name(k, output_format)}: {count} pairs")
        k, pairs = k + 1, pairs + count
        if count < shard_pairs:
            break  # the input ended inside this shard
    shards = k
    job.shards, job.pairs = shards, pairs
    return written, skipped


def record_shard(job: JobManifest, outdir: Path, k: int, first_pair: Pair) -> None:
    """Mark shard ``k`` complete (its file is in place) and save the manifest atomically."""
    done = set(job.completed)
    done.add(k)
    job.completed = sorted(done)
    prefix = 0
    while prefix in done:
        prefix += 1
    if prefix - 1 == k:
        job.last_start = {"shard": k, "pos": first_pair.pos, "lineno": first_pair.lineno}
    job.save(outdir)


def stderr_log(message: str) -> None:
    print(f"transalign align-corpus: {message}", file=sys.stderr)
