"""Verified resume (issue 24.1): a resumed corpus job never keeps a damaged shard or rejects part.

The reference is the uninterrupted run of the same job: after damage and `--resume`, every shard,
every rejects part and the rejects file are byte-identical to it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from test_corpus import bad_fast_align, job_files
from transalign.cli import main
from transalign.corpus.job import align_corpus
from transalign.corpus.manifest import JobError, JobManifest


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_bundle):
    """200 `src ||| tgt` rows, every 9th malformed, aligned uninterrupted in 5 shards of 40 with
    rejects (every shard has a rejects part)."""
    root = tmp_path_factory.mktemp("resume")
    lines, bad = bad_fast_align(200, 41, 9)
    corpus = root / "corpus.txt"
    corpus.write_bytes(b"".join(x + b"\n" for x in lines))
    summary = align_corpus(tiny_bundle, corpus, root / "full", src_lang="eng_Latn", tgt_lang="ces_Latn",
                           output_format="id", shard_pairs=40, rejects=root / "full-rejects.jsonl")
    assert summary.shards == 5 and summary.rejected == len(bad)
    manifest = json.loads((root / "full" / "manifest.json").read_text())
    assert all(manifest["rejected"][str(k)] > 0 for k in range(5))
    return {"root": root, "corpus": corpus, "full": root / "full", "rejects": root / "full-rejects.jsonl"}


def cli_args(reference, outdir: Path, rejects: Path) -> list[str]:
    return ["align-corpus", "", str(reference["corpus"]), "-o", str(outdir), "--src-lang", "eng_Latn",
            "--tgt-lang", "ces_Latn", "--output-format", "id", "--shard-pairs", "40", "--rejects", str(rejects),
            "--quiet"]


def damage(path: Path, kind: str) -> None:
    if kind == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "delete":
        path.unlink()
    elif kind == "append":
        with open(path, "ab") as handle:
            handle.write(b"garbage\n")
    elif kind == "directory":
        path.unlink()
        path.mkdir()
        (path / "inside.txt").write_text("x")
    elif kind == "same-size":  # a changed byte: only the digest can tell
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 1
        path.write_bytes(bytes(data))


def copy_job(reference, tmp_path: Path, complete: bool = True) -> tuple[Path, Path]:
    outdir, rejects = tmp_path / "job", tmp_path / "rejects.jsonl"
    shutil.copytree(reference["full"], outdir)
    shutil.copy(reference["rejects"], rejects)
    manifest = json.loads((outdir / "manifest.json").read_text())
    manifest["options"]["rejects"] = str(rejects.resolve())  # the rejects file is part of the job
    if not complete:  # as if killed after shard 3: shard 4 never recorded, no rejects file yet
        manifest.update(complete=False, completed=[0, 1, 2, 3], pairs=None, shards=None)
        manifest["rejected"].pop("4")
        for name in ("part-00004.txt", "rejects-00004.jsonl"):
            manifest["files"].pop(name)
            (outdir / name).unlink()
        rejects.unlink()
    (outdir / "manifest.json").write_text(json.dumps(manifest))
    return outdir, rejects


@pytest.mark.parametrize("target", ["part-00002.txt", "rejects-00003.jsonl"])
@pytest.mark.parametrize("kind", ["truncate", "delete", "append", "directory", "same-size"])
def test_resume_realigns_a_damaged_file(reference, tiny_bundle, tmp_path, capsys, kind, target):
    outdir, rejects = copy_job(reference, tmp_path)
    damage(outdir / target, kind)
    args = cli_args(reference, outdir, rejects)
    args[1] = str(tiny_bundle)
    assert main(args + ["--resume"]) == 0
    err = capsys.readouterr().err
    shard = int(target.split("-")[1].split(".")[0])
    assert f"{outdir / target}" in err and f"aligning shard {shard} again" in err, err
    assert job_files(outdir) == job_files(reference["full"])
    assert rejects.read_bytes() == reference["rejects"].read_bytes()
    manifest = json.loads((outdir / "manifest.json").read_text())
    full = json.loads((reference["full"] / "manifest.json").read_text())
    assert (manifest["completed"], manifest["rejected"], manifest["files"], manifest["complete"]) == \
        (full["completed"], full["rejected"], full["files"], True)
    # a second resume finds nothing to do and says nothing about damage
    assert main(args + ["--resume"]) == 0
    assert "again" not in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["truncate", "directory"])
def test_resume_of_an_interrupted_job_checks_its_shards_too(reference, tiny_bundle, tmp_path, capsys, kind):
    outdir, rejects = copy_job(reference, tmp_path, complete=False)
    damage(outdir / "part-00001.txt", kind)
    damage(outdir / "rejects-00000.jsonl", "append")
    summary = align_corpus(tiny_bundle, reference["corpus"], outdir, src_lang="eng_Latn", tgt_lang="ces_Latn",
                           output_format="id", shard_pairs=40, rejects=rejects, resume=True)
    assert summary.repaired == (0, 1) and summary.written == 3  # shards 0, 1 and the never-written 4
    assert "aligning shard 0 again" in capsys.readouterr().err
    assert job_files(outdir) == job_files(reference["full"])
    assert rejects.read_bytes() == reference["rejects"].read_bytes()


def test_a_changed_rejects_file_is_rebuilt_on_resume(reference, tiny_bundle, tmp_path):
    outdir, rejects = copy_job(reference, tmp_path)
    rejects.write_bytes(rejects.read_bytes()[:100])
    summary = align_corpus(tiny_bundle, reference["corpus"], outdir, src_lang="eng_Latn", tgt_lang="ces_Latn",
                           output_format="id", shard_pairs=40, rejects=rejects, resume=True)
    assert summary.written == 0 and rejects.read_bytes() == reference["rejects"].read_bytes()


@pytest.mark.parametrize("edit, field", [
    (lambda m: m.update(completed="0 1 2"), "completed"),
    (lambda m: m["completed"].append("4"), "completed[5]"),
    (lambda m: m.update(complete=1), "complete"),
    (lambda m: m["files"]["part-00000.txt"].update(bytes="12"), "files.part-00000.txt.bytes"),
    (lambda m: m["rejected"].update({"2": True}), "rejected.2"),
    (lambda m: m["input"].update(size=None), "input.size"),
    (lambda m: m.update(shard_count=5), "shard_count"),
    (lambda m: m["starts"]["0"].update(offset=0), "starts.0.offset"),
    (lambda m: m["bundle"].pop("manifest_sha256"), "bundle.manifest_sha256"),
])
def test_a_bad_manifest_field_is_named(reference, tiny_bundle, tmp_path, capsys, edit, field):
    outdir, rejects = copy_job(reference, tmp_path)
    manifest = json.loads((outdir / "manifest.json").read_text())
    edit(manifest)
    (outdir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(JobError, match=re.escape(f"field '{field}'")):
        JobManifest.load(outdir)
    args = cli_args(reference, outdir, rejects)
    args[1] = str(tiny_bundle)
    assert main(args + ["--resume"]) == 2
    err = capsys.readouterr().err
    assert f"'{field}'" in err and "Traceback" not in err and err.count("\n") == 1, err


def test_a_version_1_manifest_is_resumed_by_aligning_its_shards_again(reference, tiny_bundle, tmp_path, capsys):
    """A job written before digests existed: nothing to verify its shards against, so they are
    aligned again (and say so) rather than trusted."""
    outdir, rejects = copy_job(reference, tmp_path)
    manifest = json.loads((outdir / "manifest.json").read_text())
    manifest["last_start"] = {"shard": 4, **manifest["starts"]["4"]}
    for name in ("files", "starts", "runs"):
        manifest.pop(name)
    for name in ("method", "word_level", "scores"):
        manifest["options"].pop(name)
    manifest["format_version"] = 1
    (outdir / "manifest.json").write_text(json.dumps(manifest))
    damage(outdir / "part-00003.txt", "truncate")  # what version 1 could not see
    summary = align_corpus(tiny_bundle, reference["corpus"], outdir, src_lang="eng_Latn", tgt_lang="ces_Latn",
                           output_format="id", shard_pairs=40, rejects=rejects, resume=True)
    assert summary.repaired == (0, 1, 2, 3, 4) and "no recorded size and sha256" in capsys.readouterr().err
    assert job_files(outdir) == job_files(reference["full"])
    assert json.loads((outdir / "manifest.json").read_text())["format_version"] == 3  # upgraded on resume


def test_files_no_shard_wrote_are_removed_on_resume(reference, tiny_bundle, tmp_path, capsys):
    """`cat part-*` must be the job's result: a shard past the end of the input, a shard file of
    another format and a rejects part of a shard without rejects are removed (and named)."""
    outdir, rejects = copy_job(reference, tmp_path)
    manifest = json.loads((outdir / "manifest.json").read_text())
    manifest["rejected"]["1"] = 0  # shard 1 as if it had no rejects: its part is not the job's
    manifest["files"].pop("rejects-00001.jsonl")
    (outdir / "manifest.json").write_text(json.dumps(manifest))
    for name in ("part-00005.txt", "part-00002.jsonl", "rejects-00009.jsonl"):
        (outdir / name).write_text("0-0\n")
    (outdir / "part-notes.md").write_text("mine")  # not a name the job writes: left alone
    align_corpus(tiny_bundle, reference["corpus"], outdir, src_lang="eng_Latn", tgt_lang="ces_Latn",
                 output_format="id", shard_pairs=40, rejects=rejects, resume=True)
    err = capsys.readouterr().err
    for name in ("part-00005.txt", "part-00002.jsonl", "rejects-00009.jsonl", "rejects-00001.jsonl"):
        assert f"{outdir / name} was not written by this job; removed" in err and not (outdir / name).exists()
    assert (outdir / "part-notes.md").read_text() == "mine"
    expected = job_files(reference["full"])
    expected.pop("rejects-00001.jsonl")
    assert job_files(outdir) == dict(expected, **{"part-notes.md": b"mine"})
