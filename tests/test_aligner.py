"""The Aligner against the reference procedure (tests/reference.py) on the tiny fixture."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reference import embed_words, load_reference_encoder, reference_links, reference_margin
from transalign.engine.aligner import Aligner, AlignResult, TooLongError
from transalign.engine.bundle import BundleError, read_manifest
from transalign.evaluation import evaluate_alignments
from transalign.formats.alignments import AlignmentLine
from transalign.formats.text import read_sentences

ROOT = Path(__file__).resolve().parents[1]
THRESHOLD = 0.001
TRICKY = [
    ("Hello , world !", "Ahoj , světe !"),
    ("The price is 3.50 € ( 12 % ) .", "Cena je 3,50 € ( 12 % ) ."),
    ("敏捷 的 狐狸", "the quick fox"),
    ("الثعلب البني السريع", "the brown fox"),
    ("I ❤️ NY 😀 👍🏽", "Miluji NY 😀"),
    ("naïve café e\u0301 Zu\u0308rich", "naivní kavárna"),
    ("ﬁnancial ｆｕｌｌｗｉｄｔｈ ① ½", "finanční"),
    ("x" * 120, "a very long word on the other side"),
    ("\u200b word \u00ad", "slovo"),
    ("one", "jeden"),
]


@pytest.fixture(scope="session")
def parity_corpus(data_dir):
    """A few hundred varied pairs: Czech-English gold, Bambara-English, and tricky input."""
    cs = (data_dir / "gold/csen/src.txt").read_text(encoding="utf-8").splitlines()[:150]
    en = (data_dir / "gold/csen/tgt.txt").read_text(encoding="utf-8").splitlines()[:150]
    bam_dir = data_dir / "reference/bam-sample"
    bam = read_sentences(bam_dir / "test-bam.txt", "conll")[:150]
    bam_en = read_sentences(bam_dir / "test-translate-bam-en-preds.txt", "conll")[:150]
    pairs = [(s.split(), t.split(), "ces_Latn", "eng_Latn") for s, t in zip(cs, en)]
    pairs += [(s, t, "bam_Latn", "eng_Latn") for s, t in zip(bam, bam_en)]
    pairs += [(s.split(), t.split(), "eng_Latn", "ces_Latn") for s, t in TRICKY]
    return pairs


@pytest.fixture(scope="session")
def reference_run(tiny_nllb, tiny_lora, parity_corpus):
    """Reference links and threshold margins for every corpus pair (one pair at a time)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_nllb)
    encoder = load_reference_encoder(tiny_nllb, tiny_lora)
    out = []
    for src, tgt, src_lang, tgt_lang in parity_corpus:
        x, xw = embed_words(tokenizer, encoder, src, src_lang, layer=3)
        y, yw = embed_words(tokenizer, encoder, tgt, tgt_lang, layer=3)
        out.append((reference_links(x, y, xw, yw, THRESHOLD), reference_margin(x, y, THRESHOLD).min()
                    if len(x) and len(y) else np.inf))
    return out


@pytest.fixture(scope="session")
def aligner(tiny_bundle):
    return Aligner.load(tiny_bundle, provider="cpu", precision="fp32")


def align_grouped(aligner, corpus, **kwargs):
    """Align the corpus grouped by language pair, return results in corpus order."""
    results = [None] * len(corpus)
    groups = {}
    for k, (_, _, sl, tl) in enumerate(corpus):
        groups.setdefault((sl, tl), []).append(k)
    for (sl, tl), idx in groups.items():
        got = aligner.align([corpus[k][0] for k in idx], [corpus[k][1] for k in idx], sl, tl, **kwargs)
        for k, r in zip(idx, got):
            results[k] = r
    return results


def link_f1(a: list[set], b: list[set]) -> float:
    inter = sum(len(x & y) for x, y in zip(a, b))
    total = sum(len(x) for x in a) + sum(len(y) for y in b)
    return 2 * inter / total if total else 1.0


def test_fp32_parity_with_reference(aligner, parity_corpus, reference_run):
    results = align_grouped(aligner, parity_corpus)
    ours = [set(r.links) for r in results]
    ref = [links for links, _ in reference_run]
    assert len(parity_corpus) >= 300
    differing = [k for k, (a, b) in enumerate(zip(ours, ref)) if a != b]
    for k in differing:  # any difference must be a threshold tie in the reference itself
        assert reference_run[k][1] < 1e-6, f"pair {k} differs and is not a threshold tie"
    identical = 1 - len(differing) / len(ref)
    f1 = link_f1(ours, ref)
    print(f"fp32 vs reference: identical pairs {identical:.4f}, link F1 {f1:.5f}, "
          f"links {sum(map(len, ours))}")
    assert identical >= 0.995 and f1 >= 0.999
    assert sum(map(len, ref)) > len(ref)  # the comparison is not vacuous


