"""Words -> token ids at run time, without torch or transformers.

The engine tokenizes *pre-split* words, exactly like the reference
``AutoTokenizer(src_lang=lang)(words, is_split_into_words=True)``: every word is tokenized on
its own, every token knows the index of the word it came from, and the sequence is wrapped in
the model's special tokens (NLLB ``[lang_code] ... [</s>]``, BERT ``[CLS] ... [SEP]``).

Two implementations, chosen by the bundle's ``TokenizerSpec.kind``:

- ``"sentencepiece-nllb"`` (`tokenization_nllb`): sentencepiece BPE plus a faithful copy of
  the Hugging Face fast tokenizer's normalization and pre-tokenization;
- ``"hf-tokenizers"`` (`tokenization_hf`): the ``tokenizers`` library with the bundle's
  ``tokenizer.json`` (mBERT, LaBSE, XLM-R, ...).

Both return, per sentence, ``ids`` (int64) and ``word_ids`` (int32, ``-1`` for the special
tokens) and both batch the work (one native call per batch, numpy for the bookkeeping).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from itertools import chain
from pathlib import Path
from typing import Protocol

import numpy as np

from transalign.engine.bundle import BundleError, TokenizerSpec

__all__ = ["Encoded", "WordTokenizer", "load_tokenizer"]

Encoded = tuple[np.ndarray, np.ndarray]  # (ids int64 [n], word_ids int32 [n])


class WordTokenizer(Protocol):
    """What the engine needs from a tokenizer."""

    def encode(self, words: Sequence[str], lang: str | None) -> Encoded:
        """ids int64 [n_tokens] INCLUDING the special tokens; word_ids int32 [n_tokens]: the
        word index of each token, -1 for the special tokens."""
        ...

    def encode_batch(self, sentences: Sequence[Sequence[str]], lang: str | None) -> list[Encoded]:
        """`encode` for many sentences of one language, in one native call."""
        ...

    def check_lang(self, lang: str | None) -> None:
        """Raise ValueError if `lang` cannot be used with this tokenizer."""
        ...


def load_tokenizer(bundle_dir: str | Path, spec: TokenizerSpec, num_threads: int | None = None) -> WordTokenizer:
    """The runtime tokenizer that `spec` describes, reading its file from `bundle_dir`.

    ``num_threads`` caps the native threads of the batch encoders (sentencepiece; None = all
    cores). For ``"hf-tokenizers"`` the ``tokenizers`` library sizes its own thread pool
    (environment variable ``RAYON_NUM_THREADS``).
    """
    from transalign.engine.bundle import bundle_file

    path = bundle_file(Path(bundle_dir), spec.file, "tokenizer file")
    if not path.is_file():
        raise BundleError(f"tokenizer file {path} is missing; export the bundle again")
    if spec.kind == "sentencepiece-nllb":
        from transalign.engine.tokenization_nllb import NllbWordTokenizer

        return NllbWordTokenizer.from_spec(path, spec, num_threads=num_threads)
    if spec.kind == "hf-tokenizers":
        from transalign.engine.tokenization_hf import HfWordTokenizer

        return HfWordTokenizer.from_spec(path, spec)
    raise BundleError(f"unknown tokenizer kind {spec.kind!r}; known: {', '.join(TokenizerSpec.KINDS)}")


def unknown_lang_error(lang: object, known: Sequence[str]) -> ValueError:
    """A ValueError naming `lang`, the closest known codes and how many codes there are."""
    by_lower = {code.lower(): code for code in known}
    exact = by_lower.get(str(lang).lower())  # 'CES_latn' -> ces_Latn first
    close = [by_lower[c] for c in difflib.get_close_matches(str(lang).lower(), list(by_lower), n=5, cutoff=0.5)]
    if exact:
        close = [exact] + [c for c in close if c != exact][:4]
    if not close and isinstance(lang, str):  # 'english' / 'ENG' -> eng_Latn, ...
        close = sorted(code for code in known if code.lower().startswith(lang.lower()[:3]))[:5]
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
    for sentence in sentences:
        if isinstance(sentence, str):
            raise TypeError(f"expected a sequence of words per sentence, got the string {sentence[:40]!r}; "
                            "split it into words first (e.g. sentence.split())")
    counts = np.fromiter(map(len, sentences), dtype=np.int64, count=len(sentences))
    starts = np.zeros(len(sentences) + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    words = list(chain.from_iterable(sentences))
    local = np.arange(len(words), dtype=np.int64) - np.repeat(starts[:-1], counts)
    return words, local, starts
