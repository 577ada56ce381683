"""Synthetic sentence pairs for benchmarking a bundle without the user's own data.

Words come from the bundle's own tokenizer vocabulary, so every bundle (NLLB sentencepiece or a
BERT-family ``tokenizer.json``) gets words it tokenizes like text: word-initial pieces
(``▁word``, ``Ġword`` or WordPiece's plain pieces), drawn with Zipf-like frequencies by vocabulary
rank, about one word in five extended by a continuation piece (``word`` + ``##ing``-like) so words
split into several subwords, and a final full stop on most sentences. Sentence lengths follow a
log-normal distribution (median 16 words, like news and parliament text; about 5% of sentences over
40 words) and each target length is the source length times a log-normal ratio, as in
translations. Everything is drawn from one seeded generator: the same seed, bundle and N give the
same pairs. The report states the subwords per word the tokenizer actually produced.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from transalign.engine.bundle import TokenizerSpec

MEDIAN_WORDS, LOG_SIGMA, RATIO_SIGMA = 16, 0.55, 0.2
MIN_WORDS, MAX_WORDS = 2, 120
COMPOUND_SHARE, STOP_SHARE = 0.2, 0.9
WORD_MARKERS = ("\u2581", "\u0120")  # sentencepiece "▁", byte-level BPE "Ġ"
MIN_VOCABULARY = 20


def _pieces(bundle: Path, spec: TokenizerSpec) -> list[str]:
    """The tokenizer's ordinary pieces in id order (no control, unknown or byte pieces)."""
    path = Path(bundle) / spec.file
    if spec.kind == "sentencepiece-nllb":
        import sentencepiece as spm

        sp = spm.SentencePieceProcessor(model_file=str(path))
        return [sp.id_to_piece(i) for i in range(sp.get_piece_size())
                if not (sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i) or sp.is_unused(i))]
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_file(str(path)).get_vocab(with_added_tokens=False)
    return sorted(vocab, key=vocab.get)


def vocabulary(bundle: Path, spec: TokenizerSpec) -> tuple[list[str], list[str]]:
    """(word-initial pieces as words, continuation pieces), alphabetic only, in id order."""
    pieces = _pieces(bundle, spec)
    marked = any(p.startswith(WORD_MARKERS) for p in pieces)
    starts, rest = [], []
    for piece in pieces:
        if piece.startswith("##"):
            rest.append(piece[2:])
        elif marked and not piece.startswith(WORD_MARKERS):
            rest.append(piece)
        else:
            starts.append(piece.lstrip("".join(WORD_MARKERS)))
    starts = [w for w in starts if len(w) >= 2 and w.isalpha()]
    rest = [w for w in rest if w.isalpha()]
    if len(starts) < MIN_VOCABULARY:
        raise ValueError(f"the bundle's tokenizer ({spec.file}) has only {len(starts)} alphabetic word pieces; "
                         "too few for synthetic sentences: benchmark with your own --src/--tgt files")
    return starts, rest


class _Zipf:
    """Draws indices with p(rank) proportional to 1 / (rank + 10): frequent pieces have low ids."""

    def __init__(self, n_items: int):
        cdf = np.cumsum(1.0 / (np.arange(n_items) + 10.0))
        self.cdf = cdf / cdf[-1]

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return np.minimum(np.searchsorted(self.cdf, rng.random(size), side="right"), len(self.cdf) - 1)


def _sentence(rng: np.random.Generator, n_words: int, starts: list[str], rest: list[str],
              zipf_starts: _Zipf, zipf_rest: _Zipf | None) -> list[str]:
    words = [starts[k] for k in zipf_starts.draw(rng, n_words)]
    if zipf_rest is not None:
        compound = np.flatnonzero(rng.random(n_words) < COMPOUND_SHARE)
        for k, r in zip(compound.tolist(), zipf_rest.draw(rng, len(compound)).tolist()):
            words[k] += rest[r]
    if rng.random() < STOP_SHARE:
        words.append(".")
    return words


def synthetic_pairs(bundle: Path, spec: TokenizerSpec, n: int, seed: int = 0, max_words: int = MAX_WORDS
                    ) -> tuple[list[list[str]], list[list[str]]]:
    """n deterministic (source, target) word lists (see the module docstring)."""
    if n < 1:
        raise ValueError(f"--synthetic must be a positive number of pairs, got {n}")
    starts, rest = vocabulary(bundle, spec)
    rng = np.random.default_rng(seed)
    upper = max(MIN_WORDS, min(MAX_WORDS, max_words))
    src_len = np.clip(np.rint(rng.lognormal(np.log(MEDIAN_WORDS), LOG_SIGMA, n)), MIN_WORDS, upper).astype(int)
    ratio = rng.lognormal(0.0, RATIO_SIGMA, n)
    tgt_len = np.clip(np.rint(src_len * ratio), MIN_WORDS, upper).astype(int)
    zipf_starts, zipf_rest = _Zipf(len(starts)), (_Zipf(len(rest)) if rest else None)
    src = [_sentence(rng, int(k), starts, rest, zipf_starts, zipf_rest) for k in src_len]
    tgt = [_sentence(rng, int(k), starts, rest, zipf_starts, zipf_rest) for k in tgt_len]
    return src, tgt


def fit_to_model(sentences: list[list[str]], tokenizer, lang: str | None, max_positions: int) -> list[list[str]]:
    """Drop words from the end of any sentence whose tokens (specials included) exceed the model's
    maximum, so synthetic pairs never hit the too-long error; real files are not changed."""
    out = []
    for words, (ids, _) in zip(sentences, tokenizer.encode_batch(sentences, lang)):
        while len(ids) > max_positions and len(words) > 1:
            words = words[:max(1, len(words) * max_positions // len(ids))] if len(words) > 8 else words[:-1]
            ids = tokenizer.encode(words, lang)[0]
        out.append(words)
    return out
