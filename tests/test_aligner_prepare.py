"""`Aligner.prepare` / `align_prepared` (tokenize once), per-call statistics, no process-wide
settings: truth is always `Aligner.align` on the same pairs with the same options."""

from __future__ import annotations

import threading
import warnings

import numba
import pytest

from transalign.engine.aligner import AlignResults, AlignStats, Aligner, PreparedPairs, TooLongError
from transalign.formats.text import read_sentences
from transalign.kernels.names import METHODS, WORD_LEVELS

LANGS = ("bam_Latn", "eng_Latn")


@pytest.fixture(scope="module")
def aligner(tiny_bundle) -> Aligner:
    return Aligner.load(tiny_bundle, provider="cpu")


@pytest.fixture(scope="module")
def bam_pairs(data_dir, aligner):
    sample = data_dir / "reference/bam-sample"
    src = read_sentences(sample / "test-bam.txt", "conll")
    tgt = read_sentences(sample / "test-translate-bam-en-preds.txt", "conll")
    limit = aligner.manifest.max_positions
    fits = [(s, t) for s, t in zip(src, tgt) if len(aligner.tokenizer.encode(s, LANGS[0])[0]) <= limit
            and len(aligner.tokenizer.encode(t, LANGS[1])[0]) <= limit][:60]
    return [s for s, _ in fits], [t for _, t in fits]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("word_level", WORD_LEVELS)
def test_prepared_results_equal_align(aligner, bam_pairs, method, word_level):
    src, tgt = bam_pairs
    options = {"method": method, "word_level": word_level, "with_scores": True}
    expected = aligner.align(src, tgt, *LANGS, **options)
    prepared = aligner.prepare(src, tgt, *LANGS)
    assert len(prepared) == len(src) and prepared.tokens == expected.stats.real_tokens
    assert prepared.src_tokens == tuple(len(aligner.tokenizer.encode(s, LANGS[0])[0]) for s in src)
    assert aligner.align_prepared(prepared, **options) == expected
    # merged in another grouping (as the service merges requests): the same results
    parts = [aligner.prepare(src[a:a + 7], tgt[a:a + 7], *LANGS) for a in range(0, len(src), 7)]
    assert aligner.align_prepared(PreparedPairs.concat(parts), batch_tokens=256, **options) == expected


def test_prepared_threshold_and_reference_setting(aligner, bam_pairs):
    src, tgt = bam_pairs
    prepared = aligner.prepare(src, tgt, *LANGS)
    for threshold in (None, 0.05, 0.3):
        assert aligner.align_prepared(prepared, threshold) == aligner.align(src, tgt, *LANGS, threshold)
    with pytest.raises(ValueError, match="threshold 0.1: applies to method softmax only, not to argmax"):
        aligner.align_prepared(prepared, 0.1, method="argmax")


def test_prepare_in_another_thread_gives_the_same_results(aligner, bam_pairs):
    """The HTTP layer prepares on its own thread (with its own tokenizer instance)."""
    src, tgt = bam_pairs
    box = []
    thread = threading.Thread(target=lambda: box.append(aligner.prepare(src, tgt, *LANGS)))
    thread.start()
    thread.join()
    assert aligner.align_prepared(box[0]) == aligner.align(src, tgt, *LANGS)


@pytest.mark.parametrize(("words", "exact"), [(["w"] * 300, False), (["qz" * 300], True)])
def test_prepare_too_long_names_the_pair(aligner, words, exact):
    with pytest.raises(TooLongError, match=r"pair 2: the target sentence has (\d+|more than \d+) tokens.*maximum of 256") as info:
        aligner.prepare(["a", "b", "c"], ["x", "y", words], "eng_Latn", "ces_Latn")
    assert (info.value.pair, info.value.side, info.value.limit, info.value.exact) == (2, "target", 256, exact)
    assert info.value.tokens > 256
    with pytest.raises(TooLongError, match="pair 2: the target sentence"):  # align says the same
        aligner.align(["a", "b", "c"], ["x", "y", words], "eng_Latn", "ces_Latn")


