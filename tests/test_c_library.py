"""libtransalign (c/): built with `make c`, driven through ctypes and its example program.

The truth is always the Python engine, run in the same test on the same tiny bundle: token ids
and word indices of `NllbWordTokenizer` (itself checked against Hugging Face's fast tokenizer in
test_tokenization.py), links of `Aligner` and the output files of `transalign align`.
Nothing is skipped: a missing compiler or library fails the build with the apt-get line to run.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from transalign import Aligner
from transalign.cli import main as transalign_main
from transalign.engine.bundle import read_manifest, sha256_file
from transalign.formats.text import read_sentences
from transalign.engine.tokenizers import load_tokenizer

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "c"
# words a C string cannot carry (U+0000 ends it): see README "C library", differences
NUL_WORDS = ("a\x00b",)

TA_OK, TA_ERR_ARGUMENT, TA_ERR_BUNDLE, TA_ERR_HASH, TA_ERR_UNSUPPORTED, TA_ERR_LANGUAGE, TA_ERR_TOO_LONG, \
    TA_ERR_UTF8 = range(8)


class Sentence(ctypes.Structure):
    _fields_ = [("words", ctypes.POINTER(ctypes.c_char_p)), ("n_words", ctypes.c_size_t)]


class SizedSentence(ctypes.Structure):
    _fields_ = [("words", ctypes.POINTER(ctypes.c_char_p)), ("lengths", ctypes.POINTER(ctypes.c_size_t)),
                ("n_words", ctypes.c_size_t)]


class OpenOptions(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("provider", ctypes.c_char_p), ("precision", ctypes.c_char_p),
                ("threads", ctypes.c_int), ("verify_hashes", ctypes.c_int), ("ort_library", ctypes.c_char_p)]


class AlignOptions(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("threshold", ctypes.c_double), ("batch_tokens", ctypes.c_size_t),
                ("skip_long", ctypes.c_int)]


# -- the library ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lib() -> ctypes.CDLL:
    result = subprocess.run(["make", "-j2", "c", f"PYTHON={sys.executable}"], cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail("`make c` failed (CI installs the toolchain: see the apt-get line in .ci/run):\n"
                    + result.stdout[-3000:] + result.stderr[-3000:])
    lib = ctypes.CDLL(str(BUILD / "libtransalign.so"))
    P = ctypes.c_void_p
    lib.ta_errmsg.restype = ctypes.c_char_p
    lib.ta_version.restype = ctypes.c_char_p
    lib.ta_status_name.restype = ctypes.c_char_p
    lib.ta_open.argtypes = [ctypes.c_char_p, ctypes.POINTER(OpenOptions), ctypes.POINTER(P)]
    lib.ta_close.argtypes = [P]
    lib.ta_align.argtypes = [P, ctypes.POINTER(Sentence), ctypes.POINTER(Sentence), ctypes.c_size_t, ctypes.c_char_p,
                             ctypes.c_char_p, ctypes.POINTER(AlignOptions), ctypes.POINTER(P)]
    lib.ta_result_count.argtypes = [P]
    lib.ta_result_count.restype = ctypes.c_size_t
    lib.ta_result_links.argtypes = [P, ctypes.c_size_t, ctypes.POINTER(ctypes.POINTER(ctypes.c_int32)),
                                    ctypes.POINTER(ctypes.c_size_t)]
    lib.ta_result_skipped.argtypes = [P, ctypes.c_size_t]
    lib.ta_result_free.argtypes = [P]
    lib.ta_tokenize.argtypes = [P, ctypes.POINTER(Sentence), ctypes.c_char_p, ctypes.POINTER(P)]
    lib.ta_tokens_count.argtypes = [P]
    lib.ta_tokens_count.restype = ctypes.c_size_t
    lib.ta_tokens_ids.argtypes = [P]
    lib.ta_tokens_ids.restype = ctypes.POINTER(ctypes.c_int64)
    lib.ta_tokens_word_ids.argtypes = [P]
    lib.ta_tokens_word_ids.restype = ctypes.POINTER(ctypes.c_int32)
    lib.ta_tokens_free.argtypes = [P]
    lib.ta_aligner_has_language.argtypes = [P, ctypes.c_char_p]
    size_p = ctypes.POINTER(ctypes.c_size_t)
    lib.ta_align_sized.argtypes = [P, ctypes.POINTER(SizedSentence), ctypes.POINTER(SizedSentence), ctypes.c_size_t,
                                   ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(AlignOptions), ctypes.POINTER(P)]
    lib.ta_tokenize_sized.argtypes = [P, ctypes.POINTER(SizedSentence), ctypes.c_char_p, ctypes.POINTER(P)]
    lib.ta_aligner_get_language.argtypes = [P, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)]
    lib.ta_aligner_get_default_threshold.argtypes = [P, ctypes.POINTER(ctypes.c_double)]
    lib.ta_aligner_get_max_positions.argtypes = [P, ctypes.POINTER(ctypes.c_int)]
    lib.ta_aligner_get_provider.argtypes = [P, ctypes.POINTER(ctypes.c_char_p)]
    for name in ("ta_aligner_get_max_sentence_chars", "ta_aligner_get_batch_tokens", "ta_aligner_get_batch_overhead"):
        getattr(lib, name).argtypes = [P, size_p]
    lib.ta_result_get_skipped.argtypes = [P, ctypes.c_size_t, ctypes.POINTER(ctypes.c_int)]
    lib.ta_result_pharaoh.argtypes = [P, ctypes.c_size_t]
    lib.ta_result_pharaoh.restype = ctypes.c_char_p
    lib.ta_result_pharaoh_into.argtypes = [P, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t, size_p]
    lib.ta_plan_batches.argtypes = [size_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_size_t, size_p, size_p, size_p]
    return lib


class CAligner:
    """A thin ctypes wrapper: status codes are returned, never raised, so tests can check them."""

    def __init__(self, lib, bundle, precision="fp32", verify=True):
        self.lib = lib
        options = OpenOptions()
        lib.ta_open_options_init(ctypes.byref(options))
        options.precision = precision.encode()
        options.verify_hashes = int(verify)
        options.threads = 1
        self.handle = ctypes.c_void_p()
        self.status = lib.ta_open(str(bundle).encode(), ctypes.byref(options), ctypes.byref(self.handle))
        self.message = lib.ta_errmsg().decode()

    def close(self):
        self.lib.ta_close(self.handle)
        self.handle = ctypes.c_void_p()

    def tokenize(self, words, lang):
        array, keep = _sentence(words)
        out = ctypes.c_void_p()
        status = self.lib.ta_tokenize(self.handle, ctypes.byref(array), lang.encode(), ctypes.byref(out))
        if status:
            return status, self.lib.ta_errmsg().decode()
        n = self.lib.ta_tokens_count(out)
        ids, wids = self.lib.ta_tokens_ids(out), self.lib.ta_tokens_word_ids(out)
        result = [ids[k] for k in range(n)], [wids[k] for k in range(n)]
        self.lib.ta_tokens_free(out)
        return result

    def align(self, src, tgt, src_lang="bam_Latn", tgt_lang="eng_Latn", threshold=-1.0, skip_long=False):
        """(status, message, [links per pair] or None, [skipped per pair] or None)."""
        options = AlignOptions()
        self.lib.ta_align_options_init(ctypes.byref(options))
        options.threshold, options.skip_long = threshold, int(skip_long)
        src_arr, _keep_src = _sentences(src)
        tgt_arr, _keep_tgt = _sentences(tgt)
        out = ctypes.c_void_p()
        status = self.lib.ta_align(self.handle, src_arr, tgt_arr, len(src), _code(src_lang), _code(tgt_lang),
                                   ctypes.byref(options), ctypes.byref(out))
        message = self.lib.ta_errmsg().decode()
        if status:
            assert not out.value
            return status, message, None, None
        links, skipped = [], []
        for pair in range(self.lib.ta_result_count(out)):
            data, n = ctypes.POINTER(ctypes.c_int32)(), ctypes.c_size_t()
            assert self.lib.ta_result_links(out, pair, ctypes.byref(data), ctypes.byref(n)) == TA_OK
            links.append(tuple((data[2 * k], data[2 * k + 1]) for k in range(n.value)))
            skipped.append(self.lib.ta_result_skipped(out, pair))
        self.lib.ta_result_free(out)
        return status, message, links, skipped


def _code(lang):
    return None if lang is None else lang.encode()


def _sentence(words):
    array = (ctypes.c_char_p * max(1, len(words)))(*[w.encode() if isinstance(w, str) else w for w in words])
    return Sentence(array, len(words)), array


def _sentences(sentences):
    out = (Sentence * max(1, len(sentences)))()
    keep = []
    for k, words in enumerate(sentences):
        out[k], array = _sentence(words)
        keep.append(array)
    return out, keep


@pytest.fixture(scope="module")
def fp32(lib, tiny_bundle):
    aligner = CAligner(lib, tiny_bundle)
    assert aligner.status == TA_OK, aligner.message
    yield aligner
    aligner.close()


@pytest.fixture(scope="module")
def python_tokenizer(tiny_bundle):
    return load_tokenizer(tiny_bundle, read_manifest(tiny_bundle, verify_hashes=False).tokenizer)


@pytest.fixture(scope="module")
def corpora(data_dir) -> dict[str, tuple[str, list[list[str]]]]:
    gold, bam = data_dir / "gold" / "csen", data_dir / "reference" / "bam-sample"
    return {
        "csen-src": ("ces_Latn", [line.split() for line in (gold / "src.txt").read_text("utf-8").splitlines()]),
        "csen-tgt": ("eng_Latn", [line.split() for line in (gold / "tgt.txt").read_text("utf-8").splitlines()]),
        "bam": ("bam_Latn", read_sentences(bam / "test-bam.txt", "conll")),
        "bam-en": ("eng_Latn", read_sentences(bam / "test-translate-bam-en-preds.txt", "conll")),
    }


def _token_mismatches(c_aligner, python_tokenizer, sentences, lang) -> list[str]:
    bad = []
    for words, (ids, wids) in zip(sentences, python_tokenizer.encode_batch(sentences, lang)):
        got = c_aligner.tokenize(words, lang)
        if got != (ids.tolist(), wids.tolist()):
            bad.append(f"{[ascii(w) for w in words]}: C {got} != Python {ids.tolist()} / {wids.tolist()}")
    return bad


# -- tokenization ---------------------------------------------------------------------------------


def test_version(lib):
    assert lib.ta_version().decode() == "0.1.0" and lib.ta_version_number() == 100
    assert lib.ta_status_name(TA_ERR_HASH) == b"TA_ERR_HASH"


def test_tokenization_matches_python_on_the_test_corpus(fp32, python_tokenizer):
    from test_tokenization import TRICKY_WORDS, _fuzz_sentences

    words = [w for w in TRICKY_WORDS if w not in NUL_WORDS]
    sentences = [[w] for w in words] + [words, words[::-1]] + _fuzz_sentences(0, 400) + _fuzz_sentences(1, 400)
    sentences = [s for s in sentences if not any("\x00" in w for w in s)]
    assert len(sentences) > 900
    for lang in ("eng_Latn", "zho_Hans"):
        assert _token_mismatches(fp32, python_tokenizer, sentences, lang) == []


def test_tokenization_matches_python_on_csen_gold_and_bam_sample(fp32, python_tokenizer, corpora):
    for name, (lang, sentences) in corpora.items():
        assert _token_mismatches(fp32, python_tokenizer, sentences, lang) == [], name


def test_tokenization_keep_whitespace_bundle(lib, tiny_bundle, tmp_path):
    """Bundles from older tokenizer.json converters keep trailing whitespace as a '▁' token."""
    from test_tokenization import TRICKY_WORDS, _fuzz_sentences

    bundle = _copy_bundle(tiny_bundle, tmp_path, edit=lambda m: m["tokenizer"].update(whitespace="keep"))
    python = load_tokenizer(bundle, read_manifest(bundle).tokenizer)
    aligner = CAligner(lib, bundle)
    assert aligner.status == TA_OK, aligner.message
    sentences = [[w] for w in TRICKY_WORDS if w not in NUL_WORDS] + _fuzz_sentences(2, 300)
    sentences = [s for s in sentences if not any("\x00" in w for w in s)]
    assert _token_mismatches(aligner, python, sentences, "eng_Latn") == []
    aligner.close()


def test_difference_a_word_ends_at_nul(fp32, python_tokenizer):
    """Pinned difference: C strings end at U+0000, so "a\\x00b" is the word "a" for the C library."""
    assert fp32.tokenize(["a\x00b"], "eng_Latn")[0] == python_tokenizer.encode(["a"], "eng_Latn")[0].tolist()
    assert fp32.tokenize(["a\x00b"], "eng_Latn")[0] != python_tokenizer.encode(["a\x00b"], "eng_Latn")[0].tolist()


# -- links ----------------------------------------------------------------------------------------


def _write_lines(path: Path, sentences) -> Path:
    path.write_text("".join(" ".join(words) + "\n" for words in sentences), encoding="utf-8")
    return path


def _both_clis(tiny_bundle, tmp_path, name, src, tgt, src_lang, tgt_lang, precision, *extra):
    src_file, tgt_file = _write_lines(tmp_path / f"{name}.src", src), _write_lines(tmp_path / f"{name}.tgt", tgt)
    common = ["--src", str(src_file), "--tgt", str(tgt_file), "--src-lang", src_lang, "--tgt-lang", tgt_lang,
              "--precision", precision, *extra]
    c_out, py_out = tmp_path / f"{name}.{precision}.c.align", tmp_path / f"{name}.{precision}.py.align"
    run = subprocess.run([str(BUILD / "transalign-align"), str(tiny_bundle), *common, "--threads", "1",
                          "-o", str(c_out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert transalign_main(["align", str(tiny_bundle), *common, "--provider", "cpu", "-o", str(py_out)]) == 0
    return c_out.read_bytes(), py_out.read_bytes()


def _both_clis_files(bundle, tmp_path, src, tgt, precision, *extra):
    """(C output, Python output, C stderr) of the two align programs without language codes (a
    bundle that has none: the XLM-R family)."""
    src_file, tgt_file = _write_lines(tmp_path / "pairs.src", src), _write_lines(tmp_path / "pairs.tgt", tgt)
    common = ["--src", str(src_file), "--tgt", str(tgt_file), "--precision", precision, *extra]
    c_out, py_out = tmp_path / f"{precision}.c.align", tmp_path / f"{precision}.py.align"
    run = subprocess.run([str(BUILD / "transalign-align"), str(bundle), *common, "--threads", "1", "-o", str(c_out)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert transalign_main(["align", str(bundle), *common, "--provider", "cpu", "-o", str(py_out)]) == 0
    return c_out.read_bytes(), py_out.read_bytes(), run.stderr


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_align_program_output_is_byte_identical_on_the_bam_sample(tiny_bundle, tmp_path, corpora, precision, lib):
    c_bytes, py_bytes = _both_clis(tiny_bundle, tmp_path, "bam", corpora["bam"][1], corpora["bam-en"][1],
                                   "bam_Latn", "eng_Latn", precision)
    assert c_bytes.count(b"\n") == len(corpora["bam"][1]) == 1274
    assert c_bytes == py_bytes


def test_align_program_output_is_byte_identical_on_the_csen_gold(tiny_bundle, tmp_path, corpora, lib):
    c_bytes, py_bytes = _both_clis(tiny_bundle, tmp_path, "csen", corpora["csen-src"][1], corpora["csen-tgt"][1],
                                   "ces_Latn", "eng_Latn", "fp32", "--threshold", "0.01", "--batch-tokens", "700",
                                   "--skip-long")  # one pair has a source sentence of 264 > 256 tokens
    assert c_bytes.count(b"\n") == 2501 and c_bytes == py_bytes


def test_links_equal_the_aligner_with_empty_sentences_and_words(fp32, tiny_bundle, corpora):
    src = corpora["bam"][1][:20] + [[], ["x"], [], ["", "ok"]]
    tgt = corpora["bam-en"][1][:20] + [["y"], [], [], ["fine", ""]]
    status, message, links, skipped = fp32.align(src, tgt)
    assert status == TA_OK, message
    expected = Aligner.load(tiny_bundle, provider="cpu").align(src, tgt, "bam_Latn", "eng_Latn")
    assert links == [r.links for r in expected] and skipped == [0] * len(src)
    assert links[-4:-1] == [(), (), ()]
    assert fp32.align([], [])[:3] == (TA_OK, "", [])


def test_links_with_many_empty_words(fp32, tiny_bundle):
    """Word ids far above the token count (empty words get no tokens) take the sparse path."""
    src = [[""] * 200 + ["a", "b"], ["x", *[""] * 50, "y"]]
    tgt = [["c", *[""] * 200, "d"], ["z"]]
    status, message, links, _ = fp32.align(src, tgt)
    assert status == TA_OK, message
    expected = Aligner.load(tiny_bundle, provider="cpu").align(src, tgt, "bam_Latn", "eng_Latn")
    assert links == [r.links for r in expected] and max(i for i, _ in links[0]) >= 200


def test_many_zero_token_words_are_not_too_long(fp32, tiny_bundle):
    """Empty or zero-width words have no token: a sentence of more such words than the model has
    positions still fits, in C and in Python alike (Python's pre-tokenization length bound counts
    only words with a letter or digit)."""
    limit = read_manifest(tiny_bundle, verify_hashes=False).max_positions
    src, tgt = [["a", *["\u200b"] * limit, "b"]], [["c"]]
    status, message, links, _ = fp32.align(src, tgt)
    assert status == TA_OK, message
    assert links[0] and {i for i, _ in links[0]} <= {0, limit + 1}  # only "a" and "b" have tokens
    python = Aligner.load(tiny_bundle, provider="cpu").align(src, tgt, "bam_Latn", "eng_Latn")
    assert [set(r.links) for r in python] == [set(map(tuple, links[0]))]


def test_threads_on_one_handle_give_the_sequential_results(fp32, corpora):
    src, tgt = corpora["bam"][1][:240], corpora["bam-en"][1][:240]
    parts = [(src[k::4], tgt[k::4]) for k in range(4)]
    sequential = [fp32.align(s, t)[2] for s, t in parts]
    results: dict[int, object] = {}

    def work(k):
        for _ in range(2):
            results[k] = fp32.align(*parts[k])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results[k][2] for k in range(4)] == sequential
    assert all(results[k][0] == TA_OK for k in range(4))


# -- bad inputs: a status and a message, never a crash ------------------------------------------


def _copy_bundle(bundle: Path, tmp_path: Path, edit=None, name="bundle") -> Path:
    out = tmp_path / name
    shutil.copytree(bundle, out)
    if edit is not None:
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        edit(manifest)
        (out / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return out


def _open_fails(lib, bundle, status, fragment, **kwargs):
    aligner = CAligner(lib, bundle, **kwargs)
    assert (aligner.status, fragment in aligner.message) == (status, True), aligner.message
    assert not aligner.handle.value


def test_bad_bundles(lib, tiny_bundle, tmp_path):
    _open_fails(lib, tmp_path / "nowhere", TA_ERR_BUNDLE, "does not exist")
    (tmp_path / "empty").mkdir()
    _open_fails(lib, tmp_path / "empty", TA_ERR_BUNDLE, "manifest.json is missing")
    corrupt = _copy_bundle(tiny_bundle, tmp_path, name="corrupt")
    (corrupt / "manifest.json").write_text('{"format": "transalign-bundle", "format_ver', encoding="utf-8")
    _open_fails(lib, corrupt, TA_ERR_BUNDLE, "not valid JSON")
    version = _copy_bundle(tiny_bundle, tmp_path, lambda m: m.update(format_version=2), name="version")
    _open_fails(lib, version, TA_ERR_BUNDLE, "format version 2")
    missing = _copy_bundle(tiny_bundle, tmp_path, lambda m: m.pop("hidden_size"), name="missing")
    _open_fails(lib, missing, TA_ERR_BUNDLE, "'hidden_size' is missing")
    escape = _copy_bundle(tiny_bundle, tmp_path, lambda m: m["files"].update({"../outside": "0" * 64}), name="escape")
    _open_fails(lib, escape, TA_ERR_BUNDLE, "leaves the bundle directory")
    bert = _copy_bundle(tiny_bundle, tmp_path, lambda m: (m.update(architecture="bert"),
                                                           m["tokenizer"].update(kind="hf-tokenizers")), name="bert")
    _open_fails(lib, bert, TA_ERR_UNSUPPORTED, "not supported by the C library")
    _open_fails(lib, tiny_bundle, TA_ERR_UNSUPPORTED, "CUDA provider", precision="fp16")
    _open_fails(lib, tiny_bundle, TA_ERR_ARGUMENT, "precision 'fp8'", precision="fp8")


def test_hash_mismatch(lib, tiny_bundle, tmp_path):
    tampered = _copy_bundle(tiny_bundle, tmp_path, name="tampered")
    data = bytearray((tampered / "model.onnx.data").read_bytes())
    data[len(data) // 2] ^= 1
    (tampered / "model.onnx.data").write_bytes(bytes(data))
    _open_fails(lib, tampered, TA_ERR_HASH, "fails its sha256 check")
    aligner = CAligner(lib, tampered, precision="int8")  # int8 does not read the fp32 weights
    assert aligner.status == TA_OK, aligner.message
    aligner.close()
    sp = _copy_bundle(tiny_bundle, tmp_path, name="sp")
    with open(sp / "sentencepiece.bpe.model", "ab") as handle:
        handle.write(b"\0")
    assert sha256_file(sp / "sentencepiece.bpe.model") != sha256_file(tiny_bundle / "sentencepiece.bpe.model")
    _open_fails(lib, sp, TA_ERR_HASH, "sentencepiece.bpe.model fails its sha256 check", precision="int8")


def test_bad_align_arguments(lib, fp32, tiny_bundle):
    status, message, _, _ = fp32.align([["x"]], [["y"]], "bam_Latn", "eng_latn")
    assert status == TA_ERR_LANGUAGE and "'eng_latn'" in message and "eng_Latn" in message
    assert fp32.align([["x"]], [["y"]], None, "eng_Latn")[0] == TA_ERR_ARGUMENT
    assert lib.ta_aligner_has_language(fp32.handle, b"ces_Latn") == 1
    assert lib.ta_aligner_has_language(fp32.handle, b"xx") == 0
    status, message, _, _ = fp32.align([["x"]], [["y"]], threshold=1.5)
    assert status == TA_ERR_ARGUMENT and "threshold" in message
    status, message, _, _ = fp32.align([[b"ok", b"\xff\xfe"]], [["y"]])
    assert status == TA_ERR_UTF8 and "word 1 of the source sentence of pair 0" in message
    assert fp32.align([["x"]], [[b"\xed\xa0\x80"]])[0] == TA_ERR_UTF8  # a UTF-8 encoded surrogate
    assert fp32.tokenize([b"\xc3"], "eng_Latn")[0] == TA_ERR_UTF8
    assert fp32.align([[]], [["y"]])[0] == TA_OK  # and the message is cleared by the success
    assert lib.ta_errmsg() == b""


def test_too_long_sentences(fp32, tiny_bundle):
    limit = read_manifest(tiny_bundle, verify_hashes=False).max_positions
    long = ["word"] * limit
    src, tgt = [["a"], long, ["b"]], [["x"], ["y"], ["z"]]
    status, message, _, _ = fp32.align(src, tgt)
    assert status == TA_ERR_TOO_LONG and "pair 1: the source sentence has" in message and str(limit) in message
    status, message, links, skipped = fp32.align(src, tgt, skip_long=True)
    assert status == TA_OK and skipped == [0, 1, 0]
    with pytest.warns(UserWarning):
        expected = Aligner.load(tiny_bundle, provider="cpu").align(src, tgt, "bam_Latn", "eng_Latn",
                                                                   on_too_long="skip")
    assert links == [r.links for r in expected] and [r.skipped for r in expected] == [None, "too_long", None]


def test_null_pointers(lib, fp32):
    P = ctypes.c_void_p
    out = P()
    assert lib.ta_open(None, None, ctypes.byref(out)) == TA_ERR_ARGUMENT and b"NULL" in lib.ta_errmsg()
    assert lib.ta_open(b"/nowhere", None, None) == TA_ERR_ARGUMENT
    assert lib.ta_align(None, None, None, 0, b"bam_Latn", b"eng_Latn", None, ctypes.byref(out)) == TA_ERR_ARGUMENT
    status = lib.ta_align(fp32.handle, None, None, 1, b"bam_Latn", b"eng_Latn", None, ctypes.byref(out))
    assert status == TA_ERR_ARGUMENT
    assert lib.ta_align(fp32.handle, None, None, 0, b"bam_Latn", b"eng_Latn", None, None) == TA_ERR_ARGUMENT
    null_word = _sentences([[None]])[0]
    status = lib.ta_align(fp32.handle, null_word, null_word, 1, b"bam_Latn", b"eng_Latn", None, ctypes.byref(out))
    assert status == TA_ERR_ARGUMENT and b"word 0 of the source sentence of pair 0 is NULL" in lib.ta_errmsg()
    no_words = (Sentence * 1)(Sentence(None, 2))
    assert lib.ta_align(fp32.handle, no_words, no_words, 1, b"bam_Latn", b"eng_Latn", None,
                        ctypes.byref(out)) == TA_ERR_ARGUMENT
    assert lib.ta_tokenize(fp32.handle, None, b"eng_Latn", ctypes.byref(out)) == TA_ERR_ARGUMENT
    assert lib.ta_result_links(None, 0, None, None) == TA_ERR_ARGUMENT
    assert lib.ta_result_skipped(None, 0) == -1
    assert lib.ta_result_count(None) == 0
    lib.ta_close(None)
    lib.ta_result_free(None)
    lib.ta_tokens_free(None)
    bad_size = OpenOptions()
    assert lib.ta_open(b"/nowhere", ctypes.byref(bad_size), ctypes.byref(out)) == TA_ERR_ARGUMENT
    assert b"struct_size" in lib.ta_errmsg()


# -- faults (issue 24): the tool never destroys its input; manifests are checked -----------------


def _tool(bundle, src, tgt, *extra, cwd=None):
    return subprocess.run([str(BUILD / "transalign-align"), str(bundle), "--src", str(src), "--tgt", str(tgt),
                           "--src-lang", "bam_Latn", "--tgt-lang", "eng_Latn", "--threads", "1", *map(str, extra)],
                          capture_output=True, text=True, cwd=cwd)


@pytest.fixture
def pair_files(tmp_path):
    src = _write_lines(tmp_path / "in.src", [["Ne", "bɛ", "taa"], ["x", "y"]])
    tgt = _write_lines(tmp_path / "in.tgt", [["I", "am", "going"], ["z", "w"]])
    return src, tgt


def test_output_that_is_an_input_is_refused_before_any_work(lib, tiny_bundle, tmp_path, pair_files):
    """The same file by device and inode: by name, another path, a symlink or a hard link to it."""
    src, tgt = pair_files
    before = src.read_bytes(), tgt.read_bytes()
    (tmp_path / "link").symlink_to(src)
    os.link(tgt, tmp_path / "hard")
    (tmp_path / "sub").mkdir()
    for out in (src, tmp_path / "sub" / ".." / "in.tgt", tmp_path / "link", tmp_path / "hard"):
        run = _tool(tiny_bundle / "missing", src, tgt, "-o", out)  # refused before the bundle is opened
        assert run.returncode == 1, run.stderr
        assert "is also an input" in run.stderr and "destroy the input" in run.stderr, run.stderr
    assert (src.read_bytes(), tgt.read_bytes()) == before
    assert (tmp_path / "link").is_symlink() and os.stat(tmp_path / "hard").st_nlink == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hard", "in.src", "in.tgt", "link", "sub"]  # no temporaries


def test_output_symlink_stays_a_link_and_hard_links_are_rewritten_in_place(lib, tiny_bundle, tmp_path, pair_files):
    src, tgt = pair_files
    expected = _tool(tiny_bundle, src, tgt).stdout
    assert expected.count("\n") == 2
    target = tmp_path / "target.align"
    target.write_text("old\n")
    target.chmod(0o640)
    (tmp_path / "link.align").symlink_to("target.align")  # relative, as users make them
    run = _tool(tiny_bundle, src, tgt, "-o", tmp_path / "link.align")
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "link.align").is_symlink() and os.readlink(tmp_path / "link.align") == "target.align"
    assert target.read_text() == expected and stat.S_IMODE(target.stat().st_mode) == 0o640
    os.link(target, tmp_path / "other.align")
    target.write_text("old\n")
    run = _tool(tiny_bundle, src, tgt, "-o", target)
    assert run.returncode == 0, run.stderr
    assert os.stat(target).st_nlink == 2 and (tmp_path / "other.align").read_text() == expected
    assert os.path.samefile(target, tmp_path / "other.align")
    run = _tool(tiny_bundle, src, tgt, "-o", tmp_path / "new.align", cwd=tmp_path)
    assert run.returncode == 0 and (tmp_path / "new.align").read_text() == expected
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "new.align").stat().st_mode) == 0o666 & ~umask
    run = _tool(tiny_bundle, src, tgt, "-o", tmp_path)
    assert run.returncode == 1 and "is a directory" in run.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_directory_as_input_says_so(lib, tiny_bundle, tmp_path, pair_files):
    run = _tool(tiny_bundle, tmp_path, pair_files[1])
    assert run.returncode == 1 and f"{tmp_path}: is a directory, expected a text file" in run.stderr, run.stderr
    run = _tool(tiny_bundle, tmp_path / "nothing.txt", pair_files[1])
    assert run.returncode == 1 and "nothing.txt: file not found" in run.stderr, run.stderr
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\nab\xff c\n")
    run = _tool(tiny_bundle, bad, pair_files[1])
    assert run.returncode == 1 and f"{bad}, line 2: not valid UTF-8 (bad byte at 2" in run.stderr, run.stderr
    with pytest.raises(Exception) as python:  # the Python reader's words, for the same file
        list(read_sentences(bad, "lines"))
    assert f"{bad}, line 2: not valid UTF-8 (bad byte at 2" in str(python.value)


def test_standard_input_for_one_side(lib, tiny_bundle, tmp_path, pair_files):
    src, tgt = pair_files
    expected = _tool(tiny_bundle, src, tgt).stdout
    run = subprocess.run([str(BUILD / "transalign-align"), str(tiny_bundle), "--src", "-", "--tgt", str(tgt),
                          "--src-lang", "bam_Latn", "--tgt-lang", "eng_Latn", "--threads", "1"],
                         input=src.read_text(encoding="utf-8"), capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout == expected and expected.count("\n") == 2, run.stderr
    run = _tool(tiny_bundle, "-", "-")
    assert run.returncode == 2 and "both name standard input" in run.stderr


def test_a_line_with_nul_is_aligned_as_python_aligns_it(lib, tiny_bundle, tmp_path, python_tokenizer):
    """U+0000 is not whitespace for str.split(): it stays inside its word, as in Python, which
    tokenizes it (to <unk> here); the tool passes words with their lengths (ta_align_sized)."""
    src, tgt = tmp_path / "nul.src", tmp_path / "nul.tgt"
    src.write_bytes(b"a\x00b c\n\x00\nx \x00 y\n")
    tgt.write_bytes(b"I am\nz\nw v\n")
    c_out, py_out = tmp_path / "c.align", tmp_path / "py.align"
    run = _tool(tiny_bundle, src, tgt, "-o", c_out)
    assert run.returncode == 0, run.stderr
    assert transalign_main(["align", str(tiny_bundle), "--src", str(src), "--tgt", str(tgt), "--src-lang", "bam_Latn",
                            "--tgt-lang", "eng_Latn", "--provider", "cpu", "-o", str(py_out)]) == 0
    assert c_out.read_bytes() == py_out.read_bytes() and c_out.read_bytes().count(b"\n") == 3
    assert python_tokenizer.encode(["a\x00b"], "eng_Latn")[0].tolist() != python_tokenizer.encode(["a"], "eng_Latn")[0].tolist()


def test_sized_words_carry_nul_like_python(lib, fp32, python_tokenizer):
    for words in (["a\x00b"], ["\x00"], ["x", "\x00", "y"], ["<unk>\x00</s>"]):
        data = [w.encode() for w in words]
        array = (ctypes.c_char_p * len(data))(*data)
        lengths = (ctypes.c_size_t * len(data))(*map(len, data))
        out = ctypes.c_void_p()
        sentence = SizedSentence(array, lengths, len(data))
        assert lib.ta_tokenize_sized(fp32.handle, ctypes.byref(sentence), b"eng_Latn", ctypes.byref(out)) == TA_OK
        n = lib.ta_tokens_count(out)
        got = [lib.ta_tokens_ids(out)[k] for k in range(n)], [lib.ta_tokens_word_ids(out)[k] for k in range(n)]
        lib.ta_tokens_free(out)
        ids, wids = python_tokenizer.encode(words, "eng_Latn")
        assert got == (ids.tolist(), wids.tolist()), words


BAD_MANIFESTS = [
    (lambda m: m["tokenizer"].update(eos_id=-5), "'tokenizer.eos_id' is -5"),
    (lambda m: m["tokenizer"].update(pad_id=10**6), "'tokenizer.pad_id' is 1000000"),
    (lambda m: m["tokenizer"].update(unk_id=-1), "'tokenizer.unk_id' is -1"),
    (lambda m: m["tokenizer"]["lang_code_ids"].update(eng_Latn=10**9), "'tokenizer.lang_code_ids.eng_Latn' is 1000000000"),
    (lambda m: m["tokenizer"]["added_tokens"].update({"</s>": 5000}), "'tokenizer.added_tokens.</s>' is 5000"),
    (lambda m: m.update(max_positions=100000), "'max_positions' is 100000"),
    (lambda m: m.update(max_positions=1), "'max_positions' is 1"),
    (lambda m: m.update(hidden_size=-1), "'hidden_size' is -1"),
    (lambda m: m.update(default_threshold=2.0), "'default_threshold' is 2.0, not in [0, 1)"),
    (lambda m: m.update(default_threshold=-0.5), "'default_threshold' is -0.5, not in [0, 1)"),
    (lambda m: m.update(vocab_size=500), "'vocab_size' is 500: model.onnx's token table has"),
]


@pytest.mark.parametrize("edit,fragment", BAD_MANIFESTS, ids=[f for _, f in BAD_MANIFESTS])
def test_manifest_fields_out_of_range_are_refused_naming_the_field(lib, tiny_bundle, tmp_path, edit, fragment):
    _open_fails(lib, _copy_bundle(tiny_bundle, tmp_path, edit), TA_ERR_BUNDLE, fragment)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_manifest_checked_against_the_graph_like_python(lib, tiny_bundle, tmp_path, precision):
    """engine/graph_facts.py's bounds, read by C from the same graph file: the position table
    bounds max_positions, the output width is hidden_size, the token table is vocab_size."""
    from transalign.engine.bundle import BundleError, MODEL_FILES
    from transalign.engine.graph_facts import graph_facts

    facts = graph_facts(tiny_bundle / MODEL_FILES[precision])
    manifest = read_manifest(tiny_bundle, verify_hashes=False)
    assert facts.position_rows is not None and facts.vocab_size is not None and facts.hidden_size == 32
    limit = facts.position_rows - (manifest.tokenizer.pad_id + 1 if facts.positions_after_padding else 0)
    cases = [("max_positions", limit + 1, f"position table holds {limit} positions"),
             ("hidden_size", 16, f"outputs {facts.hidden_size} values per token"),
             ("vocab_size", facts.vocab_size + 1, f"token table has {facts.vocab_size} rows")]
    for field, value, reason in cases:
        bundle = _copy_bundle(tiny_bundle, tmp_path, lambda m: m.update({field: value}), name=f"{field}-{precision}")
        _open_fails(lib, bundle, TA_ERR_BUNDLE, f"'{field}' is {value}: {MODEL_FILES[precision]}{chr(39)}s" if
                    field != "hidden_size" else f"'{field}' is {value}: {MODEL_FILES[precision]} {reason}",
                    precision=precision)
        with pytest.raises(BundleError, match=field):  # and the Python engine refuses it too
            read_manifest(bundle, verify_hashes=False, precision=precision)
    fits = _copy_bundle(tiny_bundle, tmp_path, lambda m: m.update(max_positions=limit), name=f"fits-{precision}")
    aligner = CAligner(lib, fits, precision=precision)
    assert aligner.status == TA_OK, aligner.message
    aligner.close()


def test_manifest_symlink_out_of_the_bundle_is_refused(lib, tiny_bundle, tmp_path):
    bundle = _copy_bundle(tiny_bundle, tmp_path)
    outside = tmp_path / "elsewhere.json"
    (bundle / "manifest.json").rename(outside)
    (bundle / "manifest.json").symlink_to(outside)
    _open_fails(lib, bundle, TA_ERR_BUNDLE, "outside the bundle directory")


def test_the_tool_reports_a_bad_default_threshold_truthfully(lib, tiny_bundle, tmp_path, pair_files):
    bundle = _copy_bundle(tiny_bundle, tmp_path, lambda m: m.update(default_threshold=2.0))
    run = _tool(bundle, *pair_files)
    assert run.returncode == 1 and "'default_threshold' is 2.0, not in [0, 1)" in run.stderr, run.stderr
    assert "-1.0" not in run.stderr
    run = _tool(tiny_bundle, *pair_files, "--threshold", "1.5")
    assert run.returncode == 1 and "threshold 1.5: must be a number in [0, 1)" in run.stderr, run.stderr
    run = _tool(tiny_bundle, *pair_files, "--threshold", "abc")
    assert run.returncode == 2 and "--threshold 'abc': not a number" in run.stderr, run.stderr


def test_too_many_characters_are_refused_before_tokenizing_as_in_python(fp32, tiny_bundle):
    """prepare.py's first bound: more than 32 characters per model position (the words' code
    points, summed) -> the same message as Python's (pair, side, count, limit), or a skip."""
    from transalign.engine.options import max_sentence_chars
    from transalign.engine.prepare import TooLongError

    limit = max_sentence_chars(read_manifest(tiny_bundle, verify_hashes=False).max_positions)
    long_word = "é" * (limit - 3)  # 2 bytes per character: C must count characters, not bytes
    src, tgt = [["a"], ["ok"], ["b"]], [["x"], ["y", long_word, "abcd"], ["z"]]
    status, message, _, _ = fp32.align(src, tgt)
    assert status == TA_ERR_TOO_LONG, message
    with pytest.raises(TooLongError) as python:
        Aligner.load(tiny_bundle, provider="cpu").align(src, tgt, "bam_Latn", "eng_Latn")
    assert python.value.unit == "characters"
    expected = f"pair 1: {python.value.describe()}"
    assert message.startswith(expected + ";"), (message, expected)
    assert f"has {limit + 2} characters, more than this bundle's limit of {limit}" in message
    status, message, links, skipped = fp32.align(src, tgt, skip_long=True)
    assert status == TA_OK and skipped == [0, 1, 0] and links[1] == ()
    fits = [["y", "é" * (limit - 1)]]  # exactly the limit: tokenized, then too many tokens
    status, message, _, _ = fp32.align([["a"]], fits)
    assert status == TA_ERR_TOO_LONG and "tokens" in message and "characters" not in message, message