def test_links_sorted_and_typed(aligner, parity_corpus):
    for result in align_grouped(aligner, parity_corpus[:20]):
        assert isinstance(result, AlignResult)
        assert list(result.links) == sorted(set(result.links))
        assert all(isinstance(i, int) and isinstance(j, int) for i, j in result.links)


def test_batching_does_not_change_results(aligner, parity_corpus):
    """One code path: a budget that forces one sequence per batch, a huge one, and pair by pair."""
    subset = [p for p in parity_corpus if p[2] == "ces_Latn"][:40]
    src, tgt = [p[0] for p in subset], [p[1] for p in subset]
    big = aligner.align(src, tgt, "ces_Latn", "eng_Latn", batch_tokens=65_536)
    small = aligner.align(src, tgt, "ces_Latn", "eng_Latn", batch_tokens=1)
    single = [aligner.align([s], [t], "ces_Latn", "eng_Latn")[0] for s, t in zip(src[:10], tgt[:10])]
    chunked = list(aligner.align_iter(src, tgt, "ces_Latn", "eng_Latn", chunk_pairs=7))
    assert big == small == chunked
    assert single == big[:10]


def test_strings_split_on_whitespace(aligner):
    words = aligner.align([["a", "b", "c"]], [["x", "y"]], "eng_Latn", "ces_Latn")
    text = aligner.align(["a  b\tc"], ["x y"], "eng_Latn", "ces_Latn")
    assert words == text


def test_int8_agreement_with_fp32(tiny_bundle, aligner, parity_corpus):
    int8 = Aligner.load(tiny_bundle, provider="cpu", precision="int8")
    a = [set(r.links) for r in align_grouped(aligner, parity_corpus)]
    b = [set(r.links) for r in align_grouped(int8, parity_corpus)]
    identical = sum(x == y for x, y in zip(a, b)) / len(a)
    f1 = link_f1(b, a)
    # the same number by the evaluation's formula, 2PR / (P + R), with fp32's links as the gold
    scores = evaluate_alignments([AlignmentLine(frozenset(x)) for x in a], b).corpus
    assert f1 == pytest.approx(scores.f1, abs=1e-12)
    # chance level: int8 links drawn at random among a pair's n * m cells, as many as it has,
    # meet fp32's |a| |b| / (n m) times; int8 must close at least half the gap from chance to 1
    cells = [len(src) * len(tgt) for src, tgt, _, _ in parity_corpus]
    chance = 2 * sum(len(x) * len(y) / c for x, y, c in zip(a, b, cells) if c) / (sum(map(len, a)) + sum(map(len, b)))
    print(f"int8 vs fp32 (tiny random model): identical pairs {identical:.3f}, link F1 {f1:.4f} "
          f"(chance {chance:.4f})")
    assert sum(map(len, a)) > len(a) and f1 >= chance + 0.5 * (1.0 - chance)


def test_empty_sentences_give_empty_results(aligner):
    results = aligner.align(["", "a b", []], ["x", "", []], "eng_Latn", "ces_Latn")
    assert [r.links for r in results] == [(), (), ()]
    assert all(r.skipped is None for r in results)


def test_threshold_override(aligner):
    src, tgt = ["a b c d"], ["w x y z"]
    everything = aligner.align(src, tgt, "eng_Latn", "ces_Latn", threshold=0.0)[0]
    strict = aligner.align(src, tgt, "eng_Latn", "ces_Latn", threshold=0.999)[0]
    assert len(everything.links) == 16 and strict.links == ()
    with pytest.raises(ValueError, match=r"threshold 1.5: must be a number in \[0, 1\)"):
        aligner.align(src, tgt, "eng_Latn", "ces_Latn", threshold=1.5)


def test_too_long_is_an_error_naming_the_pair(aligner):
    long = ["word"] * 400  # > 256 positions of the tiny model
    with pytest.raises(TooLongError, match=r"pair 1: the target sentence has (\d+|more than \d+) tokens.*maximum of 256"):
        aligner.align(["a", "b", "c"], ["x", long, "z"], "eng_Latn", "ces_Latn")


def test_too_long_can_be_skipped(aligner):
    long = ["word"] * 400
    with pytest.warns(UserWarning, match="1 of 3 pairs"):
        results = aligner.align(["a", long, "c"], ["x", "y", "z"], "eng_Latn", "ces_Latn", on_too_long="skip")
    assert aligner.stats.skipped == 1
    expected = aligner.align(["a", "c"], ["x", "z"], "eng_Latn", "ces_Latn")
    assert results[1] == AlignResult((), skipped="too_long")
    assert [results[0], results[2]] == expected


def test_unknown_language_lists_close_matches(aligner):
    with pytest.raises(ValueError, match=r"eng_latn.*eng_Latn"):
        aligner.align(["a"], ["b"], "eng_latn", "ces_Latn")


