"""Sharded, resumable corpus jobs: a parallel corpus in, alignment shards out.

The input is streamed in shards of ``shard_pairs`` rows; shard ``k`` is written atomically as
``OUTDIR/part-0000k.EXT``, then recorded as complete, with its size and sha256, in
``OUTDIR/manifest.json`` (``manifest.py``). Concatenating the shards in name order is the whole
result in input order; for ``pharaoh`` it is byte for byte the file ``transalign align`` writes
for the same pairs and options. A shard is read, aligned and written ``CHUNK_PAIRS`` rows at a
time, so memory holds one chunk whatever the input and shard sizes.

Within a chunk, pairs are grouped by (source language, target language): each group goes to one
``Aligner.align`` call and the results are put back in input order. Per-row language columns
override the job's ``src_lang``/``tgt_lang``. Rows, bad rows and shard files: ``shards.py``.

With ``rejects=FILE`` the shards' rejects parts are concatenated into FILE (in input order) when
the job completes, so a resumed job rewrites exactly the parts of the shards it aligns and FILE
equals the uninterrupted run's. A resume first checks every complete shard's files against the
manifest and aligns again any that changed since they were written, saying so.

In process (default) or on Ray Data actors (``ray=True`` or an address; ``ray_job.py``): both
write the same shards through the same ``shards.write_shard``, and both record in the manifest's
``runs`` the provider and precision that really ran (``manifest.Run``), read back from the loaded
Aligner (on Ray: reported by the workers with every batch), next to what was asked.
"""

from __future__ import annotations

import itertools
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from transalign.corpus.formats import INPUT_FORMATS, count_rows, detect_format, iter_pairs
from transalign.corpus.manifest import JobManifest, Run, damaged_shards, describe_job, forget_shard, \
    prepare_outdir, remove
from transalign.corpus.shards import AlignSettings, RowPolicy, align_rows, chunks, rejects_part_name, record_shard, \
    resume_point, shard_files, shard_log, tell_progress, write_shard
from transalign.corpus.writers import OUTPUT_FORMATS
from transalign.formats.alignments import FormatError
from transalign.outputs import open_output

DEFAULT_SHARD_PAIRS = 100_000
_SHARD_NAME = re.compile(r"(?:part|rejects)-(?P<k>\d{5,})\.(?:txt|jsonl|parquet)")


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
    repaired: tuple[int, ...] = ()  # complete shards found damaged on resume and aligned again
    ran: tuple[str, ...] = ()  # "provider precision" of every engine that aligned rows in this call


def align_corpus(bundle: str | Path, input: str | Path, outdir: str | Path, *, input_format: str | None = None,
                 src_lang: str | None = None, tgt_lang: str | None = None, output_format: str = "pharaoh",
                 shard_pairs: int = DEFAULT_SHARD_PAIRS, resume: bool = False, ray: bool | str = False,
                 workers: int = 1, gpus_per_worker: float = 0.0, precision: str = "fp32", provider: str = "auto",
                 threshold: float | None = None, method: str | None = None, word_level: str | None = None,
                 scores: bool = False, batch_tokens: int | None = None, skip_long: bool = False,
                 rejects: str | Path | None = None, threads: int | None = None, log=None, warn=None,
                 progress=None) -> JobSummary:
    """Align every pair of a parallel corpus file into shards in ``outdir``.

    ``input_format``: fast_align, tsv, jsonl or parquet (None: detected from the file).
    ``src_lang``/``tgt_lang`` apply to rows without language columns. ``method``, ``word_level``,
    ``threshold`` (None: the bundle's) and ``scores`` are `Aligner.align`'s: the shards hold
    exactly its links and scores. ``resume`` continues an interrupted job (same input, bundle and
    options, else refused), aligning again any complete shard whose files changed; without it a
    non-empty ``outdir`` is refused. ``ray``: False (this process), True (a local Ray cluster, or
    the one this process already joined) or a cluster address; ``workers`` actors each load one
    Aligner, with ``gpus_per_worker`` GPUs and ``threads`` CPU threads each.

    ``rejects``: a file for malformed rows (JSONL ``{"file", "line", "reason", "raw"}``, in input
    order, written when the job completes, empty when none) instead of stopping at the first; the
    other rows keep their input positions. Part of the job's identity, like every option that
    changes the result.

    ``log(message)``: a line per shard; ``warn(message)``: damaged shards found on resume, a
    resume on another provider than the shards it keeps, Ray workers that ran different engines
    (default: standard error); ``progress(total_rows)``: returns an object whose ``update(rows)``
    is called after every encoder batch (``total_rows`` None when unknown) and, if it has one,
    whose ``ran(provider, precision)`` is called once they are known (on Ray: with the first
    batch; workers that disagree give "cpu+cuda").
    """
    from transalign.engine.options import LoadOptions

    input_path, outdir, bundle = Path(input), Path(outdir), Path(bundle)
    load = LoadOptions(precision=precision, provider=provider, threads=threads, batch_tokens=batch_tokens)
    fmt = _check_arguments(input_path, input_format, output_format, shard_pairs, ray, workers, gpus_per_worker)
    rejects_path = _check_rejects(rejects, input_path, outdir)
    warn = warn or stderr_warn
    settings = job_settings(bundle, input_path, fmt, output_format, src_lang, tgt_lang, method, word_level,
                            threshold, scores, skip_long, rejects_path is not None, warn)
    options = {"src_lang": src_lang, "tgt_lang": tgt_lang, "output_format": output_format,
               "shard_pairs": shard_pairs, "precision": precision, "threshold": threshold, "method": method,
               "word_level": word_level, "scores": scores, "batch_tokens": batch_tokens, "skip_long": skip_long,
               "rejects": None if rejects_path is None else str(rejects_path)}
    job = prepare_outdir(outdir, describe_job(input_path, fmt, bundle, options), resume)
    log = log or (lambda message: None)
    repaired = _repair(job, outdir, warn) if resume else ()
    if job.complete:
        if rejects_path is not None:
            write_rejects_file(job, outdir, rejects_path)  # cheap, and FILE may have been changed since
        log(f"{outdir}: complete already ({job.shards} shards, {job.pairs} pairs)")
        return JobSummary(outdir, job.shards, 0, job.pairs, 0, sum(job.rejected.values()), rejects_path)
    run = Run(job, provider, precision, warn)
    if ray is not False:
        from transalign.corpus.ray_job import run_on_ray

        written, skipped, rows = run_on_ray(job, input_path, outdir, settings, load, bundle, run, address=ray,
                                            workers=workers, gpus_per_worker=gpus_per_worker, log=log,
                                            progress=progress)
    else:
        written, skipped, rows = _run_in_process(job, input_path, outdir, settings, load, bundle, run, log,
                                                 progress)
    _remove_strays(job, outdir, warn)  # now that the number of shards is known
    rejected = sum(job.rejected.values())
    job.pairs = rows - rejected
    if rejects_path is not None:
        write_rejects_file(job, outdir, rejects_path)  # before "complete": a kill here is resumed
    job.complete = True
    job.save(outdir)
    ran = tuple(f"{e['provider']} {e['precision']}" for e in run.entry["ran"])
    return JobSummary(outdir, job.shards, written, job.pairs, skipped, rejected, rejects_path, repaired, ran)