def test_too_many_words_are_refused_before_tokenizing_as_in_python(fp32, tiny_bundle):
    """prepare.py's second bound: max_positions words holding a letter or digit (Unicode: "٣",
    "Ⅻ" count, punctuation does not) -> Python's message, not a token count."""
    from transalign.engine.prepare import TooLongError

    limit = read_manifest(tiny_bundle, verify_hashes=False).max_positions
    python = Aligner.load(tiny_bundle, provider="cpu")
    numbers = ["٣", "Ⅻ", "x"] * limit
    for words in (numbers[:limit], ["ab"] * (limit - 1) + ["½"]):
        with pytest.raises(TooLongError) as expected:
            python.align([["a"]], [words], "bam_Latn", "eng_Latn")
        status, message, _, _ = fp32.align([["a"]], [words])
        assert status == TA_ERR_TOO_LONG and not expected.value.exact
        assert message.startswith(f"pair 0: {expected.value.describe()};"), (message, expected.value.describe())
    fits = ["ab"] * (limit - 1) + ["."]  # "." is no letter or digit: tokenized, then too many tokens
    status, message, _, _ = fp32.align([["a"]], [fits])
    with pytest.raises(TooLongError) as expected:
        python.align([["a"]], [fits], "bam_Latn", "eng_Latn")
    assert expected.value.exact and message.startswith(f"pair 0: {expected.value.describe()};"), message


# -- memory -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_valgrind_memcheck_open_align_free_cycles_and_error_paths(lib, tiny_bundle):
    """c/tests/lifecycle.c under memcheck: zero errors, nothing definitely lost (~25 s on 2 cores).

    c/tests/valgrind.supp silences two reports from glibc's loader and ONNX Runtime itself."""
    if shutil.which("valgrind") is None:
        pytest.fail("valgrind is missing: apt-get install valgrind (CI installs it, see .ci/run)")
    run = subprocess.run(["valgrind", "--tool=memcheck", "--leak-check=full", "--errors-for-leak-kinds=definite",
                          "--show-leak-kinds=definite", "--error-exitcode=3",
                          f"--suppressions={ROOT / 'c' / 'tests' / 'valgrind.supp'}",
                          str(BUILD / "tests" / "lifecycle"), str(tiny_bundle)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-6000:]
    assert "lifecycle: ok" in run.stdout
    assert "ERROR SUMMARY: 0 errors" in run.stderr and "definitely lost: 0 bytes" in run.stderr