def test_mismatched_pair_counts(aligner):
    with pytest.raises(ValueError, match="source has 2 sentences but target has 1"):
        aligner.align(["a", "b"], ["c"], "eng_Latn", "ces_Latn")


def test_provider_and_precision_errors(tiny_bundle):
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(ValueError, match=r"CUDAExecutionProvider is not available.*available: .*CPU"):
            Aligner.load(tiny_bundle, provider="cuda")
        with pytest.raises(ValueError, match="fp16 models are for the CUDA provider"):
            Aligner.load(tiny_bundle, provider="auto", precision="fp16")
    with pytest.raises(ValueError, match="provider 'tpu': not one of auto, cpu, cuda"):
        Aligner.load(tiny_bundle, provider="tpu")
    with pytest.raises(ValueError, match="precision 'int4': not one of"):
        Aligner.load(tiny_bundle, precision="int4")


def test_bundle_without_a_precision(tmp_path, tiny_bundle):
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    del manifest["precisions"]["int8"]
    del manifest["files"]["model.int8.onnx"]
    (bundle / "model.int8.onnx").unlink()
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"precision 'int8': bundle \w+ has no such model \(it has fp32, fp16\)"):
        Aligner.load(bundle, precision="int8")


def test_damaged_bundles_are_refused(tmp_path, tiny_bundle):
    with pytest.raises(BundleError, match="does not exist"):
        Aligner.load(tmp_path / "missing")
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    with open(bundle / "model.onnx", "r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00\x01\x02")
    with pytest.raises(BundleError, match=r"model\.onnx fails its sha256 check"):
        Aligner.load(bundle)
    shutil.rmtree(bundle)
    shutil.copytree(tiny_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["format_version"] = 99
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="format version 99 is not supported"):
        Aligner.load(bundle)
    (bundle / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        Aligner.load(bundle)
    (bundle / "manifest.json").unlink()
    with pytest.raises(BundleError, match="manifest.json is missing"):
        Aligner.load(bundle)


def test_runtime_never_imports_torch(tiny_bundle):
    code = (
        "import sys, transalign\n"
        "from transalign import Aligner\n"
        f"a = Aligner.load({str(tiny_bundle)!r}, provider='cpu', precision='int8')\n"
        "r = a.align(['a b c'], ['x y'], 'eng_Latn', 'ces_Latn')\n"
        "bad = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print(len(r))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"


def test_external_weights_are_hashed_per_precision(tmp_path, tiny_bundle):
    """Weights live in model*.onnx.data; damage there is caught, for the precision being loaded only."""
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    data = bundle / "model.int8.onnx.data"
    assert data.is_file() and "model.int8.onnx.data" in read_manifest(bundle).files
    with open(data, "r+b") as handle:
        handle.seek(64)
        byte = handle.read(1)
        handle.seek(64)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(BundleError, match=r"model\.int8\.onnx\.data fails its sha256 check"):
        Aligner.load(bundle, precision="int8")
    assert Aligner.load(bundle, precision="fp32").align(["a b"], ["c d"], "eng_Latn", "ces_Latn")


def test_languages_resolve_once_for_every_caller(tiny_bundle):
    """engine.options.resolve_languages: exact codes, a bare ISO 639-3 code with one script (read as
    that code), and clear LanguageErrors naming the option: unknown (with close matches), two-letter
    ISO 639-1, missing."""
    from transalign.engine.bundle import read_manifest
    from transalign.engine.options import LanguageError, resolve_languages

    manifest = read_manifest(tiny_bundle, verify_hashes=False)
    known = manifest.tokenizer.lang_code_ids
    assert resolve_languages(manifest, "eng_Latn", "ces_Latn").mapped == ()
    bare = resolve_languages(manifest, "eng", "ces_Latn")
    assert (bare.src, bare.tgt) == ("eng_Latn", "ces_Latn") and bare.mapped == (("src_lang", "eng", "eng_Latn"),)
    with pytest.raises(LanguageError) as info:
        resolve_languages(manifest, "eng_Latn", "CES_latn_x")
    assert info.value.option == "tgt_lang" and info.value.side == "target" and "ces_Latn" in info.value.matches
    assert info.value.named("--tgt-lang").startswith("--tgt-lang 'CES_latn_x': unknown language code")
    with pytest.raises(LanguageError, match="two-letter ISO 639-1 codes are not used"):
        resolve_languages(manifest, "cs", "eng_Latn")
    with pytest.raises(LanguageError) as info:
        resolve_languages(manifest, None, "eng_Latn")
    assert info.value.code is None and info.value.named("--src-lang").startswith("--src-lang is required")
    aligner = Aligner.load(tiny_bundle, provider="cpu")
    assert aligner.align(["a b"], ["x y"], "eng", "ces") == aligner.align(["a b"], ["x y"], "eng_Latn", "ces_Latn")
    assert {"eng_Latn", "ces_Latn"} <= set(known)
