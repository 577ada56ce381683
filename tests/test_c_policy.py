"""libtransalign keeps the engine's policy (issue 25): the batch plan of engine/batching.py, the
budgets and limits of engine/defaults.py and options.py, the bundle's default extraction, the
provider rule, and sqlite-style getters that tell "no" from "error".

Each expectation comes from the Python engine in the same test (its functions and constants),
never from a number written here.
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np
import pytest

from test_c_library import (TA_ERR_ARGUMENT, TA_OK, CAligner, _copy_bundle,  # noqa: F401
                            _sentences, corpora, fp32, lib)
from transalign import Aligner
from transalign.engine.batching import plan_batches
from transalign.engine.defaults import DEFAULT_BATCH_OVERHEAD_TOKENS, DEFAULT_BATCH_TOKENS, MAX_BATCH_TOKENS
from transalign.engine.options import max_sentence_chars


def _c_plan(lib, lengths, budget, overhead):
    n = len(lengths)
    array = (ctypes.c_size_t * max(n, 1))(*lengths)
    order, ends = (ctypes.c_size_t * max(n, 1))(), (ctypes.c_size_t * max(n, 1))()
    count = ctypes.c_size_t()
    assert lib.ta_plan_batches(array, n, budget, overhead, order, ends, ctypes.byref(count)) == TA_OK, lib.ta_errmsg()
    batches, start = [], 0
    for b in range(count.value):
        batches.append(list(order[start:ends[b]]))
        start = ends[b]
    assert start == n
    return batches


def test_batch_plan_equals_the_python_least_cost_plan(lib):
    rng = np.random.default_rng(25)
    cases = [([], 2048, 20), ([5], 2048, 20), ([300], 100, 20), ([7, 7, 7, 7], 14, 0), ([3, 9, 9, 3, 1], 18, 1024)]
    for _ in range(300):
        n = int(rng.integers(1, 120))
        high = int(rng.choice([8, 40, 300]))
        lengths = rng.integers(1, high, size=n).tolist()
        if rng.random() < 0.3:  # many ties: the rule "ties go to the larger batch" matters
            lengths = rng.choice([4, 9, 9, 16], size=n).tolist()
        budget = int(rng.choice([1, 16, 64, 700, DEFAULT_BATCH_TOKENS["cpu"], DEFAULT_BATCH_TOKENS["cuda"]]))
        overhead = int(rng.choice([0, 1, DEFAULT_BATCH_OVERHEAD_TOKENS["cpu"], DEFAULT_BATCH_OVERHEAD_TOKENS["cuda"]]))
        cases.append((lengths, budget, overhead))
    greedy_differs = 0
    for lengths, budget, overhead in cases:
        python = [b.tolist() for b in plan_batches(np.array(lengths, dtype=np.int64), budget, overhead).batches]
        assert _c_plan(lib, lengths, budget, overhead) == python, (lengths, budget, overhead)
        greedy_differs += python != _greedy(lengths, budget)
    assert greedy_differs > 50  # the cases do tell the least-cost plan from the old greedy one


def _greedy(lengths, budget):
    order = sorted(range(len(lengths)), key=lambda k: -lengths[k])
    batches, start = [], 0
    while start < len(order):
        size = max(1, budget // max(lengths[order[start]], 1))
        batches.append(order[start:start + size])
        start += size
    return batches


def test_batch_plan_refuses_a_zero_budget_and_null_pointers(lib):
    count = ctypes.c_size_t()
    one = (ctypes.c_size_t * 1)(3)
    assert lib.ta_plan_batches(one, 1, 0, 0, one, one, ctypes.byref(count)) == TA_ERR_ARGUMENT
    assert lib.ta_plan_batches(None, 1, 10, 0, one, one, ctypes.byref(count)) == TA_ERR_ARGUMENT


def _get(lib, name, handle, ctype):
    value = ctype()
    status = getattr(lib, name)(handle, ctypes.byref(value))
    return status, value.value


def test_defaults_come_from_the_engine(lib, fp32, tiny_bundle):
    python = Aligner.load(tiny_bundle, provider="auto")
    status, provider = _get(lib, "ta_aligner_get_provider", fp32.handle, ctypes.c_char_p)
    assert status == TA_OK and provider.decode() == python.provider  # "auto" by default, resolved alike
    assert _get(lib, "ta_aligner_get_batch_tokens", fp32.handle, ctypes.c_size_t) == \
        (TA_OK, DEFAULT_BATCH_TOKENS[python.provider])
    assert _get(lib, "ta_aligner_get_batch_overhead", fp32.handle, ctypes.c_size_t) == \
        (TA_OK, DEFAULT_BATCH_OVERHEAD_TOKENS[python.provider])
    assert _get(lib, "ta_aligner_get_max_sentence_chars", fp32.handle, ctypes.c_size_t) == \
        (TA_OK, max_sentence_chars(python.manifest.max_positions))
    assert _get(lib, "ta_aligner_get_max_positions", fp32.handle, ctypes.c_int) == \
        (TA_OK, python.manifest.max_positions)
    assert _get(lib, "ta_aligner_get_default_threshold", fp32.handle, ctypes.c_double) == \
        (TA_OK, python.manifest.default_threshold)
    for name, ctype in (("ta_aligner_get_provider", ctypes.c_char_p), ("ta_aligner_get_batch_tokens", ctypes.c_size_t),
                        ("ta_aligner_get_default_threshold", ctypes.c_double)):
        assert _get(lib, name, None, ctype)[0] == TA_ERR_ARGUMENT
        assert b"NULL" in lib.ta_errmsg()


def test_batch_tokens_above_the_engine_maximum_is_refused(fp32, lib):
    from test_c_library import AlignOptions

    options = AlignOptions()
    lib.ta_align_options_init(ctypes.byref(options))
    options.batch_tokens = MAX_BATCH_TOKENS + 1
    src, _keep = _sentences([["a"]])
    out = ctypes.c_void_p()
    status = lib.ta_align(fp32.handle, src, src, 1, b"bam_Latn", b"eng_Latn", ctypes.byref(options), ctypes.byref(out))
    assert status == TA_ERR_ARGUMENT and f"1..{MAX_BATCH_TOKENS}".encode() in lib.ta_errmsg()
    options.batch_tokens = MAX_BATCH_TOKENS
    status = lib.ta_align(fp32.handle, src, src, 1, b"bam_Latn", b"eng_Latn", ctypes.byref(options), ctypes.byref(out))
    assert status == TA_OK
    lib.ta_result_free(out)


def test_the_bundle_default_threshold_is_the_c_default(lib, tiny_bundle, tmp_path):
    from test_c_library import _write_lines  # noqa: F401

    src = [["Ne", "bɛ", "taa", "sugu", "la", "."], ["a", "b", "c"]]
    tgt = [["I", "am", "going", "to", "the", "market", "."], ["x", "y"]]
    bundle = _copy_bundle(tiny_bundle, tmp_path, lambda m: m.update(default_threshold=0.2))
    python = Aligner.load(bundle, provider="cpu")
    expected = [r.links for r in python.align(src, tgt, "bam_Latn", "eng_Latn")]
    paper = [r.links for r in python.align(src, tgt, "bam_Latn", "eng_Latn", threshold=0.001)]
    assert expected != paper  # the default matters for these pairs
    aligner = CAligner(lib, bundle)
    assert aligner.status == TA_OK, aligner.message
    status, message, links, _ = aligner.align(src, tgt)
    assert status == TA_OK and links == expected, message
    aligner.close()


EXTRACTIONS = [(method, level) for method in ("softmax", "argmax", "itermax") for level in ("any", "mean")]


@pytest.mark.parametrize("method,word_level", EXTRACTIONS)
def test_the_bundle_default_extraction_is_the_c_default(lib, tiny_bundle, tmp_path, corpora, method, word_level):
    """kernels/methods.py's methods and word levels, as the bundle's recommended extraction
    (tune --write stores it): C's links equal the Python engine's default links."""
    src, tgt = corpora["bam"][1][:300], corpora["bam-en"][1][:300]
    bundle = _copy_bundle(tiny_bundle, tmp_path, lambda m: m.update(default_method=method,
                                                                     default_word_level=word_level))
    expected = [r.links for r in Aligner.load(bundle, provider="cpu").align(src, tgt, "bam_Latn", "eng_Latn")]
    aligner = CAligner(lib, bundle)
    assert aligner.status == TA_OK, aligner.message
    status, message, links, _ = aligner.align(src, tgt)
    assert status == TA_OK and links == expected, message
    assert sum(map(len, links)) > 300  # links were made
    status, message, _, _ = aligner.align(src[:1], tgt[:1], threshold=0.1)
    if method == "softmax":
        assert status == TA_OK
    else:  # resolve_extraction's rule: a threshold belongs to softmax only
        assert status == TA_ERR_ARGUMENT and f"applies to method softmax only, not to {method}" in message
    aligner.close()


def test_a_bad_default_extraction_is_refused_naming_the_field(lib, tiny_bundle, tmp_path):
    from test_c_library import TA_ERR_BUNDLE, _open_fails

    _open_fails(lib, _copy_bundle(tiny_bundle, tmp_path, lambda m: m.update(default_method="maximum"), name="m"),
                TA_ERR_BUNDLE, "'default_method' is 'maximum', not one of softmax, argmax, itermax")
    _open_fails(lib, _copy_bundle(tiny_bundle, tmp_path, lambda m: m.update(default_word_level="all"), name="w"),
                TA_ERR_BUNDLE, "'default_word_level' is 'all', not one of any, mean")


def test_has_language_tells_no_from_error(lib, fp32):
    has = ctypes.c_int(7)
    assert lib.ta_aligner_get_language(fp32.handle, b"ces_Latn", ctypes.byref(has)) == TA_OK and has.value == 1
    assert lib.ta_aligner_get_language(fp32.handle, b"xx", ctypes.byref(has)) == TA_OK and has.value == 0
    assert lib.ta_aligner_get_language(None, b"xx", ctypes.byref(has)) == TA_ERR_ARGUMENT and has.value == 0
    assert lib.ta_aligner_get_language(fp32.handle, None, ctypes.byref(has)) == TA_ERR_ARGUMENT
    assert lib.ta_errmsg() != b""


def test_skipped_getter_returns_a_status(lib, fp32):
    out = ctypes.c_void_p()
    src, _keep = _sentences([["a"], ["b"]])
    assert lib.ta_align(fp32.handle, src, src, 2, b"bam_Latn", b"eng_Latn", None, ctypes.byref(out)) == TA_OK
    skipped = ctypes.c_int(5)
    assert lib.ta_result_get_skipped(out, 1, ctypes.byref(skipped)) == TA_OK and skipped.value == 0
    assert lib.ta_result_get_skipped(out, 2, ctypes.byref(skipped)) == TA_ERR_ARGUMENT
    assert b"out of range" in lib.ta_errmsg()
    lib.ta_result_free(out)


def test_pharaoh_into_caller_memory_and_shared_results_from_threads(lib, fp32, corpora):
    src, tgt = corpora["bam"][1][:64], corpora["bam-en"][1][:64]
    src_arr, _k1 = _sentences(src)
    tgt_arr, _k2 = _sentences(tgt)
    out = ctypes.c_void_p()
    assert lib.ta_align(fp32.handle, src_arr, tgt_arr, len(src), b"bam_Latn", b"eng_Latn", None,
                        ctypes.byref(out)) == TA_OK
    expected = []
    for pair in range(len(src)):
        data, n = ctypes.POINTER(ctypes.c_int32)(), ctypes.c_size_t()
        assert lib.ta_result_links(out, pair, ctypes.byref(data), ctypes.byref(n)) == TA_OK
        expected.append(" ".join(f"{data[2 * k]}-{data[2 * k + 1]}" for k in range(n.value)))
    needed = ctypes.c_size_t()
    small = ctypes.create_string_buffer(2)
    assert lib.ta_result_pharaoh_into(out, 0, small, 2, ctypes.byref(needed)) == TA_ERR_ARGUMENT
    assert needed.value == len(expected[0]) + 1 > 2
    for pair, line in enumerate(expected):
        buffer = ctypes.create_string_buffer(len(line) + 1)
        assert lib.ta_result_pharaoh_into(out, pair, buffer, len(buffer), ctypes.byref(needed)) == TA_OK
        assert buffer.value.decode() == line and needed.value == len(line) + 1
    got: dict[int, list[str]] = {}

    def read(k):  # every thread reads every pair of the one shared result (pharaoh's cache)
        got[k] = [lib.ta_result_pharaoh(out, pair).decode() for pair in range(len(src))]

    threads = [threading.Thread(target=read, args=(k,)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(got[k] == expected for k in range(6))
    lib.ta_result_free(out)
