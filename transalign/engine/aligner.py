"""The Aligner: sentence pairs in, TransAlign word links out, from a bundle.

Flow per chunk of pairs (DESIGN.md "The method, exactly", steps 2-5):
words -> token ids per side and the length policy (`engine.prepare`) -> every sentence of both
sides through the encoder together, length-sorted and packed by a token budget
(`engine.encoder`, `engine.batching`) -> the fused Numba kernel computes similarity, both
softmaxes, the threshold intersection and the word links for all pairs in parallel
(`transalign.kernels`).

Options are values made once (`engine.options`): `LoadOptions` when the bundle is opened, an
`Extraction` per call (the bundle's recommended one when the caller gives none), languages
resolved by `resolve_languages`. The two halves are also public on their own: `Aligner.prepare`
tokenizes and length-checks pairs once (`PreparedPairs`), `Aligner.align_prepared` aligns them
without tokenizing again; `align` is exactly the two in a row, chunk by chunk. Each call keeps
its own `AlignStats` (`AlignResults.stats`) and takes its own ``progress`` callback, so
concurrent callers never mix their counters.

With ``LoadOptions.pipeline`` on (the default on CUDA), `align_iter` runs the same steps on the
same chunks as a pipeline (`engine.pipeline`): a thread tokenizes and plans chunk k+1 while
another, the encoder's one owner for the call, runs chunk k, and the caller's thread extracts
chunk k-1. Results, statistics and errors are those of the serial path.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from transalign.engine.bundle import MODEL_FILES, Manifest, read_manifest
from transalign.engine.defaults import DEFAULT_BATCH_OVERHEAD_TOKENS
from transalign.engine.encoder import EncodePlan, Encoder, HiddenRows, NonFiniteError, check_finite
from transalign.engine.options import (LENGTH_POLICIES, LoadOptions, OptionError, check_batch_tokens,
                                       check_length_policy, resolve_extraction, resolve_languages)
from transalign.engine.pipeline import BufferPool, run_ahead
from transalign.engine.prepare import PreparedPairs, Preparer, Sentence, TooLongError, words_of
from transalign.engine.session import open_session, resolve_provider, session_provider

__all__ = ["Aligner", "AlignResult", "AlignResults", "AlignStats", "EncodedPairs", "NonFiniteError", "PreparedPairs",
           "TooLongError", "LENGTH_POLICIES", "usable_threads"]

DEFAULT_CHUNK_PAIRS = 4096
# Pipelined align_iter: chunks in flight (submitted to the tokenizing thread, not yet taken by
# the caller). Three keep chunk k+1 tokenizing and chunk k encoding while the caller extracts
# k-1; two hidden-state buffers (k-1 being extracted, k being encoded) bound the memory.
PIPELINE_DEPTH, PIPELINE_BUFFERS = 3, 2
Progress = Callable[[int], None]  # called with the number of sentences (both sides) after each encoder batch


@dataclass(frozen=True)
class AlignResult:
    """Word links of one pair: (source word, target word), 0-based, sorted numerically."""

    links: tuple[tuple[int, int], ...]
    skipped: str | None = None  # "too_long" when the length policy skipped the pair
    # With scores: scores[k] is the score links[k] was chosen on (min(F, B) for softmax, the
    # similarity S for argmax / itermax; transalign.kernels.methods).
    scores: tuple[float, ...] | None = None

    def pharaoh(self) -> str:
        return " ".join(f"{i}-{j}" for i, j in self.links)


@dataclass(frozen=True)
class _Call:
    """What one align / align_iter / align_settings call asked for, checked once and shared by
    all its chunks."""

    src_lang: str | None
    tgt_lang: str | None
    extractions: tuple  # transalign.kernels.Extraction objects: one result list each
    batch_tokens: int
    on_too_long: str
    progress: Progress | None = None


@dataclass(frozen=True)
class _Prepared:
    """A chunk after the pipeline's first stage: tokenized, length-checked, batches planned."""

    start: int
    n: int
    prepared: PreparedPairs
    plan: EncodePlan


