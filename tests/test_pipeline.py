"""The pipelined `Aligner.align_iter` (LoadOptions.pipeline, engine/pipeline.py) against the serial
path: the same results (links and scores), statistics and errors, and no thread left behind.

Truth is the serial path on the same Aligner (the same ONNX Runtime session), which
tests/test_aligner.py checks against the reference procedure."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from transalign.engine.aligner import Aligner, AlignStats, NonFiniteError, TooLongError
from transalign.engine.encoder import HiddenRows, check_finite
from transalign.engine.options import LoadOptions, OptionError
from transalign.engine.pipeline import BufferPool, Pipeline, run_ahead
from transalign.formats.text import read_sentences
from transalign.kernels.names import METHODS, WORD_LEVELS

LANGS = ("bam_Latn", "eng_Latn")


@pytest.fixture(scope="module")
def aligner(tiny_bundle) -> Aligner:
    """Pipelined by option; tests switch ``aligner.pipelined`` to compare with the serial path."""
    loaded = Aligner.load(tiny_bundle, options=LoadOptions(provider="cpu", pipeline="on"))
    assert loaded.pipelined
    return loaded


@pytest.fixture(scope="module")
def mixed_pairs(data_dir):
    """Bambara-English pairs of very different lengths (one word to dozens), shuffled so each
    chunk mixes them, plus an empty sentence."""
    sample = data_dir / "reference/bam-sample"
    src = read_sentences(sample / "test-bam.txt", "conll")[:90]
    tgt = read_sentences(sample / "test-translate-bam-en-preds.txt", "conll")[:90]
    order = np.random.default_rng(0).permutation(len(src))
    src, tgt = [src[k] for k in order], [tgt[k] for k in order]
    src[5], tgt[5] = ["Ne"], ["I"]
    src[11] = []
    lengths = sorted(map(len, src))
    assert lengths[0] == 0 and lengths[1] == 1 and lengths[-1] > 25  # the mix the test needs
    return src, tgt


def both(aligner: Aligner, run):
    """``run()`` serial then pipelined on the same Aligner: (serial, pipelined) outcomes, each
    (results, stats, progress calls, error) where results are what was yielded before any error."""
    outcomes = []
    for pipelined in (False, True):
        aligner.pipelined = pipelined
        threads_before = threading.active_count()
        results, stats, calls = [], AlignStats(), []
        error = None
        try:
            for result in run(stats, calls.append):
                results.append(result)
        except Exception as exc:  # compared between the two paths below
            error = exc
        finally:
            aligner.pipelined = True
        assert threading.active_count() == threads_before, f"pipelined={pipelined} left threads behind"
        outcomes.append((results, stats, calls, error))
    return outcomes


def counters(stats: AlignStats) -> tuple:
    return stats.pairs, stats.skipped, stats.real_tokens, stats.padded_tokens


def same_error(a: Exception | None, b: Exception | None) -> None:
    assert type(a) is type(b) and str(a) == str(b)
    if isinstance(a, TooLongError):
        assert (a.pair, a.side, a.tokens, a.limit, a.exact, a.unit) == (b.pair, b.side, b.tokens, b.limit, b.exact,
                                                                      b.unit)


# ---------------------------------------------------------------- option


def test_pipeline_option_is_checked_and_resolved(tiny_bundle):
    with pytest.raises(OptionError, match="pipeline 'yes': not one of auto, on, off"):
        LoadOptions(pipeline="yes")
    assert [LoadOptions(pipeline=p).pipelined("cpu") for p in ("auto", "on", "off")] == [False, True, False]
    assert [LoadOptions(pipeline=p).pipelined("cuda") for p in ("auto", "on", "off")] == [True, True, False]
    assert not Aligner.load(tiny_bundle, provider="cpu").pipelined  # auto on CPU: off


# ---------------------------------------------------------------- identical results


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("word_level", WORD_LEVELS)
def test_pipelined_results_equal_serial(aligner, mixed_pairs, method, word_level):
    src, tgt = mixed_pairs
    for chunk_pairs, budget in ((7, 64), (1, 2048), (200, 256)):  # cut mid-way; one pair; all in one chunk
        def run(stats, progress):
            return aligner.align_iter(src, tgt, *LANGS, method=method, word_level=word_level, with_scores=True,
                                      chunk_pairs=chunk_pairs, batch_tokens=budget, stats=stats, progress=progress)

        (serial, s_stats, s_calls, s_error), (piped, p_stats, p_calls, p_error) = both(aligner, run)
        assert s_error is None and p_error is None
        assert len(serial) == len(src) and sum(len(r.links) for r in serial) > len(src)  # real links
        assert all(r.scores is not None and len(r.scores) == len(r.links) for r in serial)
        assert piped == serial, f"{method}/{word_level}, chunks of {chunk_pairs}"
        assert [r.scores for r in piped] == [r.scores for r in serial]  # floats compared exactly
        assert counters(p_stats) == counters(s_stats) and s_stats.pairs == len(src)
        assert sum(p_calls) == sum(s_calls) == 2 * len(src) and len(p_calls) == len(s_calls)


def test_skipped_pairs_and_warning_are_the_same(aligner, mixed_pairs):
    src, tgt = list(mixed_pairs[0][:40]), list(mixed_pairs[1][:40])
    long = ["word"] * 400
    src[3], tgt[17], src[38] = long, long, long

    for chunk_pairs in (6, 1):  # chunks of 1: some chunks have nothing to encode at all
        def run(stats, progress):
            return aligner.align_iter(src, tgt, *LANGS, on_too_long="skip", chunk_pairs=chunk_pairs, stats=stats)

        with pytest.warns(UserWarning, match="3 of 40 pairs were longer"):
            (serial, s_stats, _, s_error), (piped, p_stats, _, p_error) = both(aligner, run)
        assert s_error is None and p_error is None
        assert piped == serial and [k for k, r in enumerate(piped) if r.skipped] == [3, 17, 38]
        assert counters(p_stats) == counters(s_stats) and s_stats.skipped == 3


def test_align_uses_the_pipeline_and_gives_the_same(aligner, mixed_pairs):
    src, tgt = mixed_pairs
    aligner.pipelined = False
    serial = aligner.align(src, tgt, *LANGS)
    aligner.pipelined = True
    before = threading.active_count()
    piped = aligner.align(src, tgt, *LANGS)
    assert piped == serial and counters(piped.stats) == counters(serial.stats)
    assert threading.active_count() == before
    assert len(aligner._spare_tokenizers) == 1  # the tokenizing thread's tokenizer, kept for the next call
    aligner.align(src[:3], tgt[:3], *LANGS)
    assert len(aligner._spare_tokenizers) == 1  # reused, not one more per call


# ---------------------------------------------------------------- errors


def test_too_long_surfaces_identically(aligner, mixed_pairs):
    src, tgt = list(mixed_pairs[0][:30]), list(mixed_pairs[1][:30])
    tgt[22] = ["word"] * 400  # tokenized, too many tokens: in the 4th chunk of 6

    def run(stats, progress):
        return aligner.align_iter(src, tgt, *LANGS, chunk_pairs=6, stats=stats)

    (serial, s_stats, _, s_error), (piped, p_stats, _, p_error) = both(aligner, run)
    assert isinstance(s_error, TooLongError) and s_error.pair == 22 and s_error.side == "target"
    same_error(s_error, p_error)
    assert len(serial) == 18 and piped == serial  # the chunks before the bad one, then the error
    assert counters(p_stats) == counters(s_stats)

    src[1] = ["x" * 40] * 300  # more characters than the bundle takes: refused before tokenizing

    def run_chars(stats, progress):
        return aligner.align_iter(src, tgt, *LANGS, chunk_pairs=6, stats=stats)

    (serial, _, _, s_error), (piped, _, _, p_error) = both(aligner, run_chars)
    assert isinstance(s_error, TooLongError) and s_error.unit == "characters" and serial == [] == piped
    same_error(s_error, p_error)


@pytest.mark.parametrize("extra", ["source", "target"])
def test_length_mismatch_surfaces_identically(aligner, mixed_pairs, extra):
    src, tgt = list(mixed_pairs[0][:20]), list(mixed_pairs[1][:20])
    (src if extra == "source" else tgt).append(["one", "more"])

    def run(stats, progress):
        return aligner.align_iter(iter(src), iter(tgt), *LANGS, chunk_pairs=6, stats=stats)

    (serial, s_stats, _, s_error), (piped, p_stats, _, p_error) = both(aligner, run)
    assert isinstance(s_error, ValueError) and "more sentences than" in str(s_error)
    same_error(s_error, p_error)
    # source longer: its 4th chunk (pairs 18-20) finds 2 targets; target longer: found after pair 19
    assert len(serial) == (18 if extra == "source" else 20)
    assert piped == serial and counters(p_stats) == counters(s_stats)


def test_input_errors_keep_their_place(aligner, mixed_pairs):
    """An error from reading the input (a file reader naming its line) comes after the results of
    the pairs read before it, as in the serial path, though the pipeline reads ahead."""
    src, tgt = mixed_pairs

    def sources():
        yield from src[:13]
        raise RuntimeError("line 14: not a sentence")

    def run(stats, progress):
        return aligner.align_iter(sources(), tgt, *LANGS, chunk_pairs=4, stats=stats)

    (serial, _, _, s_error), (piped, _, _, p_error) = both(aligner, run)
    assert isinstance(s_error, RuntimeError)
    same_error(s_error, p_error)
    assert len(serial) == 12 and piped == serial  # 3 whole chunks; the 4th was being read


def test_non_finite_hidden_states_surface_identically(tiny_bundle, mixed_pairs):
    aligner = Aligner.load(tiny_bundle, options=LoadOptions(provider="cpu", pipeline="on"))
    real_run = aligner.session.run
    src, tgt = list(mixed_pairs[0][:24]), list(mixed_pairs[1][:24])
    src[15] = ["Ne", "bɛ", "taa", "sugu", "la", "sisan", "sisan", "sisan"]
    poisoned_ids = aligner.tokenizer.encode(src[15], LANGS[0])[0]

    class Poisoned:
        """NaN in the rows of the sequence with exactly ``poisoned_ids``, whichever batch holds it."""

        def run(self, names, feed):
            out = real_run(names, feed)[0].copy()
            width = len(poisoned_ids)
            for row, ids in enumerate(feed["input_ids"]):
                if feed["attention_mask"][row].sum() == width and np.array_equal(ids[:width], poisoned_ids):
                    out[row, 1, 0] = np.nan
            return [out]

    aligner.encoder.session = Poisoned()  # the engine's one ONNX Runtime caller (engine.encoder)

    def run(stats, progress):
        return aligner.align_iter(src, tgt, *LANGS, chunk_pairs=5, stats=stats)

    (serial, s_stats, _, s_error), (piped, p_stats, _, p_error) = both(aligner, run)
    assert isinstance(s_error, NonFiniteError) and str(s_error).startswith("pair 15: the encoder produced NaN")
    same_error(s_error, p_error)
    assert len(serial) == 15 and piped == serial and counters(p_stats) == counters(s_stats)


def test_progress_errors_propagate(aligner, mixed_pairs):
    """A progress callback may stop the call (a front end whose caller has gone)."""
    src, tgt = mixed_pairs

    class Gone(Exception):
        pass

    def run(stats, progress):
        def stop_after_50(sentences):
            progress(sentences)
            if sum(seen) + sentences > 50:
                raise Gone("client disconnected")
            seen.append(sentences)

        seen = []
        return aligner.align_iter(src, tgt, *LANGS, chunk_pairs=10, batch_tokens=64, stats=stats,
                                  progress=stop_after_50)

    (serial, _, _, s_error), (piped, _, _, p_error) = both(aligner, run)
    assert isinstance(s_error, Gone)
    same_error(s_error, p_error)
    assert len(serial) == 20 and piped == serial  # the error belongs to chunk 2 (sentences 41-60) in both


# ---------------------------------------------------------------- cleanup


def test_breaking_early_ends_the_threads(aligner, mixed_pairs):
    src, tgt = mixed_pairs
    before = threading.active_count()
    iterator = aligner.align_iter(src * 3, tgt * 3, *LANGS, chunk_pairs=4, batch_tokens=64)
    first = [next(iterator) for _ in range(6)]
    assert threading.active_count() == before + 2  # the tokenizing and the encoder threads
    iterator.close()
    assert threading.active_count() == before
    aligner.pipelined = False
    assert first == aligner.align(src[:6], tgt[:6], *LANGS)[:6]
    aligner.pipelined = True
    for k, _ in enumerate(aligner.align_iter(src, tgt, *LANGS, chunk_pairs=4)):  # a for loop's break
        if k == 5:
            break
    assert threading.active_count() == before  # the generator was garbage at once (CPython)
    unstarted = aligner.align_iter(src, tgt, *LANGS)
    unstarted.close()
    assert threading.active_count() == before


def test_closing_stops_the_encoder_between_batches(tiny_bundle):
    """A caller who leaves while a long chunk is encoding does not wait for the whole chunk."""
    aligner = Aligner.load(tiny_bundle, options=LoadOptions(provider="cpu", pipeline="on"))
    real_run = aligner.session.run
    runs = []

    class Slow:
        def run(self, names, feed):
            runs.append(len(feed["input_ids"]))
            time.sleep(0.02)
            return real_run(names, feed)

    sentence = "Ne bɛ taa sugu la sisan".split()
    prepared = aligner.prepare([sentence] * 30, [sentence] * 30, *LANGS)
    per_chunk = len(aligner.encoder.plan(list(prepared.encoded), prepared.keep, 16).batches)
    assert per_chunk == 60  # one sentence per batch: every chunk of 30 pairs takes 60 runs
    aligner.encoder.session = Slow()
    iterator = aligner.align_iter([sentence] * 300, [sentence] * 300, *LANGS, chunk_pairs=30, batch_tokens=16)
    next(iterator)  # chunk 0 is done; the encoder has moved on to chunk 1
    iterator.close()
    done = len(runs)
    assert per_chunk <= done < 2 * per_chunk - 10  # stopped between batches, long before chunk 1's end
    time.sleep(0.1)
    assert len(runs) == done  # and nothing ran after close returned
    assert aligner.encoder.run(aligner.encoder.plan(list(prepared.encoded), prepared.keep, 16),
                               stop=lambda: len(runs) >= done + 3) is None and len(runs) == done + 3


# ---------------------------------------------------------------- pieces


def test_run_ahead_keeps_order_and_bounds_what_is_in_flight():
    read, yielded, most = [0], [0], [0]

    def source():
        for k in range(40):
            read[0] += 1
            most[0] = max(most[0], read[0] - yielded[0])
            yield k

    def jitter(x):
        time.sleep((x * 7 % 5) / 1000)
        return x

    out = []
    for x in run_ahead(source(), (jitter, lambda x: x * 10, jitter), depth=3):
        out.append(x)
        yielded[0] += 1
    assert out == [10 * k for k in range(40)] and most[0] == 3


def test_run_ahead_raises_a_stage_error_in_its_place():
    def stage(x):
        if x == 5:
            raise KeyError("item 5")
        return x

    got = []
    with pytest.raises(KeyError, match="item 5"):
        for x in run_ahead(range(10), (stage, stage), depth=2):
            got.append(x)
    assert got == [0, 1, 2, 3, 4]


def test_io_binding_gives_the_same_rows_as_run(aligner, mixed_pairs):
    """The CUDA path's I/O binding code, run on a CPU session (the CUDA transfer itself is not
    tested here: no GPU)."""
    src, tgt = mixed_pairs
    aligner.pipelined = False
    expected = aligner.align(src, tgt, *LANGS, batch_tokens=128, with_scores=True)
    aligner.encoder.io_binding = True
    try:
        bound = aligner.align(src, tgt, *LANGS, batch_tokens=128, with_scores=True)
    finally:
        aligner.encoder.io_binding = False
        aligner.pipelined = True
    assert bound == expected and [r.scores for r in bound] == [r.scores for r in expected]


def test_finite_check_is_exact():
    """check_finite looks closer only at rows whose sum is not finite: a row of huge finite
    values (whose float32 sum overflows) passes, a single infinity or NaN anywhere fails."""
    hidden = np.ones((6, 4), dtype=np.float32)
    hidden[2] = 3e38  # finite, sum overflows to inf
    rows = HiddenRows(hidden, np.array([0, 3]), np.array([3, 3]), np.zeros(6, np.int64), 6, 6)
    check_finite(rows, 1, 0)
    for value in (np.inf, -np.inf, np.nan):
        bad = hidden.copy()
        bad[4, 3] = value
        with pytest.raises(NonFiniteError, match="pair 7: .* for the target sentence"):
            check_finite(HiddenRows(bad, rows.offsets, rows.lengths, rows.word_ids, 6, 6), 1, 7)


def test_a_pipeline_without_results_lets_everything_through_on_finish():
    """`keep_results=False` (the service's extractor): the last stage delivers on its own;
    `finish` (unlike `close`) cancels nothing: every submitted item passes every stage."""
    seen, gate = [], threading.Event()

    def slow_double(x):
        gate.wait(5)
        return 2 * x

    pipeline = Pipeline([slow_double, seen.append], keep_results=False)
    for k in range(20):
        pipeline.submit(k)
    threading.Timer(0.1, gate.set).start()
    pipeline.finish()
    assert seen == [2 * k for k in range(20)]
    assert not any(t.is_alive() for t in pipeline._threads)


def test_encode_then_extract_is_align_prepared(aligner, mixed_pairs):
    """The service's two halves (`encode_prepared`, `extract_encoded`, on different threads)
    give `align_prepared`'s results and statistics."""
    src, tgt = mixed_pairs
    prepared = aligner.prepare(src, tgt, "bam_Latn", "eng_Latn", on_too_long="skip")
    whole = aligner.align_prepared(prepared, with_scores=True, method="argmax")
    encoded = aligner.encode_prepared(prepared, with_scores=True, method="argmax")
    halves = []
    thread = threading.Thread(target=lambda: halves.append(aligner.extract_encoded(encoded)))
    thread.start()
    thread.join()
    assert halves[0] == whole
    assert (halves[0].stats.pairs, halves[0].stats.skipped, halves[0].stats.real_tokens,
            halves[0].stats.padded_tokens) == (whole.stats.pairs, whole.stats.skipped, whole.stats.real_tokens,
                                               whole.stats.padded_tokens)


def test_encode_prepared_fills_a_pool_buffer_and_keeps_the_pool_whole_on_failure(aligner, mixed_pairs,
                                                                                   monkeypatch):
    src, tgt = mixed_pairs
    prepared = aligner.prepare(src, tgt, "bam_Latn", "eng_Latn", on_too_long="skip")
    pool = BufferPool(1)
    encoded = aligner.encode_prepared(prepared, buffers=pool)
    assert np.shares_memory(encoded.rows.hidden, encoded.buffer)
    assert aligner.extract_encoded(encoded) == aligner.align_prepared(prepared)
    pool.give(encoded.buffer)

    def broken(*args, **kwargs):
        raise RuntimeError("the session failed")

    monkeypatch.setattr(aligner.encoder, "run", broken)
    with pytest.raises(RuntimeError, match="the session failed"):
        aligner.encode_prepared(prepared, buffers=pool)
    assert pool.take(1, threading.Event()) is encoded.buffer  # given back: the pool still holds it
