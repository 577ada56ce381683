"""libtransalign on XLM-R-family bundles (issue 26.3): the multilingual-e5 kind, a tokenizer.json
with a Precompiled normalizer, Metaspace and a Unigram model, which export also writes as a
sentencepiece model (transalign/export/spm_model.py) for the C library.

The truth is the Python engine on the same bundle: `HfWordTokenizer` (the `tokenizers` library
itself, checked against transformers in test_export_bert.py) for ids and word indices, and
`transalign align` for the output file. The tiny XLM-R checkpoint of tests/fixture_bert.py is
exported here; the real demo bundle is used only where it exists (say so when it does not).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixture_bert import XLMR_MAX_POSITIONS, bert_cache_key, build_tiny_xlmr
from fixture_models import CORPUS, cached_dir
from test_c_library import BUILD, TA_OK, CAligner, _write_lines, lib  # noqa: F401
from transalign.cli import main as transalign_main
from transalign.engine.bundle import read_manifest, sha256_file
from transalign.engine.tokenizers import load_tokenizer
from transalign.export.spm_model import SPM_MODEL_FILE, add_to_bundle

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_CACHE = ROOT / ".cache" / "fixtures"
DEMO_BUNDLE = ROOT / ".cache" / "bundles" / "e5-small-l6"
XLMR_LAYER = 3


def _export_key() -> str:
    files = sorted((ROOT / "transalign" / "export").glob("*.py")) + [ROOT / "transalign" / "engine" / "bundle.py"]
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()[:16]


@pytest.fixture(scope="module")
def xlmr_bundle() -> Path:
    from transalign.export.api import export_bundle

    model = cached_dir(FIXTURE_CACHE, f"tiny-xlmr-{bert_cache_key()}", build_tiny_xlmr)

    def build(out: Path) -> None:
        export_bundle(str(model), out / "bundle", layer=XLMR_LAYER, precisions="fp32,int8", force=True)

    return cached_dir(FIXTURE_CACHE, f"tiny-xlmr-bundle-{bert_cache_key()}-{_export_key()}", build) / "bundle"


@pytest.fixture(scope="module")
def c_xlmr(lib, xlmr_bundle):
    aligner = CAligner(lib, xlmr_bundle)
    assert aligner.status == TA_OK, aligner.message
    yield aligner
    aligner.close()


@pytest.fixture(scope="module")
def py_xlmr(xlmr_bundle):
    return load_tokenizer(xlmr_bundle, read_manifest(xlmr_bundle).tokenizer)


def demo_bundle_copy(tmp_path: Path) -> Path:
    """The demo bundle (built here as `make demo` builds it when absent: tools/demo.ensure_bundle,
    which also adds the sentencepiece model to one exported before export wrote it) as hard links
    in tmp_path/e5 (the GB of weights not copied)."""
    from tools.demo import ensure_bundle

    assert ensure_bundle(DEMO_BUNDLE, rebuild=False) == DEMO_BUNDLE
    bundle = tmp_path / "e5"
    bundle.mkdir()
    for item in DEMO_BUNDLE.iterdir():
        if item.is_file() and item.name != "manifest.json":
            try:
                os.link(item, bundle / item.name)
            except OSError:
                shutil.copyfile(item, bundle / item.name)
    shutil.copyfile(DEMO_BUNDLE / "manifest.json", bundle / "manifest.json")
    if not read_manifest(bundle, verify_hashes=False).tokenizer.sentencepiece_file:
        assert add_to_bundle(bundle)
    return bundle


def _mismatches(c_aligner, python, sentences) -> list[str]:
    bad = []
    for words, (ids, wids) in zip(sentences, python.encode_batch(sentences)):
        got = c_aligner.tokenize(words, "eng_Latn")  # any code: XLM-R has none and ignores it
        if got != (ids.tolist(), wids.tolist()):
            bad.append(f"{[ascii(w) for w in words]}: C {got} != Python {ids.tolist()} / {wids.tolist()}")
    return bad


def test_export_writes_the_sentencepiece_model_and_hashes_it(xlmr_bundle):
    manifest = read_manifest(xlmr_bundle)
    assert manifest.tokenizer.kind == "hf-tokenizers" and manifest.tokenizer.sentencepiece_file == SPM_MODEL_FILE
    assert manifest.files[SPM_MODEL_FILE] == sha256_file(xlmr_bundle / SPM_MODEL_FILE)
    import sentencepiece as spm
    import json

    vocab = json.loads((xlmr_bundle / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    sp = spm.SentencePieceProcessor(model_file=str(xlmr_bundle / SPM_MODEL_FILE))
    assert [sp.id_to_piece(i) for i in range(sp.get_piece_size())] == [piece for piece, _ in vocab]


def test_tokenization_matches_python_on_the_corpus_and_tricky_words(c_xlmr, py_xlmr):
    from test_tokenization import TRICKY_WORDS, _fuzz_sentences

    corpus = [line.split() for line in CORPUS.read_text(encoding="utf-8").splitlines()]
    words = [w for w in TRICKY_WORDS if "\x00" not in w]
    extra = ["\uff1cs\uff1e", "\uff1cunk\uff1e", "\uff1c/s\uff1e", "a<mask>b", "a <mask> b", "<mask> ", " <mask>",
             "\u2581\u2581x", "x\u2581\u2581", "a\u2581b", "\u2581"]
    sentences = corpus + [[w] for w in words + extra] + [words, words[::-1]] + _fuzz_sentences(3, 300)
    sentences = [s for s in sentences if not any("\x00" in w for w in s)]
    assert len(corpus) == 534 and len(sentences) > 950
    assert _mismatches(c_xlmr, py_xlmr, sentences) == []


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12),
                max_size=6))
def test_tokenization_matches_python_on_fuzzed_words(c_xlmr, py_xlmr, words):
    assert _mismatches(c_xlmr, py_xlmr, [words]) == []


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_align_program_output_is_byte_identical(xlmr_bundle, tmp_path, precision, lib):
    from test_c_library import _both_clis_files

    gold = ROOT / "data" / "gold" / "csen"
    src = [line.split() for line in (gold / "src.txt").read_text("utf-8").splitlines()][:600]
    tgt = [line.split() for line in (gold / "tgt.txt").read_text("utf-8").splitlines()][:600]
    c_bytes, py_bytes, stderr = _both_clis_files(xlmr_bundle, tmp_path, src, tgt, precision, "--skip-long")
    assert c_bytes.count(b"\n") == 600 and c_bytes == py_bytes
    assert c_bytes.count(b"\n\n") < 300  # most pairs fit the tiny model's positions and have links
    assert "pairs were longer" in stderr  # and some did not (the skip path is exercised)


def test_languages_are_ignored_like_python(c_xlmr, lib):
    import ctypes

    has = ctypes.c_int(5)
    assert lib.ta_aligner_get_language(c_xlmr.handle, b"eng_Latn", ctypes.byref(has)) == TA_OK and has.value == 0
    assert lib.ta_aligner_has_language(c_xlmr.handle, b"eng_Latn") == 0 and b"no language codes" in lib.ta_errmsg()
    with_codes = c_xlmr.align([["a", "b"]], [["c"]], "eng_Latn", "deu_Latn")
    without = c_xlmr.align([["a", "b"]], [["c"]], None, None)
    assert with_codes[0] == without[0] == TA_OK and with_codes[2] == without[2]


def test_max_positions_of_the_tiny_model(c_xlmr, lib):
    import ctypes

    value = ctypes.c_int()
    assert lib.ta_aligner_get_max_positions(c_xlmr.handle, ctypes.byref(value)) == TA_OK
    assert value.value == XLMR_MAX_POSITIONS


def test_the_demo_bundle(lib, tmp_path):
    """The real multilingual-e5-small bundle that `make demo` builds (250,002 pieces, the real
    charsmap): a bundle exported before spm_model.py gets the model added by
    `python -m transalign.export.spm_model`; tokens equal Python's on the corpus and links on csen."""
    bundle = demo_bundle_copy(tmp_path)
    aligner = CAligner(lib, bundle, precision="int8")
    assert aligner.status == TA_OK, aligner.message
    python = load_tokenizer(bundle, read_manifest(bundle).tokenizer)
    corpus = [line.split() for line in CORPUS.read_text(encoding="utf-8").splitlines()]
    from test_tokenization import TRICKY_WORDS

    sentences = corpus + [[w] for w in TRICKY_WORDS if "\x00" not in w]
    assert _mismatches(aligner, python, sentences) == []
    aligner.close()
    gold = ROOT / "data" / "gold" / "csen"
    src = [line.split() for line in (gold / "src.txt").read_text("utf-8").splitlines()][:200]
    tgt = [line.split() for line in (gold / "tgt.txt").read_text("utf-8").splitlines()][:200]
    from test_c_library import _both_clis_files

    c_bytes, py_bytes, _ = _both_clis_files(bundle, tmp_path, src, tgt, "int8")
    assert c_bytes.count(b"\n") == 200 and c_bytes == py_bytes


