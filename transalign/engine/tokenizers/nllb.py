r"""NLLB tokenization with sentencepiece, token for token what the Hugging Face fast tokenizer does.

The reference tokenizes with ``AutoTokenizer`` = ``NllbTokenizerFast`` (a ``tokenizers`` BPE
converted from the sentencepiece model), so that one is the ground truth. For one pre-split
word it does, in order (tokenizers 0.22 / transformers 4.57, read from the Rust sources and
checked by tests/test_tokenization.py):

1. *Added tokens, raw*: ``<s> <pad> </s> <unk>`` and every language code (``eng_Latn``) are
   cut out of the raw word wherever they occur, leftmost-longest, and become their own id.
   They keep the word's index (they are not special in ``word_ids()``).
2. *Normalizer*, on each remaining segment: ``Precompiled`` (the model's nmt_nfkc charsmap)
   then ``Strip(right)`` + ``Replace(" {2,}", "▁")`` (what transformers 4.57 writes when it
   converts the sentencepiece model: ``whitespace="strip"``) or only ``Replace(" {2,}", " ")``
   (older converters; tokenizer.json files saved by them are still in use: ``whitespace="keep"``).
3. *Added tokens, normalized*: ``<mask>`` (lstrip) is cut out of the normalized text.
4. *Metaspace*: ``" "`` -> ``"▁"``, a ``"▁"`` prepended to every non-empty segment that does
   not start with one, a split before every ``"▁"``.
5. *BPE* on each split; consecutive unknown characters fuse into one ``<unk>``.
6. Ids: sentencepiece id p -> p + piece_offset (fairseq), sentencepiece's unknown -> unk_id;
   the sequence is ``[lang_code] tokens [</s>]``.

Step 2 is where calling sentencepiece with its own normalizer (what the slow ``NllbTokenizer``
does) goes wrong: ``Precompiled`` works on *grapheme clusters*; a cluster shorter than 6 bytes
that starts with a charsmap key is replaced as a whole by that key's mapping (the rest of the
cluster is dropped), longer clusters are mapped code point by code point. sentencepiece applies
the longest rule at each position instead. So step 2 here calls the very same ``Precompiled``
normalizer from the ``tokenizers`` library, once per batch on all segments joined by NUL (a
grapheme-cluster boundary that maps to itself), and does the whitespace steps with regexes.
Steps 4-5 are sentencepiece's own: a second copy of the model, its normalizer replaced by the
identity, splits at "▁" and runs the same BPE merges without normalizing again.

Where the slow ``NllbTokenizer`` and the fast ``NllbTokenizerFast`` disagree we follow the fast
one; each case is pinned by tests/test_tokenization.py (SLOW_FAST_DISAGREEMENTS). None occurs in
the csen gold corpus or the Bambara sample; all need unusual Unicode:

- grapheme clusters (step 2). Shorter than 6 bytes and starting with a charsmap key: the rest of
  the cluster is dropped by fast (``"e\u0301\u0301"`` fast ▁ é, slow ▁ é <unk>; NFD Vietnamese
  ``"o\u0302\u0301"`` fast ▁ ô, slow ▁ <unk>; ``"\uff0d\u0347"`` fast ▁-, slow ▁- <unk>).
  6 bytes or longer: fast maps code point by code point and composes nothing
  (``"e\u0301\u0301\u0301"`` fast ▁e <unk>, slow ▁ é <unk>);
- trailing NEL (U+0085), which the charsmap keeps: fast's Strip(right) removes it (Unicode
  White_Space), sentencepiece keeps it as <unk>;
- ``<mask>`` spelled with characters that normalize to it (``"＜mask＞"``): fast matches it
  after normalization, slow only matches the raw text;
- two or more spaces before ``<mask>`` (``"a\u3000\u3000<mask>"``): fast collapses them to "▁",
  which its lstrip does not swallow (▁a ▁ <mask>); slow gives ▁a <mask>;
- with a ``whitespace="keep"`` tokenizer.json, trailing whitespace (also ZWSP, LRM/RLM, BOM,
  which the charsmap maps to " ") becomes a final "▁" token in fast, nothing in slow.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from transalign.engine.bundle import BundleError, TokenizerSpec
from transalign.engine.tokenizers.base import Encoded, assemble, sentence_layout, unknown_lang_error
from transalign.engine.protowire import LENGTH_DELIMITED, encode_varint, fields

__all__ = ["NllbWordTokenizer", "read_charsmap"]

META = "\u2581"  # "▁", sentencepiece's whitespace symbol
SEP = "\x00"  # joins the segments of a batch for one normalizer call: a grapheme boundary, maps to itself
WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
             "\u2028\u2029\u202f\u205f\u3000"  # Unicode White_Space = Rust char::is_whitespace (Strip, lstrip)
WHITESPACE_MODES = ("strip", "keep")
SMALL_BATCH, THREADED_BATCH = 32, 4096  # units; see NllbWordTokenizer._encode_pieces
NORMALIZED_TOKENS = {"<mask>": True}  # NLLB's added tokens matched after normalization -> lstrip
Units = tuple[list[str], "list[int] | None", dict[int, int]]  # texts, their word (None: 1 per word), fixed ids


class NllbWordTokenizer:
    """Pre-split words -> ``[lang_code] pieces... [</s>]`` ids and word indices (see module doc)."""

    def __init__(self, model_file: str | Path, *, lang_code_ids: Mapping[str, int], unk_id: int, eos_id: int,
                 piece_offset: int, added_tokens: Mapping[str, int] | None = None, whitespace: str = "strip",
                 lowercase: bool = False, num_threads: int | None = None) -> None:
        import sentencepiece as spm
        from tokenizers import normalizers

        if whitespace not in WHITESPACE_MODES:
            raise ValueError(f"whitespace={whitespace!r}; expected one of {WHITESPACE_MODES}")
        if not lang_code_ids:
            raise BundleError("the NLLB tokenizer spec has no language codes (lang_code_ids is empty)")
        model_file = Path(model_file)
        data = model_file.read_bytes()
        try:
            charsmap, identity_model = _identity_model(data)
            self._sp = spm.SentencePieceProcessor(model_proto=identity_model)
        except (IndexError, ValueError, RuntimeError) as exc:
            raise BundleError(f"{model_file} is not a readable sentencepiece model ({exc}); "
                              "export the bundle again") from exc
        self._normalizer = normalizers.Precompiled(charsmap) if charsmap else None
        self._lang_ids = dict(lang_code_ids)
        self._eos = int(eos_id)
        self._lowercase = lowercase
        self._whitespace = whitespace
        self._threads = -1 if num_threads is None else int(num_threads)

        added = dict(added_tokens) if added_tokens is not None else {}
        added = {**self._lang_ids, **added}
        raw = sorted((t for t in added if t not in NORMALIZED_TOKENS), key=len, reverse=True)
        norm = sorted((t for t in added if t in NORMALIZED_TOKENS), key=len, reverse=True)
        self._raw_re = _alternation(raw)
        self._raw_trigger = _trigger_class(raw)
        self._norm_re = _alternation(norm)
        self._norm_lstrip = {t: NORMALIZED_TOKENS[t] for t in norm}
        # raw sentencepiece ids and added tokens (indices piece_size + k) -> model ids
        size = self._sp.get_piece_size()
        table = np.arange(size, dtype=np.int64) + int(piece_offset)
        table[self._sp.unk_id()] = int(unk_id)
        self._added_index = {token: size + k for k, token in enumerate(added)}
        self._table = np.concatenate([table, np.fromiter(added.values(), dtype=np.int64, count=len(added))])
        self._collapse = re.compile(" {2,}")
        self._collapse_to = META if whitespace == "strip" else " "
        self._rstrip = re.compile(f"[{re.escape(WHITESPACE)}]+(?={SEP}|\\Z)")
        self._prepend = re.compile(f"(?:\\A|(?<={SEP}))(?=[^{SEP}{META}])")

    @classmethod
    def from_spec(cls, path: Path, spec: TokenizerSpec) -> "NllbWordTokenizer":
        # bundles always list their added tokens; the fallback only serves hand-written specs
        added = spec.added_tokens or {"</s>": spec.eos_id, "<pad>": spec.pad_id, "<unk>": spec.unk_id}
        return cls(path, lang_code_ids=spec.lang_code_ids, unk_id=spec.unk_id, eos_id=spec.eos_id,
                   piece_offset=spec.piece_offset, added_tokens=added,
                   whitespace=spec.whitespace, lowercase=spec.lowercase)

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(self._lang_ids)

    def check_lang(self, lang: str | None) -> None:
        self._lang_id(lang)

    def encode(self, words: Sequence[str], lang: str | None) -> Encoded:
        return self.encode_batch([words], lang)[0]

    def encode_batch(self, sentences: Sequence[Sequence[str]], lang: str | None) -> list[Encoded]:
        lang_id = self._lang_id(lang)
        words, local, starts = sentence_layout(sentences)
        if self._lowercase:
            words = [w.lower() for w in words]
        texts, owners, fixed = self._split_raw(words)
        texts, owners, fixed = self._normalize(texts, owners, fixed)
        pieces = self._encode_pieces(texts)
        for unit, index in fixed.items():
            pieces[unit] = (index,)
        if owners is None:  # one unit per word
            unit_word, unit_starts = local, starts
        else:
            owner = np.asarray(owners, dtype=np.int64)
            unit_word = local[owner]
            unit_starts = np.searchsorted(owner, starts, side="left")
        return assemble(pieces, unit_word, self._table, unit_starts, (lang_id,), (self._eos,))

    # -- internals ------------------------------------------------------------------------------

    def _encode_pieces(self, texts: list[str]) -> list:
        """sentencepiece on every unit. Its batch call costs ~50 us to set up (more with many
        threads), so small batches go one by one and mid-size ones on one thread."""
        if len(texts) < SMALL_BATCH:
            return [self._sp.encode(text) for text in texts]
        threads = 1 if len(texts) < THREADED_BATCH else self._threads
        return self._sp.encode(texts, num_threads=threads)

    def _lang_id(self, lang: str | None) -> int:
        if lang is None:
            raise ValueError("NLLB tokenization needs the sentence's language code (e.g. 'eng_Latn'), got None")
        try:
            return self._lang_ids[lang]
        except (KeyError, TypeError):
            raise unknown_lang_error(lang, list(self._lang_ids)) from None

    def _split_raw(self, words: list[str]) -> Units:
        """Cut raw added tokens out of the words -> text units, their word, fixed-id units."""
        if self._raw_re is None or not self._raw_trigger.search(SEP.join(words)):
            return words, None, {}
        texts: list[str] = []
        owners: list[int] = []
        fixed: dict[int, int] = {}
        for w, word in enumerate(words):
            if not self._raw_trigger.search(word):
                texts.append(word)
                owners.append(w)
                continue
            for text, token in _split_on(self._raw_re, word):
                if token is not None:
                    fixed[len(texts)] = self._added_index[token]
                    text = ""
                texts.append(text)
                owners.append(w)
        return texts, owners, fixed

    def _normalize(self, texts: list[str], owners: list[int] | None, fixed: dict[int, int]) -> Units:
        """Steps 2-4 of the module doc on every text unit; may split units at normalized tokens.

        All units go through one normalizer call and a few regexes, joined by NUL; a batch where
        some word itself contains NUL is done unit by unit.
        """
        if not texts:
            return texts, owners, fixed
        joined = SEP.join(texts)
        if joined.count(SEP) != len(texts) - 1:
            units = [self._whitespace_one(self._precompiled(text)) for text in texts]
            return self._split_normalized(units, owners, fixed)
        normalized = self._precompiled(joined)
        if self._whitespace == "strip":
            normalized = self._rstrip.sub("", normalized)
        if "  " in normalized:
            normalized = self._collapse.sub(self._collapse_to, normalized)
        if self._norm_re is not None and self._norm_re.search(normalized):
            return self._split_normalized(normalized.split(SEP), owners, fixed)
        return self._prepend.sub(META, normalized.replace(" ", META)).split(SEP), owners, fixed

    def _precompiled(self, text: str) -> str:
        return self._normalizer.normalize_str(text) if self._normalizer is not None else text

    def _whitespace_one(self, text: str) -> str:
        if self._whitespace == "strip":
            text = text.rstrip(WHITESPACE)
        return self._collapse.sub(self._collapse_to, text) if "  " in text else text

    def _split_normalized(self, texts: list[str], owners: list[int] | None, fixed: dict[int, int]) -> Units:
        """Steps 3-4 unit by unit: cut normalized added tokens (``<mask>``) out, then Metaspace."""
        out_texts: list[str] = []
        out_owners: list[int] = []
        out_fixed: dict[int, int] = {}
        for unit, text in enumerate(texts):
            owner = unit if owners is None else owners[unit]
            if unit in fixed:
                out_fixed[len(out_texts)] = fixed[unit]
                out_texts.append("")
                out_owners.append(owner)
                continue
            parts = _split_on(self._norm_re, text, self._norm_lstrip) if self._norm_re is not None else [(text, None)]
            for part, token in parts:
                if token is not None:
                    out_fixed[len(out_texts)] = self._added_index[token]
                elif part:
                    part = part.replace(" ", META)
                    part = part if part.startswith(META) else META + part
                out_texts.append(part)
                out_owners.append(owner)
        return out_texts, out_owners, out_fixed


def _split_on(pattern: re.Pattern, text: str, lstrip: Mapping[str, bool] | None = None
              ) -> Iterator[tuple[str, str | None]]:
    """(text, None) and ("", token) parts of `text` around the matches of `pattern`, in order.

    An lstrip token also swallows the whitespace before it (tokenizers' AddedToken.lstrip).
    Empty text parts are dropped, as tokenizers does.
    """
    pos = 0
    for match in pattern.finditer(text):
        left = text[pos:match.start()]
        if lstrip and lstrip.get(match.group()):
            left = left.rstrip(WHITESPACE)
        if left:
            yield left, None
        yield "", match.group()
        pos = match.end()
    if pos < len(text):
        yield text[pos:], None


def _alternation(tokens: Sequence[str]) -> re.Pattern | None:
    """Leftmost-longest matcher of literal tokens (longest first in the alternation)."""
    return re.compile("|".join(map(re.escape, tokens))) if tokens else None


def _trigger_class(tokens: Sequence[str]) -> re.Pattern:
    """A cheap prefilter: a character every token contains (its first non-alphanumeric one)."""
    chars = {next((c for c in t if not c.isalnum()), t[0]) for t in tokens if t}
    return re.compile("[" + "".join(map(re.escape, sorted(chars))) + "]") if chars else re.compile("(?!)")


# -- the sentencepiece model file (protobuf), read without the protobuf library -----------------

_NORMALIZER_SPEC = 3  # ModelProto.normalizer_spec
_IDENTITY_SPEC = (b"\x0a\x08identity"  # name = "identity", no precompiled_charsmap
                  b"\x18\x00"  # add_dummy_prefix = false (Metaspace already prepended "▁")
                  b"\x20\x00"  # remove_extra_whitespaces = false
                  b"\x28\x01")  # escape_whitespaces = true


def read_charsmap(data: bytes) -> bytes:
    """The precompiled normalization charsmap of a serialized sentencepiece model (b"" if none)."""
    return _identity_model(data)[0]


def _identity_model(data: bytes) -> tuple[bytes, bytes]:
    """(the model's precompiled charsmap, the same model with the identity normalizer)."""
    for number, wire, value, start in fields(data):
        if number == _NORMALIZER_SPEC and wire == LENGTH_DELIMITED:
            spec_start, end = value
            spec = {n: data[v[0]:v[1]] if isinstance(v, tuple) else v for n, _, v, _ in fields(data, spec_start, end)}
            if spec.get(3, 1) != 1:
                raise ValueError("its normalizer has add_dummy_prefix=false, which NLLB models never have")
            charsmap = spec.get(2, b"")
            new = _IDENTITY_SPEC
            return charsmap, data[:start] + bytes([number << 3 | 2]) + encode_varint(len(new)) + new + data[end:]
    raise ValueError("no normalizer_spec in the model")


