"""`transalign bench` on the tiny bundle: every figure comes from its runs, variants are isolated
in their own processes, and bad options fail with a clear message before anything is measured.

One benchmark run (two variants, fp32 and int8, in two worker processes) serves the tests that
read its JSON; every expected number is recomputed here from the raw measurements the JSON
stores or from an in-process alignment of the same pairs, never typed in.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
from pathlib import Path

import numpy as np
import pytest

from transalign.cli import main

PAIRS, REPEAT, LATENCY_PAIRS, BATCH_TOKENS, SEED = 40, 3, 4, 256, 3  # odd REPEAT: median != mean


@pytest.fixture(scope="module")
def bench_run(tiny_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    import contextlib
    import io

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["bench", str(tiny_bundle), "--synthetic", str(PAIRS), "--seed", str(SEED), "--precision",
                     "fp32,int8", "--provider", "cpu", "--threads", "1", "--batch-tokens", str(BATCH_TOKENS),
                     "--repeat", str(REPEAT), "--latency-pairs", str(LATENCY_PAIRS), "--json", str(out)])
    assert code == 0
    return json.loads(out.read_text()), stdout.getvalue()


def test_json_has_the_machine_workload_and_every_variant(bench_run):
    results, _ = bench_run
    machine = results["machine"]
    assert machine["cpu"] and machine["cpus_usable"] >= 1 and "onnxruntime" in machine["versions"]
    assert isinstance(machine["gpus"], list)
    assert results["workload"]["pairs"] == PAIRS and results["workload"]["source"] == "synthetic"
    assert results["workload"]["src_lang"] and results["workload"]["tgt_lang"]  # NLLB: codes picked
    assert [(v["precision"], v["provider"], v["threads"], v["batch_tokens"]) for v in results["variants"]] == \
        [("fp32", "cpu", 1, BATCH_TOKENS), ("int8", "cpu", 1, BATCH_TOKENS)]
    for v in results["variants"]:
        for key in ("pairs_per_s", "real_tokens_per_s", "seconds", "breakdown_s", "padding_waste", "latency_ms",
                    "load_s", "peak_rss_mb", "agreement", "raw"):
            assert key in v, key
        assert len(v["raw"]["runs"]) == REPEAT and v["raw"]["identical_across_runs"]
        assert len(v["raw"]["latency"]["samples_s"]) == LATENCY_PAIRS * REPEAT


def test_every_figure_is_recomputed_from_the_stored_runs(bench_run):
    results, stdout = bench_run
    for v in results["variants"]:
        runs = v["raw"]["runs"]
        e2e = [r["e2e"] for r in runs]
        median = statistics.median(e2e)
        assert v["pairs_per_s"]["median"] == pytest.approx(PAIRS / median, rel=1e-12)
        assert v["pairs_per_s"]["min"] == pytest.approx(PAIRS / max(e2e), rel=1e-12)
        assert v["pairs_per_s"]["max"] == pytest.approx(PAIRS / min(e2e), rel=1e-12)
        assert v["real_tokens_per_s"]["median"] == pytest.approx(runs[0]["real_tokens"] / median, rel=1e-12)
        assert v["padding_waste"] == pytest.approx(1 - runs[0]["real_tokens"] / runs[0]["padded_tokens"])
        for section in ("tokenize", "encode", "extract", "output"):
            assert v["breakdown_s"][section] == pytest.approx(statistics.median(r["seconds"][section] for r in runs))
        other = statistics.median(r["e2e"] - sum(r["seconds"].values()) for r in runs)
        assert v["breakdown_s"]["other"] == pytest.approx(other, abs=1e-12)
        assert v["breakdown_share"]["encode"] == pytest.approx(v["breakdown_s"]["encode"] / median)
        samples = np.array(v["raw"]["latency"]["samples_s"]) * 1e3
        for q in (50, 95, 99):
            assert v["latency_ms"][f"p{q}"] == pytest.approx(np.percentile(samples, q), rel=1e-12)
        assert v["latency_ms"]["p50"] <= v["latency_ms"]["p95"] <= v["latency_ms"]["p99"] <= samples.max()
        assert f"{v['pairs_per_s']['median']:,.2f}" in stdout  # the table shows the stored figure
    from transalign.bench.report import rederive

    rederived = rederive(results)
    for v in results["variants"]:
        for key, value in rederived[v["name"]].items():
            assert v[key] == value, key


def test_tokens_and_links_match_an_in_process_alignment_of_the_same_pairs(bench_run, tiny_bundle):
    from transalign import Aligner
    from transalign.bench.measure import measure_run
    from transalign.bench.synthetic import fit_to_model, synthetic_pairs
    from transalign.bench.stats import parse_links

    results, _ = bench_run
    w = results["workload"]
    aligners = {p: Aligner.load(tiny_bundle, provider="cpu", precision=p, threads=1) for p in ("fp32", "int8")}
    tok, manifest = aligners["fp32"].tokenizer, aligners["fp32"].manifest
    src, tgt = synthetic_pairs(tiny_bundle, manifest.tokenizer, PAIRS, SEED)
    assert (src, tgt) == synthetic_pairs(tiny_bundle, manifest.tokenizer, PAIRS, SEED)  # deterministic
    assert src != synthetic_pairs(tiny_bundle, manifest.tokenizer, PAIRS, SEED + 1)[0]
    src = fit_to_model(src, tok, w["src_lang"], manifest.max_positions)
    tgt = fit_to_model(tgt, tok, w["tgt_lang"], manifest.max_positions)
    assert w["src_words"] == sum(map(len, src)) and w["tgt_words"] == sum(map(len, tgt))
    links = {}
    for v in results["variants"]:
        run = measure_run(aligners[v["precision"]], src, tgt, w["src_lang"], w["tgt_lang"], batch_tokens=BATCH_TOKENS,
                          on_too_long="skip")
        assert run["real_tokens"] == v["real_tokens"] and run["padded_tokens"] == v["padded_tokens"]
        assert hashlib.sha256(run["text"].encode()).hexdigest() == v["raw"]["links_sha256"]
        links[v["precision"]] = parse_links(run["text"])
    fp32, int8 = links["fp32"], links["int8"]
    both = sum(len(a & b) for a, b in zip(int8, fp32))
    f1 = 2 * both / (sum(map(len, int8)) + sum(map(len, fp32)))
    agreement = results["variants"][1]["agreement"]
    assert agreement["baseline"] == results["variants"][0]["name"]
    assert agreement["f1"] == pytest.approx(f1)
    assert agreement["identical_pairs"] == pytest.approx(np.mean([a == b for a, b in zip(int8, fp32)]))


def test_rows_name_the_provider_precision_and_threads_that_ran(bench_run):
    results, stdout = bench_run
    for v in results["variants"]:
        raw = v["raw"]
        assert raw["provider_ran"] == "cpu" and raw["session_providers"][0] == "CPUExecutionProvider"
        assert raw["precision_ran"] == v["precision"] and raw["threads_used"] == 1 == v["threads_effective"]
        assert f"cpu {v['precision']}, 1 threads, {BATCH_TOKENS} tokens/batch" in stdout


def test_more_threads_than_cores_warns_and_the_row_says_what_ran(tiny_bundle, tmp_path, capsys):
    """Issue 26.5: `bench --threads 4` on 2 cores labelled its row "4 threads" and said nothing."""
    cores = len(os.sched_getaffinity(0))
    asked = cores + 2
    out = tmp_path / "bench.json"
    assert main(["bench", str(tiny_bundle), "--synthetic", "6", "--precision", "fp32", "--provider", "cpu",
                 "--threads", f"{asked},{asked + 1}", "--repeat", "1", "--latency-pairs", "0",
                 "--json", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"--threads {asked} is more than the {cores} cores" in captured.err
    assert f"run as {cores},{cores} threads on {cores} cores" in captured.err  # the two variants are the same
    results = json.loads(out.read_text())
    assert [v["raw"]["threads_used"] for v in results["variants"]] == [cores, cores]
    assert f"cpu fp32, {cores} ({asked} asked) threads" in captured.out
    assert f"{asked} threads" not in captured.out.replace(f"({asked} asked) threads", "")


def test_thread_warnings_are_silent_within_the_cores():
    from transalign.bench.runner import thread_warnings

    assert thread_warnings((None,), 2) == [] and thread_warnings((1, 2), 2) == []
    assert len(thread_warnings((None, 2), 2)) == 1  # "all" and 2 are the same on 2 cores


def test_each_variant_ran_in_its_own_process(bench_run):
    results, _ = bench_run
    pids = [v["raw"]["pid"] for v in results["variants"]]
    assert len(set(pids)) == len(pids) and os.getpid() not in pids
    for v in results["variants"]:
        assert not v["raw"]["torch_imported"]
        assert 0 < v["raw"]["rss_after_load_mb"] <= v["peak_rss_mb"]


def test_synthetic_words_come_from_a_wordpiece_vocabulary():
    from fixture_tokenizers import tiny_tokenizer_dir
    from tokenizers import Tokenizer

    from transalign.bench.synthetic import synthetic_pairs, vocabulary
    from transalign.engine.bundle import TokenizerSpec

    directory = tiny_tokenizer_dir("bert")
    spec = TokenizerSpec(kind="hf-tokenizers", file="tokenizer.json", unk_id=0, eos_id=0, pad_id=0)
    starts, rest = vocabulary(directory, spec)
    vocab = Tokenizer.from_file(str(directory / "tokenizer.json")).get_vocab()
    assert starts and rest and set(starts) <= set(vocab) and {"##" + r for r in rest} <= set(vocab)
    src, tgt = synthetic_pairs(directory, spec, 50, seed=1)
    assert len(src) == len(tgt) == 50 and all(src) and all(tgt)


def test_files_and_an_fp32_baseline_when_only_int8_is_measured(tiny_bundle, tmp_path, capsys):
    """No fp32 variant asked for: one extra untimed fp32 pass gives the agreement baseline."""
    corpus = (Path(__file__).parent / "data" / "corpus.txt").read_text(encoding="utf-8").splitlines()
    src, tgt = tmp_path / "src.txt", tmp_path / "tgt.txt"
    src.write_text("\n".join(corpus[:12]) + "\n", encoding="utf-8")
    tgt.write_text("\n".join(corpus[12:24]) + "\n", encoding="utf-8")
    out = tmp_path / "bench.json"
    assert main(["bench", str(tiny_bundle), "--src", str(src), "--tgt", str(tgt), "--src-lang", "ces_Latn",
                 "--tgt-lang", "eng_Latn", "--precision", "int8", "--provider", "cpu", "--threads", "1",
                 "--repeat", "1", "--latency-pairs", "0", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    (variant,) = results["variants"]
    assert results["workload"]["source"] == "files" and results["workload"]["pairs"] == 12
    assert results["workload"]["src_words"] == sum(len(line.split()) for line in corpus[:12])
    assert variant["latency_ms"] is None and "fp32" not in variant["name"]
    baseline = results["agreement_baseline"]
    assert baseline["precision"] == "fp32" and not baseline["timed"]
    assert variant["agreement"]["baseline"] == baseline["name"]
    from transalign import Aligner
    from transalign.bench.stats import agreement

    links = {}
    for precision in ("fp32", "int8"):
        aligner = Aligner.load(tiny_bundle, provider="cpu", precision=precision, threads=1)
        results_ = aligner.align(corpus[:12], corpus[12:24], "ces_Latn", "eng_Latn", on_too_long="skip")
        links[precision] = [frozenset(r.links) for r in results_]
    expected = agreement(links["int8"], links["fp32"])
    assert {k: variant["agreement"][k] for k in expected} == pytest.approx(expected)
    assert "synthetic" not in capsys.readouterr().out


@pytest.mark.parametrize(("extra", "message"), [
    (["--precision", "fp64"], "'fp64' is not one of fp32, int8, fp16"),
    (["--precision", "fp16", "--provider", "cpu"], "CUDA provider only"),
    (["--src", "missing-src.txt", "--tgt", "missing-tgt.txt"], "missing-src.txt: file not found"),
    (["--src", "SRC"], "--src needs --tgt"),
    (["--tgt", "TGT"], "--tgt needs --src"),
    (["--src", "SRC", "--tgt", "TGT", "--synthetic", "5"], "not both"),
    (["--src", "SRC", "--tgt", "TGT"], "--src-lang is required: this m2m100 bundle starts every source sentence"),
    (["--synthetic", "5", "--src-lang", "xx_Latn"], "--src-lang 'xx_Latn': unknown language code"),
    (["--synthetic", "0"], "--synthetic must be a positive number"),
    (["--repeat", "0"], "--repeat must be at least 1"),
    (["--latency-pairs", "-1"], "--latency-pairs must be 0"),
    (["--provider", "gpu"], "'gpu' is not one of cpu, cuda"),
    (["--threads", "1,1"], "--threads needs distinct values"),
    (["--json", "no-such-dir/out.json"], "does not exist"),
])
def test_bad_options_are_clear_errors(tiny_bundle, tmp_path, capsys, extra, message):
    (tmp_path / "SRC").write_text("a b\n")
    (tmp_path / "TGT").write_text("c d\n")
    extra = [str(tmp_path / x) if x in ("SRC", "TGT", "no-such-dir/out.json") else x for x in extra]
    assert main(["bench", str(tiny_bundle), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("transalign bench: error:") and message in err


def test_bad_numbers_are_refused_by_the_parser(tiny_bundle, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", str(tiny_bundle), "--threads", "2,x"])
    assert exc.value.code == 2 and "--threads" in capsys.readouterr().err


@pytest.mark.parametrize(("extra", "message"), [(["--threads", "0"], "--threads 0: must be an integer >= 1"),
                                                (["--batch-tokens", "-5"], "--batch-tokens -5: must be an integer in")])
def test_out_of_range_numbers_get_the_engines_rule_before_any_work(tiny_bundle, capsys, extra, message):
    assert main(["bench", str(tiny_bundle), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "loading" not in err


def test_a_missing_bundle_and_an_unavailable_provider_are_clear_errors(tmp_path, tiny_bundle, capsys):
    assert main(["bench", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    from transalign.engine.session import available_providers

    if "CUDAExecutionProvider" not in available_providers():
        assert main(["bench", str(tiny_bundle), "--provider", "cuda"]) == 2
        assert "CUDAExecutionProvider is not available" in capsys.readouterr().err
