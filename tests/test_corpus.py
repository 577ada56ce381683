"""Corpus jobs (`transalign align-corpus`, `transalign.corpus`): readers, shards, resume, Ray.

Every expected result comes from an independent path: `Aligner.align` on the same pairs, or the
file `transalign align` writes for them.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from transalign.formats.alignments import FormatError
from transalign.cli import main
from transalign.corpus.formats import detect_format, iter_pairs, read_shard
from transalign.corpus.job import align_corpus
from transalign.corpus.manifest import JobError
from transalign.engine.aligner import Aligner

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "data" / "corpus.txt"
LANG_PAIRS = [("eng_Latn", "ces_Latn"), ("ces_Latn", "eng_Latn"), ("bam_Latn", "eng_Latn")]


def sentences(n: int, seed: int, max_words: int = 12) -> list[list[str]]:
    lines = [line.split() for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    rng = random.Random(seed)
    return [rng.choice(lines)[: rng.randint(1, max_words)] for _ in range(n)]


def write_fast_align(path: Path, src, tgt) -> Path:
    path.write_text("".join(f"{' '.join(s)} ||| {' '.join(t)}\n" for s, t in zip(src, tgt)), encoding="utf-8")
    return path


def mixed_rows(n: int) -> list[dict]:
    """Rows cycling over three language pairs; every fourth row has no language columns."""
    src, tgt = sentences(n, 1), sentences(n, 2)
    rows = []
    for k in range(n):
        row = {"id": f"s{k}", "src": " ".join(src[k]), "tgt": tgt[k]}  # a string and a word list
        if k % 4:
            row["src_lang"], row["tgt_lang"] = LANG_PAIRS[k % 3]
        rows.append(row)
    return rows


def expected_mixed(aligner: Aligner, rows: list[dict], default=("eng_Latn", "ces_Latn")) -> dict[str, list]:
    """id -> links, aligning each language pair's rows with one `Aligner.align` call."""
    out = {}
    for pair in set(LANG_PAIRS) | {default}:
        members = [r for r in rows if (r.get("src_lang"), r.get("tgt_lang")) == pair
                   or ("src_lang" not in r and pair == default)]
        if members:
            results = aligner.align([r["src"] for r in members], [r["tgt"] for r in members], *pair)
            out.update({r["id"]: list(res.links) for r, res in zip(members, results)})
    return out


def shard_files(outdir: Path) -> list[Path]:
    return sorted(outdir.glob("part-*"))


def concat(outdir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in shard_files(outdir))


@pytest.fixture(scope="module")
def aligner(tiny_bundle) -> Aligner:
    return Aligner.load(tiny_bundle)


@pytest.fixture(scope="module")
def fast_align_job(tmp_path_factory, tiny_bundle):
    """1,000 pairs as `src ||| tgt`, the `transalign align` file for them, and an uninterrupted job
    in 25 shards of 40."""
    root = tmp_path_factory.mktemp("fa")
    src, tgt = sentences(1000, 3), sentences(1000, 4)
    corpus = write_fast_align(root / "corpus.txt", src, tgt)
    (root / "src.txt").write_text("".join(" ".join(s) + "\n" for s in src), encoding="utf-8")
    (root / "tgt.txt").write_text("".join(" ".join(t) + "\n" for t in tgt), encoding="utf-8")
    assert main(["align", str(tiny_bundle), "--src", str(root / "src.txt"), "--tgt", str(root / "tgt.txt"),
                 "--src-lang", "eng_Latn", "--tgt-lang", "ces_Latn", "-o", str(root / "align.txt")]) == 0
    full = root / "full"
    summary = align_corpus(tiny_bundle, corpus, full, src_lang="eng_Latn", tgt_lang="ces_Latn", shard_pairs=40)
    assert (summary.shards, summary.pairs, summary.written) == (25, 1000, 25)
    return {"root": root, "corpus": corpus, "align": root / "align.txt", "full": full, "src": src, "tgt": tgt}


# ---- readers ---------------------------------------------------------------------------------

