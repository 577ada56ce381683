"""The bundle's tokenizer: files + ``TokenizerSpec`` derived from a Hugging Face tokenizer.

``spec_from_hf_tokenizer(tokenizer, out_dir, kind)`` writes the tokenizer file the runtime needs into
``out_dir``, derives every id the runtime uses from the tokenizer itself, checks the assumptions
the runtime makes (fairseq id offset for *every* sentencepiece piece, the normalizer and
pre-tokenizer pipeline, the added-token flags, the ``[lang] ... </s>`` layout) and finally
tokenizes a probe set of awkward words with both the runtime tokenizer and the Hugging Face one,
refusing the export (``TokenizerMismatchError``) if a single id or word index differs.

transformers is only touched through the tokenizer object handed in; nothing here imports it.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from transalign.engine.bundle import TokenizerSpec
from transalign.export.errors import ExportError

__all__ = [
    "PROBE_SENTENCES", "PROBE_WORDS", "TokenizerMismatchError", "compare_with_reference", "spec_from_hf_tokenizer",
]

NLLB_MODEL_FILE = "sentencepiece.bpe.model"
HF_TOKENIZER_FILE = "tokenizer.json"
LANG_CODE = re.compile(r"^[a-z]{2,3}_[A-Z][a-z]{3}$")  # NLLB/FLORES-200: eng_Latn, zho_Hans, ...
NORMALIZED_TOKENS = ("<mask>",)  # NllbTokenizer makes <mask> normalized + lstrip, all others raw
# Words that exercise every step of the runtime tokenizers (see engine/tokenizers/nllb.py).
PROBE_WORDS = (
    "Právě", "hello,", "world!", "12345", "3.14", "(x)", "e\u0301", "e\u0301\u0301", "e\u0302\u0301",
    "\ufb01", "\uff26\uff55\uff4c\uff4c", "\u2460", "\u00bd", "\u4e2d\u6587", "\u0645\u0631\u062d\u0628\u0627",
    "\U0001f600", "\U0001f468\u200d\U0001f469", "\u200b", "\u00ad", "\u0301", "", " ", "a b", "a  b", " x",
    "x ", "x\u200f", "x\u200b", "\u2581", "\u2581x", "\t", "x\ty", "\u3000x", "a\u00a0b", "\u0915\u094d\u0937",
    "\u0627\u0653\u064e", "\u1100\u1161\u11a8", "\uac00", "</s>", "<unk>", "<s>", "<pad>", "<mask>", "a <mask>",
    "\uff1cmask\uff1e", "foo</s>bar", "eng_Latn", "xeng_Latnx", "\x00", "x" * 300,
)
PROBE_SENTENCES = (
    ["The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "."],
    ["Příliš", "žluťoučký", "kůň", "úpěl", "ďábelské", "ódy", "."],
    list(PROBE_WORDS),
)
PROBE_LANGS = ("eng_Latn", "ces_Latn")


class TokenizerMismatchError(ExportError):
    """The runtime tokenizer does not reproduce the Hugging Face one; ``mismatches`` lists them."""

    def __init__(self, mismatches: list[str]):
        self.mismatches = list(mismatches)
        lines = "\n  ".join(self.mismatches[:20])
        more = f"\n  ... and {len(self.mismatches) - 20} more" if len(self.mismatches) > 20 else ""
        super().__init__(f"the bundle's tokenizer does not reproduce the Hugging Face tokenizer:\n  {lines}{more}")


def spec_from_hf_tokenizer(tokenizer: Any, out_dir: str | Path, kind: str) -> TokenizerSpec:
    """Write the runtime tokenizer file into `out_dir` and return its verified spec.

    `kind` is the architecture's ``tokenizer_kind``: "sentencepiece-nllb" (an NLLB tokenizer,
    ``sentencepiece.bpe.model``) or "hf-tokenizers" (any *fast* tokenizer: BERT, XLM-R, ...,
    ``tokenizer.json``).
    """
    if kind not in _SPEC_BUILDERS:
        raise ExportError(f"unknown tokenizer kind {kind!r}; known: {', '.join(_SPEC_BUILDERS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # a slow NLLB tokenizer differs from the fast one (the reference, which the runtime follows)
    # on odd Unicode; the probe words are full of it, so it is checked on plain sentences only
    sentences = PROBE_SENTENCES if getattr(tokenizer, "is_fast", False) else PROBE_SENTENCES[:2]
    spec = _SPEC_BUILDERS[kind](tokenizer, out_dir)
    if spec.lang_code_ids:
        langs = tuple(lang for lang in PROBE_LANGS if lang in spec.lang_code_ids) or (next(iter(spec.lang_code_ids)),)
    else:
        langs = (None,)
    mismatches = compare_with_reference(tokenizer, out_dir, spec, sentences, langs)
    if mismatches:
        raise TokenizerMismatchError(mismatches)
    return spec


def compare_with_reference(tokenizer: Any, bundle_dir: Path, spec: TokenizerSpec, sentences, langs) -> list[str]:
    """Tokenize `sentences` with the runtime and with `tokenizer`; describe every difference
    (down to the words that differ when tokenized alone)."""
    from transalign.engine.tokenizers import load_tokenizer

    runtime = load_tokenizer(bundle_dir, spec)
    with_word_ids = bool(getattr(tokenizer, "is_fast", False))

    def differs(words, lang) -> str | None:
        ids, word_ids = runtime.encode(words, lang)
        expected = tokenizer(list(words), is_split_into_words=True)
        if ids.tolist() != list(expected["input_ids"]):
            return f"ids {_short(ids.tolist())} != reference {_short(list(expected['input_ids']))}"
        if with_word_ids and word_ids.tolist() != [-1 if w is None else w for w in expected.word_ids()]:
            return f"word ids {_short(word_ids.tolist())} != reference {_short(expected.word_ids())}"
        return None

    problems = []
    for lang in langs:
        with _source_language(tokenizer, lang):
            for words in sentences:
                if differs(words, lang) is None:
                    continue
                culprits = [(w, why) for w in words if (why := differs([w], lang)) is not None]
                if not culprits:
                    problems.append(f"{lang or ''} sentence {_short(words)}: {differs(words, lang)}")
                problems.extend(f"{lang or ''} word {w!r}: {why}" for w, why in culprits)
    return problems


# -- NLLB ---------------------------------------------------------------------------------------


def _nllb_spec(tokenizer: Any, out_dir: Path) -> TokenizerSpec:
    """The runtime spec of an NLLB tokenizer, its sentencepiece model copied into ``out_dir``."""
    import sentencepiece as spm

    from transalign.engine.tokenizers.nllb import read_charsmap

    source = Path(getattr(tokenizer, "vocab_file", None) or "")
    if not source.is_file():
        raise ExportError(f"{type(tokenizer).__name__} has no sentencepiece model file ({source or 'none'}); "
                          f"the bundle needs {NLLB_MODEL_FILE}: load the tokenizer from a directory that has it")
    if getattr(tokenizer, "legacy_behaviour", False):
        raise ExportError("the NLLB tokenizer uses legacy_behaviour=True (tokens </s> lang_code); the reference "
                          "and the runtime use [lang_code] tokens </s>: load it with legacy_behaviour=False")
    target = out_dir / NLLB_MODEL_FILE
    shutil.copyfile(source, target)
    sp = spm.SentencePieceProcessor(model_file=str(target))
    offset = _piece_offset(tokenizer, sp)
    unk_id, eos_id, pad_id = tokenizer.unk_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    if tokenizer.convert_tokens_to_ids(sp.id_to_piece(sp.unk_id())) != unk_id:
        raise ExportError(f"sentencepiece's unknown piece {sp.id_to_piece(sp.unk_id())!r} is not the tokenizer's "
                          f"unk token (id {unk_id})")
    codes = [t for t in tokenizer.additional_special_tokens if LANG_CODE.match(t)]
    if not codes:
        raise ExportError(f"{type(tokenizer).__name__} lists no language codes in additional_special_tokens")
    lang_code_ids = {code: int(tokenizer.convert_tokens_to_ids(code)) for code in codes}
    bad = [code for code, i in lang_code_ids.items() if i == unk_id or i < sp.get_piece_size() + offset]
    if bad:
        raise ExportError(f"language codes without their own id: {', '.join(bad[:10])}")
    added = _nllb_added_tokens(tokenizer)
    whitespace = _nllb_whitespace(tokenizer, read_charsmap(target.read_bytes()))
    return TokenizerSpec(kind="sentencepiece-nllb", file=NLLB_MODEL_FILE, unk_id=int(unk_id), eos_id=int(eos_id),
                         pad_id=int(pad_id), piece_offset=offset, lang_code_ids=lang_code_ids,
                         added_tokens={str(k): int(v) for k, v in added.items()}, whitespace=whitespace)


def _piece_offset(tokenizer: Any, sp) -> int:
    """The fairseq offset (model id - sentencepiece id), checked for every ordinary piece."""
    size = sp.get_piece_size()
    ordinary = [i for i in range(size)
                if not (sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i) or sp.is_byte(i))]
    if not ordinary:
        raise ExportError("the sentencepiece model has no ordinary pieces")
    pieces = [sp.id_to_piece(i) for i in ordinary]
    ids = tokenizer.convert_tokens_to_ids(pieces)
    offset = Counter(got - i for i, got in zip(ordinary, ids)).most_common(1)[0][0]
    wrong = [(i, piece, got) for i, piece, got in zip(ordinary, pieces, ids) if got != i + offset]
    if wrong:
        examples = ", ".join(f"{piece!r}: sentencepiece {i} -> {got} (expected {i + offset})"
                             for i, piece, got in wrong[:5])
        raise ExportError(f"{len(wrong)} of {len(ordinary)} sentencepiece pieces break the rule model id = "
                          f"sentencepiece id + {offset} ({examples}); the runtime cannot map this vocabulary")
    return int(offset)


def _nllb_added_tokens(tokenizer: Any) -> dict[str, int]:
    """Tokens matched verbatim in the input, checked to carry the flags the runtime mirrors."""
    added, odd = {}, []
    for index, token in sorted(tokenizer.added_tokens_decoder.items()):
        normalized = token.content in NORMALIZED_TOKENS
        flags = (token.normalized, token.lstrip, token.rstrip, token.single_word)
        if flags != ((True, True, False, False) if normalized else (False, False, False, False)):
            odd.append(f"{token.content!r} (normalized, lstrip, rstrip, single_word) = {flags}")
        added[token.content] = int(index)
    if odd:
        raise ExportError("added tokens with flags the runtime does not reproduce: " + "; ".join(odd[:10]))
    return added


def _nllb_whitespace(tokenizer: Any, charsmap: bytes) -> str:
    """Which of the two known normalizer/pre-tokenizer pipelines the fast tokenizer uses."""
    if not getattr(tokenizer, "is_fast", False):
        return "strip"  # the slow tokenizer is sentencepiece itself: whitespace stripped on both sides
    config = json.loads(tokenizer.backend_tokenizer.to_str())
    norm = config.get("normalizer") or {}
    steps = norm.get("normalizers", [norm]) if norm.get("type") == "Sequence" else [norm]
    steps = [s for s in steps if s]
    if charsmap:
        head = steps[0] if steps else {}
        if head.get("type") != "Precompiled" or base64.b64decode(head.get("precompiled_charsmap", "")) != charsmap:
            raise ExportError("the fast tokenizer's normalizer does not start with the sentencepiece model's "
                              f"precompiled charsmap ({_short([s.get('type') for s in steps])})")
        steps = steps[1:]
    collapse = {"type": "Replace", "pattern": {"Regex": " {2,}"}}
    if steps == [{"type": "Strip", "strip_left": False, "strip_right": True}, {**collapse, "content": "\u2581"}]:
        whitespace = "strip"
    elif steps == [{**collapse, "content": " "}]:
        whitespace = "keep"
    else:
        raise ExportError(f"unsupported NLLB normalizer steps after Precompiled: {steps}")
    pre = config.get("pre_tokenizer") or {}
    scheme = pre.get("prepend_scheme", "always" if pre.get("add_prefix_space") else "never")
    metaspace = (pre.get("type"), pre.get("replacement"), scheme, pre.get("split", True))
    if metaspace != ("Metaspace", "\u2581", "always", True):
        raise ExportError(f"unsupported NLLB pre-tokenizer {pre}; expected Metaspace('▁', prepend always, split)")
    return whitespace


class _source_language:
    """Temporarily set an NLLB tokenizer's ``src_lang`` (no-op for lang None)."""

    def __init__(self, tokenizer: Any, lang: str | None):
        self.tokenizer, self.lang, self.saved = tokenizer, lang, getattr(tokenizer, "src_lang", None)

    def __enter__(self):
        if self.lang is not None:
            self.tokenizer.src_lang = self.lang

    def __exit__(self, *exc):
        if self.lang is not None and self.saved is not None:
            self.tokenizer.src_lang = self.saved