def test_prepare_skip_policy(aligner):
    long = ["word"] * 400
    prepared = aligner.prepare(["a", long, "c"], ["x", "y", "z"], "eng_Latn", "ces_Latn", on_too_long="skip")
    assert prepared.skipped == 1
    with pytest.warns(UserWarning, match="1 of 3 pairs"):
        got = aligner.align_prepared(prepared)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = aligner.align(["a", long, "c"], ["x", "y", "z"], "eng_Latn", "ces_Latn", on_too_long="skip")
    assert got == expected and got.stats.skipped == expected.stats.skipped == 1


def test_prepared_pairs_are_checked(aligner, tiny_bundle):
    a = aligner.prepare(["a"], ["b"], "eng_Latn", "ces_Latn")
    b = aligner.prepare(["a"], ["b"], "ces_Latn", "eng_Latn")
    with pytest.raises(ValueError, match="cannot concatenate"):
        PreparedPairs.concat([a, b])
    with pytest.raises(ValueError, match="PreparedPairs"):
        aligner.align_prepared([["a"], ["b"]])
    with pytest.raises(ValueError, match="unknown|eng_Latn"):
        aligner.prepare(["a"], ["b"], "eng_latn", "ces_Latn")
    with pytest.raises(ValueError, match="pair up"):
        aligner.prepare(["a", "b"], ["c"], "eng_Latn", "ces_Latn")
    other = Aligner.load(tiny_bundle, provider="cpu")  # same bundle, another Aligner: accepted
    assert other.align_prepared(a) == aligner.align(["a"], ["b"], "eng_Latn", "ces_Latn")


def test_each_call_has_its_own_stats(aligner, bam_pairs):
    """Concurrent calls no longer overwrite each other's counters: each returns its own."""
    src, tgt = bam_pairs
    sizes = (5, 17, 31, 60)
    alone = {n: aligner.align(src[:n], tgt[:n], *LANGS).stats for n in sizes}
    assert isinstance(aligner.align(src[:1], tgt[:1], *LANGS), AlignResults)
    got: dict[int, list[AlignStats]] = {n: [] for n in sizes}
    barrier = threading.Barrier(len(sizes))

    def run(n):
        barrier.wait()
        for _ in range(3):
            got[n].append(aligner.align(src[:n], tgt[:n], *LANGS).stats)

    threads = [threading.Thread(target=run, args=(n,)) for n in sizes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for n in sizes:
        for stats in got[n]:
            assert (stats.pairs, stats.real_tokens, stats.padded_tokens) == \
                (alone[n].pairs, alone[n].real_tokens, alone[n].padded_tokens) == (n, alone[n].real_tokens,
                                                                                   alone[n].padded_tokens)
    # the compatibility view: the last call's statistics, for single-threaded callers
    last = aligner.align(src[:3], tgt[:3], *LANGS)
    assert aligner.stats is last.stats
    streamed = AlignStats()
    list(aligner.align_iter(src[:9], tgt[:9], *LANGS, chunk_pairs=4, stats=streamed))
    assert streamed.pairs == 9


def test_skipped_count_does_not_depend_on_warnings(aligner):
    """The skipped count is in the stats whatever the warning filters say (warnings are no counter)."""
    long = ["word"] * 400
    for action in ("ignore", "always", "error"):
        with warnings.catch_warnings(record=True):
            warnings.simplefilter(action)
            stats = AlignStats()
            iterator = aligner.align_iter(["a", long, long], ["x", "y", "z"], "eng_Latn", "ces_Latn",
                                          on_too_long="skip", stats=stats)
            if action == "error":
                with pytest.raises(UserWarning):
                    list(iterator)
            else:
                list(iterator)
        assert (stats.pairs, stats.skipped) == (3, 2)


def test_load_changes_no_thread_or_process_setting(tiny_bundle, monkeypatch):
    """threads= stays on the Aligner (ONNX Runtime session options, extraction kernels): loading
    must not change numba's thread count for the loading thread or anyone else."""
    import transalign.kernels as kernels

    before = numba.get_num_threads()
    one = Aligner.load(tiny_bundle, provider="cpu", threads=1)
    assert numba.get_num_threads() == before and one.threads == 1
    seen = []
    real = kernels.extract_with

    def spy(*args, **kwargs):
        seen.append(kwargs.get("threads"))
        return real(*args, **kwargs)

    monkeypatch.setattr(kernels, "extract_with", spy)
    one.align(["a b"], ["c d"], "eng_Latn", "ces_Latn", method="argmax")
    assert seen == [1]
