"""Corpus manifests say which provider and precision ran (issue 27), next to what was asked.

What ran is checked against facts found independently of the job: this CPU-only onnxruntime
(``onnxruntime.get_available_providers()``) and a session opened here; the CUDA fallback of
``auto`` is the real one of ONNX Runtime (``available_providers`` claims CUDA, as onnxruntime-gpu
does on a machine whose CUDA cannot start; see test_session.py). A resume across providers is
made by recording an earlier run on CUDA in the manifest, since no GPU is here.
"""

from __future__ import annotations

import json
import re
import warnings
from datetime import datetime, timezone
from pathlib import Path

import onnxruntime as ort
import pytest

from test_corpus import sentences, shard_files, write_fast_align
from transalign.cli import main
from transalign.corpus.job import align_corpus
from transalign.corpus.manifest import JOB_VERSION, JobError, JobManifest, Run
from transalign.engine import session as session_mod

LANGS = {"src_lang": "eng_Latn", "tgt_lang": "ces_Latn"}
CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("provider")
    return write_fast_align(root / "corpus.txt", sentences(90, 61), sentences(90, 62))


def manifest_of(outdir: Path) -> dict:
    return json.loads((outdir / "manifest.json").read_text(encoding="utf-8"))


def write_manifest(outdir: Path, manifest: dict) -> None:
    (outdir / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def started_at(run: dict) -> datetime:
    return datetime.fromisoformat(run["started"])


def interrupt(outdir: Path, keep: int) -> None:
    """The job as if killed after shard ``keep - 1``: later shards unrecorded, their files gone."""
    manifest = manifest_of(outdir)
    manifest.update(complete=False, completed=list(range(keep)), pairs=None, shards=None)
    for run in manifest["runs"]:
        run["shards"] = [k for k in run["shards"] if k < keep]
    for path in shard_files(outdir)[keep:]:
        manifest["files"].pop(path.name)
        path.unlink()
    write_manifest(outdir, manifest)


def test_this_machine_runs_the_cpu_provider():
    """The premise of the expectations below: no CUDA in this onnxruntime."""
    assert CUDA not in ort.get_available_providers() and CPU in ort.get_available_providers()


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_a_job_records_the_provider_and_precision_that_ran(tiny_bundle, corpus, tmp_path, precision):
    before = datetime.now(timezone.utc).replace(microsecond=0)
    summary = align_corpus(tiny_bundle, corpus, tmp_path / "out", shard_pairs=40, precision=precision,
                           provider="cpu", **LANGS)
    manifest = manifest_of(tmp_path / "out")
    assert manifest["format_version"] == JOB_VERSION == 3
    [run] = manifest["runs"]
    assert run["asked"] == {"provider": "cpu", "precision": precision}
    assert run["ran"] == [{"provider": "cpu", "precision": precision}]
    assert run["shards"] == [0, 1, 2] == manifest["completed"]
    assert before <= started_at(run) <= datetime.now(timezone.utc)
    assert summary.ran == (f"cpu {precision}",)
    assert manifest["options"]["precision"] == precision  # what was asked, part of the job's identity
    assert JobManifest.load(tmp_path / "out").runs == manifest["runs"]  # read back by the strict reader


def test_auto_records_the_provider_that_ran_not_auto(tiny_bundle, corpus, tmp_path):
    align_corpus(tiny_bundle, corpus, tmp_path / "auto", shard_pairs=40, provider="auto", **LANGS)
    [run] = manifest_of(tmp_path / "auto")["runs"]
    assert run["asked"] == {"provider": "auto", "precision": "fp32"}
    assert run["ran"] == [{"provider": "cpu", "precision": "fp32"}]


def test_auto_whose_cuda_falls_back_records_cpu(tiny_bundle, corpus, tmp_path, monkeypatch):
    """`auto` sees CUDA listed, asks ONNX Runtime for it, and the session runs on the CPU."""
    monkeypatch.setattr(session_mod, "available_providers", lambda: [CUDA, CPU])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        align_corpus(tiny_bundle, corpus, tmp_path / "fallback", shard_pairs=40, provider="auto", **LANGS)
    assert any(issubclass(w.category, session_mod.ProviderFallback) for w in caught)  # it did try CUDA
    [run] = manifest_of(tmp_path / "fallback")["runs"]
    assert run["asked"]["provider"] == "auto" and run["ran"] == [{"provider": "cpu", "precision": "fp32"}]


def test_a_resume_with_another_precision_is_refused_naming_the_flag(tiny_bundle, corpus, tmp_path, capsys):
    outdir = tmp_path / "job"
    align_corpus(tiny_bundle, corpus, outdir, shard_pairs=40, **LANGS)
    interrupt(outdir, 1)
    before = manifest_of(outdir)
    with pytest.raises(JobError, match=re.escape("options.precision 'int8' (--precision; the job has 'fp32')")):
        align_corpus(tiny_bundle, corpus, outdir, shard_pairs=40, precision="int8", resume=True, **LANGS)
    assert main(["align-corpus", str(tiny_bundle), str(corpus), "-o", str(outdir), "--src-lang", "eng_Latn",
                 "--tgt-lang", "ces_Latn", "--shard-pairs", "40", "--precision", "int8", "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--precision" in err and "'int8'" in err and "'fp32'" in err and "Traceback" not in err, err
    assert manifest_of(outdir) == before and [p.name for p in shard_files(outdir)] == ["part-00000.txt"]


def test_a_resume_on_another_provider_warns_and_records_each_run(tiny_bundle, corpus, tmp_path, capsys):
    """Shards 0-1 recorded as aligned on CUDA, the resume runs on the CPU: it goes on (the
    provider is not part of the job), says so on stderr, and the manifest keeps both runs."""
    outdir = tmp_path / "job"
    align_corpus(tiny_bundle, corpus, tmp_path / "whole", shard_pairs=40, **LANGS)
    align_corpus(tiny_bundle, corpus, outdir, shard_pairs=40, **LANGS)
    interrupt(outdir, 2)
    manifest = manifest_of(outdir)
    manifest["runs"][0]["ran"] = [{"provider": "cuda", "precision": "fp32"}]  # as a GPU run would record
    earlier = manifest["runs"][0]
    write_manifest(outdir, manifest)
    capsys.readouterr()
    summary = align_corpus(tiny_bundle, corpus, outdir, shard_pairs=40, resume=True, **LANGS)
    err = capsys.readouterr().err
    assert summary.written == 1 and summary.ran == ("cpu fp32",)
    assert "warning: this run aligns on cpu fp32; complete shards of an earlier run were aligned on cuda fp32" in err
    assert err.count("warning") == 1, err
    runs = manifest_of(outdir)["runs"]
    assert runs[0] == earlier
    assert runs[1]["ran"] == [{"provider": "cpu", "precision": "fp32"}] and runs[1]["shards"] == [2]
    assert started_at(runs[1]) >= started_at(runs[0])
    assert [p.read_bytes() for p in shard_files(outdir)] == [p.read_bytes() for p in shard_files(tmp_path / "whole")]


def test_a_resume_on_the_same_engine_or_over_realigned_shards_does_not_warn(tiny_bundle, corpus, tmp_path, capsys):
    outdir = tmp_path / "job"
    align_corpus(tiny_bundle, corpus, outdir, shard_pairs=40, **LANGS)
    interrupt(outdir, 2)
    capsys.readouterr()
    align_corpus(tiny_bundle, corpus, outdir, shard_pairs=40, resume=True, **LANGS)
    assert "warning" not in capsys.readouterr().err
    assert [run["shards"] for run in manifest_of(outdir)["runs"]] == [[0, 1], [2]]
    # shards of a CUDA run that were all aligned again since: nothing of it is kept, nothing to warn
    manifest = manifest_of(outdir)
    manifest["runs"].insert(0, dict(manifest["runs"][0], ran=[{"provider": "cuda", "precision": "fp32"}]))
    write_manifest(outdir, manifest)
    interrupt(outdir, 2)
    align_corpus(tiny_bundle, corpus, outdir, shard_pairs=40, resume=True, **LANGS)
    assert "warning" not in capsys.readouterr().err


def test_a_version_2_manifest_without_runs_is_read_and_resumed(tiny_bundle, corpus, tmp_path, capsys):
    outdir = tmp_path / "job"
    align_corpus(tiny_bundle, corpus, tmp_path / "whole", shard_pairs=40, **LANGS)
    align_corpus(tiny_bundle, corpus, outdir, shard_pairs=40, **LANGS)
    interrupt(outdir, 1)
    manifest = manifest_of(outdir)
    del manifest["runs"]
    manifest["format_version"] = 2  # as written before runs were recorded
    write_manifest(outdir, manifest)
    job = JobManifest.load(outdir)
    assert job.runs == [] and job.format_version == 3 and job.completed == [0]
    capsys.readouterr()
    summary = align_corpus(tiny_bundle, corpus, outdir, shard_pairs=40, resume=True, **LANGS)
    assert summary.written == 2 and "warning" not in capsys.readouterr().err  # the old shard: verified, kept
    resumed = manifest_of(outdir)
    assert resumed["format_version"] == 3
    assert [(r["ran"], r["shards"]) for r in resumed["runs"]] == [([{"provider": "cpu", "precision": "fp32"}],
                                                                   [1, 2])]
    assert [p.read_bytes() for p in shard_files(outdir)] == [p.read_bytes() for p in shard_files(tmp_path / "whole")]


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(format_version=2), "unknown field 'runs' in a version 2 manifest"),
    (lambda m: m.pop("runs"), "missing field 'runs'"),
    (lambda m: m["runs"][0]["ran"][0].update(provider=1), "field 'runs[0].ran[0].provider' must be str"),
    (lambda m: m["runs"][0]["asked"].update(threads=2), "unknown field 'runs[0].asked.threads'"),
    (lambda m: m["runs"][0].update(shards="0"), "field 'runs[0].shards' must be a list"),
    (lambda m: m.update(format_version=4), "is not a version 3 transalign-corpus-job manifest"),
])
def test_a_bad_runs_field_or_version_is_named(tiny_bundle, corpus, tmp_path, edit, message):
    outdir = tmp_path / "job"
    align_corpus(tiny_bundle, corpus, outdir, shard_pairs=40, **LANGS)
    manifest = manifest_of(outdir)
    edit(manifest)
    write_manifest(outdir, manifest)
    with pytest.raises(JobError, match=re.escape(message)):
        JobManifest.load(outdir)


