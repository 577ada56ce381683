"""What both runtime tokenizers share: the (ids, word_ids) result type, the check that a
sentence is a sequence of words, flattening a batch of sentences, wrapping each sentence in the
model's special tokens, and the message for an unknown language code. Imports neither
implementation (`tokenizers.nllb`, `tokenizers.hf` import this module)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import numpy as np

__all__ = ["Encoded", "assemble", "check_split", "sentence_layout", "unknown_lang_error", "wrap"]

Encoded = tuple[np.ndarray, np.ndarray]  # (ids int64 [n], word_ids int32 [n])


def check_split(sentences: Sequence[Sequence[str]]) -> None:
    """Raise TypeError if a sentence is a string rather than a sequence of words (iterating a
    string would tokenize it character by character)."""
    for sentence in sentences:
        if isinstance(sentence, str):
            raise TypeError(f"expected a sequence of words per sentence, got the string {sentence[:40]!r}; "
                            "split it into words first (e.g. sentence.split())")


def unknown_lang_error(lang: object, known: Sequence[str]) -> ValueError:
    """A ValueError naming `lang`, the closest known codes (`engine.options.close_codes`, the
    engine's one rule for suggestions) and how many codes there are. The engine resolves codes
    before tokenizing (`engine.options.resolve_languages`); this guards direct tokenizer use."""
    from transalign.engine.options import close_codes

    close = close_codes(str(lang), known)
    hint = f"; closest: {', '.join(close)}" if close else ""
    return ValueError(f"unknown language code {lang!r} for this tokenizer{hint} "
                      f"({len(known)} codes known, e.g. {', '.join(sorted(known)[:3])})")


def assemble(pieces: list[Sequence[int]], unit_word: np.ndarray, table: np.ndarray | None,
             unit_starts: np.ndarray, prefix: Sequence[int], suffix: Sequence[int]) -> list[Encoded]:
    """Concatenate per-unit token lists into one ``prefix + tokens + suffix`` per sentence.

    ``pieces[k]`` are the raw ids of unit k (a word or part of one), ``unit_word[k]`` the index
    of that unit's word *within its sentence*; units are in sentence order and ``unit_starts``
    (length n_sentences + 1) gives each sentence's first unit. ``table``, if given, maps raw ids
    to model ids.
    """
    lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
    total = int(lengths.sum())
    raw = np.fromiter(chain.from_iterable(pieces), dtype=np.int64, count=total)
    ids = table[raw] if table is not None else raw
    word_ids = np.repeat(np.asarray(unit_word, dtype=np.int32), lengths)
    unit_cum = np.zeros(len(pieces) + 1, dtype=np.int64)
    np.cumsum(lengths, out=unit_cum[1:])
    return wrap(ids, word_ids, unit_cum[unit_starts], prefix, suffix)


def wrap(ids: np.ndarray, word_ids: np.ndarray, token_starts: np.ndarray,
         prefix: Sequence[int], suffix: Sequence[int]) -> list[Encoded]:
    """Split the body tokens of all sentences (sentence s = ``token_starts[s]:token_starts[s+1]``)
    and wrap each in ``prefix ... suffix`` (word id -1). Returns views into two big arrays."""
    n_sent = len(token_starts) - 1
    total = len(ids)
    n_pre, extra = len(prefix), len(prefix) + len(suffix)
    out_start = token_starts + extra * np.arange(n_sent + 1)
    out_ids = np.empty(total + extra * n_sent, dtype=np.int64)
    out_wids = np.full(total + extra * n_sent, -1, dtype=np.int32)
    # body token t of sentence s lands at t + extra * s + n_pre
    sentence_of = np.repeat(np.arange(n_sent), np.diff(token_starts))
    dest = np.arange(total) + extra * sentence_of + n_pre
    out_ids[dest] = ids
    out_wids[dest] = word_ids
    for k, token in enumerate(prefix):
        out_ids[out_start[:-1] + k] = token
    for k, token in enumerate(suffix):
        out_ids[out_start[1:] - len(suffix) + k] = token
    bounds = out_start.tolist()
    return [(out_ids[a:b], out_wids[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def sentence_layout(sentences: Sequence[Sequence[str]]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Flatten sentences: (all words, index of each word within its sentence, sentence starts)."""
    check_split(sentences)
    counts = np.fromiter(map(len, sentences), dtype=np.int64, count=len(sentences))
    starts = np.zeros(len(sentences) + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    words = list(chain.from_iterable(sentences))
    local = np.arange(len(words), dtype=np.int64) - np.repeat(starts[:-1], counts)
    return words, local, starts