def test_readers_agree_and_restart_at_a_position(tmp_path):
    rows = mixed_rows(20)
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tsv = tmp_path / "c.tsv"
    tsv.write_text("".join(f"{r['id']}\t{r['src']}\t{' '.join(r['tgt'])}\t{r.get('src_lang', '')}\t"
                           f"{r.get('tgt_lang', '')}\n" for r in rows), encoding="utf-8")
    headed = tmp_path / "h.tsv"
    headed.write_text("tgt\tsrc\n" + "".join(f"{' '.join(r['tgt'])}\t{r['src']}\n" for r in rows), encoding="utf-8")
    paths = [jsonl, tsv]
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # the `ray` extra is not installed: Parquet is checked where it is
        pass
    else:
        paths.append(tmp_path / "c.parquet")
        pq.write_table(pa.table({"id": [r["id"] for r in rows], "src": [r["src"] for r in rows],
                                 "tgt": [r["tgt"] for r in rows], "src_lang": [r.get("src_lang") for r in rows],
                                 "tgt_lang": [r.get("tgt_lang") for r in rows]}), paths[-1], row_group_size=6)
    truth = [(r["src"].split(), r["tgt"], r["id"], r.get("src_lang"), r.get("tgt_lang")) for r in rows]
    for path in paths:
        fmt = detect_format(path)
        pairs = list(iter_pairs(path, fmt))
        assert [tuple(p[:5]) for p in pairs] == truth, fmt
        tail = list(iter_pairs(path, fmt, pairs[13].pos, pairs[13].lineno))  # a resumed reader
        assert tail == pairs[13:], fmt
    assert [(p.src, p.tgt, p.lineno) for p in iter_pairs(headed, "tsv")] == \
        [(t[0], t[1], k + 2) for k, t in enumerate(truth)]


@pytest.mark.parametrize("fmt, text, line, message", [
    ("fast_align", "a ||| b\nc d\ne ||| f\n", 2, "missing ` ||| `"),
    ("tsv", "a\tb\nc\td\ne\tf\tg\n", 3, "3 tab-separated columns, expected 2"),
    ("jsonl", '{"src": "a", "tgt": "b"}\n{"src": "a", "tgt": \n', 2, "bad JSON"),
    ("jsonl", '{"src": "a", "tgt": "b"}\n{"src": "a"}\n', 2, "missing 'tgt'"),
])
def test_malformed_rows_name_file_and_line(tmp_path, tiny_bundle, capsys, fmt, text, line, message):
    path = tmp_path / "bad.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(FormatError) as info:
        list(iter_pairs(path, fmt))
    assert str(info.value).startswith(f"{path}:{line}: ") and message in str(info.value)
    code = main(["align-corpus", str(tiny_bundle), str(path), "-o", str(tmp_path / "out"), "--input-format", fmt,
                 "--src-lang", "eng_Latn", "--tgt-lang", "ces_Latn", "--shard-pairs", "1", "--quiet"])
    assert code == 2 and f"{path}:{line}: " in capsys.readouterr().err
    # the pairs before the bad line were written as shards; none after it, nothing shifted
    assert [p.name for p in shard_files(tmp_path / "out")] == [f"part-{k:05d}.txt" for k in range(line - 1)]


# ---- in-process jobs ---------------------------------------------------------------------------

def test_pharaoh_shards_are_the_align_file(fast_align_job, aligner):
    files = shard_files(fast_align_job["full"])
    assert [p.name for p in files] == [f"part-{k:05d}.txt" for k in range(25)]
    assert concat(fast_align_job["full"]) == fast_align_job["align"].read_bytes()
    expected = aligner.align(fast_align_job["src"][:40], fast_align_job["tgt"][:40], "eng_Latn", "ces_Latn")
    assert files[0].read_text(encoding="utf-8").splitlines() == [r.pharaoh() for r in expected]
    manifest = json.loads((fast_align_job["full"] / "manifest.json").read_text())
    assert manifest["complete"] and manifest["completed"] == list(range(25)) and manifest["pairs"] == 1000


def test_sigkill_then_resume_gives_the_uninterrupted_result(fast_align_job, tiny_bundle, tmp_path):
    outdir = tmp_path / "killed"
    command = [sys.executable, "-m", "transalign", "align-corpus", str(tiny_bundle), str(fast_align_job["corpus"]),
               "-o", str(outdir), "--src-lang", "eng_Latn", "--tgt-lang", "ces_Latn", "--shard-pairs", "40",
               "--quiet"]
    proc = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE)
    target = random.Random().randint(2, 12)  # a random point in the run
    deadline = time.monotonic() + 120
    while len(shard_files(outdir)) < target and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, f"the job ended before it could be killed: {proc.stderr.read()!r}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(shard_files(outdir))
    assert 2 <= done < 25
    assert main(["align-corpus", str(tiny_bundle), str(fast_align_job["corpus"]), "-o", str(outdir), "--src-lang",
                 "eng_Latn", "--tgt-lang", "ces_Latn", "--shard-pairs", "40", "--resume", "--quiet"]) == 0
    assert [p.name for p in shard_files(outdir)] == [p.name for p in shard_files(fast_align_job["full"])]
    for mine, full in zip(shard_files(outdir), shard_files(fast_align_job["full"])):
        assert mine.read_bytes() == full.read_bytes(), mine.name
    assert concat(outdir) == fast_align_job["align"].read_bytes()
    assert not [p for p in outdir.iterdir() if p.name.startswith(".")]  # no temporary file left
    # resuming a complete job changes nothing
    before = {p.name: p.stat().st_mtime_ns for p in shard_files(outdir)}
    summary = align_corpus(tiny_bundle, fast_align_job["corpus"], outdir, src_lang="eng_Latn", tgt_lang="ces_Latn",
                           shard_pairs=40, resume=True)
    assert summary.written == 0 and {p.name: p.stat().st_mtime_ns for p in shard_files(outdir)} == before