# -- BERT family --------------------------------------------------------------------------------


def _hf_spec(tokenizer: Any, out_dir: Path) -> TokenizerSpec:
    if not getattr(tokenizer, "is_fast", False):
        raise ExportError(f"{type(tokenizer).__name__} is a slow tokenizer: the runtime needs its tokenizer.json; "
                          "load it with AutoTokenizer.from_pretrained(..., use_fast=True)")
    # the in-memory backend, not the file: transformers may change it at load (do_lower_case, ...)
    tokenizer.backend_tokenizer.save(str(out_dir / HF_TOKENIZER_FILE))
    probe = tokenizer(["a"], is_split_into_words=True)
    ids, word_ids = list(probe["input_ids"]), probe.word_ids()
    inside = [k for k, w in enumerate(word_ids) if w is not None]
    if not inside or any(word_ids[k] is None for k in range(inside[0], inside[-1] + 1)):
        raise ExportError(f"cannot tell the special tokens of {type(tokenizer).__name__} from its output {ids}")
    prefix, suffix = tuple(ids[:inside[0]]), tuple(ids[inside[-1] + 1:])
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    pad = tokenizer.pad_token_id
    if eos is None or pad is None or tokenizer.unk_token_id is None:
        raise ExportError(f"{type(tokenizer).__name__} lacks an eos/sep, pad or unk token")
    return TokenizerSpec(kind="hf-tokenizers", file=HF_TOKENIZER_FILE, unk_id=int(tokenizer.unk_token_id),
                         eos_id=int(eos), pad_id=int(pad), prefix_ids=prefix, suffix_ids=suffix)


_SPEC_BUILDERS = {"sentencepiece-nllb": _nllb_spec, "hf-tokenizers": _hf_spec}  # TokenizerSpec.KINDS


def _short(items) -> str:
    text = repr(items)
    return text if len(text) <= 160 else text[:157] + "..."
