"""The Aligner: sentence pairs in, TransAlign word links out, from a bundle.

Flow per chunk of pairs (DESIGN.md "The method, exactly", steps 2-5):
words -> token ids per side (engine.tokenizers) -> every sentence of both sides through the
encoder together, length-sorted and packed by a token budget (engine.batching) -> the content
rows (special tokens dropped, the reference's [:, 1:-1]) packed into one array -> the fused
Numba kernel computes similarity, both softmaxes, the threshold intersection and the word
links for all pairs in parallel (transalign.kernels).

The two halves are also public on their own: `Aligner.prepare` tokenizes and length-checks
pairs once (`PreparedPairs`, with their token counts), `Aligner.align_prepared` aligns them
without tokenizing again; `align` is exactly the two in a row, chunk by chunk. Each call keeps
its own `AlignStats` (`AlignResults.stats`), so concurrent callers never mix their counters.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from transalign.engine.batching import plan_batches
from transalign.engine.bundle import MODEL_FILES, PRECISIONS, Manifest, read_manifest
from transalign.engine.defaults import DEFAULT_BATCH_OVERHEAD_TOKENS, DEFAULT_BATCH_TOKENS, MAX_BATCH_TOKENS
from transalign.engine.session import open_session, resolve_provider

Sentence = str | Sequence[str]
LENGTH_POLICIES = ("error", "skip")
DEFAULT_CHUNK_PAIRS = 4096


class TooLongError(ValueError):
    """A sentence has more tokens than the model's position table; aligning it would be wrong.

    ``pair`` (0-based), ``side`` ("source"/"target"), ``tokens`` and ``limit`` let callers (the
    CLI, the service) name the file line or the request pair themselves. ``exact`` is False when
    the sentence was certainly too long and not tokenized in full: ``tokens`` (``limit + 1``) is
    then a lower bound."""

    def __init__(self, message: str, *, pair: int, side: str, tokens: int, limit: int, exact: bool = True):
        super().__init__(message)
        self.pair, self.side, self.tokens, self.limit, self.exact = pair, side, tokens, limit, exact


class NonFiniteError(ValueError):
    """The encoder produced NaN or infinity for a sentence (damaged weights, fp16 overflow)."""


def _check_finite(hidden: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, n_pairs: int, start: int) -> None:
    """Refuse non-finite hidden states, naming the first affected pair: silently empty links
    (every comparison with NaN is false) would look like a real, if poor, alignment."""
    finite_rows = np.isfinite(hidden).all(axis=1)
    if finite_rows.all():
        return
    row = int(np.flatnonzero(~finite_rows)[0])
    seq = int(np.flatnonzero((offsets <= row) & (row < offsets + lengths))[0])
    side, pair = ("source", seq) if seq < n_pairs else ("target", seq - n_pairs)
    raise NonFiniteError(f"pair {start + pair}: the encoder produced NaN or infinite values for the {side} "
                         "sentence; the bundle's weights may be damaged (check it without verify=False) or this "
                         "precision overflows on it (try fp32)")


@dataclass(frozen=True)
class AlignResult:
    """Word links of one pair: (source word, target word), 0-based, sorted numerically."""

    links: tuple[tuple[int, int], ...]
    skipped: str | None = None  # "too_long" when the length policy skipped the pair
    # With with_scores=True: scores[k] is the score links[k] was chosen on (min(F, B) for
    # softmax, the similarity S for argmax / itermax; transalign.kernels.methods).
    scores: tuple[float, ...] | None = None

    def pharaoh(self) -> str:
        return " ".join(f"{i}-{j}" for i, j in self.links)


@dataclass(frozen=True)
class _CallOptions:
    """What one align / align_iter / align_settings call asked for, checked once and shared by
    all its chunks."""

    src_lang: str | None
    tgt_lang: str | None
    extractions: tuple  # transalign.kernels.Extraction objects: one result list each
    batch_tokens: int
    on_too_long: str


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


@dataclass(frozen=True, eq=False)
class PreparedPairs:
    """Pairs tokenized and length-checked once by `Aligner.prepare`, for `Aligner.align_prepared`.

    ``src``/``tgt``: the words; ``encoded``: (ids, word ids) per sentence, the n sources then the
    n targets; ``keep``: bool [2n], False on both sides of a pair skipped as too long (only with
    on_too_long="skip"); ``seconds``: the time tokenizing took. `concat` joins prepared pairs of
    the same languages (the service merges concurrent requests this way)."""

    src: tuple[list[str], ...]
    tgt: tuple[list[str], ...]
    src_lang: str | None
    tgt_lang: str | None
    encoded: tuple
    keep: np.ndarray
    tokenizer: object  # the bundle's TokenizerSpec: align_prepared refuses pairs of another tokenizer
    max_positions: int
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.src)

    @property
    def skipped(self) -> int:
        n = len(self)
        return n - int((self.keep[:n] & self.keep[n:]).sum())

    @property
    def src_tokens(self) -> tuple[int, ...]:
        """Tokens of each source sentence, special tokens included (``max_positions + 1`` for one
        that was certainly too long and not tokenized in full)."""
        return tuple(len(ids) for ids, _ in self.encoded[:len(self)])

    @property
    def tgt_tokens(self) -> tuple[int, ...]:
        return tuple(len(ids) for ids, _ in self.encoded[len(self):])

    @property
    def tokens(self) -> int:
        """Tokens (both sides, special tokens included) the encoder will run: skipped pairs excluded."""
        return sum(len(ids) for (ids, _), k in zip(self.encoded, self.keep.tolist()) if k)

    @classmethod
    def concat(cls, parts: Sequence["PreparedPairs"]) -> "PreparedPairs":
        """One `PreparedPairs` holding ``parts`` in order (same languages and tokenizer)."""
        if not parts:
            raise ValueError("concat needs at least one PreparedPairs")
        first = parts[0]
        if len(parts) == 1:
            return first
        for part in parts[1:]:
            if (part.src_lang, part.tgt_lang) != (first.src_lang, first.tgt_lang):
                raise ValueError(f"cannot concatenate pairs of {part.src_lang}/{part.tgt_lang} with pairs of "
                                 f"{first.src_lang}/{first.tgt_lang}")
            if part.tokenizer != first.tokenizer or part.max_positions != first.max_positions:
                raise ValueError("cannot concatenate pairs prepared by different bundles")
        sources = [e for p in parts for e in p.encoded[:len(p)]]
        targets = [e for p in parts for e in p.encoded[len(p):]]
        keep = np.concatenate([p.keep[:len(p)] for p in parts] + [p.keep[len(p):] for p in parts])
        return cls(tuple(w for p in parts for w in p.src), tuple(w for p in parts for w in p.tgt),
                   first.src_lang, first.tgt_lang, tuple(sources + targets), keep, first.tokenizer,
                   first.max_positions, sum(p.seconds for p in parts))


def usable_threads(threads: int | None) -> int | None:
    """``threads`` checked (>= 1) and clamped to the cores this process may use, with a warning:
    more threads than cores only adds contention (64 threads on 2 cores made 5 pairs take 79 s)."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads {threads!r} must be an integer >= 1 (CLI --threads; default: all cores)")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if threads > cores:
        warnings.warn(f"threads {threads} is more than the {cores} cores available; using {cores}", stacklevel=3)
        return cores
    return threads