def test_cli_progress_and_summary_name_what_ran(tiny_bundle, corpus, tmp_path, capsys):
    assert main(["align-corpus", str(tiny_bundle), str(corpus), "-o", str(tmp_path / "out"), "--src-lang", "eng_Latn",
                 "--tgt-lang", "ces_Latn", "--shard-pairs", "40", "--provider", "auto", "--progress", "always"]) == 0
    err = capsys.readouterr().err
    assert "transalign align-corpus: pairs (cpu, fp32): 90/90 (100.0%)" in err, err
    assert "90 pairs in 3 shards (3 written now); ran on cpu fp32" in err, err


class Shown:
    """A progress display that records what it is told."""

    def __init__(self):
        self.rows, self.engines = 0, []

    def update(self, n):
        self.rows += n

    def ran(self, provider, precision):
        self.engines.append((provider, precision))


def test_run_records_every_engine_workers_report_and_warns_once_each():
    """The driver's side of Ray workers that disagree (an actor restarted on a node with a GPU):
    `ray_job._rows` reads each batch's provider/precision columns into the run."""
    pa = pytest.importorskip("pyarrow")
    from transalign.corpus.ray_job import _rows

    def batch(start, provider):
        n = 3
        return pa.table({"shard": [0] * n, "index": list(range(start, start + n)), "id": [None] * n,
                         "links": [[[0, 0]]] * n, "lineno": list(range(start + 1, start + n + 1)),
                         "pos": [0] * n, "reject": [None] * n, "raw": [None] * n,
                         "provider": [provider] * n, "precision": ["fp32"] * n})

    class Dataset:
        def iter_batches(self, **_):
            return iter([batch(0, "cpu"), batch(3, "cpu"), batch(6, "cuda"), batch(9, "cpu")])

    job = JobManifest(input={}, bundle={}, options={})
    warned: list[str] = []
    run, shown = Run(job, "auto", "fp32", warned.append), Shown()
    rows = list(_rows(Dataset(), shown, run))
    assert [index for _, index, _ in rows] == list(range(12)) and shown.rows == 12
    assert run.entry["ran"] == [{"provider": "cpu", "precision": "fp32"}, {"provider": "cuda", "precision": "fp32"}]
    assert shown.engines == [("cpu", "fp32"), ("cpu+cuda", "fp32")]
    assert len(warned) == 1 and "workers ran different engines: cpu fp32, cuda fp32" in warned[0]
    run.wrote(0)
    assert job.runs == [run.entry] and run.entry["shards"] == [0]


def test_ray_workers_report_what_they_ran(ray_cluster, tiny_bundle, corpus, tmp_path, capsys):
    shown: list[Shown] = []

    def progress(total):
        shown.append(Shown())
        return shown[-1]

    summary = align_corpus(tiny_bundle, corpus, tmp_path / "ray", shard_pairs=40, provider="auto", ray=True,
                           workers=2, threads=1, progress=progress, **LANGS)
    [run] = manifest_of(tmp_path / "ray")["runs"]
    assert run["asked"] == {"provider": "auto", "precision": "fp32"}
    assert run["ran"] == [{"provider": "cpu", "precision": "fp32"}] and run["shards"] == [0, 1, 2]
    assert summary.ran == ("cpu fp32",) and shown[0].engines == [("cpu", "fp32")] and shown[0].rows == 90
    assert "warning" not in capsys.readouterr().err
