"""Corpus jobs on Ray Data, and `align_dataset` for users' own Ray pipelines.

The standard offline batch inference shape (read -> ``map_batches`` with a pool of actors, each
loading the model once -> write):

    shard descriptors -> map_batches(read_shard_rows)            tasks: each reads one shard
                      -> map_batches(AlignBatch, concurrency=N,   actors: one Aligner each,
                                     num_gpus=F)                  loaded in __init__
                      -> the driver writes each shard atomically  (in order: preserve_order),
                                                                  a chunk at a time

The driver first streams the input once (``scan_shards``): without the rejects option it
validates every row (errors name the file and line before any actor starts) and records where each shard starts, so read tasks
seek straight to their shard. Rejected rows travel through the pipeline in their place (a ``reject``
column, no alignment), actors add the rows they cannot align (unknown language, too long), and the
driver writes each shard (and its rejects part) from the ordered stream
(``shards.write_shard``), exactly as in process; the job's row policy is applied there, once. An actor that dies is restarted by Ray and its batch retried
(Ray Data's defaults for actor pools); the output cannot hold a pair twice because the driver
writes each shard once from the ordered stream. Each actor reports the provider and precision
its Aligner really runs in two columns of every batch it returns, so the driver records what ran
(all of it, with a warning, if workers disagree: a restarted actor may land on another node).
``ray`` and ``pyarrow`` come with the ``ray`` extra and are imported only here.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

from transalign.corpus import reaper
from transalign.corpus.formats import Pair, Rejected, _words, iter_pairs
from transalign.corpus.shards import AlignSettings, RowPolicy, align_pairs, chunks, language_problem, record_shard, \
    shard_log, tell_progress, write_shard
from transalign.corpus.writers import Record

__all__ = ["AlignBatch", "align_dataset", "run_on_ray"]


class AlignBatch:
    """A Ray Data callable class: one Aligner per actor, loaded once in ``__init__``.

    A batch (pyarrow table) has columns ``src`` and ``tgt`` (strings split on whitespace, or
    lists of words) and optionally ``src_lang``, ``tgt_lang`` (per-row codes overriding the
    defaults) and ``lineno`` (for messages); it comes back with a ``links`` column (list of
    [source word, target word]), with on_too_long="skip" a ``skipped`` column and with
    ``scores`` a ``scores`` column.

    ``rejects=True``: a row that cannot be aligned (unknown language code; too long, unless
    on_too_long="skip") comes back with no links and the reason in a ``reject`` column instead of
    failing the dataset; rows whose ``reject`` column is already set are passed through unaligned.

    ``engine_columns=True``: add ``provider`` and ``precision`` columns, what this actor's
    Aligner really runs (read back from its session: an ``auto`` that got the CPU says "cpu").
    """

    def __init__(self, bundle: str, provider: str = "auto", precision: str = "fp32", threads: int | None = None,
                 src_lang: str | None = None, tgt_lang: str | None = None, threshold: float | None = None,
                 batch_tokens: int | None = None, on_too_long: str = "error", input_name: str = "dataset",
                 output_columns: list[str] | None = None, rejects: bool = False, method: str | None = None,
                 word_level: str | None = None, scores: bool = False, engine_columns: bool = False):
        from transalign.engine.aligner import Aligner
        from transalign.engine.options import LoadOptions, check_length_policy, resolve_extraction

        load = LoadOptions(precision=precision, provider=provider, threads=threads, batch_tokens=batch_tokens)
        self.aligner = Aligner.load(bundle, options=load)
        extraction = resolve_extraction(self.aligner.manifest, method, word_level, threshold, scores)
        self.settings = AlignSettings(extraction, src_lang, tgt_lang, check_length_policy(on_too_long) == "skip",
                                      RowPolicy(rejects, input_name))
        self.output_columns, self.engine_columns = output_columns, engine_columns

    def __call__(self, batch):
        import pyarrow as pa

        names = set(batch.column_names)
        column = {c: batch.column(c).to_pylist() if c in names else [None] * batch.num_rows
                  for c in ("src", "tgt", "src_lang", "tgt_lang", "lineno", "reject")}
        reject = column["reject"]
        members = [k for k in range(batch.num_rows) if reject[k] is None]
        pairs = [Pair(_words(column["src"][k], "src"), _words(column["tgt"][k], "tgt"), None, column["src_lang"][k],
                      column["tgt_lang"][k], 0, column["lineno"][k]) for k in members]
        links: list[list] = [[] for _ in range(batch.num_rows)]
        skipped: list[str | None] = [None] * batch.num_rows
        scores: list[list | None] = [None] * batch.num_rows
        for k, result in zip(members, align_pairs(self.aligner, pairs, members, self.settings)):
            result = self.settings.policy.settle(result)
            if isinstance(result, Rejected):
                reject[k] = result.reason
            else:
                links[k], skipped[k] = [list(link) for link in result.links], result.skipped
                scores[k] = None if result.scores is None else [float(v) for v in result.scores]
        batch = batch.append_column("links", pa.array(links, pa.list_(pa.list_(pa.int32()))))
        if self.settings.skip_long:
            batch = batch.append_column("skipped", pa.array(skipped, pa.string()))
        if self.settings.extraction.scores:
            batch = batch.append_column("scores", pa.array(scores, pa.list_(pa.float64())))
        if self.settings.policy.rejects:
            reasons = pa.array(reject, pa.string())
            batch = (batch.set_column(batch.column_names.index("reject"), "reject", reasons) if "reject" in names
                     else batch.append_column("reject", reasons))
        if self.engine_columns:
            for name in ("provider", "precision"):
                batch = batch.append_column(name, pa.array([getattr(self.aligner, name)] * batch.num_rows, pa.string()))
        return batch.select(self.output_columns) if self.output_columns else batch


def _quiet_ray() -> None:
    """A job's stderr carries its own progress and messages, not Ray's: its INFO lines and
    progress logs are turned down to warnings. Errors still surface: they come back as exceptions."""
    logging.getLogger("ray").setLevel(logging.WARNING)
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def align_dataset(ds, bundle: str | Path, *, src_lang: str | None = None, tgt_lang: str | None = None,
                  precision: str = "fp32", provider: str = "auto", threshold: float | None = None,
                  batch_tokens: int | None = None, on_too_long: str = "error", workers: int = 1,
                  gpus_per_worker: float = 0.0, threads: int | None = None, batch_size: int | None = 4096,
                  output_columns: list[str] | None = None, input_name: str = "dataset", rejects: bool = False,
                  method: str | None = None, word_level: str | None = None, scores: bool = False,
                  engine_columns: bool = False):
    """``ds`` (a ``ray.data.Dataset`` with src/tgt columns) -> the same rows with a ``links`` column.

    ``workers`` actors (``concurrency``), each with its own Aligner, ``threads`` CPUs (``num_cpus``
    and the Aligner's threads, default 1) and ``gpus_per_worker`` GPUs (``num_gpus``). Row order
    follows Ray Data's rules (set ``DataContext.execution_options.preserve_order`` to keep it).
    ``output_columns``: keep only these (e.g. ["id", "links"]) instead of every input column;
    ``input_name`` is named in error messages (with the row's ``lineno`` column when present).
    ``rejects``: rows that cannot be aligned get a ``reject`` reason instead of failing (AlignBatch).
    ``method``, ``word_level``, ``threshold`` (None: the bundle's) and ``scores``: `Aligner.align`'s.
    ``engine_columns``: add ``provider`` and ``precision`` columns, what each row's actor ran.
    """
    import ray

    remote_args = {"num_cpus": threads or 1}
    if gpus_per_worker:
        remote_args["num_gpus"] = gpus_per_worker
    return ds.map_batches(
        AlignBatch, batch_size=batch_size, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=workers),
        fn_constructor_kwargs={"bundle": str(bundle), "provider": provider, "precision": precision,
                               "threads": threads or 1, "src_lang": src_lang, "tgt_lang": tgt_lang,
                               "threshold": threshold, "batch_tokens": batch_tokens, "on_too_long": on_too_long,
                               "output_columns": output_columns, "input_name": input_name, "rejects": rejects,
                               "method": method, "word_level": word_level, "scores": scores,
                               "engine_columns": engine_columns},
        **remote_args)


def scan_shards(input_path: Path, settings: AlignSettings, shard_pairs: int, bundle: Path):
    """Stream the input once: [(start pos, start line, rows)] per shard. Without the rejects
    option every row and language code is checked by the job's row policy here, so an error
    comes before any actor starts; with it the read tasks and actors set such rows aside."""
    from transalign.engine.bundle import read_manifest

    manifest = read_manifest(bundle, verify_hashes=False)
    checked: set = set()
    starts = []
    for shard in chunks(iter_pairs(input_path, settings.input_format), shard_pairs):
        starts.append((shard[0].pos, shard[0].lineno, len(shard)))
        if settings.policy.rejects:
            continue
        for row in shard:
            settings.policy.settle(row)
            codes = (row.src_lang or settings.src_lang, row.tgt_lang or settings.tgt_lang)
            if codes not in checked:
                reason = language_problem(manifest, *codes)
                if reason is not None:
                    settings.policy.settle(Rejected(row.pos, row.lineno, reason))
                checked.add(codes)
    return starts


def read_shard_rows(batch, path: str, fmt: str, shard_pairs: int):
    """Ray task (a generator): the rows of the shards described in ``batch``, CHUNK_PAIRS at a time.
    ``index`` is the row's position in the input; a row rejected by the reader keeps its place,
    with empty src/tgt and its reason in ``reject``."""
    import pyarrow as pa

    types = {"shard": pa.int64(), "index": pa.int64(), "id": pa.string(), "src": pa.list_(pa.string()),
             "tgt": pa.list_(pa.string()), "src_lang": pa.string(), "tgt_lang": pa.string(), "lineno": pa.int64(),
             "pos": pa.int64(), "reject": pa.string(), "raw": pa.string()}
    for shard, pos, lineno, count in zip(batch["shard"], batch["pos"], batch["lineno"], batch["count"]):
        shard = int(shard)
        reader = enumerate(itertools.islice(iter_pairs(path, fmt, int(pos), int(lineno)), int(count)),
                           start=shard * shard_pairs)
        for chunk in chunks(reader):
            pairs = [(i, p if isinstance(p, Pair) else None, p) for i, p in chunk]
            rows = {"shard": [shard] * len(chunk), "index": [i for i, _ in chunk],
                    "id": [p.id if p else None for _, p, _ in pairs],  # None: the row position
                    "src": [p.src if p else [] for _, p, _ in pairs], "tgt": [p.tgt if p else [] for _, p, _ in pairs],
                    "src_lang": [p and p.src_lang for _, p, _ in pairs],
                    "tgt_lang": [p and p.tgt_lang for _, p, _ in pairs],
                    "lineno": [row.lineno for _, _, row in pairs], "pos": [row.pos for _, _, row in pairs],
                    "reject": [None if p else row.reason for _, p, row in pairs],
                    "raw": [None if p else row.raw for _, p, row in pairs]}
            yield pa.table({name: pa.array(values, types[name]) for name, values in rows.items()})


def run_on_ray(job, input_path: Path, outdir: Path, settings: AlignSettings, load, bundle: Path, run, *, address,
               workers: int, gpus_per_worker: float, log, progress=None) -> tuple[int, int, int]:
    """Align the shards ``job`` lacks on Ray; returns (shards written, pairs skipped, input rows).
    ``run`` (`manifest.Run`) is told the engines the workers report with their batches."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise ImportError("corpus jobs on Ray need Ray Data and pyarrow: pip install 'transalign[ray]'") from None

    shard_pairs = job.options["shard_pairs"]
    starts = scan_shards(input_path, settings, shard_pairs, bundle)
    job.shards, rows = len(starts), sum(count for _, _, count in starts)
    pending = [k for k in range(len(starts)) if k not in set(job.completed)]
    if not pending:
        return 0, 0, rows
    shown = None if progress is None else progress(sum(starts[k][2] for k in pending))
    started, watcher = False, None
    if not ray.is_initialized():
        _quiet_ray()
        ray.init(address=None if address is True else address, include_dashboard=False,
                 logging_level=logging.WARNING)
        started = True
        roots = reaper.cluster_roots(ray) if address is True else []
        if roots:  # a local cluster of our own: it must not outlive this process
            watcher = reaper.start(roots)
    context = ray.data.DataContext.get_current()
    saved_order = context.execution_options.preserve_order
    context.execution_options.preserve_order = True  # shards come back in input order
    try:
        items = [{"shard": k, "pos": starts[k][0], "lineno": starts[k][1], "count": starts[k][2]} for k in pending]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        ds = ds.map_batches(read_shard_rows, batch_size=1, batch_format="numpy",
                            fn_kwargs={"path": str(input_path), "fmt": settings.input_format,
                                       "shard_pairs": shard_pairs})
        # batch_size=None: one shard per actor task. Ray Data fuses the read and align steps and
        # bundles max(both batch sizes) *input* rows per task; each input row is a shard
        # descriptor, so a batch size of N rows put N whole shards into one task -- with the
        # defaults every shard of the job in one task, on one actor, returned only at its end.
        keep = ["shard", "index", "id", "links", "lineno", "pos", "reject", "raw", "provider", "precision"] \
            + (["skipped"] if settings.skip_long else []) + (["scores"] if settings.extraction.scores else [])
        # rejects=True: actors hand every bad row back in its place; the driver applies the job's
        # row policy when it writes the shard (write_shard), as in process
        e = settings.extraction
        ds = align_dataset(ds, bundle, src_lang=settings.src_lang, tgt_lang=settings.tgt_lang,
                           precision=load.precision, provider=load.provider,
                           threshold=e.threshold if e.method == "softmax" else None, method=e.method,
                           word_level=e.word_level, scores=e.scores, batch_tokens=load.batch_tokens,
                           on_too_long="skip" if settings.skip_long else "error", workers=workers,
                           gpus_per_worker=gpus_per_worker, threads=load.threads, batch_size=None,
                           output_columns=keep, input_name=settings.input_name, rejects=True, engine_columns=True)
        written = skipped = 0
        stream = _rows(ds, shown, run)
        for k in pending:
            result = write_shard(outdir, k, settings, chunks(_shard_rows(stream, k, shard_pairs, starts[k][2])),
                                 input_path)
            record_shard(job, outdir, k, starts[k][:2], result, settings.policy.rejects, run)
            written, skipped = written + 1, skipped + result.skipped
            log(shard_log(k, settings.output_format, result))
        if next(stream, None) is not None:
            raise RuntimeError("Ray returned more rows than the input holds")
        return written, skipped, rows
    except Exception as exc:
        error = _user_error(exc)
        if error is exc:
            raise
        raise error from exc
    finally:
        context.execution_options.preserve_order = saved_order
        if started:
            ray.shutdown()
        if watcher is not None:
            reaper.stop(watcher)


def _rows(ds, shown, run):
    """(shard, index, Record | Rejected) for every row of the ordered stream; each batch's engines
    go to ``run`` (and a new one to the progress display ``shown``) before its rows."""
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        data = batch.to_pydict()
        engines = dict.fromkeys(zip(data["provider"], data["precision"]))
        if any([run.ran(provider, precision) for provider, precision in engines]):
            tell_progress(shown, run)
        none = [None] * batch.num_rows
        for shard, index, ident, links, skip, scores, lineno, pos, reject, raw in zip(
                data["shard"], data["index"], data["id"], data["links"], data.get("skipped") or none,
                data.get("scores") or none, data["lineno"], data["pos"], data["reject"], data["raw"]):
            yield shard, index, (Rejected(pos, lineno, reject, raw) if reject is not None
                                 else Record(index if ident is None else ident, [tuple(link) for link in links], skip,
                                             scores))
        if shown is not None:
            shown.update(batch.num_rows)


def _shard_rows(stream, k: int, shard_pairs: int, count: int):
    """The ``count`` rows of shard ``k`` from ``stream``: each must come exactly once, in order."""
    for n in range(count):
        row = next(stream, None)
        if row is None:
            raise RuntimeError(f"Ray returned fewer rows than the input holds (shard {k} ends at row {n} of {count})")
        shard, index, item = row
        if shard != k or index != k * shard_pairs + n:
            raise RuntimeError(f"Ray returned row {index} of shard {shard} out of order "
                               f"(expected row {k * shard_pairs + n} of shard {k})")
        yield item


def _user_error(exc: BaseException) -> BaseException:
    """The user-facing error inside a Ray error (a malformed row, a too-long pair...), if any."""
    from transalign.corpus.formats import RowError
    from transalign.formats.alignments import FormatError

    seen = exc
    while seen is not None:
        if isinstance(seen, FormatError):  # rebuilt here: Ray wraps it with the remote traceback
            return (RowError if isinstance(seen, RowError) else FormatError)(seen.message, seen.path, seen.lineno)
        seen = seen.__cause__ or seen.__context__
    return exc
