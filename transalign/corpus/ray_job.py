"""Corpus jobs on Ray Data, and `align_dataset` for users' own Ray pipelines.

The standard offline batch inference shape (read -> ``map_batches`` with a pool of actors, each
loading the model once -> write):

    shard descriptors -> map_batches(read_shard_rows)            tasks: each reads one shard
                      -> map_batches(AlignBatch, concurrency=N,   actors: one Aligner each,
                                     num_gpus=F)                  loaded in __init__
                      -> the driver writes each shard atomically  (in order: preserve_order),
                                                                  a chunk at a time

The driver first streams the input once (``scan_shards``): it validates every row (errors name
the file and line before any actor starts) and records where each shard starts, so read tasks
seek straight to their shard. An actor that dies is restarted by Ray and its batch retried
(Ray Data's defaults for actor pools); the output cannot hold a pair twice because the driver
writes each shard once from the ordered stream. ``ray`` and ``pyarrow`` come with the ``ray``
extra and are imported only here.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from transalign.corpus.formats import Pair, Record, ShardWriter, iter_pairs
from transalign.corpus.job import CHUNK_PAIRS, AlignSettings, align_pairs, batched, record_shard, shard_name

__all__ = ["AlignBatch", "align_dataset", "run_on_ray"]


class AlignBatch:
    """A Ray Data callable class: one Aligner per actor, loaded once in ``__init__``.

    A batch (pyarrow table) has columns ``src`` and ``tgt`` (strings split on whitespace, or
    lists of words) and optionally ``src_lang``, ``tgt_lang`` (per-row codes overriding the
    defaults) and ``lineno`` (for messages); it comes back with a ``links`` column (list of
    [source word, target word]) and, with on_too_long="skip", a ``skipped`` column.
    """

    def __init__(self, bundle: str, provider: str = "auto", precision: str = "fp32", threads: int | None = None,
                 src_lang: str | None = None, tgt_lang: str | None = None, threshold: float | None = None,
                 batch_tokens: int | None = None, on_too_long: str = "error", input_name: str = "dataset",
                 output_columns: list[str] | None = None):
        from transalign.engine.aligner import Aligner

        self.aligner = Aligner.load(bundle, provider=provider, precision=precision, threads=threads)
        self.settings = AlignSettings(src_lang, tgt_lang, threshold, batch_tokens, on_too_long == "skip", input_name)
        self.output_columns = output_columns

    def __call__(self, batch):
        import pyarrow as pa

        from transalign.corpus.formats import _words

        names = set(batch.column_names)
        column = {c: batch.column(c).to_pylist() if c in names else [None] * batch.num_rows
                  for c in ("src", "tgt", "src_lang", "tgt_lang", "lineno")}
        pairs = [Pair(_words(s, "src"), _words(t, "tgt"), None, sl, tl, 0, ln)
                 for s, t, sl, tl, ln in zip(column["src"], column["tgt"], column["src_lang"], column["tgt_lang"],
                                             column["lineno"])]
        records = align_pairs(self.aligner, pairs, 0, self.settings)
        links = pa.array([[list(link) for link in r.links] for r in records], pa.list_(pa.list_(pa.int32())))
        batch = batch.append_column("links", links)
        if self.settings.skip_long:
            batch = batch.append_column("skipped", pa.array([r.skipped for r in records], pa.string()))
        return batch.select(self.output_columns) if self.output_columns else batch


def align_dataset(ds, bundle: str | Path, *, src_lang: str | None = None, tgt_lang: str | None = None,
                  precision: str = "fp32", provider: str = "auto", threshold: float | None = None,
                  batch_tokens: int | None = None, on_too_long: str = "error", workers: int = 1,
                  gpus_per_worker: float = 0.0, threads: int | None = None, batch_size: int = 4096,
                  output_columns: list[str] | None = None, input_name: str = "dataset"):
    """``ds`` (a ``ray.data.Dataset`` with src/tgt columns) -> the same rows with a ``links`` column.

    ``workers`` actors (``concurrency``), each with its own Aligner, ``threads`` CPUs (``num_cpus``
    and the Aligner's threads, default 1) and ``gpus_per_worker`` GPUs (``num_gpus``). Row order
    follows Ray Data's rules (set ``DataContext.execution_options.preserve_order`` to keep it).
    ``output_columns``: keep only these (e.g. ["id", "links"]) instead of every input column;
    ``input_name`` is named in error messages (with the row's ``lineno`` column when present).
    """
    remote_args = {"num_cpus": threads or 1}
    if gpus_per_worker:
        remote_args["num_gpus"] = gpus_per_worker
    return ds.map_batches(
        AlignBatch, batch_size=batch_size, batch_format="pyarrow", concurrency=workers,
        fn_constructor_kwargs={"bundle": str(bundle), "provider": provider, "precision": precision,
                               "threads": threads or 1, "src_lang": src_lang, "tgt_lang": tgt_lang,
                               "threshold": threshold, "batch_tokens": batch_tokens, "on_too_long": on_too_long,
                               "output_columns": output_columns, "input_name": input_name},
        **remote_args)


def scan_shards(input_path: Path, fmt: str, shard_pairs: int, settings: AlignSettings, bundle: str):
    """Stream the input once: [(start pos, start line, pairs)] per shard; checks every row and
    every language code (with the bundle's tokenizer) so errors come before any actor starts."""
    from transalign.formats.alignments import FormatError
    from transalign.engine.bundle import read_manifest
    from transalign.engine.tokenizers import load_tokenizer

    manifest = read_manifest(bundle, verify_hashes=False)
    tokenizer = load_tokenizer(bundle, manifest.tokenizer)
    checked: set = set()
    starts = []
    for shard in batched(iter_pairs(input_path, fmt), shard_pairs):
        starts.append((shard[0].pos, shard[0].lineno, len(shard)))
        for pair in shard:
            for lang in (pair.src_lang or settings.src_lang, pair.tgt_lang or settings.tgt_lang):
                if lang not in checked:
                    try:
                        tokenizer.check_lang(lang)
                    except ValueError as exc:
                        raise FormatError(str(exc), input_path, pair.lineno) from None
                    checked.add(lang)
    return starts


def read_shard_rows(batch, path: str, fmt: str, shard_pairs: int):
    """Ray task (a generator): the rows of the shards described in ``batch``, CHUNK_PAIRS at a time."""
    import pyarrow as pa

    types = {"shard": pa.int64(), "index": pa.int64(), "id": pa.string(), "src": pa.list_(pa.string()),
             "tgt": pa.list_(pa.string()), "src_lang": pa.string(), "tgt_lang": pa.string(), "lineno": pa.int64()}
    for shard, pos, lineno, count in zip(batch["shard"], batch["pos"], batch["lineno"], batch["count"]):
        shard = int(shard)
        reader = enumerate(itertools.islice(iter_pairs(path, fmt, int(pos), int(lineno)), int(count)),
                           start=shard * shard_pairs)
        while chunk := list(itertools.islice(reader, CHUNK_PAIRS)):
            rows = {"shard": [shard] * len(chunk), "index": [i for i, _ in chunk],
                    "id": [p.id or str(i) for i, p in chunk], "src": [p.src for _, p in chunk],
                    "tgt": [p.tgt for _, p in chunk], "src_lang": [p.src_lang for _, p in chunk],
                    "tgt_lang": [p.tgt_lang for _, p in chunk], "lineno": [p.lineno for _, p in chunk]}
            yield pa.table({name: pa.array(values, types[name]) for name, values in rows.items()})


def run_on_ray(job, input_path: Path, fmt: str, outdir: Path, settings: AlignSettings, load: dict, *,
               address, workers: int, gpus_per_worker: float, log) -> tuple[int, int]:
    """Align the shards ``job`` lacks on Ray; returns (shards written, pairs skipped)."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise ImportError("corpus jobs on Ray need Ray Data and pyarrow: pip install 'transalign[ray]'") from None

    shard_pairs, output_format = job.options["shard_pairs"], job.options["output_format"]
    starts = scan_shards(input_path, fmt, shard_pairs, settings, load["bundle"])
    job.shards, job.pairs = len(starts), sum(count for _, _, count in starts)
    pending = [k for k in range(len(starts)) if k not in set(job.completed)]
    if not pending:
        return 0, 0
    started = False
    if not ray.is_initialized():
        ray.init(address=None if address is True else address, include_dashboard=False)
        started = True
    context = ray.data.DataContext.get_current()
    saved_order = context.execution_options.preserve_order
    context.execution_options.preserve_order = True  # shards come back in input order
    try:
        items = [{"shard": k, "pos": starts[k][0], "lineno": starts[k][1], "count": starts[k][2]} for k in pending]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        ds = ds.map_batches(read_shard_rows, batch_size=1, batch_format="numpy",
                            fn_kwargs={"path": str(input_path), "fmt": fmt, "shard_pairs": shard_pairs})
        keep = ["shard", "index", "id", "links"] + (["skipped"] if settings.skip_long else [])
        ds = align_dataset(ds, load["bundle"], src_lang=settings.src_lang, tgt_lang=settings.tgt_lang,
                           precision=load["precision"], provider=load["provider"], threshold=settings.threshold,
                           batch_tokens=settings.batch_tokens, on_too_long="skip" if settings.skip_long else "error",
                           workers=workers, gpus_per_worker=gpus_per_worker, threads=load["threads"],
                           batch_size=min(shard_pairs, CHUNK_PAIRS), output_columns=keep,
                           input_name=str(input_path))
        return _write_in_order(ds, job, pending, starts, outdir, output_format, shard_pairs, log)
    except Exception as exc:
        error = _user_error(exc)
        if error is exc:
            raise
        raise error from exc
    finally:
        context.execution_options.preserve_order = saved_order
        if started:
            ray.shutdown()


def _write_in_order(ds, job, pending, starts, outdir, output_format, shard_pairs, log) -> tuple[int, int]:
    """Write the ordered stream of aligned rows into shards, one chunk at a time."""
    expected = iter(pending)
    current, writer, buffer, count = None, None, [], 0
    written = skipped = 0
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            data = batch.to_pydict()
            skips = data.get("skipped") or [None] * batch.num_rows
            for shard, index, ident, links, skip in zip(data["shard"], data["index"], data["id"], data["links"],
                                                        skips):
                if current is None:
                    current, count = next(expected, None), 0
                    writer = ShardWriter(outdir / shard_name(current, output_format), output_format)
                if shard != current or index != current * shard_pairs + count:
                    raise RuntimeError(f"Ray returned pair {index} of shard {shard} out of order "
                                       f"(expected pair {current * shard_pairs + count} of shard {current})")
                buffer.append(Record(ident, [tuple(link) for link in links], skip))
                skipped += skip is not None
                count += 1
                if len(buffer) >= CHUNK_PAIRS or count == starts[current][2]:
                    writer.write(buffer)
                    buffer = []
                if count == starts[current][2]:
                    writer.commit()
                    writer = None
                    record_shard(job, outdir, current, Pair([], [], None, None, None, *starts[current][:2]))
                    written += 1
                    log(f"{shard_name(current, output_format)}: {count} pairs")
                    current = None
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if current is not None or next(expected, None) is not None:
        raise RuntimeError("Ray returned fewer pairs than the input holds")
    return written, skipped


def _user_error(exc: BaseException) -> BaseException:
    """The user-facing error inside a Ray error (a malformed row, a too-long pair...), if any."""
    from transalign.formats.alignments import FormatError

    seen = exc
    while seen is not None:
        if isinstance(seen, FormatError):
            return FormatError(seen.message, seen.path, seen.lineno)
        seen = seen.__cause__ or seen.__context__
    return exc
