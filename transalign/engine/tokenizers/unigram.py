"""XLM-R-family tokenization (multilingual-e5, XLM-R) without the Unigram model's memory.

Loading an XLM-R ``tokenizer.json`` with the ``tokenizers`` library costs about 282 MB of
resident memory, almost all of it the Unigram model (its byte trie over 250,002 pieces); this
route costs about 65 MB (benchmarks/int8_memory.py). It keeps everything else of the
``tokenizers`` pipeline, from the same file, and replaces only the model:

- added tokens, normalizer and pre-tokenizer are the library's own, read from the file;
- the model becomes a ``WordLevel`` over the same pieces with the same ids and unknown piece
  (~40 MB; scores kept in a 2 MB array): it maps each final piece to its id, exactly as the
  Unigram model's ``tokenize`` maps the strings its Viterbi returns;
- a last pre-tokenizer step (`UnigramSegmenter`, Python) splits every pre-token into pieces with
  the Unigram model's own Viterbi (``encode_optimized`` in tokenizers' ``models/unigram``):
  scores in double as parsed from the file, a node replaced only by a strictly better score so
  ties go to the earliest start, an unknown character (no one-character piece starts there)
  scored lowest score - 10, consecutive unknowns fused into one piece.

So ids and word indices are those of `tokenizers.hf.HfWordTokenizer` (tests/
test_tokenizer_sentencepiece.py checks them on csen and fuzzed words). Python's Viterbi is slower
than Rust's, so finished words are kept in a bounded cache: the tokens of a pre-split word
depend on that word alone (each is tokenized on its own, ``is_pretokenized=True``).

Used for bundles whose spec names a ``sentencepiece_file`` (export writes one exactly when
``tokenizer.json`` holds a Unigram model, transalign/export/spm_model.py); `lean_unigram` returns
None for a file this route does not reproduce (byte fallback, no unknown piece), and
`load_tokenizer` then uses the ``tokenizers`` route.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Sequence
from itertools import islice
from pathlib import Path

import numpy as np

from transalign.engine.bundle import BundleError, TokenizerSpec
from transalign.engine.tokenizers.base import Encoded, assemble, sentence_layout

__all__ = ["CACHE_WORDS", "UnigramSegmenter", "UnigramWordTokenizer", "lean_unigram"]

K_UNK_PENALTY = 10.0  # tokenizers' kUnkPenalty (as sentencepiece's)
CACHE_WORDS = 65536  # finished words kept (13 MB measured, 5 ids a word); the oldest half dropped when full


class UnigramSegmenter:
    """A ``tokenizers`` custom pre-tokenizer: splits each pre-token into the pieces the Unigram
    model's Viterbi chooses. ``lookup(piece) -> id or None``; ``scores[id]`` a double."""

    def __init__(self, lookup, scores: Sequence[float], longest: int) -> None:
        self._lookup = lookup
        self._scores = scores
        self._unk_score = min(scores) - K_UNK_PENALTY
        self._longest = longest

    def pre_tokenize(self, pretok) -> None:
        pretok.split(self._split)

    def _split(self, _index, normalized):
        return [normalized[start:end] for start, end in self.segment(str(normalized))]

    def segment(self, text: str) -> list[tuple[int, int]]:
        """(start, end) of each piece of `text`, in order."""
        n = len(text)
        lookup, scores, longest, unk_score = self._lookup, self._scores, self._longest, self._unk_score
        best: list[float | None] = [0.0] + [None] * n  # best score of a path ending at position i
        start_of = [0] * (n + 1)  # where the last piece of that path starts
        unknown = [False] * (n + 1)  # whether that piece is an unknown character
        for start in range(n):
            here = best[start]
            single = False
            for end in range(start + 1, min(n, start + longest) + 1):
                piece = lookup(text[start:end])
                if piece is None:
                    continue
                candidate = scores[piece] + here
                if best[end] is None or candidate > best[end]:
                    best[end], start_of[end], unknown[end] = candidate, start, False
                single = single or end == start + 1
            if not single:
                candidate = unk_score + here
                if best[start + 1] is None or candidate > best[start + 1]:
                    best[start + 1], start_of[start + 1], unknown[start + 1] = candidate, start, True
        spans: list[list] = []  # [start, end, unknown], last piece first
        end = n
        while end > 0:
            start = start_of[end]
            if unknown[end] and spans and spans[-1][2]:
                spans[-1][0] = start  # fuse with the unknown after it
            else:
                spans.append([start, end, unknown[end]])
            end = start
        return [(start, end) for start, end, _ in reversed(spans)]


