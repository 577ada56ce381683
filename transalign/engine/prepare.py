"""Words in, checked token sequences out: tokenization and the length policy, once.

A sentence the model cannot take whole is refused (``on_too_long="error"``, `TooLongError`
naming the pair and side) or its pair skipped (``"skip"``), never truncated. Three bounds, the
cheap ones first so that hopeless input costs nothing:

1. characters: more than `options.max_sentence_chars` (the words' ``len``, summed) -> refused
   before tokenizing (a 10 MB line without spaces would take seconds and gigabytes);
2. words: at least ``max_positions`` words holding a letter or digit (each such word is at
   least one token) -> refused before tokenizing;
3. tokens: more than ``max_positions`` (special tokens included) after tokenizing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from transalign.engine.options import check_length_policy, max_sentence_chars

Sentence = str | Sequence[str]


class TooLongError(ValueError):
    """A sentence is longer than the model can take; aligning it would be wrong.

    ``pair`` (0-based), ``side`` ("source"/"target"), ``unit`` ("tokens" or "characters"),
    ``tokens`` (the count in ``unit``) and ``limit`` let callers (the CLI, the service, corpus
    jobs) name the file line or the request pair themselves. ``exact`` is False when the sentence
    was certainly too long and not tokenized in full: ``tokens`` (``limit + 1``) is then a lower
    bound."""

    def __init__(self, message: str, *, pair: int, side: str, tokens: int, limit: int, exact: bool = True,
                 unit: str = "tokens"):
        super().__init__(message)
        self.pair, self.side, self.tokens, self.limit, self.exact = pair, side, tokens, limit, exact
        self.unit = unit

    def describe(self) -> str:
        """'the source sentence has 40 tokens (...), more than the model's maximum of 32' without
        the pair: front ends put their own location (file line, request pair) before it."""
        if self.unit == "characters":
            return (f"the {self.side} sentence has {self.tokens} characters, more than this bundle's limit of "
                    f"{self.limit} (32 per model position)")
        count = f"{self.tokens} tokens (special tokens included)" if self.exact else \
            f"more than {self.limit} tokens ({self.limit} or more words)"
        return f"the {self.side} sentence has {count}, more than the model's maximum of {self.limit}"


def words_of(sentence: Sentence) -> list[str]:
    """The engine's rule: a string is split on whitespace, a sequence is the words."""
    return sentence.split() if isinstance(sentence, str) else list(sentence)


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


def _surely_tokens(words: Sequence[str]) -> int:
    """How many words give at least one token: those holding a letter or a digit, which no
    normalizer removes."""
    return sum(1 for word in words if any(ch.isalnum() for ch in word))


class Preparer:
    """Tokenizes with the bundle's tokenizer and applies the length policy. The tokenizer given
    serves the thread that made the Preparer; other threads (the service's HTTP layer) get their
    own instance, loaded on first use: no tokenizer state is shared between threads."""

    def __init__(self, root, manifest, tokenizer):
        self.root, self.manifest, self.tokenizer = root, manifest, tokenizer
        self.max_chars = max_sentence_chars(manifest.max_positions)
        self._owner_thread = threading.get_ident()
        self._local = threading.local()

    def prepare(self, src: list[list[str]], tgt: list[list[str]], src_lang, tgt_lang, on_too_long: str,
                start: int = 0) -> PreparedPairs:
        """Tokenize (languages already resolved) and apply the length policy; ``start``: the call's
        index of the first pair, for error messages."""
        check_length_policy(on_too_long)
        clock = time.perf_counter()
        tokenizer = self._thread_tokenizer()
        encoded = self._encode(src, src_lang, tokenizer) + self._encode(tgt, tgt_lang, tokenizer)
        seconds = time.perf_counter() - clock
        keep = self._length_policy(encoded, src + tgt, len(src), on_too_long, start)
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

    def _hopeless(self, words: list[str]) -> bool:
        """Certainly too long, known without tokenizing (bounds 1 and 2 of the module docstring)."""
        limit = self.manifest.max_positions
        return sum(map(len, words)) > self.max_chars or (len(words) >= limit and _surely_tokens(words) >= limit)

    def _encode(self, sentences: list[list[str]], lang, tokenizer):
        """Token ids and word ids per sentence; a hopeless sentence is not tokenized and gets a
        placeholder of ``limit + 1`` padding ids, so the length policy refuses or skips it."""
        limit = self.manifest.max_positions
        hopeless = [self._hopeless(words) for words in sentences]
        if any(hopeless):
            sentences = [[] if h else words for words, h in zip(sentences, hopeless)]
        encoded = list(tokenizer.encode_batch(sentences, lang))
        for k in np.flatnonzero(hopeless).tolist():
            encoded[k] = (np.full(limit + 1, self.manifest.tokenizer.pad_id, np.int64), np.full(limit + 1, -1, np.int32))
        return encoded

    def _length_policy(self, encoded, sentences, n_pairs: int, on_too_long: str, start: int) -> np.ndarray:
        limit = self.manifest.max_positions
        lengths = np.fromiter((len(ids) for ids, _ in encoded), dtype=np.int64, count=len(encoded))
        fits = lengths <= limit
        if fits.all():
            return fits
        if on_too_long == "error":
            raise self._too_long(int(np.flatnonzero(~fits)[0]), encoded, sentences, n_pairs, start)
        skipped = ~(fits[:n_pairs] & fits[n_pairs:])
        return np.concatenate([~skipped, ~skipped])

    def _too_long(self, bad: int, encoded, sentences, n_pairs: int, start: int) -> TooLongError:
        side, pair = ("source", bad) if bad < n_pairs else ("target", bad - n_pairs)
        chars = sum(map(len, sentences[bad]))
        if chars > self.max_chars:
            error = TooLongError("", pair=start + pair, side=side, tokens=chars, limit=self.max_chars,
                                 unit="characters")
        else:
            limit = self.manifest.max_positions
            # _encode's placeholder for a sentence not tokenized has no word tokens
            error = TooLongError("", pair=start + pair, side=side, tokens=len(encoded[bad][0]), limit=limit,
                                 exact=bool((encoded[bad][1] >= 0).any()))
        hint = "split it, or skip such pairs (on_too_long='skip', CLI --skip-long)"
        error.args = (f"pair {start + pair}: {error.describe()}; {hint}",)
        return error