@dataclass(frozen=True)
class _Encoded:
    """A chunk after the encoder stage (``rows`` None: abandoned because the caller left);
    ``buffer``: the pool's buffer holding ``rows.hidden``, given back once extracted (None when
    abandoned before one was free)."""

    chunk: _Prepared
    rows: HiddenRows | None
    buffer: np.ndarray | None
    seconds: float


@dataclass(frozen=True)
class EncodedPairs:
    """Prepared pairs after the encoder, before extraction (`Aligner.encode_prepared`); what
    `Aligner.extract_encoded` needs. ``rows.hidden`` may live in ``buffer``, the caller's to give
    back to its pool once extracted."""

    prepared: PreparedPairs
    call: _Call
    rows: HiddenRows
    seconds: float
    buffer: np.ndarray | None = None  # from `encode_prepared`'s pool, holding ``rows.hidden``


_NEVER = threading.Event()  # a cancellation that never comes (BufferPool.take outside run_ahead)


@dataclass
class AlignStats:
    """Counters and timings of one align call (seconds), for benchmarks, the CLI and the service.

    Every call fills its own (`AlignResults.stats`); ``Aligner.stats`` shows the one of the call
    started last, for single-threaded callers (a concurrent call replaces it)."""

    pairs: int = 0
    skipped: int = 0
    real_tokens: int = 0
    padded_tokens: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(("tokenize", "encode", "extract"), 0.0))

    @property
    def padding_waste(self) -> float:
        return 1.0 - self.real_tokens / self.padded_tokens if self.padded_tokens else 0.0


class AlignResults(list):
    """What `Aligner.align` returns: a list of `AlignResult` (one per pair, in input order) that
    also carries the call's own ``stats`` (`AlignStats`), safe to read when calls run concurrently."""

    def __init__(self, results: Iterable[AlignResult] = (), stats: AlignStats | None = None):
        super().__init__(results)
        self.stats = AlignStats() if stats is None else stats


def usable_threads(threads: int | None) -> tuple[int | None, str | None]:
    """``threads`` clamped to the cores this process may use, and the notice saying so: more
    threads than cores only adds contention (64 threads on 2 cores made 5 pairs take 79 s)."""
    if threads is None:
        return None, None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if threads > cores:
        return cores, f"threads {threads} is more than the {cores} cores available; using {cores}"
    return threads, None


