"""Words -> token ids at run time, without torch or transformers.

The engine tokenizes *pre-split* words, exactly like the reference
``AutoTokenizer(src_lang=lang)(words, is_split_into_words=True)``: every word is tokenized on
its own, every token knows the index of the word it came from, and the sequence is wrapped in
the model's special tokens (NLLB ``[lang_code] ... [</s>]``, BERT ``[CLS] ... [SEP]``).

Two implementations, chosen by the bundle's ``TokenizerSpec.kind``:

- ``"sentencepiece-nllb"`` (`tokenizers.nllb`): sentencepiece BPE plus a faithful copy of
  the Hugging Face fast tokenizer's normalization and pre-tokenization;
- ``"hf-tokenizers"`` (`tokenizers.hf`): the ``tokenizers`` library with the bundle's
  ``tokenizer.json`` (mBERT, LaBSE, XLM-R, ...); for a Unigram ``tokenizer.json`` (XLM-R family,
  the bundles whose spec names a ``sentencepiece_file``) the same pipeline with the Unigram model
  replaced by its Viterbi in Python (`tokenizers.unigram`): the same ids, ~230 MB less memory.

Both return, per sentence, ``ids`` (int64) and ``word_ids`` (int32, ``-1`` for the special
tokens) and both batch the work (one native call per batch, numpy for the bookkeeping). What
they share (flattening sentences, wrapping in special tokens, the unknown-language message)
is in `tokenizers.base`, which imports neither implementation: no import cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from transalign.engine.bundle import BundleError, TokenizerSpec, bundle_file
from transalign.engine.tokenizers.base import Encoded

__all__ = ["Encoded", "WordTokenizer", "load_tokenizer"]


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


def load_tokenizer(bundle_dir: str | Path, spec: TokenizerSpec) -> WordTokenizer:
    """The runtime tokenizer that `spec` describes, reading its file from `bundle_dir`."""
    path = bundle_file(Path(bundle_dir), spec.file, "tokenizer file")
    if not path.is_file():
        raise BundleError(f"tokenizer file {path} is missing; export the bundle again")
    if spec.kind == "sentencepiece-nllb":
        from transalign.engine.tokenizers.nllb import NllbWordTokenizer

        return NllbWordTokenizer.from_spec(path, spec)
    if spec.kind == "hf-tokenizers":
        from transalign.engine.tokenizers.hf import HfWordTokenizer

        if spec.sentencepiece_file:  # export writes one exactly for a Unigram tokenizer.json
            from transalign.engine.tokenizers.unigram import UnigramWordTokenizer

            lean = UnigramWordTokenizer.from_spec(path, spec)
            if lean is not None:
                return lean
        return HfWordTokenizer.from_spec(path, spec)
    raise BundleError(f"unknown tokenizer kind {spec.kind!r}; known: {', '.join(TokenizerSpec.KINDS)}")