def _surely_tokens(words: Sequence[str]) -> int:
    """How many words give at least one token: those holding a letter or a digit, which no
    normalizer removes."""
    return sum(1 for word in words if any(ch.isalnum() for ch in word))


def _words(sentence: Sentence) -> list[str]:
    if isinstance(sentence, str):
        return sentence.split()
    return list(sentence)


class Aligner:
    """Aligns sentence pairs with one bundle; create it with `Aligner.load`."""

    def __init__(self, root: Path, manifest: Manifest, tokenizer, session, provider: str, precision: str,
                 threads: int | None = None):
        self.root, self.manifest, self.tokenizer = root, manifest, tokenizer
        self.session, self.provider, self.precision = session, provider, precision
        self.threads = threads  # the extraction kernels' threads (None: all cores)
        # the statistics of the call started last (compatibility view; each call returns its own)
        self.stats = AlignStats()
        # ``tokenizer`` serves the thread that made the Aligner; other threads (the service's HTTP
        # layer calling `prepare`) get their own instance, loaded on first use: no shared state
        self._owner_thread = threading.get_ident()
        self._local = threading.local()
        # called with the number of sentences (both sides) after every encoder batch, so a
        # progress display moves every few seconds even when a chunk takes minutes
        self.progress_hook = None

    @classmethod
    def load(cls, bundle: str | Path, provider: str = "auto", precision: str = "fp32",
             threads: int | None = None, verify: bool = True) -> "Aligner":
        """Open a bundle: check its manifest and hashes, pick the provider, start the session.

        provider: "auto" (CUDA when available, else CPU), "cpu" or "cuda".
        precision: "fp32" (exact), "int8" (CPU, fastest there) or "fp16" (CUDA).
        threads: intra-op threads for ONNX Runtime and the extraction kernels (None: all cores);
        kept on this Aligner, no process-wide (or thread-wide) setting is changed.
        """
        from transalign.engine.tokenizers import load_tokenizer

        root = Path(bundle)
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        manifest = read_manifest(root, verify_hashes=verify, precision=precision)
        if precision not in manifest.precisions:
            has = ", ".join(p for p in PRECISIONS if p in manifest.precisions)
            raise ValueError(f"bundle {root} has no {precision} model (it has {has}); "
                             f"re-export with --precision including {precision}")
        resolved = resolve_provider(provider)
        if precision == "fp16" and resolved != "cuda":
            raise ValueError("fp16 models are for the CUDA provider; on CPU use precision 'fp32' or 'int8'")
        threads = usable_threads(threads)
        session = open_session(root / MODEL_FILES[precision], resolved, threads)
        tokenizer = load_tokenizer(root, manifest.tokenizer)
        return cls(root, manifest, tokenizer, session, resolved, precision, threads)

    def align(self, src: Sequence[Sentence], tgt: Sequence[Sentence], src_lang: str | None = None,
              tgt_lang: str | None = None, threshold: float | None = None, *, batch_tokens: int | None = None,
              on_too_long: str = "error", method: str = "softmax", word_level: str = "any",
              with_scores: bool = False) -> list[AlignResult]:
        """Align pairs (src[k], tgt[k]); one result per pair, in input order.

        A sentence is a list of words or a string split on whitespace. ``threshold`` defaults to
        the bundle's (0.001 for NLLB). ``on_too_long``: "error" (default) raises naming the pair;
        "skip" returns an empty result with skipped="too_long" and warns with the count.
        ``method`` ("softmax", the reference; "argmax"; "itermax"), ``word_level`` ("any", the
        reference; "mean") and ``with_scores`` (fill AlignResult.scores): transalign.kernels.methods.
        ``threshold`` is for softmax only. The returned list's ``stats`` are this call's.
        """
        if len(src) != len(tgt):
            raise ValueError(f"source has {len(src)} sentences but target has {len(tgt)}; they must pair up")
        stats = AlignStats()
        results = list(self.align_iter(src, tgt, src_lang, tgt_lang, threshold, batch_tokens=batch_tokens,
                                       on_too_long=on_too_long, method=method, word_level=word_level,
                                       with_scores=with_scores, stats=stats))
        return AlignResults(results, stats)

    def align_iter(self, src: Iterable[Sentence], tgt: Iterable[Sentence], src_lang: str | None = None,
                   tgt_lang: str | None = None, threshold: float | None = None, *, batch_tokens: int | None = None,
                   on_too_long: str = "error", chunk_pairs: int = DEFAULT_CHUNK_PAIRS, method: str = "softmax",
                   word_level: str = "any", with_scores: bool = False,
                   stats: AlignStats | None = None) -> Iterator[AlignResult]:
        """Streaming form of `align`: yields results in input order, chunk by chunk. ``stats``
        (optional): an `AlignStats` this call fills, its own even when calls run concurrently."""
        extraction = self.extraction(method, word_level, threshold, with_scores)
        options = self._call_options(src_lang, tgt_lang, (extraction,), batch_tokens, on_too_long)
        stats = AlignStats() if stats is None else stats
        self.stats = stats
        src_iter, tgt_iter = iter(src), iter(tgt)
        start = 0
        while True:
            src_chunk = [_words(s) for _, s in zip(range(chunk_pairs), src_iter)]
            tgt_chunk = [_words(s) for _, s in zip(range(len(src_chunk)), tgt_iter)]
            if len(tgt_chunk) != len(src_chunk):
                raise ValueError(f"source has more sentences than target (target ends at {start + len(tgt_chunk)})")
            if not src_chunk:
                if next(tgt_iter, None) is not None:
                    raise ValueError(f"target has more sentences than source ({start})")
                break
            yield from self._align_chunk(src_chunk, tgt_chunk, options, start, stats)[0]
            start += len(src_chunk)
        self._warn_skipped(stats)

    def prepare(self, src: Sequence[Sentence], tgt: Sequence[Sentence], src_lang: str | None = None,
                tgt_lang: str | None = None, *, on_too_long: str = "error") -> PreparedPairs:
        """Tokenize and length-check pairs once, for `align_prepared` (which does not tokenize).

        The checks are `align`'s: unknown languages raise ValueError, a too-long sentence raises
        `TooLongError` naming the pair (0-based in ``src``) and side, or with on_too_long="skip"
        marks its pair skipped. Safe to call from another thread than the one aligning."""
        if len(src) != len(tgt):
            raise ValueError(f"source has {len(src)} sentences but target has {len(tgt)}; they must pair up")
        if on_too_long not in LENGTH_POLICIES:
            raise ValueError(f"on_too_long {on_too_long!r} is not one of {', '.join(LENGTH_POLICIES)}")
        src_lang, tgt_lang = self._languages(src_lang, tgt_lang, stacklevel=3)
        return self._prepare([_words(s) for s in src], [_words(t) for t in tgt], src_lang, tgt_lang,
                             on_too_long, 0)

    def align_prepared(self, prepared: PreparedPairs, threshold: float | None = None, *,
                       batch_tokens: int | None = None, method: str = "softmax", word_level: str = "any",
                       with_scores: bool = False) -> AlignResults:
        """`align` of pairs made by `prepare` (or `PreparedPairs.concat`): the same results as
        `align` of the same pairs and options, without tokenizing them again. The stats' tokenize
        time is the time `prepare` took."""
        if not isinstance(prepared, PreparedPairs):
            raise ValueError(f"align_prepared needs PreparedPairs from Aligner.prepare, got {type(prepared).__name__}")
        same = prepared.tokenizer is self.manifest.tokenizer or prepared.tokenizer == self.manifest.tokenizer
        if not same or prepared.max_positions != self.manifest.max_positions:
            raise ValueError("these pairs were prepared by an Aligner of another bundle; prepare them with this one")
        extraction = self.extraction(method, word_level, threshold, with_scores)
        options = _CallOptions(prepared.src_lang, prepared.tgt_lang, (extraction,), self._batch_budget(batch_tokens),
                               "skip")
        stats = self.stats = AlignStats()
        stats.seconds["tokenize"] += prepared.seconds
        stats.skipped += prepared.skipped
        results = self._align_encoded(list(prepared.encoded), prepared.keep, len(prepared), options, 0, stats)[0]
        self._warn_skipped(stats, stacklevel=3)
        return AlignResults(results, stats)

    def _warn_skipped(self, stats: AlignStats, stacklevel: int = 3) -> None:
        if stats.skipped:
            warnings.warn(f"{stats.skipped} of {stats.pairs} pairs were longer than the model's "
                          f"{self.manifest.max_positions} tokens and got an empty result", stacklevel=stacklevel)

    def extraction(self, method: str = "softmax", word_level: str = "any", threshold: float | None = None,
                   with_scores: bool = False):
        """The checked `transalign.kernels.Extraction` of these options (threshold: the bundle's)."""
        from transalign.kernels import METHODS, Extraction

        if threshold is not None and method != "softmax" and method in METHODS:
            raise ValueError(f"a threshold applies to method 'softmax' only, not to {method!r}")
        threshold = self.manifest.default_threshold if threshold is None else float(threshold)
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold {threshold} must be in [0, 1)")
        return Extraction(method, word_level, threshold, with_scores)

    def align_settings(self, src: Sequence[Sentence], tgt: Sequence[Sentence], extractions: Sequence,
                       src_lang: str | None = None, tgt_lang: str | None = None, *,
                       batch_tokens: int | None = None, on_too_long: str = "error") -> list[list[AlignResult]]:
        """Align all pairs once through the encoder and extract links by each of ``extractions``
        (`Aligner.extraction` objects): one result list per extraction, as `align` would give it.
        Holds every pair's hidden states at once: for evaluation sets (`transalign tune`)."""
        if len(src) != len(tgt):
            raise ValueError(f"source has {len(src)} sentences but target has {len(tgt)}; they must pair up")
        options = self._call_options(src_lang, tgt_lang, tuple(extractions), batch_tokens, on_too_long)
        stats = self.stats = AlignStats()
        return self._align_chunk([_words(s) for s in src], [_words(s) for s in tgt], options, 0, stats)

    def _call_options(self, src_lang, tgt_lang, extractions: tuple, batch_tokens: int | None,
                      on_too_long: str) -> _CallOptions:
        if on_too_long not in LENGTH_POLICIES:
            raise ValueError(f"on_too_long {on_too_long!r} is not one of {', '.join(LENGTH_POLICIES)}")
        batch_tokens = self._batch_budget(batch_tokens)
        src_lang, tgt_lang = self._languages(src_lang, tgt_lang)
        return _CallOptions(src_lang, tgt_lang, extractions, batch_tokens, on_too_long)

    def _align_chunk(self, src, tgt, options: _CallOptions, start: int, stats: AlignStats):
        """One encoder pass over the chunk whose first pair is pair ``start`` of the call; one
        list of results per extraction."""
        prepared = self._prepare(src, tgt, options.src_lang, options.tgt_lang, options.on_too_long, start)
        stats.seconds["tokenize"] += prepared.seconds
        stats.skipped += prepared.skipped
        return self._align_encoded(list(prepared.encoded), prepared.keep, len(src), options, start, stats)

    def _prepare(self, src: list[list[str]], tgt: list[list[str]], src_lang, tgt_lang, on_too_long: str,
                 start: int) -> PreparedPairs:
        """Tokenize (languages already checked) and apply the length policy."""
        clock = time.perf_counter()
        tokenizer = self._thread_tokenizer()
        encoded = self._encode(src, src_lang, tokenizer) + self._encode(tgt, tgt_lang, tokenizer)
        seconds = time.perf_counter() - clock
        keep = self._length_policy(encoded, len(src), on_too_long, start)
        return PreparedPairs(tuple(src), tuple(tgt), src_lang, tgt_lang, tuple(encoded), keep,
                             self.manifest.tokenizer, self.manifest.max_positions, seconds)

    def _thread_tokenizer(self):
        if threading.get_ident() == self._owner_thread:
            return self.tokenizer
        tokenizer = getattr(self._local, "tokenizer", None)
        if tokenizer is None:
            from transalign.engine.tokenizers import load_tokenizer

            tokenizer = self._local.tokenizer = load_tokenizer(self.root, self.manifest.tokenizer)
        return tokenizer

    def _align_encoded(self, encoded, keep: np.ndarray, n: int, options: _CallOptions, start: int,
                       stats: AlignStats):
        """Encoder and extraction over tokenized pairs (``keep``: the length policy's verdict)."""
        from transalign.kernels import extract_with

        clock = time.perf_counter()
        hidden, offsets, lengths, word_ids = self._hidden_rows(encoded, keep, options.batch_tokens, stats)
        stats.seconds["encode"] += time.perf_counter() - clock
        _check_finite(hidden, offsets, lengths, n, start)
        clock = time.perf_counter()
        pairs = np.flatnonzero(keep[:n] & keep[n:])
        every = []
        for extraction in options.extractions:
            pair_starts, links, scores = extract_with(hidden, offsets[pairs], lengths[pairs], offsets[pairs + n],
                                                      lengths[pairs + n], word_ids, word_ids, extraction,
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

    def _languages(self, src_lang, tgt_lang, stacklevel: int = 4):
        """Checked codes; a bundle without language codes warns about (and drops) given ones."""
        if not self.manifest.tokenizer.lang_code_ids and (src_lang is not None or tgt_lang is not None):
            warnings.warn(f"language codes {src_lang!r}/{tgt_lang!r} are ignored: this {self.manifest.architecture} "
                          "bundle has none (its tokenizer needs no language)", stacklevel=stacklevel)
            return None, None
        self.tokenizer.check_lang(src_lang)
        self.tokenizer.check_lang(tgt_lang)
        return src_lang, tgt_lang

    def _batch_budget(self, batch_tokens: int | None) -> int:
        if batch_tokens is None:
            return DEFAULT_BATCH_TOKENS[self.provider]
        if isinstance(batch_tokens, bool) or not isinstance(batch_tokens, (int, np.integer)) \
                or not 1 <= batch_tokens <= MAX_BATCH_TOKENS:
            raise ValueError(f"batch_tokens {batch_tokens!r} must be an integer in 1..{MAX_BATCH_TOKENS} (default "
                             f"{DEFAULT_BATCH_TOKENS[self.provider]} on {self.provider}); CLI --batch-tokens")
        return int(batch_tokens)

    def _encode(self, sentences, lang, tokenizer=None):
        """Token ids and word ids per sentence. A sentence with at least as many words holding a
        letter or digit as the model has positions is certainly too long (such a word is at least
        one token; an empty or zero-width word may be none): it is not tokenized (an 11 MB line
        would cost seconds and GBs) and gets a placeholder of ``limit + 1`` padding ids, so the
        length policy refuses or skips it like any over-long sentence."""
        limit = self.manifest.max_positions
        hopeless = [len(words) >= limit and _surely_tokens(words) >= limit for words in sentences]
        if any(hopeless):
            sentences = [[] if h else words for words, h in zip(sentences, hopeless)]
        encoded = list((tokenizer or self.tokenizer).encode_batch(sentences, lang))
        for k in np.flatnonzero(hopeless).tolist():
            encoded[k] = (np.full(limit + 1, self.manifest.tokenizer.pad_id, np.int64), np.full(limit + 1, -1, np.int32))
        return encoded

    def _length_policy(self, encoded, n_pairs: int, on_too_long: str, start: int) -> np.ndarray:
        limit = self.manifest.max_positions
        lengths = np.fromiter((len(ids) for ids, _ in encoded), dtype=np.int64, count=len(encoded))
        fits = lengths <= limit
        if fits.all():
            return fits
        bad = int(np.flatnonzero(~fits)[0])
        side, pair = ("source", bad) if bad < n_pairs else ("target", bad - n_pairs)
        if on_too_long == "error":
            raise TooLongError(f"pair {start + pair}: the {side} sentence has {lengths[bad]} tokens "
                               f"(special tokens included; at least, if it was not tokenized in full), more than "
                               f"the model's maximum of {limit}; split it, or skip such pairs "
                               "(on_too_long='skip', CLI --skip-long)", pair=start + pair, side=side,
                               tokens=int(lengths[bad]), limit=limit,
                               # _encode's placeholder for a sentence not tokenized has no word tokens
                               exact=bool((encoded[bad][1] >= 0).any()))
        skipped = ~(fits[:n_pairs] & fits[n_pairs:])
        return np.concatenate([~skipped, ~skipped])

    def _hidden_rows(self, encoded, keep: np.ndarray, batch_tokens: int, stats: AlignStats):
        """Run every kept sequence through the encoder; pack its content rows contiguously.

        Returns (hidden [rows, d], offsets [seqs], lengths [seqs], word_ids [rows]); a sequence's
        content rows are its tokens with a word id (special tokens have -1 and are dropped).
        """
        word_lists = [w for _, w in encoded]
        content = np.fromiter(((w >= 0).sum() for w in word_lists), dtype=np.int64, count=len(encoded))
        content[~keep] = 0
        offsets = np.zeros(len(encoded), dtype=np.int64)
        np.cumsum(content[:-1], out=offsets[1:])
        total = int(content.sum())
        hidden = np.empty((total, self.manifest.hidden_size), dtype=np.float32)
        word_ids = np.concatenate([w[w >= 0] for w, k in zip(word_lists, keep) if k] or [np.empty(0, np.int32)])
        kept = np.flatnonzero(keep)
        seq_lengths = np.fromiter((len(encoded[i][0]) for i in kept), dtype=np.int64, count=len(kept))
        plan = plan_batches(seq_lengths, batch_tokens, DEFAULT_BATCH_OVERHEAD_TOKENS[self.provider])
        stats.real_tokens += plan.real_tokens
        stats.padded_tokens += plan.padded_tokens
        for batch in plan.batches:
            self._run_batch([int(kept[b]) for b in batch], encoded, offsets, hidden)
            if self.progress_hook is not None:
                self.progress_hook(len(batch))
        return hidden, offsets, content, word_ids.astype(np.int64)

    def _run_batch(self, seqs: list[int], encoded, offsets, hidden) -> None:
        width = max(len(encoded[s][0]) for s in seqs)
        ids = np.full((len(seqs), width), self.manifest.tokenizer.pad_id, dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        is_content = np.zeros((len(seqs), width), dtype=bool)
        for row, s in enumerate(seqs):
            seq_ids, seq_words = encoded[s]
            ids[row, :len(seq_ids)] = seq_ids
            mask[row, :len(seq_ids)] = 1
            is_content[row, :len(seq_ids)] = seq_words >= 0
        out = self.session.run(["hidden"], {"input_ids": ids, "attention_mask": mask})[0]
        rows = out[is_content]  # row-major: sequence by sequence, token order kept
        counts = is_content.sum(axis=1)
        starts = offsets[seqs]
        dest = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(counts.sum())
        hidden[dest] = rows
