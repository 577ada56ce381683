"""BERT-family tokenization (mBERT, LaBSE, XLM-R, multilingual-e5) with the ``tokenizers`` library.

The bundle's ``tokenizer.json`` is the reference tokenizer's own backend (the export stage saves
``tokenizer.backend_tokenizer`` as loaded by transformers, so settings transformers applies at
load time, e.g. BertTokenizerFast's do_lower_case, are included). Encoding pre-split words with
``is_pretokenized=True`` is the very call ``AutoTokenizer(...)(words, is_split_into_words=True)``
makes; we ask for no special tokens and add the spec's ``prefix_ids`` / ``suffix_ids`` ourselves
(``[CLS]``/``[SEP]``, ``<s>``/``</s>``) with word id -1, which is what the reference's template
post-processor produces. Truncation and padding stored in the file are switched off: the
reference call uses neither.

These models have no language codes: ``lang`` is accepted and ignored whatever it is, so the
engine can pass each side's language uniformly to any model.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from pathlib import Path

import numpy as np

from transalign.engine.bundle import BundleError, TokenizerSpec
from transalign.engine.tokenizers.base import Encoded, check_split, wrap

__all__ = ["HfWordTokenizer"]


class HfWordTokenizer:
    """Pre-split words -> ``prefix pieces... suffix`` ids and word indices, via tokenizers."""

    def __init__(self, tokenizer_file: str | Path, *, prefix_ids: Sequence[int], suffix_ids: Sequence[int],
                 lowercase: bool = False) -> None:
        from tokenizers import Tokenizer

        try:
            self._tok = Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:  # tokenizers raises a bare Exception for malformed files
            raise BundleError(f"{tokenizer_file} is not a readable tokenizer.json ({exc}); "
                              "export the bundle again") from exc
        self._tok.no_truncation()
        self._tok.no_padding()
        self._prefix = tuple(int(i) for i in prefix_ids)
        self._suffix = tuple(int(i) for i in suffix_ids)
        self._lowercase = lowercase

    @classmethod
    def from_spec(cls, path: Path, spec: TokenizerSpec) -> "HfWordTokenizer":
        return cls(path, prefix_ids=spec.prefix_ids, suffix_ids=spec.suffix_ids, lowercase=spec.lowercase)

    def check_lang(self, lang: str | None) -> None:
        """Every value is fine: BERT-family models have no language codes."""

    def encode(self, words: Sequence[str], lang: str | None = None) -> Encoded:
        return self.encode_batch([words], lang)[0]

    def encode_batch(self, sentences: Sequence[Sequence[str]], lang: str | None = None) -> list[Encoded]:
        check_split(sentences)
        batch = [[w.lower() for w in sentence] if self._lowercase else list(sentence) for sentence in sentences]
        encodings = self._tok.encode_batch(batch, is_pretokenized=True, add_special_tokens=False)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        starts = np.zeros(len(encodings) + 1, dtype=np.int64)
        np.cumsum(lengths, out=starts[1:])
        total = int(starts[-1])
        ids = np.fromiter(chain.from_iterable(e.ids for e in encodings), dtype=np.int64, count=total)
        word_ids = [e.word_ids for e in encodings]
        try:
            wids = np.fromiter(chain.from_iterable(word_ids), dtype=np.int32, count=total)
        except TypeError:  # a token without a word (None): only if the file adds tokens itself
            wids = np.array([-1 if w is None else w for w in chain.from_iterable(word_ids)], dtype=np.int32)
        return wrap(ids, wids, starts, self._prefix, self._suffix)