@pytest.mark.slow
def test_valgrind_memcheck_of_the_tool_on_an_xlmr_bundle(lib, xlmr_bundle, tmp_path):
    """The Unigram path (tokenizer.json reading, Viterbi, added-token cuts) under memcheck."""
    from test_tokenization import TRICKY_WORDS

    if shutil.which("valgrind") is None:
        pytest.fail("valgrind is missing: apt-get install valgrind (CI installs it, see .ci/run)")
    words = [w for w in TRICKY_WORDS if "\x00" not in w and w.strip()][:60]
    src = _write_lines(tmp_path / "s.txt", [words[k:k + 6] for k in range(0, 60, 6)])
    tgt = _write_lines(tmp_path / "t.txt", [words[k:k + 4][::-1] for k in range(0, 60, 6)])
    run = subprocess.run(["valgrind", "--tool=memcheck", "--leak-check=full", "--errors-for-leak-kinds=definite",
                          "--show-leak-kinds=definite", "--error-exitcode=3",
                          f"--suppressions={ROOT / 'c' / 'tests' / 'valgrind.supp'}",
                          str(BUILD / "transalign-align"), str(xlmr_bundle), "--src", str(src), "--tgt", str(tgt),
                          "--threads", "1", "--skip-long", "-o", str(tmp_path / "out.align")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-6000:]
    assert "ERROR SUMMARY: 0 errors" in run.stderr and "definitely lost: 0 bytes" in run.stderr
    assert (tmp_path / "out.align").read_text().count("\n") == 10
