"""Runtime tokenizers vs Hugging Face: ids and word ids must be identical.

The reference tokenizes with AutoTokenizer (the *fast* tokenizers), so those are the ground
truth; the slow NllbTokenizer is compared too and every place it disagrees with the fast one is
pinned in `SLOW_FAST_DISAGREEMENTS` (documented in transalign/engine/tokenizers/nllb.py).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from fixture_tokenizers import build_keep_whitespace_nllb, tiny_tokenizer_dir
from transalign.engine.bundle import TokenizerSpec
from transalign.formats.text import read_sentences
from transalign.engine.tokenizers import load_tokenizer
from transalign.engine.tokenizers.nllb import SMALL_BATCH, NllbWordTokenizer

transformers = pytest.importorskip("transformers")
from transalign.export.errors import ExportError  # noqa: E402
from transalign.export.tokenizer_spec import (  # noqa: E402
    PROBE_WORDS,
    TokenizerMismatchError,
    compare_with_reference,
    spec_from_hf_tokenizer,
)

ROOT = Path(__file__).resolve().parents[1]

TRICKY_WORDS = list(PROBE_WORDS) + [
    # punctuation, digits, scripts
    "...", "«quoted»", "—", "don't", "U.S.A.", "1,000.50", "٣٤٥", "१२३", "ＡＢＣ", "東京", "日本語", "한국어",
    "Привет", "Ελλάδα", "עברית", "हिन्दी", "ไทย", "ɛ", "ɔ", "ɲ", "ℇ", "ŋ", "Ɛ", "ß", "İ", "ǅ", "Ⅻ", "㍿", "ｶﾞ",
    # accents composed, decomposed, stacked; lone and leading combining marks
    "é", "e\u0301", "o\u0302\u0301", "e\u0301\u0301\u0301", "c\u030c\u0301", "\u0301e", "\u0301\u0301",
    "\uff0d\u0347", "\u2026\u0363", "\ufb01\u0301", "\u0627\u0653", "\u0627\u0653\u064e",
    # emoji sequences, flags, variation selectors, joiners
    "👍🏽", "🇨🇿", "❤\ufe0f", "\u200d", "a\u200db", "\u200c", "می\u200cخواهم", "\u200e", "x\u200e", "\ufeff", "\ufeffx",
    # whitespace and controls inside words
    "a\u3000b", "\u3000", "x\u3000\u3000y", "a\u00a0", "\n", "x\n", "x\r\ny", "\x7f", "\x1f", "\u2028",
    "\x85", "x\x85", "\x85x", "a\x00b", "\u2581\u2581a", " \u2581a", "  a  ", "a   b",
    # added tokens inside words, normalized to one, almost one
    "x<unk>", "<unk>y", "a<mask>b", " <mask>", "a\u3000\u3000<mask>", "<ma\u200bsk>", "<s><s>", "</s></s>",
    "zho_Hans", "eng_Latn.", "(eng_Latn)", "eng_latn", "<mask", "mask>",
    # long words
    "a" * 500, "Právě" * 100, "ab" * 250 + "\u0301", "中" * 500,
]

# word: (fast tokens, slow tokens) -- where NllbTokenizer and NllbTokenizerFast disagree.
SLOW_FAST_DISAGREEMENTS = {
    # a grapheme cluster < 6 bytes is replaced by the mapping of its shortest charsmap prefix:
    # the combining marks after it vanish (fast); sentencepiece keeps them (slow: <unk>)
    "e\u0301\u0301": (["▁", "é"], ["▁", "é", "<unk>"]),
    "o\u0302\u0301": (["▁", "ô"], ["▁", "<unk>"]),  # Vietnamese ố in NFD loses its acute
    "c\u030c\u0301": (["▁č"], ["▁č", "<unk>"]),
    "\uff0d\u0347": (["▁-"], ["▁-", "<unk>"]),
    "\u2026\u0363": (["▁.", ".", "."], ["▁.", ".", ".", "<unk>"]),
    "\ufb01\u0301": (["▁f", "i"], ["▁f", "i", "<unk>"]),
    "ǅ\u0301": (["▁D", "ž"], ["▁D", "ž", "<unk>"]),
    # a grapheme cluster of 6+ bytes is mapped code point by code point: nothing composes
    "e\u0301\u0301\u0301": (["▁e", "<unk>"], ["▁", "é", "<unk>"]),
    "\u0627\u0653\u064e": (["▁", "ا", "<unk>"], ["▁", "<unk>"]),
    # fast's Strip(right) removes trailing Unicode White_Space the charsmap keeps (NEL, U+0085);
    # sentencepiece only strips " "
    "\x85": ([], ["▁", "<unk>"]),
    "x\x85": (["▁", "x"], ["▁", "x", "<unk>"]),
    # <mask> is matched in the normalized text by fast, in the raw text by slow
    "\uff1cmask\uff1e": (["<mask>"], ["▁", "<unk>", "m", "as", "k", "<unk>"]),
    # fast collapses 2+ spaces to "▁" before <mask>'s lstrip, which only swallows whitespace
    "a\u3000\u3000<mask>": (["▁a", "▁", "<mask>"], ["▁a", "<mask>"]),
}

FUZZ_POOLS = [
    "abcdefghijklmnopqrstuvwxyzáčďéěíňóřšťúůýž.,;:!?()-'\"0123456789",
    "".join(map(chr, range(0x300, 0x370))),  # combining marks
    "".join(map(chr, range(0x900, 0x980))),  # Devanagari
    "".join(map(chr, range(0x600, 0x700))),  # Arabic
    "".join(map(chr, [*range(0xAC00, 0xAC20), *range(0x1100, 0x1113), *range(0x1161, 0x1176)])),  # Hangul
    "".join(map(chr, range(0xFF00, 0xFF70))),  # fullwidth / halfwidth
    "".join(map(chr, range(0x2000, 0x2100))),  # spaces, joiners, marks, super/subscripts
    "".join(map(chr, range(0x1F600, 0x1F650))) + "\U0001F3FB\ufe0f",
    " \u3000\u00a0\t\r\n\u2581\u00ad<>_/",
]


def _fuzz_sentences(seed: int, count: int) -> list[list[str]]:
    rng = random.Random(seed)
    tokens = ["<mask>", "</s>", "<unk>", "eng_Latn", "mask", "<s>"]

    def word() -> str:
        parts = [rng.choice(rng.choice(FUZZ_POOLS)) for _ in range(rng.choice([1, 1, 2, 3, 5, 8, 20]))]
        if rng.random() < 0.05:
            parts.insert(rng.randrange(len(parts) + 1), rng.choice(tokens))
        return "".join(parts)

    return [[word() for _ in range(rng.randint(0, 8))] for _ in range(count)]


def _expected(tokenizer, sentences) -> list[tuple[list[int], list[int]]]:
    """What the reference gets: input_ids and word_ids() (None -> -1) per sentence."""
    enc = tokenizer([list(s) for s in sentences], is_split_into_words=True)
    return [(enc["input_ids"][i], [-1 if w is None else w for w in enc.word_ids(i)]) for i in range(len(sentences))]


def _mismatches(runtime, reference, sentences, lang) -> list[str]:
    got = runtime.encode_batch(sentences, lang)
    bad = []
    for words, (ids, wids), (ref_ids, ref_wids) in zip(sentences, got, _expected(reference, sentences)):
        assert ids.dtype == np.int64 and wids.dtype == np.int32
        if ids.tolist() != ref_ids or wids.tolist() != ref_wids:
            bad.append(f"{words!r}: {ids.tolist()} / {wids.tolist()} != {ref_ids} / {ref_wids}")
    return bad


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def nllb_fast(tiny_nllb):
    return transformers.AutoTokenizer.from_pretrained(tiny_nllb)


@pytest.fixture(scope="session")
def nllb_slow(tiny_nllb):
    return transformers.NllbTokenizer.from_pretrained(tiny_nllb)


@pytest.fixture(scope="session")
def nllb_bundle(nllb_fast, tmp_path_factory):
    out = tmp_path_factory.mktemp("nllb-bundle")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the spec expresses the whole tokenizer, nothing to warn about
        spec = spec_from_hf_tokenizer(nllb_fast, out, "sentencepiece-nllb")
    return out, spec


@pytest.fixture(scope="session")
def nllb_runtime(nllb_bundle, nllb_fast) -> NllbWordTokenizer:
    """The runtime exactly as the bundle describes it (added tokens and whitespace mode included)."""
    out, spec = nllb_bundle
    assert spec.added_tokens == {t.content: i for i, t in nllb_fast.added_tokens_decoder.items()}
    return NllbWordTokenizer.from_spec(out / spec.file, spec)


@pytest.fixture(scope="session")
def real_sentences(data_dir) -> dict[str, list[list[str]]]:
    gold = data_dir / "gold" / "csen"
    return {
        "ces_Latn": [line.split() for line in (gold / "src.txt").read_text(encoding="utf-8").splitlines()],
        "eng_Latn": [line.split() for line in (gold / "tgt.txt").read_text(encoding="utf-8").splitlines()],
        "bam_Latn": read_sentences(data_dir / "reference" / "bam-sample" / "test-bam.txt", "conll"),
    }


@pytest.fixture(scope="session", params=["bert", "xlmr"])
def bert_family(request, tmp_path_factory):
    """(HF fast tokenizer, runtime tokenizer, spec, bundle dir) for tiny BERT / XLM-R."""
    reference = transformers.AutoTokenizer.from_pretrained(tiny_tokenizer_dir(request.param))
    out = tmp_path_factory.mktemp(f"{request.param}-bundle")
    spec = spec_from_hf_tokenizer(reference, out, "hf-tokenizers")
    return reference, load_tokenizer(out, spec), spec, out


# -- NLLB: parity with the fast tokenizer -------------------------------------------------------


def test_nllb_tricky_words_match_fast_tokenizer(nllb_runtime, nllb_fast):
    sentences = [[w] for w in TRICKY_WORDS] + [TRICKY_WORDS, TRICKY_WORDS[::-1]]
    for lang in ("eng_Latn", "zho_Hans"):
        nllb_fast.src_lang = lang
        assert _mismatches(nllb_runtime, nllb_fast, sentences, lang) == []


def test_nllb_real_sentences_match_fast_tokenizer(nllb_runtime, nllb_fast, real_sentences):
    for lang, sentences in real_sentences.items():
        nllb_fast.src_lang = lang
        assert _mismatches(nllb_runtime, nllb_fast, sentences, lang) == [], lang


@pytest.mark.parametrize("seed", [0, 1])
def test_nllb_fuzzed_words_match_fast_tokenizer(nllb_runtime, nllb_fast, seed):
    nllb_fast.src_lang = "eng_Latn"
    assert _mismatches(nllb_runtime, nllb_fast, _fuzz_sentences(seed, 400), "eng_Latn") == []


def test_nllb_keep_whitespace_variant_matches_its_fast_tokenizer(tiny_nllb, tmp_path):
    """tokenizer.json from older converters keeps trailing whitespace as a '▁' token."""
    build_keep_whitespace_nllb(tiny_nllb, tmp_path)
    reference = transformers.AutoTokenizer.from_pretrained(tmp_path, src_lang="eng_Latn")
    assert reference(["x "], is_split_into_words=True)["input_ids"][-2] == reference.convert_tokens_to_ids("▁")
    runtime = NllbWordTokenizer(
        tmp_path / "sentencepiece.bpe.model", unk_id=3, eos_id=2, piece_offset=1, whitespace="keep",
        lang_code_ids={c: reference.convert_tokens_to_ids(c) for c in reference.additional_special_tokens},
        added_tokens={t.content: i for i, t in reference.added_tokens_decoder.items()})
    sentences = [[w] for w in TRICKY_WORDS] + _fuzz_sentences(2, 300)
    assert _mismatches(runtime, reference, sentences, "eng_Latn") == []


# -- NLLB: the slow tokenizer -------------------------------------------------------------------


def test_nllb_real_sentences_match_slow_tokenizer(nllb_runtime, nllb_slow, real_sentences):
    for lang, sentences in real_sentences.items():
        nllb_slow.src_lang = lang
        subset = sentences[:300]
        got = [ids.tolist() for ids, _ in nllb_runtime.encode_batch(subset, lang)]
        assert got == [nllb_slow(s, is_split_into_words=True)["input_ids"] for s in subset], lang


def test_nllb_slow_tokenizer_differs_only_where_documented(nllb_runtime, nllb_slow):
    nllb_slow.src_lang = "eng_Latn"
    undocumented = []
    for word in TRICKY_WORDS:
        if word in SLOW_FAST_DISAGREEMENTS:
            continue
        ids = nllb_runtime.encode([word], "eng_Latn")[0].tolist()
        if ids != nllb_slow([word], is_split_into_words=True)["input_ids"]:
            undocumented.append(word)
    assert undocumented == [], [ascii(w) for w in undocumented]


@pytest.mark.parametrize("word", list(SLOW_FAST_DISAGREEMENTS))
def test_slow_fast_disagreements(word, nllb_runtime, nllb_fast, nllb_slow):
    fast_tokens, slow_tokens = SLOW_FAST_DISAGREEMENTS[word]
    for tokenizer in (nllb_fast, nllb_slow):
        tokenizer.src_lang = "eng_Latn"
    tokens = nllb_fast.convert_ids_to_tokens
    assert tokens(nllb_fast([word], is_split_into_words=True)["input_ids"])[1:-1] == fast_tokens
    assert tokens(nllb_slow([word], is_split_into_words=True)["input_ids"])[1:-1] == slow_tokens
    assert tokens(nllb_runtime.encode([word], "eng_Latn")[0].tolist())[1:-1] == fast_tokens  # we follow fast


# -- NLLB: API ----------------------------------------------------------------------------------


def test_nllb_layout_and_dtypes(nllb_runtime, nllb_bundle):
    _, spec = nllb_bundle
    ids, wids = nllb_runtime.encode(["Právě", "\u200b", "z", ""], "ces_Latn")
    assert ids.dtype == np.int64 and wids.dtype == np.int32
    assert ids[0] == spec.lang_code_ids["ces_Latn"] and ids[-1] == spec.eos_id
    assert wids[0] == wids[-1] == -1
    assert sorted(set(wids[1:-1].tolist())) == [0, 2]  # words 1 and 3 have no tokens
    empty_ids, empty_wids = nllb_runtime.encode([], "ces_Latn")
    assert empty_ids.tolist() == [spec.lang_code_ids["ces_Latn"], spec.eos_id] and empty_wids.tolist() == [-1, -1]


def test_nllb_batch_equals_one_by_one(nllb_runtime, real_sentences):
    sentences = real_sentences["ces_Latn"][:40] + [[], ["a\x00b", "x"], ["<mask>", "eng_Latn"], [""]]
    sentences = sentences + sentences[::-1] * (SMALL_BATCH // 10 + 1)  # several batch code paths
    batch = nllb_runtime.encode_batch(sentences, "ces_Latn")
    for words, (ids, wids) in zip(sentences, batch):
        one_ids, one_wids = nllb_runtime.encode(words, "ces_Latn")
        assert ids.tolist() == one_ids.tolist() and wids.tolist() == one_wids.tolist(), words


def test_nllb_unknown_language_lists_close_matches(nllb_runtime):
    with pytest.raises(ValueError, match="eng_Latn") as err:
        nllb_runtime.encode(["x"], "eng_latn")
    assert "'eng_latn'" in str(err.value)
    with pytest.raises(ValueError, match="ces_Latn"):
        nllb_runtime.check_lang("ces_Latin")
    with pytest.raises(ValueError, match="language code"):
        nllb_runtime.check_lang(None)
    nllb_runtime.check_lang("bam_Latn")


def test_nllb_rejects_a_string_instead_of_words(nllb_runtime):
    with pytest.raises(TypeError, match="split it into words"):
        nllb_runtime.encode_batch(["a sentence"], "eng_Latn")


def test_load_tokenizer_from_a_handmade_spec(tiny_nllb, tmp_path, nllb_fast):
    (tmp_path / "sentencepiece.bpe.model").write_bytes((tiny_nllb / "sentencepiece.bpe.model").read_bytes())
    spec = TokenizerSpec(kind="sentencepiece-nllb", file="sentencepiece.bpe.model", unk_id=3, eos_id=2, pad_id=1,
                         piece_offset=1, lang_code_ids={"eng_Latn": nllb_fast.convert_tokens_to_ids("eng_Latn")})
    spec = TokenizerSpec.from_json(json.loads(json.dumps(spec.to_json())))
    runtime = load_tokenizer(tmp_path, spec)
    nllb_fast.src_lang = "eng_Latn"
    words = ["Hello", "world", "</s>", "Právě"]
    assert runtime.encode(words, "eng_Latn")[0].tolist() == nllb_fast(words, is_split_into_words=True)["input_ids"]


def test_lowercase_spec_lowercases_the_words(nllb_bundle, bert_family):
    out, spec = nllb_bundle
    lower = load_tokenizer(out, TokenizerSpec.from_json({**spec.to_json(), "lowercase": True}))
    upper = load_tokenizer(out, spec)
    words = ["PRÁVĚ", "Z"]
    expected = upper.encode([w.lower() for w in words], "ces_Latn")[0].tolist()
    assert lower.encode(words, "ces_Latn")[0].tolist() == expected
    _, runtime, hf_spec, hf_out = bert_family
    lower = load_tokenizer(hf_out, TokenizerSpec.from_json({**hf_spec.to_json(), "lowercase": True}))
    assert lower.encode(["PRÁVĚ"], None)[0].tolist() == runtime.encode(["právě"], None)[0].tolist()


def test_engine_tokenizers_do_not_import_torch_or_transformers(nllb_bundle):
    out, spec = nllb_bundle
    code = (
        "import json, sys\n"
        "from transalign.engine.bundle import TokenizerSpec\n"
        "from transalign.engine.tokenizers import load_tokenizer\n"
        f"spec = TokenizerSpec.from_json(json.loads({json.dumps(json.dumps(spec.to_json()))}))\n"
        f"ids, _ = load_tokenizer({str(out)!r}, spec).encode(['Hello', 'world'], 'eng_Latn')\n"
        "import transalign.engine.tokenizers.hf\n"
        "print(len(ids), 'torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.split()[1:] == ["False", "False"], result.stdout + result.stderr


# -- BERT family --------------------------------------------------------------------------------


def test_bert_family_matches_fast_tokenizer(bert_family, real_sentences):
    reference, runtime, _, _ = bert_family
    sentences = [[w] for w in TRICKY_WORDS] + [TRICKY_WORDS] + _fuzz_sentences(3, 300)
    sentences += real_sentences["ces_Latn"][:500] + real_sentences["bam_Latn"][:300]
    assert _mismatches(runtime, reference, sentences, None) == []


def test_bert_family_ignores_the_language(bert_family):
    _, runtime, spec, _ = bert_family
    words = ["Právě", "hello"]
    ids = runtime.encode(words, None)[0].tolist()
    assert runtime.encode(words, "eng_Latn")[0].tolist() == runtime.encode(words, "anything")[0].tolist() == ids
    runtime.check_lang("whatever")
    assert ids[:len(spec.prefix_ids)] == list(spec.prefix_ids) and ids[-len(spec.suffix_ids):] == list(spec.suffix_ids)
    assert runtime.encode([], None)[0].tolist() == list(spec.prefix_ids + spec.suffix_ids)


def test_bert_lowercasing_applied_by_transformers_at_load_is_exported(tmp_path):
    """BertTokenizerFast rebuilds its normalizer when do_lower_case differs from tokenizer.json;
    the bundle must carry the tokenizer as loaded, not the file on disk."""
    reference = transformers.AutoTokenizer.from_pretrained(tiny_tokenizer_dir("bert"), do_lower_case=True)
    spec = spec_from_hf_tokenizer(reference, tmp_path, "hf-tokenizers")
    runtime = load_tokenizer(tmp_path, spec)
    words = ["PRÁVĚ", "Hello", "WORLD"]
    assert runtime.encode(words, None)[0].tolist() == reference(words, is_split_into_words=True)["input_ids"]
    assert reference(words, is_split_into_words=True)["input_ids"] == reference(
        [w.lower() for w in words], is_split_into_words=True)["input_ids"]


# -- export: spec_from_hf_tokenizer -------------------------------------------------------------


def test_nllb_spec(nllb_bundle, nllb_fast):
    out, spec = nllb_bundle
    assert spec.kind == "sentencepiece-nllb" and (out / spec.file).is_file()
    assert (spec.unk_id, spec.eos_id, spec.pad_id, spec.piece_offset) == (3, 2, 1, 1)
    assert len(spec.lang_code_ids) == 202
    assert spec.lang_code_ids["eng_Latn"] == nllb_fast.convert_tokens_to_ids("eng_Latn")
    assert spec.added_tokens["<mask>"] == nllb_fast.mask_token_id
    assert spec.whitespace == "strip"


def test_nllb_spec_from_the_slow_tokenizer(nllb_slow, nllb_bundle, tmp_path):
    spec = spec_from_hf_tokenizer(nllb_slow, tmp_path, "sentencepiece-nllb")
    assert spec == nllb_bundle[1]


def test_nllb_spec_keep_whitespace_tokenizer(tiny_nllb, tmp_path):
    (tmp_path / "hf").mkdir()
    build_keep_whitespace_nllb(tiny_nllb, tmp_path / "hf")
    reference = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    spec = spec_from_hf_tokenizer(reference, tmp_path / "bundle", "sentencepiece-nllb")
    assert spec.whitespace == "keep"


def test_nllb_spec_refuses_a_vocabulary_off_the_offset_rule(nllb_fast, tmp_path, monkeypatch):
    real = nllb_fast.convert_tokens_to_ids

    def shifted(tokens):
        ids = real(tokens)
        return [i + 1 if t == "▁t" else i for t, i in zip(tokens, ids)] if isinstance(tokens, list) else ids

    monkeypatch.setattr(nllb_fast, "convert_tokens_to_ids", shifted)
    with pytest.raises(ExportError, match=r"1 of \d+ sentencepiece pieces .*'▁t'"):
        spec_from_hf_tokenizer(nllb_fast, tmp_path, "sentencepiece-nllb")


def test_nllb_spec_needs_the_sentencepiece_file(tiny_nllb, tmp_path):
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (tmp_path / name).write_bytes((tiny_nllb / name).read_bytes())
    config = json.loads((tmp_path / "tokenizer_config.json").read_text(encoding="utf-8"))
    config.pop("from_slow", None)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    reference = transformers.AutoTokenizer.from_pretrained(tmp_path)
    with pytest.raises(ExportError, match="sentencepiece"):
        spec_from_hf_tokenizer(reference, tmp_path / "bundle", "sentencepiece-nllb")


def test_mismatches_are_reported_word_by_word(tiny_nllb, tmp_path, nllb_bundle):
    """A bundle that mis-tokenizes is refused, naming the words (here: a 'keep' tokenizer.json
    checked against a runtime told 'strip')."""
    (tmp_path / "hf").mkdir()
    build_keep_whitespace_nllb(tiny_nllb, tmp_path / "hf")
    reference = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    out, spec = nllb_bundle
    problems = compare_with_reference(reference, out, spec, [["fine", "x\u200f", "ok"]], ["eng_Latn"])
    assert len(problems) == 1 and "word " + repr("x\u200f") in problems[0]
    assert repr("x\u200f") in str(TokenizerMismatchError(problems))


def test_bert_family_spec(bert_family):
    reference, _, spec, _ = bert_family
    assert spec.kind == "hf-tokenizers" and spec.file == "tokenizer.json"
    assert spec.prefix_ids == (reference.cls_token_id,) and spec.suffix_ids == (reference.sep_token_id,)
    assert (spec.unk_id, spec.pad_id) == (reference.unk_token_id, reference.pad_token_id)
    assert spec.lang_code_ids == {}


def test_bert_spec_refuses_a_slow_tokenizer(tmp_path):
    slow = transformers.AutoTokenizer.from_pretrained(tiny_tokenizer_dir("bert"), use_fast=False)
    with pytest.raises(ExportError, match="slow tokenizer"):
        spec_from_hf_tokenizer(slow, tmp_path, "hf-tokenizers")