class Aligner:
    """Aligns sentence pairs with one bundle; create it with `Aligner.load`.

    ``notices``: what loading adjusted and the caller may want to show (threads clamped); each
    was also issued as a warning."""

    def __init__(self, root: Path, manifest: Manifest, tokenizer, session, provider: str, precision: str,
                 threads: int | None = None, options: LoadOptions | None = None, notices: tuple[str, ...] = ()):
        self.root, self.manifest, self.tokenizer = root, manifest, tokenizer
        self.session, self.provider, self.precision = session, provider, precision
        self.threads = threads  # the extraction kernels' threads (None: all cores)
        self.options = options or LoadOptions(precision=precision, provider=provider)
        self.notices = notices
        self.preparer = Preparer(root, manifest, tokenizer)
        # I/O binding on CUDA only: hidden states straight into a host buffer (engine.encoder)
        self.encoder = Encoder(session, manifest.hidden_size, manifest.tokenizer.pad_id,
                               DEFAULT_BATCH_OVERHEAD_TOKENS[provider], io_binding=provider == "cuda")
        # whether align_iter pipelines (LoadOptions.pipeline; may be changed between calls)
        self.pipelined = self.options.pipelined(provider)
        self._spare_tokenizers: list = []  # for the pipeline's tokenizing threads, lent one per call
        self._spare_lock = threading.Lock()
        # the statistics of the call started last (compatibility view; each call returns its own)
        self.stats = AlignStats()

    @classmethod
    def load(cls, bundle: str | Path, provider: str | None = None, precision: str | None = None,
             threads: int | None = None, verify: bool | None = None, *,
             options: LoadOptions | None = None) -> "Aligner":
        """Open a bundle: check its manifest and hashes, pick the provider, start the session.

        Either ``options`` (a `LoadOptions`) or the keywords, which make one:
        provider: "auto" (CUDA when available, else CPU), "cpu" or "cuda".
        precision: "fp32" (exact), "int8" (CPU, fastest there) or "fp16" (CUDA).
        threads: intra-op threads for ONNX Runtime and the extraction kernels (None: all cores);
        kept on this Aligner, no process-wide (or thread-wide) setting is changed.
        """
        from transalign.engine.tokenizers import load_tokenizer

        keywords = {k: v for k, v in (("provider", provider), ("precision", precision), ("threads", threads),
                                      ("verify", verify)) if v is not None}
        if options is None:
            options = LoadOptions(**keywords)
        elif keywords:
            raise ValueError(f"pass either options or keywords, not both (got options and {', '.join(keywords)})")
        root = Path(bundle)
        manifest = read_manifest(root, verify_hashes=options.verify, precision=options.precision)
        if options.precision not in manifest.precisions:
            has = ", ".join(p for p in MODEL_FILES if p in manifest.precisions)
            raise OptionError("precision", options.precision, f"bundle {root.name} has no such model (it has "
                              f"{has}); re-export with --precision including {options.precision}")
        resolved = resolve_provider(options.provider)
        if options.precision == "fp16" and resolved != "cuda":
            raise OptionError("precision", "fp16", "fp16 models are for the CUDA provider; on CPU use fp32 or int8")
        threads, notice = usable_threads(options.threads)
        if notice:
            warnings.warn(notice, stacklevel=2)
        session = open_session(root / MODEL_FILES[options.precision], resolved, threads, requested=options.provider)
        resolved = session_provider(session)  # auto with a CUDA that could not start: CPU (warned), CPU budget
        if options.precision == "fp16" and resolved != "cuda":
            raise OptionError("precision", "fp16", "fp16 models are for the CUDA provider, which could not start; "
                              "use fp32 or int8 on CPU")
        tokenizer = load_tokenizer(root, manifest.tokenizer)
        return cls(root, manifest, tokenizer, session, resolved, options.precision, threads, options,
                   (notice,) if notice else ())

    @property
    def batch_tokens(self) -> int:
        """The padded-token budget this Aligner uses when a call gives none."""
        return self.options.budget(self.provider)

    # -- options -------------------------------------------------------------------------------

    def extraction(self, method: str | None = None, word_level: str | None = None, threshold: float | None = None,
                   with_scores: bool = False):
        """The checked `transalign.kernels.Extraction` of these options; what is None is the
        bundle's recommended setting (`engine.options.resolve_extraction`)."""
        return resolve_extraction(self.manifest, method, word_level, threshold, with_scores)

    def languages(self, src_lang: str | None, tgt_lang: str | None, stacklevel: int = 3):
        """`resolve_languages` for this bundle; codes given to a bundle without codes are dropped
        with a warning (front ends that say it their own way call `resolve_languages` first)."""
        languages = resolve_languages(self.manifest, src_lang, tgt_lang)
        if languages.ignored:
            warnings.warn(f"language codes {src_lang!r}/{tgt_lang!r} are ignored: this {self.manifest.architecture} "
                          "bundle has none (its tokenizer needs no language)", stacklevel=stacklevel)
        return languages

    def _call(self, src_lang, tgt_lang, extractions: tuple, batch_tokens, on_too_long: str,
              progress: Progress | None) -> _Call:
        check_length_policy(on_too_long)
        budget = self.batch_tokens if batch_tokens is None else check_batch_tokens(batch_tokens)
        languages = self.languages(src_lang, tgt_lang, stacklevel=5)
        return _Call(languages.src, languages.tgt, extractions, budget, on_too_long, progress)

    def _one_extraction(self, extraction, method, word_level, threshold, with_scores):
        if extraction is None:
            return self.extraction(method, word_level, threshold, with_scores)
        if (method, word_level, threshold) != (None, None, None) or with_scores:
            raise ValueError("pass either extraction or method/word_level/threshold/with_scores, not both")
        return extraction

    # -- entry points --------------------------------------------------------------------------

    def align(self, src: Sequence[Sentence], tgt: Sequence[Sentence], src_lang: str | None = None,
              tgt_lang: str | None = None, threshold: float | None = None, *, batch_tokens: int | None = None,
              on_too_long: str = "error", method: str | None = None, word_level: str | None = None,
              with_scores: bool = False, extraction=None, progress: Progress | None = None) -> AlignResults:
        """Align pairs (src[k], tgt[k]); one result per pair, in input order.

        A sentence is a list of words or a string split on whitespace. ``threshold``, ``method``,
        ``word_level`` default to the bundle's recommended setting (NLLB: the paper's softmax rule,
        0.001); or pass a ready ``extraction`` (`Aligner.extraction`). ``on_too_long``: "error"
        (default) raises `TooLongError` naming the pair; "skip" returns an empty result with
        skipped="too_long" and warns with the count. ``progress(sentences)`` is called after every
        encoder batch. The returned list's ``stats`` are this call's.
        """
        if len(src) != len(tgt):
            raise ValueError(f"source has {len(src)} sentences but target has {len(tgt)}; they must pair up")
        stats = AlignStats()
        results = list(self.align_iter(src, tgt, src_lang, tgt_lang, threshold, batch_tokens=batch_tokens,
                                       on_too_long=on_too_long, method=method, word_level=word_level,
                                       with_scores=with_scores, extraction=extraction, progress=progress,
                                       stats=stats))
        return AlignResults(results, stats)

    def align_iter(self, src: Iterable[Sentence], tgt: Iterable[Sentence], src_lang: str | None = None,
                   tgt_lang: str | None = None, threshold: float | None = None, *, batch_tokens: int | None = None,
                   on_too_long: str = "error", chunk_pairs: int = DEFAULT_CHUNK_PAIRS, method: str | None = None,
                   word_level: str | None = None, with_scores: bool = False, extraction=None,
                   progress: Progress | None = None, stats: AlignStats | None = None) -> Iterator[AlignResult]:
        """Streaming form of `align`: yields results in input order, chunk by chunk. ``stats``
        (optional): an `AlignStats` this call fills, its own even when calls run concurrently.

        Pipelined (``Aligner.pipelined``), the input is read up to `PIPELINE_DEPTH` chunks ahead
        of the results, ``progress`` is called from the encoder's thread, and the call's threads
        end when the iterator is exhausted, raises or is closed (``break`` in a for loop closes it
        once it is garbage; call ``close()`` to be sure)."""
        extraction = self._one_extraction(extraction, method, word_level, threshold, with_scores)
        call = self._call(src_lang, tgt_lang, (extraction,), batch_tokens, on_too_long, progress)
        stats = AlignStats() if stats is None else stats
        self.stats = stats
        chunks = _chunks(src, tgt, chunk_pairs)
        if self.pipelined:
            yield from self._pipelined(chunks, call, stats)
        else:
            for start, src_chunk, tgt_chunk in chunks:
                yield from self._align_chunk(src_chunk, tgt_chunk, call, start, stats)[0]
        self._warn_skipped(stats)

    def prepare(self, src: Sequence[Sentence], tgt: Sequence[Sentence], src_lang: str | None = None,
                tgt_lang: str | None = None, *, on_too_long: str = "error") -> PreparedPairs:
        """Tokenize and length-check pairs once, for `align_prepared` (which does not tokenize).

        The checks are `align`'s: bad languages raise `LanguageError`, a too-long sentence raises
        `TooLongError` naming the pair (0-based in ``src``) and side, or with on_too_long="skip"
        marks its pair skipped. Safe to call from another thread than the one aligning."""
        if len(src) != len(tgt):
            raise ValueError(f"source has {len(src)} sentences but target has {len(tgt)}; they must pair up")
        check_length_policy(on_too_long)
        languages = self.languages(src_lang, tgt_lang)
        return self.preparer.prepare([words_of(s) for s in src], [words_of(t) for t in tgt], languages.src,
                                     languages.tgt, on_too_long)

    def align_prepared(self, prepared: PreparedPairs, threshold: float | None = None, *,
                       batch_tokens: int | None = None, method: str | None = None, word_level: str | None = None,
                       with_scores: bool = False, extraction=None, progress: Progress | None = None) -> AlignResults:
        """`align` of pairs made by `prepare` (or `PreparedPairs.concat`): the same results as
        `align` of the same pairs and options, without tokenizing them again. The stats' tokenize
        time is the time `prepare` took. Exactly `encode_prepared` then `extract_encoded`."""
        return self.extract_encoded(self.encode_prepared(prepared, threshold, batch_tokens=batch_tokens, method=method,
                                                         word_level=word_level, with_scores=with_scores,
                                                         extraction=extraction, progress=progress), stacklevel=3)

    def encode_prepared(self, prepared: PreparedPairs, threshold: float | None = None, *,
                        batch_tokens: int | None = None, method: str | None = None, word_level: str | None = None,
                        with_scores: bool = False, extraction=None, progress: Progress | None = None,
                        buffers: BufferPool | None = None) -> EncodedPairs:
        """The encoder half of `align_prepared`: the options checked and every kept sentence run
        (no extraction yet). A pipeline (the service's worker) encodes the next pairs while
        another thread runs `extract_encoded` on these. ``buffers``: where the hidden states go,
        a buffer taken from this pool (the caller gives ``EncodedPairs.buffer`` back once it has
        extracted them; None: a new array)."""
        if not isinstance(prepared, PreparedPairs):
            raise ValueError(f"align_prepared needs PreparedPairs from Aligner.prepare, got {type(prepared).__name__}")
        same = prepared.tokenizer is self.manifest.tokenizer or prepared.tokenizer == self.manifest.tokenizer
        if not same or prepared.max_positions != self.manifest.max_positions:
            raise ValueError("these pairs were prepared by an Aligner of another bundle; prepare them with this one")
        extraction = self._one_extraction(extraction, method, word_level, threshold, with_scores)
        budget = self.batch_tokens if batch_tokens is None else check_batch_tokens(batch_tokens)
        call = _Call(prepared.src_lang, prepared.tgt_lang, (extraction,), budget, "skip", progress)
        clock = time.perf_counter()
        plan = self.encoder.plan(list(prepared.encoded), prepared.keep, budget)
        buffer = None if buffers is None else buffers.take(plan.rows * self.encoder.hidden_size, _NEVER)
        try:
            rows = self.encoder.run(plan, progress, buffer)
        except BaseException:
            if buffer is not None:
                buffers.give(buffer)  # the pool keeps its size
            raise
        return EncodedPairs(prepared, call, rows, time.perf_counter() - clock, buffer)

    def extract_encoded(self, encoded: EncodedPairs, *, stacklevel: int = 2) -> AlignResults:
        """The extraction half of `align_prepared`: links (and scores) of pairs `encode_prepared`
        ran, with their call's own statistics. Safe on another thread than the encoder's."""
        prepared = encoded.prepared
        stats = self.stats = AlignStats()
        stats.seconds["tokenize"] += prepared.seconds
        stats.skipped += prepared.skipped
        results = self._extract(encoded.rows, encoded.seconds, prepared.keep, len(prepared), encoded.call, 0,
                                stats)[0]
        self._warn_skipped(stats, stacklevel=stacklevel + 1)
        return AlignResults(results, stats)

    def align_settings(self, src: Sequence[Sentence], tgt: Sequence[Sentence], extractions: Sequence,
                       src_lang: str | None = None, tgt_lang: str | None = None, *,
                       batch_tokens: int | None = None, on_too_long: str = "error") -> list[list[AlignResult]]:
        """Align all pairs once through the encoder and extract links by each of ``extractions``
        (`Aligner.extraction` objects): one result list per extraction, as `align` would give it.
        Holds every pair's hidden states at once: for evaluation sets (`transalign tune`)."""
        if len(src) != len(tgt):
            raise ValueError(f"source has {len(src)} sentences but target has {len(tgt)}; they must pair up")
        call = self._call(src_lang, tgt_lang, tuple(extractions), batch_tokens, on_too_long, None)
        stats = self.stats = AlignStats()
        return self._align_chunk([words_of(s) for s in src], [words_of(s) for s in tgt], call, 0, stats)

    # -- the pipeline --------------------------------------------------------------------------

    def _warn_skipped(self, stats: AlignStats, stacklevel: int = 3) -> None:
        if stats.skipped:
            warnings.warn(f"{stats.skipped} of {stats.pairs} pairs were longer than the model's "
                          f"{self.manifest.max_positions} tokens and got an empty result", stacklevel=stacklevel)

    def _align_chunk(self, src, tgt, call: _Call, start: int, stats: AlignStats):
        """One encoder pass over the chunk whose first pair is pair ``start`` of the call; one
        list of results per extraction."""
        prepared = self.preparer.prepare(src, tgt, call.src_lang, call.tgt_lang, call.on_too_long, start)
        stats.seconds["tokenize"] += prepared.seconds
        stats.skipped += prepared.skipped
        return self._align_encoded(list(prepared.encoded), prepared.keep, len(src), call, start, stats)

    def _align_encoded(self, encoded, keep: np.ndarray, n: int, call: _Call, start: int, stats: AlignStats):
        """Encoder and extraction over tokenized pairs (``keep``: the length policy's verdict)."""
        clock = time.perf_counter()
        rows = self.encoder.hidden_rows(encoded, keep, call.batch_tokens, call.progress)
        return self._extract(rows, time.perf_counter() - clock, keep, n, call, start, stats)

    def _extract(self, rows: HiddenRows, encode_seconds: float, keep: np.ndarray, n: int, call: _Call, start: int,
                 stats: AlignStats):
        """Links of each extraction from the encoder's rows; one list of results per extraction."""
        from transalign.kernels import extract_with

        stats.real_tokens += rows.real_tokens
        stats.padded_tokens += rows.padded_tokens
        stats.seconds["encode"] += encode_seconds
        check_finite(rows, n, start)
        clock = time.perf_counter()
        pairs = np.flatnonzero(keep[:n] & keep[n:])
        offsets, lengths = rows.offsets, rows.lengths
        every = []
        for extraction in call.extractions:
            pair_starts, links, scores = extract_with(rows.hidden, offsets[pairs], lengths[pairs], offsets[pairs + n],
                                                      lengths[pairs + n], rows.word_ids, rows.word_ids, extraction,
                                                      threads=self.threads)
            results = [AlignResult((), skipped="too_long", scores=None if scores is None else ())] * n
            for k, pair in enumerate(pairs.tolist()):
                a, b = pair_starts[k], pair_starts[k + 1]
                results[pair] = AlignResult(tuple(map(tuple, links[a:b].tolist())),
                                            scores=None if scores is None else tuple(scores[a:b].tolist()))
            every.append(results)
        stats.seconds["extract"] += time.perf_counter() - clock
        stats.pairs += n
        return every

    # -- the pipelined form of align_iter (engine.pipeline) --------------------------------------

    def _pipelined(self, chunks: Iterator, call: _Call, stats: AlignStats) -> Iterator[AlignResult]:
        """`_align_chunk` of every chunk, with tokenizing (one thread), the encoder (another) and
        extraction (this thread) overlapping; the same functions on the same chunks as the serial
        path, so the same results, statistics and errors in the same order."""
        cancelled = threading.Event()
        pool = BufferPool(PIPELINE_BUFFERS)
        tokenizing = _TokenizeStage(self, call)

        def encode(chunk: _Prepared) -> _Encoded:
            buffer = pool.take(chunk.plan.rows * self.encoder.hidden_size, cancelled)
            clock = time.perf_counter()
            rows = None if buffer is None else self.encoder.run(chunk.plan, call.progress, buffer, cancelled.is_set)
            return _Encoded(chunk, rows, buffer, time.perf_counter() - clock)

        items = run_ahead(chunks, (tokenizing, encode), PIPELINE_DEPTH, cancelled)
        try:
            for item in items:
                chunk = item.chunk
                try:
                    stats.seconds["tokenize"] += chunk.prepared.seconds
                    stats.skipped += chunk.prepared.skipped
                    results = self._extract(item.rows, item.seconds, chunk.prepared.keep, chunk.n, call, chunk.start,
                                            stats)[0]
                finally:
                    pool.give(item.buffer)
                yield from results
        finally:
            items.close()  # joins the pipeline's threads (also when this generator is closed early)
            tokenizing.release()

    def _lend_tokenizer(self):
        """A tokenizer no other thread uses, for a pipeline's tokenizing thread; kept for the
        next call by `_return_tokenizer` (loading one takes a moment)."""
        with self._spare_lock:
            if self._spare_tokenizers:
                return self._spare_tokenizers.pop()
        from transalign.engine.tokenizers import load_tokenizer

        return load_tokenizer(self.root, self.manifest.tokenizer)

    def _return_tokenizer(self, tokenizer) -> None:
        with self._spare_lock:
            self._spare_tokenizers.append(tokenizer)


