"""Request checks that need the model: options, languages, sentence lengths, token counts.

They run before a request is queued, in the HTTP layer's preparation threads (never on the event
loop: a 2 MB body is parsed and tokenized there), so that a bad pair fails its own request with
a 4xx naming it, and never reaches (or breaks) a batch shared with others. The rules are the
engine's (`transalign.engine.options`: `resolve_languages`, `resolve_extraction`; the length
bounds of `engine.prepare`); this module only translates their errors into HTTP ones naming the
JSON field. Each pair is tokenized once, here, by `Aligner.prepare`: the worker aligns the
`PreparedPairs` without tokenizing again, and their token counts are what the batcher's merge
budget adds up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from transalign.serve.errors import ApiError

Sentence = str | Sequence[str]


class ClientGone(Exception):
    """The client disconnected while its request was being prepared: the rest is not done."""


@dataclass(frozen=True, eq=False)
class Prepared:
    """A checked request: its tokenized pairs (`engine.prepare.PreparedPairs`), the `Extraction`
    it asks for, and the option names a bundle without language codes ignored."""

    encoded: object  # PreparedPairs
    extraction: object  # transalign.kernels.Extraction (frozen, hashable)
    ignored: tuple[str, ...] = ()

    @property
    def key(self) -> tuple:
        """Requests of one key share an `Aligner.align_prepared` call: same languages (the
        sequences start with their codes) and the same extraction."""
        return self.encoded.src_lang, self.encoded.tgt_lang, self.extraction

    @property
    def pairs(self) -> int:
        return len(self.encoded)

    @property
    def tokens(self) -> int:
        return self.encoded.tokens


class RequestPreparer:
    """Checks requests against the worker's Aligner; `Aligner.prepare` tokenizes them (with a
    tokenizer instance of the calling thread, so the preparation threads and the worker never
    share tokenizer state)."""

    def __init__(self, aligner, max_pairs_per_request: int, public=str):
        self.aligner, self.manifest, self.max_pairs = aligner, aligner.manifest, max_pairs_per_request
        self.public = public  # hides server paths in messages (app._Public)

    def warm_up(self) -> None:
        """Load this thread's tokenizer before the first request needs it."""
        from transalign.engine.options import any_language

        lang = any_language(self.manifest)
        self.aligner.prepare([["warm"]], [["up"]], lang, lang)

    def prepare_body(self, body: bytes, gone=lambda: False) -> Prepared:
        """A raw /v1/align body parsed (`serve.body`), checked and tokenized. ``gone()`` says the
        client has disconnected: checked before parsing and before tokenizing, the costly steps."""
        from transalign.serve.body import parse_align_request

        if gone():
            raise ClientGone()
        request = parse_align_request(body, self.max_pairs)
        if gone():
            raise ClientGone()
        return self.prepare([(p.src, p.tgt) for p in request.pairs], request.src_lang, request.tgt_lang,
                            request.threshold, request.method, request.word_level, request.scores)

    def prepare(self, pairs: Sequence[tuple[Sentence, Sentence]], src_lang: str | None, tgt_lang: str | None,
                threshold: float | None = None, method: str | None = None, word_level: str | None = None,
                scores: bool = False) -> Prepared:
        from transalign.engine.options import LanguageError, OptionError, resolve_extraction, resolve_languages
        from transalign.engine.prepare import TooLongError, words_of

        if not pairs:
            raise ApiError(400, "empty_pairs", "'pairs' is empty; send at least one {\"src\": ..., \"tgt\": ...}")
        if len(pairs) > self.max_pairs:
            raise ApiError(413, "too_many_pairs", f"the request has {len(pairs)} pairs, more than this server's "
                           f"limit of {self.max_pairs} (--max-pairs-per-request); split it into several requests")
        try:
            extraction = resolve_extraction(self.manifest, method, word_level, threshold, scores)
            languages = resolve_languages(self.manifest, src_lang, tgt_lang)
        except LanguageError as exc:
            code = "missing_language" if exc.code is None else "unknown_language"
            raise ApiError(400, code, self.public(exc.named(exc.option)) + "; GET /v1/info lists the codes") from None
        except OptionError as exc:
            raise ApiError(422, "invalid_request", self.public(exc.named(exc.option))) from None
        try:
            encoded = self.aligner.prepare([words_of(s) for s, _ in pairs], [words_of(t) for _, t in pairs],
                                           languages.src, languages.tgt)
        except TooLongError as exc:
            raise ApiError(400, "too_long", f"pair {exc.pair}: {exc.describe()}; split it", pair=exc.pair) from None
        except ValueError as exc:  # any other input the engine refuses: its message is for users
            raise ApiError(400, "invalid_request", self.public(str(exc))) from None
        return Prepared(encoded, extraction, languages.ignored)