def test_refuses_another_job_or_changed_options(fast_align_job, tiny_bundle, tmp_path):
    job = fast_align_job["full"]
    corpus = fast_align_job["corpus"]
    common = {"src_lang": "eng_Latn", "tgt_lang": "ces_Latn"}
    with pytest.raises(JobError, match="pass --resume"):
        align_corpus(tiny_bundle, corpus, job, shard_pairs=40, **common)
    with pytest.raises(JobError, match="options.shard_pairs 60"):
        align_corpus(tiny_bundle, corpus, job, shard_pairs=60, resume=True, **common)
    with pytest.raises(JobError, match="options.tgt_lang 'bam_Latn'"):
        align_corpus(tiny_bundle, corpus, job, shard_pairs=40, resume=True, src_lang="eng_Latn", tgt_lang="bam_Latn")
    changed = tmp_path / "corpus.txt"
    changed.write_bytes(corpus.read_bytes().replace(b"|||", b" |||", 1))
    with pytest.raises(JobError, match="input.sha256"):
        align_corpus(tiny_bundle, changed, job, shard_pairs=40, resume=True, **common)
    other = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, other)
    (other / "manifest.json").write_text((other / "manifest.json").read_text() + "\n")
    with pytest.raises(JobError, match="bundle.manifest_sha256"):
        align_corpus(other, corpus, job, shard_pairs=40, resume=True, **common)
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("x")
    with pytest.raises(JobError, match="not empty"):
        align_corpus(tiny_bundle, corpus, stray, shard_pairs=40, **common)


def test_mixed_language_pairs_keep_input_order(tmp_path, tiny_bundle, aligner, monkeypatch):
    monkeypatch.setattr("transalign.corpus.job.CHUNK_PAIRS", 3)  # shards of 7 written in chunks of 3
    rows = mixed_rows(60)
    corpus = tmp_path / "mixed.jsonl"
    corpus.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    align_corpus(tiny_bundle, corpus, tmp_path / "out", src_lang="eng_Latn", tgt_lang="ces_Latn",
                 output_format="jsonl", shard_pairs=7)
    records = [rec for p in shard_files(tmp_path / "out") for rec in read_shard(p, "jsonl")]
    expected = expected_mixed(aligner, rows)
    assert [r.id for r in records] == [r["id"] for r in rows]
    assert [list(r.links) for r in records] == [expected[r["id"]] for r in rows]


def test_output_formats_hold_the_same_links(tmp_path, tiny_bundle, fast_align_job, monkeypatch):
    monkeypatch.setattr("transalign.corpus.job.CHUNK_PAIRS", 5)  # each shard written in pieces
    formats = ["id", "jsonl"]
    try:
        import pyarrow  # noqa: F401  (the `ray` extra)
        formats.append("parquet")
    except ImportError:
        pass
    corpus = write_fast_align(tmp_path / "c.txt", fast_align_job["src"][:40], fast_align_job["tgt"][:40])
    expected = [line.split() for line in fast_align_job["align"].read_text().splitlines()[:40]]
    for fmt in formats:
        align_corpus(tiny_bundle, corpus, tmp_path / fmt, src_lang="eng_Latn", tgt_lang="ces_Latn",
                     output_format=fmt, shard_pairs=16)
        records = [rec for p in shard_files(tmp_path / fmt) for rec in read_shard(p, fmt)]
        assert [r.id for r in records] == [str(k) for k in range(40)], fmt
        assert [[f"{i}-{j}" for i, j in r.links] for r in records] == expected, fmt


def test_too_long_pairs_name_their_line_or_are_skipped(tmp_path, tiny_bundle, aligner):
    corpus = tmp_path / "c.txt"
    corpus.write_text("a b ||| x y\n" + " ".join(["word"] * 400) + " ||| z\nc ||| d\n", encoding="utf-8")
    with pytest.raises(FormatError, match=f"^{corpus}:2: .*--skip-long"):
        align_corpus(tiny_bundle, corpus, tmp_path / "a", src_lang="eng_Latn", tgt_lang="ces_Latn")
    summary = align_corpus(tiny_bundle, corpus, tmp_path / "b", src_lang="eng_Latn", tgt_lang="ces_Latn",
                           output_format="jsonl", skip_long=True)
    records = read_shard(tmp_path / "b" / "part-00000.jsonl", "jsonl")
    assert summary.skipped == 1 and [r.skipped for r in records] == [None, "too_long", None]
    expected = aligner.align([["a", "b"], ["c"]], [["x", "y"], ["d"]], "eng_Latn", "ces_Latn")
    assert [list(r.links) for r in records] == [list(expected[0].links), [], list(expected[1].links)]


