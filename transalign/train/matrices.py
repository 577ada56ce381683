"""Word links -> subword gold matrices, with the model's own tokenizer.

Each side is tokenized as the aligner does (pre-split words, ``is_split_into_words=True``; NLLB
with its language code), and the two special tokens are dropped, as in the reference
extraction. The gold matrix of a pair has one row per source subword and one column per target
subword: ``G[a, b] = 1`` iff the words of subwords a and b are linked, i.e. every subword of a
linked word pair is linked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from transalign.train.gold import GoldPair, TrainError


@dataclass(frozen=True)
class Encoded:
    """One side of a pair: token ids with specials, the word of each inner subword."""

    ids: tuple[int, ...]
    word_ids: np.ndarray  # int64 [len(ids) - 2]


@dataclass(frozen=True)
class Example:
    src: Encoded
    tgt: Encoded
    gold: np.ndarray | None  # float32 [n_src_subwords, n_tgt_subwords]; None: self-training (parallel text)
    source: str  # "DIR:LINE" or "FILE:LINE" for messages


def encode_words(tokenizer, words, lang: str | None) -> Encoded:
    """Token ids of ``words`` (specials included) and the word index of each inner subword."""
    if not getattr(tokenizer, "is_fast", False):
        raise TrainError("fine-tuning needs a fast (tokenizers-backed) tokenizer for word ids; "
                         "the checkpoint has no tokenizer.json")
    if lang is not None:
        tokenizer.src_lang = lang
    enc = tokenizer(list(words), is_split_into_words=True)
    word_ids = enc.word_ids()
    if len(word_ids) < 2 or word_ids[0] is not None or word_ids[-1] is not None:
        raise TrainError(f"unexpected tokenization {enc['input_ids']!r}: expected a special token at each end")
    inner = word_ids[1:-1]
    if any(w is None for w in inner):
        raise TrainError(f"unexpected special token inside the sequence {enc['input_ids']!r}")
    return Encoded(tuple(enc["input_ids"]), np.asarray(inner, dtype=np.int64))


def gold_matrix(src_words: np.ndarray, tgt_words: np.ndarray, links, n_src: int, n_tgt: int) -> np.ndarray:
    """``G[a, b] = [(src_words[a], tgt_words[b]) in links]`` for word counts n_src x n_tgt."""
    word_level = np.zeros((n_src, n_tgt), dtype=np.float32)
    if links:
        i, j = np.asarray(sorted(links), dtype=np.int64).T
        word_level[i, j] = 1.0
    return word_level[np.ix_(src_words, tgt_words)]


def build_example(tokenizer, pair: GoldPair, src_lang, tgt_lang, links: str, source: str) -> Example:
    src = encode_words(tokenizer, pair.src, src_lang)
    tgt = encode_words(tokenizer, pair.tgt, tgt_lang)
    gold = gold_matrix(src.word_ids, tgt.word_ids, pair.links(links), len(pair.src), len(pair.tgt))
    return Example(src, tgt, gold, source)