def _check_arguments(input_path: Path, input_format, output_format, shard_pairs, ray, workers,
                     gpus_per_worker) -> str:
    if not input_path.is_file():
        raise FormatError("file not found" if not input_path.exists() else "not a file", input_path)
    fmt = input_format or detect_format(input_path)
    if fmt not in INPUT_FORMATS:
        raise ValueError(f"input format {fmt!r} is not one of {', '.join(INPUT_FORMATS)}")
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output format {output_format!r} is not one of {', '.join(OUTPUT_FORMATS)}")
    from transalign.engine.options import OptionError

    for option, value in (("shard_pairs", shard_pairs), ("workers", workers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise OptionError(option, value, "must be an integer >= 1")
    if isinstance(gpus_per_worker, bool) or not isinstance(gpus_per_worker, (int, float)) or not gpus_per_worker >= 0:
        raise OptionError("gpus_per_worker", gpus_per_worker, "must be a number >= 0")
    if ray is False and (workers != 1 or gpus_per_worker):
        option, value = ("workers", workers) if workers != 1 else ("gpus_per_worker", gpus_per_worker)
        raise OptionError(option, value, "is a Ray actor setting: add --ray (Python: ray=True) or leave it out")
    return fmt


def _check_rejects(rejects, input_path: Path, outdir: Path) -> Path | None:
    if rejects is None:
        return None
    from transalign.outputs import check_output

    path = Path(rejects).resolve()
    if path.parent == outdir.resolve():
        if path.name.startswith(("part-", "rejects-", ".")) or path.name == "manifest.json":
            raise ValueError(f"rejects file {path} would clash with the job's own files in {outdir}; "
                             "choose another name")
        outdir.mkdir(parents=True, exist_ok=True)
    check_output(path, [input_path], flag="--rejects")  # not a directory, not the input, writable
    return path


def job_settings(bundle: Path, input_path: Path, input_format: str, output_format: str, src_lang, tgt_lang,
                 method, word_level, threshold, scores: bool, skip_long: bool, rejects: bool, warn) -> AlignSettings:
    """The job's `AlignSettings`, made once: the extraction resolved for the bundle (its
    defaults fill what is None) and the job's language codes checked by the engine's rules
    (`OptionError` naming the option); rows may still bring codes of their own. Codes given to a
    bundle without codes are ignored, with a warning (as `align` does)."""
    from transalign.engine.bundle import read_manifest
    from transalign.engine.options import canonical_language, resolve_extraction

    manifest = read_manifest(bundle, verify_hashes=False)
    extraction = resolve_extraction(manifest, method, word_level, threshold, scores)
    table = manifest.tokenizer.lang_code_ids
    codes = {"src_lang": src_lang, "tgt_lang": tgt_lang}
    for option, code in codes.items():
        if code is not None and not table:
            warn(f"--{option.replace('_', '-')} {code} is ignored: this {manifest.architecture} bundle has no "
                 "language codes")
        elif code is not None:  # None: every row must bring its own (checked per row)
            codes[option] = canonical_language(table, option, code, manifest.architecture)
    return AlignSettings(extraction, codes["src_lang"], codes["tgt_lang"], skip_long, RowPolicy(rejects, str(input_path)), output_format,
                         input_format)


def _repair(job: JobManifest, outdir: Path, warn) -> tuple[int, ...]:
    """Forget every complete shard whose files differ from what was committed (see manifest),
    and remove files at the job's names that no shard of it wrote (``cat part-*`` must be the
    job's result and nothing else)."""
    damaged = damaged_shards(job, outdir, lambda k: shard_files(job, k))
    for k, problem in sorted(damaged.items()):
        warn(f"{outdir / problem}; aligning shard {k} again")
        forget_shard(job, outdir, k, lambda k: shard_files(job, k))
    _remove_strays(job, outdir, warn)
    if damaged:
        job.save(outdir)
    return tuple(sorted(damaged))


def _remove_strays(job: JobManifest, outdir: Path, warn) -> None:
    for path in _strays(job, outdir):
        warn(f"{path} was not written by this job; removed")
        remove(path)


def _strays(job: JobManifest, outdir: Path) -> list[Path]:
    """Shard-like names in OUTDIR that are not a file of a complete shard: a rejects part of a
    shard without rejects, another extension, a shard past the end of the input. (A pending
    shard's leftovers are replaced when it is written.)"""
    done, strays = set(job.completed), []
    for path in sorted(outdir.glob("part-*")) + sorted(outdir.glob("rejects-*")):
        match = _SHARD_NAME.fullmatch(path.name)
        if match is None:
            continue  # not a name this job writes
        k = int(match["k"])
        if (job.shards is not None and k >= job.shards) or (k in done and path.name not in shard_files(job, k)):
            strays.append(path)
    return strays


def write_rejects_file(job: JobManifest, outdir: Path, path: Path) -> None:
    """FILE from the shards' rejects parts, in shard (= input) order, atomically: it is rebuilt
    whole from parts that were each written (and verified on resume) with their shard, so a kill
    and resume can neither lose nor repeat a line."""
    with open_output(path) as out:
        for k in range(job.shards or 0):
            if job.rejected.get(str(k)):
                with open(outdir / rejects_part_name(k), encoding="utf-8") as part:
                    shutil.copyfileobj(part, out)


def _run_in_process(job: JobManifest, input_path: Path, outdir: Path, settings: AlignSettings, load, bundle: Path,
                    run: Run, log, progress) -> tuple[int, int, int]:
    """Align the shards ``job`` lacks here; returns (shards written, pairs skipped, input rows)."""
    from transalign.engine.aligner import Aligner

    aligner = Aligner.load(bundle, options=load)
    run.ran(aligner.provider, aligner.precision)  # what ran: auto that got the CPU is "cpu"
    shard_pairs, done = job.options["shard_pairs"], set(job.completed)
    k, pos, lineno = resume_point(job)
    shown = _progress(progress, input_path, settings.input_format, shard_pairs, done)
    tell_progress(shown, run)
    bar = None if shown is None else shown.update
    reader = iter_pairs(input_path, settings.input_format, pos, lineno)
    written = skipped = 0
    rows = k * shard_pairs
    while (first := next(reader, None)) is not None:
        shard = itertools.chain([first], itertools.islice(reader, shard_pairs - 1))
        if k in done:  # complete already: read past it
            count = sum(1 for _ in shard)
        else:
            pieces = (align_rows(aligner, chunk, index, settings, bar)
                      for index, chunk in _indexed(chunks(shard), k * shard_pairs))
            result = write_shard(outdir, k, settings, pieces, input_path)
            record_shard(job, outdir, k, (first.pos, first.lineno), result, settings.policy.rejects, run)
            count, skipped, written = result.rows, skipped + result.skipped, written + 1
            log(shard_log(k, settings.output_format, result))
        k, rows = k + 1, rows + count
        if count < shard_pairs:
            break  # the input ended inside this shard
    job.shards = k
    return written, skipped, rows


def _indexed(pieces, first: int):
    """(row index of the piece's first row, piece) for consecutive pieces from row ``first``."""
    for piece in pieces:
        yield first, piece
        first += len(piece)


def _progress(progress, input_path: Path, input_format: str, shard_pairs: int, done: set):
    """The caller's progress display (None: no display): its total is the rows still to align
    (counted from the input: a fast read next to aligning)."""
    if progress is None:
        return None
    total = count_rows(input_path, input_format)
    if total is not None:
        total -= sum(min(shard_pairs, max(total - k * shard_pairs, 0)) for k in done)
    return progress(total)



def stderr_log(message: str) -> None:
    print(f"transalign align-corpus: {message}", file=sys.stderr)


def stderr_warn(message: str) -> None:
    print(f"transalign align-corpus: warning: {message}", file=sys.stderr)
