"""Request checks that need the model: languages, sentence lengths, token counts.

They run in the HTTP layer, before a request is queued, so that a bad pair fails its own
request with a 400 naming it, and never reaches (or breaks) a batch shared with others. The
token counts they produce are what the batcher's token budget adds up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Sentence = str | Sequence[str]
BatchKey = tuple[str | None, str | None, float]  # (src_lang, tgt_lang, threshold)


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
    """A checked request: word lists per side, its batch key and its token count."""

    src: list[list[str]]
    tgt: list[list[str]]
    key: BatchKey
    tokens: int

    @property
    def pairs(self) -> int:
        return len(self.src)


def words(sentence: Sentence) -> list[str]:
    """The engine's rule (`Aligner.align`): a string is split on whitespace, a list is the words."""
    return sentence.split() if isinstance(sentence, str) else list(sentence)


class RequestPreparer:
    """Checks requests against one bundle with its own tokenizer instance.

    The tokenizer is separate from the Aligner's so the HTTP layer and the worker thread never
    share tokenizer state.
    """

    def __init__(self, tokenizer, manifest, max_pairs_per_request: int):
        self.tokenizer, self.manifest, self.max_pairs = tokenizer, manifest, max_pairs_per_request
        self.has_languages = bool(manifest.tokenizer.lang_code_ids)

    def prepare(self, pairs: Sequence[tuple[Sentence, Sentence]], src_lang: str | None, tgt_lang: str | None,
                threshold: float | None) -> Prepared:
        if not pairs:
            raise ApiError(400, "empty_pairs", "'pairs' is empty; send at least one {\"src\": ..., \"tgt\": ...}")
        if len(pairs) > self.max_pairs:
            raise ApiError(413, "too_many_pairs", f"the request has {len(pairs)} pairs, more than this server's "
                           f"limit of {self.max_pairs} (--max-pairs-per-request); split it into several requests")
        self._check_lang("src_lang", src_lang)
        self._check_lang("tgt_lang", tgt_lang)
        threshold = self.manifest.default_threshold if threshold is None else float(threshold)
        src = [words(s) for s, _ in pairs]
        tgt = [words(t) for _, t in pairs]
        src_lengths = self._lengths(src, src_lang, "source")
        tgt_lengths = self._lengths(tgt, tgt_lang, "target")
        return Prepared(src, tgt, (src_lang, tgt_lang, threshold), sum(src_lengths) + sum(tgt_lengths))

    def _check_lang(self, field: str, lang: str | None) -> None:
        if lang is None and self.has_languages:
            raise ApiError(400, "missing_language", f"'{field}' is required for this bundle "
                           f"({self.manifest.base_model}), e.g. 'eng_Latn'; GET /v1/info lists the codes")
        try:
            self.tokenizer.check_lang(lang)
        except ValueError as exc:
            raise ApiError(400, "unknown_language", f"'{field}': {exc}") from None

    def _lengths(self, sentences: list[list[str]], lang: str | None, side: str) -> list[int]:
        limit = self.manifest.max_positions
        lengths = [len(ids) for ids, _ in self.tokenizer.encode_batch(sentences, lang)]
        for pair, length in enumerate(lengths):
            if length > limit:
                raise ApiError(400, "too_long", f"pair {pair}: the {side} sentence has {length} tokens (special "
                               f"tokens included), more than the model's maximum of {limit}; split it", pair=pair)
        return lengths
