"""The shard machinery of a corpus job, shared by the in-process runner (``job.py``) and the Ray
runner (``ray_job.py``): how rows are aligned, what happens to a bad row, how a shard and its
rejects part are written and recorded.

Shards count input *rows*: shard ``k`` holds rows ``k * shard_pairs ...``, and a pair's index
(its ``id`` when the input has none) is its 0-based row position in the input. Readers yield
every row, a `Pair` or a `Rejected` (malformed), and aligning adds rejects of its own (unknown
language code; too long for the model without ``skip_long``). What a rejected row does is decided
in one place, `RowPolicy`: without the rejects option it stops the job with ``FILE:LINE: reason``,
with it the row goes to the shard's rejects part (``rejects-0000k.jsonl``, committed before the
shard file) and keeps its position (an empty line in pharaoh output, a missing id elsewhere).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from transalign.corpus.formats import Pair, Rejected, RowError, raw_row, reject_line
from transalign.corpus.manifest import JobManifest, Run, file_digest
from transalign.corpus.writers import EXTENSIONS, Record, parquet_writer, write_records
from transalign.outputs import open_output

# Pairs aligned and written at a time inside a shard (the Aligner's own chunk): memory holds this
# many pairs and results, whatever the shard size.
CHUNK_PAIRS = 4096
REJECTS_HINT = "; to write such rows to a file and align the rest, pass --rejects FILE (Python: rejects=FILE)"


def shard_name(k: int, output_format: str) -> str:
    return f"part-{k:05d}.{EXTENSIONS[output_format]}"


def rejects_part_name(k: int) -> str:
    """The rejected rows of shard ``k`` (rejects option; only for a shard that has some)."""
    return f"rejects-{k:05d}.jsonl"


def shard_files(job: JobManifest, k: int) -> list[str]:
    """The files of complete shard ``k`` whose digests the manifest keeps."""
    names = [shard_name(k, job.options["output_format"])]
    return names + [rejects_part_name(k)] if job.rejected.get(str(k)) else names


@dataclass(frozen=True)
class RowPolicy:
    """What a rejected row does: stop the job (``rejects`` False) or be set aside."""

    rejects: bool
    input_name: str

    def settle(self, item: Record | Rejected) -> Record | Rejected:
        if isinstance(item, Rejected) and not self.rejects:
            raise RowError(item.reason + REJECTS_HINT, self.input_name, item.lineno)
        return item


@dataclass(frozen=True)
class AlignSettings:
    """Everything that decides a shard's bytes, made once per job (and once per Ray actor); how
    the bundle is loaded (`LoadOptions`, the token budget included) travels separately."""

    extraction: object  # transalign.kernels.Extraction, resolved for the bundle
    src_lang: str | None  # for rows without language columns
    tgt_lang: str | None
    skip_long: bool
    policy: RowPolicy
    output_format: str = "pharaoh"
    input_format: str = "fast_align"

    @property
    def input_name(self) -> str:
        return self.policy.input_name


def align_pairs(aligner, pairs: Sequence[Pair], indexes: Sequence[int], settings: AlignSettings,
                progress: Callable[[float], None] | None = None) -> list[Record | Rejected]:
    """Records for ``pairs`` (pair ``k`` has global index ``indexes[k]``, its row position), in
    input order; a pair with an unknown language code, or too long without skip_long, is a
    `Rejected` in its place. One ``Aligner.align`` call per language pair present.
    ``progress(pairs)`` after every encoder batch."""
    groups: dict[tuple[str | None, str | None], list[int]] = {}
    for k, pair in enumerate(pairs):
        groups.setdefault((pair.src_lang or settings.src_lang, pair.tgt_lang or settings.tgt_lang), []).append(k)
    records: list[Record | Rejected | None] = [None] * len(pairs)
    for (src_lang, tgt_lang), members in groups.items():
        reason = language_problem(aligner.manifest, src_lang, tgt_lang)
        if reason is not None:
            for k in members:
                records[k] = Rejected(pairs[k].pos, pairs[k].lineno, reason)
            continue
        extraction, counted = settings.extraction, _Counted(progress)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # skipped pairs are counted by the caller
            results = aligner.align([pairs[k].src for k in members], [pairs[k].tgt for k in members], src_lang,
                                    tgt_lang, on_too_long="skip", extraction=extraction,
                                    progress=None if progress is None else counted)
        counted.finish(len(members))
        for k, result in zip(members, results):
            pair = pairs[k]
            if result.skipped and not settings.skip_long:
                records[k] = Rejected(pair.pos, pair.lineno, too_long_reason(aligner.manifest.max_positions))
                continue
            ident = pair.id if pair.id is not None else indexes[k]
            records[k] = Record(ident, result.links, result.skipped, result.scores if extraction.scores else None)
    return records  # type: ignore[return-value]


class _Counted:
    """The engine's per-batch progress (sentences, both sides) as pairs; `finish` adds the pairs
    the encoder never saw (too long, skipped), so a call always reports all of its pairs."""

    def __init__(self, progress):
        self.progress, self.pairs = progress, 0.0

    def __call__(self, sentences: int) -> None:
        self.pairs += sentences / 2
        self.progress(sentences / 2)

    def finish(self, pairs: int) -> None:
        if self.progress is not None and pairs > self.pairs:
            self.progress(pairs - self.pairs)


def too_long_reason(max_positions: int) -> str:
    return (f"a sentence of this pair has more tokens than the model's maximum of {max_positions} (or more "
            "characters than it could hold); split it, or pass --skip-long to write it with no links")


def language_problem(manifest, src_lang: str | None, tgt_lang: str | None) -> str | None:
    """Why a row cannot be aligned with these codes (None: it can), from the engine's rule."""
    from transalign.engine.options import LanguageError, resolve_languages

    try:
        resolve_languages(manifest, src_lang, tgt_lang)
    except LanguageError as exc:
        flag = "--src-lang" if exc.option == "src_lang" else "--tgt-lang"
        if exc.code is None:
            return f"no {exc.option} column on this row and no {flag}: {exc.reason}"
        return exc.named(exc.option)
    return None