def test_unknown_language_names_the_row(tmp_path, tiny_bundle):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"src": "a", "tgt": "b"}\n{"src": "a", "tgt": "b", "src_lang": "eng_Latm"}\n')
    with pytest.raises(FormatError, match=f"^{corpus}:2: .*eng_Latm"):
        align_corpus(tiny_bundle, corpus, tmp_path / "out", src_lang="eng_Latn", tgt_lang="ces_Latn")


def test_cli_default_shard_size_matches_the_api():
    from transalign.cli import align_corpus_cmd
    from transalign.corpus import job

    assert align_corpus_cmd.DEFAULT_SHARD_PAIRS == job.DEFAULT_SHARD_PAIRS
    assert align_corpus_cmd.OUTPUT_FORMATS == job.OUTPUT_FORMATS
    assert align_corpus_cmd.INPUT_FORMATS == job.INPUT_FORMATS


# ---- Ray ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_shards_equal_the_in_process_ones(ray_cluster, tmp_path, tiny_bundle, aligner, monkeypatch):
    # the driver's side of the Ray job: align batches of 8 rows, shards written 8 records at a time
    monkeypatch.setattr("transalign.corpus.ray_job.CHUNK_PAIRS", 8)
    rows = mixed_rows(90)
    corpus = tmp_path / "mixed.jsonl"
    corpus.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    options = {"src_lang": "eng_Latn", "tgt_lang": "ces_Latn", "output_format": "id", "shard_pairs": 20}
    align_corpus(tiny_bundle, corpus, tmp_path / "local", **options)
    summary = align_corpus(tiny_bundle, corpus, tmp_path / "ray", ray=True, workers=2, threads=1, **options)
    assert summary.written == summary.shards == 5
    assert [p.name for p in shard_files(tmp_path / "ray")] == [p.name for p in shard_files(tmp_path / "local")]
    assert concat(tmp_path / "ray") == concat(tmp_path / "local")
    expected = expected_mixed(aligner, rows)
    records = [rec for p in shard_files(tmp_path / "ray") for rec in read_shard(p, "id")]
    assert [(r.id, list(r.links)) for r in records] == [(r["id"], expected[r["id"]]) for r in rows]


def test_ray_int8_equals_in_process_int8(ray_cluster, tmp_path, tiny_bundle, fast_align_job):
    """Same shards, int8, different processes and actors."""
    corpus = write_fast_align(tmp_path / "c.txt", fast_align_job["src"][:100], fast_align_job["tgt"][:100])
    options = {"src_lang": "eng_Latn", "tgt_lang": "ces_Latn", "shard_pairs": 50, "precision": "int8"}
    align_corpus(tiny_bundle, corpus, tmp_path / "local", **options)
    align_corpus(tiny_bundle, corpus, tmp_path / "ray", ray=True, workers=1, threads=1, **options)
    assert concat(tmp_path / "ray") == concat(tmp_path / "local")


# int8 bundles used to compute activation scales per batch, so shard boundaries changed links
# (15 of these 100 pairs differed between shards of 30 and 50 with such a bundle); the exporter now
# writes static scales (export/quantize.py), and this checks that shards do not matter for int8.
def test_int8_shard_size_does_not_matter(tmp_path, tiny_bundle, fast_align_job):
    corpus = write_fast_align(tmp_path / "c.txt", fast_align_job["src"][:100], fast_align_job["tgt"][:100])
    for size in (30, 50):
        align_corpus(tiny_bundle, corpus, tmp_path / str(size), src_lang="eng_Latn", tgt_lang="ces_Latn",
                     shard_pairs=size, precision="int8")
    assert concat(tmp_path / "30") == concat(tmp_path / "50")


def test_align_dataset_adds_links(ray_cluster, tiny_bundle, fast_align_job, aligner):
    from transalign.ray import align_dataset

    src, tgt = fast_align_job["src"][:30], fast_align_job["tgt"][:30]
    ds = ray_cluster.data.from_items([{"k": k, "src": " ".join(s), "tgt": t} for k, (s, t) in enumerate(zip(src, tgt))])
    rows = align_dataset(ds, tiny_bundle, src_lang="eng_Latn", tgt_lang="ces_Latn", threads=1).take_all()
    expected = aligner.align(src, tgt, "eng_Latn", "ces_Latn")
    got = {row["k"]: [tuple(link) for link in row["links"]] for row in rows}
    assert got == {k: list(r.links) for k, r in enumerate(expected)}