class _TokenizeStage:
    """The pipeline's first stage: `Preparer.prepare` (tokenize, length policy) and
    `Encoder.plan` of a chunk, on the stage's own thread with a tokenizer lent to it alone."""

    def __init__(self, aligner: Aligner, call: _Call):
        self.aligner, self.call = aligner, call
        self.preparer: Preparer | None = None

    def __call__(self, chunk: tuple[int, list, list]) -> _Prepared:
        start, src, tgt = chunk
        aligner, call = self.aligner, self.call
        if self.preparer is None:  # made on this thread, so the lent tokenizer serves this thread
            self.preparer = Preparer(aligner.root, aligner.manifest, aligner._lend_tokenizer())
        prepared = self.preparer.prepare(src, tgt, call.src_lang, call.tgt_lang, call.on_too_long, start)
        return _Prepared(start, len(src), prepared, aligner.encoder.plan(list(prepared.encoded), prepared.keep,
                                                                          call.batch_tokens))

    def release(self) -> None:
        if self.preparer is not None:
            self.aligner._return_tokenizer(self.preparer.tokenizer)
            self.preparer = None


def _chunks(src: Iterable[Sentence], tgt: Iterable[Sentence], chunk_pairs: int) -> Iterator[tuple[int, list, list]]:
    """(first pair's index, source words, target words) per chunk of ``chunk_pairs`` pairs; the
    source chunk is read before the target chunk (readers that pair the two streams rely on it).
    Sides of different lengths are an error, raised where the shorter one ends."""
    src_iter, tgt_iter = iter(src), iter(tgt)
    start = 0
    while True:
        src_chunk = [words_of(s) for _, s in zip(range(chunk_pairs), src_iter)]
        tgt_chunk = [words_of(s) for _, s in zip(range(len(src_chunk)), tgt_iter)]
        if len(tgt_chunk) != len(src_chunk):
            raise ValueError(f"source has more sentences than target (target ends at {start + len(tgt_chunk)})")
        if not src_chunk:
            if next(tgt_iter, None) is not None:
                raise ValueError(f"target has more sentences than source ({start})")
            return
        yield start, src_chunk, tgt_chunk
        start += len(src_chunk)