def lean_unigram(tokenizer_file: str | Path):
    """The ``tokenizers.Tokenizer`` of this route for `tokenizer_file`, or None when the file's
    model is not a Unigram this route reproduces.

    The file is read once by Python's json (its scores are the library's doubles: the parsed
    literals are the shortest round-trip digits the library wrote); the library then reads the
    file's added tokens, normalizer and pre-tokenizer around a ``WordLevel`` holding only the
    added tokens and the unknown piece (the same ids), and the full ``WordLevel`` is built from a
    dict: no second parse of the 250,002 pieces.
    """
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import PreTokenizer
    from tokenizers.pre_tokenizers import Sequence as PreSequence

    def unreadable(exc: Exception) -> BundleError:
        return BundleError(f"{tokenizer_file} is not a readable tokenizer.json ({exc}); export the bundle again")

    try:
        config = json.loads(Path(tokenizer_file).read_bytes())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise unreadable(exc) from exc
    model = config.get("model") if isinstance(config, dict) else None
    if not isinstance(model, dict) or model.get("type") != "Unigram" or model.get("byte_fallback"):
        return None
    vocab, unk_id = model.get("vocab") or [], model.get("unk_id")
    if not isinstance(unk_id, int) or not 0 <= unk_id < len(vocab):
        return None
    unk = vocab[unk_id][0]
    scores = array("d", np.fromiter((score for _, score in vocab), dtype=np.float64, count=len(vocab)).tobytes())
    longest = max(len(piece) for piece, _ in vocab)
    added = {token["content"]: token["id"] for token in config.get("added_tokens") or []}
    config["model"] = {"type": "WordLevel", "vocab": {**added, unk: unk_id}, "unk_token": unk}
    try:
        tok = Tokenizer.from_str(json.dumps(config))
        del config, model
        tok.model = WordLevel({piece: i for i, (piece, _) in enumerate(vocab)}, unk_token=unk)
    except Exception as exc:  # tokenizers raises a bare Exception for what it cannot read
        raise unreadable(exc) from exc
    del vocab
    segmenter = PreTokenizer.custom(UnigramSegmenter(tok.model.token_to_id, scores, longest))
    tok.pre_tokenizer = segmenter if tok.pre_tokenizer is None else PreSequence([tok.pre_tokenizer, segmenter])
    tok.no_truncation()
    tok.no_padding()
    return tok


class UnigramWordTokenizer:
    """Pre-split words -> ``prefix pieces... suffix`` ids and word indices (`lean_unigram`'s
    tokenizer, finished words cached)."""

    def __init__(self, tok, *, prefix_ids: Sequence[int], suffix_ids: Sequence[int], lowercase: bool = False) -> None:
        self._tok = tok
        self._prefix = tuple(int(i) for i in prefix_ids)
        self._suffix = tuple(int(i) for i in suffix_ids)
        self._lowercase = lowercase
        self._cache: dict[str, tuple[int, ...]] = {}

    @classmethod
    def from_spec(cls, path: Path, spec: TokenizerSpec) -> "UnigramWordTokenizer | None":
        tok = lean_unigram(path)
        if tok is None:
            return None
        return cls(tok, prefix_ids=spec.prefix_ids, suffix_ids=spec.suffix_ids, lowercase=spec.lowercase)

    def check_lang(self, lang: str | None) -> None:
        """Every value is fine: XLM-R-family models have no language codes."""

    def encode(self, words: Sequence[str], lang: str | None = None) -> Encoded:
        return self.encode_batch([words], lang)[0]

    def encode_batch(self, sentences: Sequence[Sequence[str]], lang: str | None = None) -> list[Encoded]:
        words, local, starts = sentence_layout(sentences)
        known = self._lookup(words)
        return assemble([known[w] for w in words], local, None, starts, self._prefix, self._suffix)

    def _lookup(self, words: list[str]) -> dict[str, tuple[int, ...]]:
        """The ids of every distinct word, from the cache or computed (and cached). Returned in a
        local dict, so another thread evicting from the cache meanwhile changes nothing."""
        cache = self._cache
        known = {}
        missing = []
        for word in dict.fromkeys(words):
            ids = cache.get(word)
            if ids is None:
                missing.append(word)
            else:
                known[word] = ids
        if missing:
            # one call per word: encode_batch would run the Python segmenter from the library's
            # worker threads, which then mostly wait for the GIL (twice slower here)
            encode = self._tok.encode
            if len(cache) + len(missing) > CACHE_WORDS:  # drop the oldest half or more (insertion order)
                drop = max(len(cache) // 2, len(cache) + len(missing) - CACHE_WORDS)
                for word in list(islice(cache, drop)):
                    cache.pop(word, None)
            for word in missing:
                ids = tuple(encode([word.lower() if self._lowercase else word], is_pretokenized=True,
                                   add_special_tokens=False).ids)
                known[word] = cache[word] = ids
        return known
