"""Request checks that need the model: options, languages, sentence lengths, token counts.

They run in the HTTP layer, before a request is queued, so that a bad pair fails its own
request with a 400 naming it, and never reaches (or breaks) a batch shared with others. Each
pair is tokenized once, here, by `Aligner.prepare`: the worker aligns the `PreparedPairs`
without tokenizing again, and their token counts are what the batcher's token budget adds up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from transalign.kernels.names import DEFAULT_METHOD, DEFAULT_WORD_LEVEL, METHODS, WORD_LEVELS

Sentence = str | Sequence[str]
# (src_lang, tgt_lang, threshold, method, word_level, scores): requests of one key share an
# `Aligner.align_prepared` call; the threshold is the bundle's when the request gave none
BatchKey = tuple[str | None, str | None, float, str, str, bool]


class ApiError(Exception):
    """An error answered as JSON ``{"error": {"code", "message", "pair"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, pair: int | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.pair = status, code, message, pair
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, "pair": self.pair}}


@dataclass(frozen=True)
class Prepared:
    """A checked request: its tokenized pairs (`transalign.engine.aligner.PreparedPairs`) and
    its batch key (the full extraction setting)."""

    encoded: object  # PreparedPairs
    key: BatchKey

    @property
    def pairs(self) -> int:
        return len(self.encoded)

    @property
    def tokens(self) -> int:
        return self.encoded.tokens


def align_options(key: BatchKey) -> dict:
    """The keyword arguments of `Aligner.align_prepared` (and `Aligner.align`) for a batch key."""
    _, _, threshold, method, word_level, scores = key
    return {"threshold": threshold if method == "softmax" else None, "method": method,
            "word_level": word_level, "with_scores": scores}


def words(sentence: Sentence) -> list[str]:
    """The engine's rule (`Aligner.align`): a string is split on whitespace, a list is the words."""
    return sentence.split() if isinstance(sentence, str) else list(sentence)


class RequestPreparer:
    """Checks requests against the worker's Aligner; `Aligner.prepare` tokenizes them (with a
    tokenizer instance of the calling thread, so the HTTP layer and the worker thread never
    share tokenizer state)."""

    def __init__(self, aligner, max_pairs_per_request: int):
        self.aligner, self.manifest, self.max_pairs = aligner, aligner.manifest, max_pairs_per_request
        self.has_languages = bool(self.manifest.tokenizer.lang_code_ids)

    def warm_up(self) -> None:
        """Load this thread's tokenizer before the first request needs it."""
        codes = sorted(self.manifest.tokenizer.lang_code_ids)
        lang = codes[0] if codes else None
        self.aligner.prepare([["warm"]], [["up"]], lang, lang)

    def prepare(self, pairs: Sequence[tuple[Sentence, Sentence]], src_lang: str | None, tgt_lang: str | None,
                threshold: float | None, method: str = DEFAULT_METHOD, word_level: str = DEFAULT_WORD_LEVEL,
                scores: bool = False) -> Prepared:
        from transalign.engine.aligner import TooLongError

        if not pairs:
            raise ApiError(400, "empty_pairs", "'pairs' is empty; send at least one {\"src\": ..., \"tgt\": ...}")
        if len(pairs) > self.max_pairs:
            raise ApiError(413, "too_many_pairs", f"the request has {len(pairs)} pairs, more than this server's "
                           f"limit of {self.max_pairs} (--max-pairs-per-request); split it into several requests")
        key = self._key(threshold, method, word_level, scores)
        if self.has_languages:
            self._check_lang("src_lang", src_lang)
            self._check_lang("tgt_lang", tgt_lang)
        else:  # the engine would ignore them (with a warning per call): one batch key for all
            src_lang = tgt_lang = None
        try:
            encoded = self.aligner.prepare([words(s) for s, _ in pairs], [words(t) for _, t in pairs],
                                           src_lang, tgt_lang)
        except TooLongError as exc:
            count = f"{exc.tokens} tokens (special tokens included)" if exc.exact else \
                f"more than {exc.limit} tokens ({exc.limit} or more words)"
            raise ApiError(400, "too_long", f"pair {exc.pair}: the {exc.side} sentence has {count}, more than the "
                           f"model's maximum of {exc.limit}; split it", pair=exc.pair) from None
        return Prepared(encoded, (src_lang, tgt_lang, *key))

    def _key(self, threshold, method: str, word_level: str, scores: bool) -> tuple[float, str, str, bool]:
        """The checked options (schema.py already refuses most bad values; this guards direct use)."""
        for field, value, allowed in (("method", method, METHODS), ("word_level", word_level, WORD_LEVELS)):
            if value not in allowed:
                raise ApiError(422, "invalid_request", f"{field}: {value!r} is not one of "
                               f"{', '.join(repr(a) for a in allowed)}")
        if not isinstance(scores, bool):
            raise ApiError(422, "invalid_request", f"scores: must be true or false, got {scores!r}")
        if threshold is not None and method != "softmax":
            raise ApiError(422, "invalid_request", f"threshold: applies to method 'softmax' only, not to {method!r}; "
                           "leave it out")
        try:
            extraction = self.aligner.extraction(method, word_level, threshold, scores)
        except ValueError as exc:
            raise ApiError(422, "invalid_request", f"threshold: {exc}") from None
        return extraction.threshold, method, word_level, scores

    def _check_lang(self, field: str, lang: str | None) -> None:
        if lang is None:
            raise ApiError(400, "missing_language", f"'{field}' is required for this bundle "
                           f"({self.manifest.base_model}), e.g. 'eng_Latn'; GET /v1/info lists the codes")
        try:
            self.aligner.tokenizer.check_lang(lang)  # a lookup in the code table: no tokenizer state
        except ValueError as exc:
            raise ApiError(400, "unknown_language", f"'{field}': {exc}") from None