def align_rows(aligner, rows: Sequence[Pair | Rejected], first_index: int, settings: AlignSettings,
               progress: Callable[[float], None] | None = None) -> list[Record | Rejected]:
    """`align_pairs` over a run of input rows (row ``k`` is at position ``first_index + k``),
    rows rejected by the reader passed through in place."""
    members = [k for k, row in enumerate(rows) if isinstance(row, Pair)]
    out: list[Record | Rejected] = list(rows)  # type: ignore[arg-type]
    if members:
        results = align_pairs(aligner, [rows[k] for k in members], [first_index + k for k in members], settings,
                              progress)
        for k, result in zip(members, results):
            out[k] = result
    if progress is not None and len(members) < len(rows):
        progress(len(rows) - len(members))
    return out


def chunks(rows: Iterable, size: int = 0) -> Iterator[list]:
    """``rows`` in lists of ``size`` (default `CHUNK_PAIRS`, read when called)."""
    iterator, size = iter(rows), size or CHUNK_PAIRS
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


@dataclass(frozen=True)
class WrittenShard:
    rows: int
    rejected: int
    skipped: int
    files: dict[str, dict]  # name -> {"bytes", "sha256"} as committed


def write_shard(outdir: Path, k: int, settings: AlignSettings, pieces: Iterable[Sequence[Record | Rejected]],
                input_path: Path) -> WrittenShard:
    """Write shard ``k`` from ``pieces`` (its rows in order, aligned, a chunk at a time) and, with
    rejected rows, its rejects part: both atomically, the part first. A rejected row stops the
    job here unless the rejects option is on (`RowPolicy`); nothing half-written stays."""
    fmt = settings.output_format
    names = [shard_name(k, fmt), rejects_part_name(k)]
    rows = rejected = skipped = 0
    with contextlib.ExitStack() as stack:  # closed in reverse: the part, Parquet's footer, the shard
        out = stack.enter_context(open_output(outdir / names[0]))
        parquet = stack.enter_context(parquet_writer(out, settings.extraction.scores)) if fmt == "parquet" else None
        part = None
        for piece in pieces:
            piece = [settings.policy.settle(item) for item in piece]
            write_records(out, [item if isinstance(item, Record) else None for item in piece], fmt, parquet)
            bad = [item for item in piece if isinstance(item, Rejected)]
            if bad and part is None:
                part = stack.enter_context(open_output(outdir / names[1]))
            for item in bad:
                raw = item.raw if item.raw is not None else raw_row(input_path, settings.input_format, item.pos)
                part.write(reject_line(str(input_path), item._replace(raw=raw)))
            rows, rejected = rows + len(piece), rejected + len(bad)
            skipped += sum(1 for item in piece if isinstance(item, Record) and item.skipped)
    if part is None:
        names.pop()
        with contextlib.suppress(FileNotFoundError):  # a part left by a run killed before its manifest
            os.unlink(outdir / rejects_part_name(k))
    return WrittenShard(rows, rejected, skipped, {name: file_digest(outdir / name) for name in names})


def record_shard(job: JobManifest, outdir: Path, k: int, start: tuple[int, int], written: WrittenShard,
                 rejects: bool, run: Run) -> None:
    """Mark shard ``k`` complete (its files are in place) with where it starts in the input, its
    files' digests, (rejects option) its count of rejected rows and the run that wrote it; save
    the manifest atomically."""
    run.wrote(k)
    job.completed = sorted(set(job.completed) | {k})
    job.starts[str(k)] = {"pos": start[0], "lineno": start[1]}
    if rejects:
        job.rejected[str(k)] = written.rejected
    job.files.update(written.files)
    job.save(outdir)


def tell_progress(shown, run: Run) -> None:
    """Name what this run ran in the caller's progress display, if it can show it (``ran``):
    every provider and precision seen, joined by "+" when Ray workers disagree."""
    engines = run.entry["ran"]
    if shown is None or not hasattr(shown, "ran") or not engines:
        return
    providers = dict.fromkeys(e["provider"] for e in engines)
    precisions = dict.fromkeys(e["precision"] for e in engines)
    shown.ran("+".join(providers), "+".join(precisions))

def resume_point(job: JobManifest) -> tuple[int, int, int]:
    """(shard, byte offset or Parquet row, line) to start reading at: the start of the first
    shard not complete if it is known, else of the last complete shard before it (read past)."""
    done = set(job.completed)
    first = next(k for k in itertools.count() if k not in done)
    known = [int(k) for k in job.starts if int(k) <= first]
    if not known:
        return 0, 0, 1
    k = max(known)
    return k, job.starts[str(k)]["pos"], job.starts[str(k)]["lineno"]


def shard_log(k: int, fmt: str, written: WrittenShard) -> str:
    return (f"{shard_name(k, fmt)}: {written.rows - written.rejected} pairs"
            + (f", {written.rejected} rejected" if written.rejected else ""))
