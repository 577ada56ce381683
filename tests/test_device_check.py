"""`python -m benchmarks.device_check --cpu-dry-run`: the GPU check's own code, run on CPU (issue 27).

The device run cannot happen in CI (no GPU); the dry run executes every part of it (providers,
agreement, throughput across budgets, latency, the authors' procedure as baseline) with the CPU
provider on the tiny bundle, so the script that will run on an H100 is known to work end to end
and to write the document its readers expect. Figures are recomputed from what the document
stores; CPU fp32 against CPU fp32 must agree exactly.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dry_run(tiny_bundle, tiny_nllb, tiny_lora, tmp_path_factory):
    out = tmp_path_factory.mktemp("device-check") / "check.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.device_check", "--cpu-dry-run", "--out", str(out),
                           "--tiny-bundle", str(tiny_bundle), "--tiny-model", str(tiny_nllb),
                           "--tiny-lora", str(tiny_lora), "--work", str(out.parent / "work")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def test_the_document_has_every_part(dry_run):
    from benchmarks.device_check import Plan

    doc, _ = dry_run
    plan = Plan.dry()
    assert doc["mode"] == "cpu-dry-run" and doc["format_version"] == 1
    assert "CPUExecutionProvider" in doc["providers"]["available"] and doc["providers"]["under_test"] == "cpu"
    assert doc["providers"]["sessions"] and all(s["ran"] == "cpu" == s["asked"] for s in doc["providers"]["sessions"])
    assert [(r["precision"], r["batch_tokens"], r["pipeline"]) for r in doc["throughput"]] == \
        [("fp32", b, p) for b in plan.budgets for p in ("off", "on")]
    assert set(doc["latency"]) == {"fp32"} and doc["baseline"]["device"] == "cpu"
    assert set(doc["seconds"]) == {"agreement", "throughput", "baseline", "total"}


def test_cpu_fp32_agrees_with_itself_exactly(dry_run):
    doc, _ = dry_run
    (row,) = doc["agreement"]
    assert (row["bundle"], row["provider"], row["precision"], row["reference"]) == ("tiny", "cpu", "fp32", "cpu fp32")
    assert row["identical_pairs"] == 1.0 and row["link_f1"] == 1.0 and row["links"] == row["reference_links"] > 0
    assert row["aer"] is None  # no gold for bam-en


def test_the_authors_procedure_gives_the_engines_fp32_links(dry_run):
    """The baseline is the method itself (reference_baseline.py, PyTorch): on CPU its links are
    the engine's, pair for pair, so the speed ratio compares the same work."""
    doc, _ = dry_run
    same = doc["baseline"]["agreement_with_engine"]
    assert same["engine"] == "cpu fp32" and same["identical_pairs"] == 1.0 and same["link_f1"] == 1.0


def test_fp16_is_skipped_with_its_reason(dry_run):
    doc, stdout = dry_run
    reasons = {s["part"]: s["reason"] for s in doc["skipped"]}
    assert "CUDA provider only" in reasons["fp16"] and "no --e5-bundle" in reasons["agreement on e5"]
    assert not any(r["precision"] == "fp16" for r in doc["throughput"] + doc["agreement"])
    assert "skipped: fp16: fp16 runs on the CUDA provider only" in stdout


def test_figures_follow_from_the_stored_measurements(dry_run):
    doc, stdout = dry_run
    for r in doc["throughput"]:
        assert r["pairs"] == doc["plan"]["throughput_pairs"]
        assert r["pairs_per_s"] == pytest.approx(r["pairs"] / r["seconds"])
        assert 0 <= r["padding_waste"] < 1 and r["gpu_utilisation_pct"] is None  # no nvidia-smi on CPU
        assert f"{r['pairs_per_s']:,.1f}" in stdout
    # the budget and the pipeline change the batches and their order, never the links
    assert len({r["links_sha256"] for r in doc["throughput"]}) == 1
    best = max(doc["throughput"], key=lambda r: r["pairs_per_s"])
    assert doc["summary"]["best"]["pairs_per_s"] == best["pairs_per_s"]
    assert doc["summary"]["over_baseline"] == pytest.approx(best["pairs_per_s"] / doc["baseline"]["pairs_per_s"])
    assert doc["baseline"]["pairs_per_s"] == pytest.approx(doc["baseline"]["pairs"] / doc["baseline"]["seconds"])
    lat = doc["latency"]["fp32"]
    assert 0 < lat["p50"] <= lat["p99"] and lat["samples"] == 3 * doc["plan"]["latency_pairs"]
    assert set(doc["summary"]["knee_batch_tokens"]) == {"fp32 pipeline off", "fp32 pipeline on"}
    assert all(b in doc["plan"]["budgets"] for b in doc["summary"]["knee_batch_tokens"].values())


def test_the_knee_follows_the_rule_from_the_stored_rows(dry_run):
    """Per precision and pipeline state, the knee is the smallest budget within the tolerance of
    that group's best pairs/s (read here from the rows by hand), and the table states the rule."""
    doc, stdout = dry_run
    summary = doc["summary"]
    for key, knee in summary["knees"].items():
        rows = sorted((r for r in doc["throughput"] if f"{r['precision']} pipeline {r['pipeline']}" == key),
                      key=lambda r: r["batch_tokens"])
        best = max(r["pairs_per_s"] for r in rows)
        expected = [r["batch_tokens"] for r in rows if r["pairs_per_s"] >= (1 - knee["tolerance"]) * best][0]
        assert knee["batch_tokens"] == summary["knee_batch_tokens"][key] == expected
        assert knee["best_rate"] == best and knee["budgets"] == sorted(doc["plan"]["budgets"])
        assert f"- {key}: knee {expected} tokens" in stdout
    assert f"token budget ({summary['knee_rule']}):" in stdout and "smallest token budget" in summary["knee_rule"]


def test_a_device_run_without_cuda_fails_before_building_anything(tmp_path):
    from transalign.engine.session import available_providers

    if "CUDAExecutionProvider" in available_providers():
        pytest.skip("this machine has CUDA: the device run would start")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.device_check", "--out", str(tmp_path / "x.json"),
                           "--work", str(tmp_path / "work")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "CUDAExecutionProvider is not available" in proc.stderr
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "work").exists()
