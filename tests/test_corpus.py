"""Corpus jobs (`transalign align-corpus`, `transalign.corpus`): readers, shards, resume, Ray.

Every expected result comes from an independent path: `Aligner.align` on the same pairs, or the
file `transalign align` writes for them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from measurements import record
from transalign.formats.alignments import FormatError
from transalign.cli import main
from transalign.corpus.formats import Rejected, detect_format, iter_pairs
from transalign.corpus.job import align_corpus
from transalign.corpus.manifest import JobError
from transalign.corpus.writers import read_shard
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
    rows = list(iter_pairs(path, fmt))  # every row, the bad one in its place
    assert len(rows) == len(text.splitlines())
    [bad] = [row for row in rows if isinstance(row, Rejected)]
    assert bad.lineno == line and message in bad.reason and bad.raw == text.splitlines()[line - 1]
    code = main(["align-corpus", str(tiny_bundle), str(path), "-o", str(tmp_path / "out"), "--input-format", fmt,
                 "--src-lang", "eng_Latn", "--tgt-lang", "ces_Latn", "--shard-pairs", "1", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and f"{path}:{line}: " in err and "--rejects FILE" in err
    # the pairs before the bad line were written as shards; none after it, nothing shifted
    assert [p.name for p in shard_files(tmp_path / "out")] == [f"part-{k:05d}.txt" for k in range(line - 1)]
    # with --rejects: the row is set aside, the others keep their row positions as ids
    rejects = tmp_path / "rejects.jsonl"
    assert main(["align-corpus", str(tiny_bundle), str(path), "-o", str(tmp_path / "kept"), "--input-format", fmt,
                 "--src-lang", "eng_Latn", "--tgt-lang", "ces_Latn", "--output-format", "id", "--rejects",
                 str(rejects), "--quiet"]) == 0
    lines = text.splitlines()
    [entry] = [json.loads(x) for x in rejects.read_text(encoding="utf-8").splitlines()]
    assert entry["file"] == str(path) and entry["line"] == line and message in entry["reason"]
    assert entry["raw"] == lines[line - 1]
    records = [r for p in shard_files(tmp_path / "kept") for r in read_shard(p, "id")]
    assert [r.id for r in records] == [str(k) for k in range(len(lines)) if k != line - 1]


# ---- in-process jobs ---------------------------------------------------------------------------

def test_pharaoh_shards_are_the_align_file(fast_align_job, aligner):
    files = shard_files(fast_align_job["full"])
    assert [p.name for p in files] == [f"part-{k:05d}.txt" for k in range(25)]
    assert concat(fast_align_job["full"]) == fast_align_job["align"].read_bytes()
    expected = aligner.align(fast_align_job["src"][:40], fast_align_job["tgt"][:40], "eng_Latn", "ces_Latn")
    assert files[0].read_text(encoding="utf-8").splitlines() == [r.pharaoh() for r in expected]
    manifest = json.loads((fast_align_job["full"] / "manifest.json").read_text())
    assert manifest["complete"] and manifest["completed"] == list(range(25)) and manifest["pairs"] == 1000


def kill_at_a_random_shard(command: list[str], outdir: Path) -> None:
    """Start the job, SIGKILL it once a random number (2-12) of its shards are on disk."""
    proc = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE)
    target = random.Random().randint(2, 12)  # a random point in the run
    deadline = time.monotonic() + 120
    while len(shard_files(outdir)) < target and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, f"the job ended before it could be killed: {proc.stderr.read()!r}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_sigkill_then_resume_gives_the_uninterrupted_result(fast_align_job, tiny_bundle, tmp_path):
    outdir = tmp_path / "killed"
    command = [sys.executable, "-m", "transalign", "align-corpus", str(tiny_bundle), str(fast_align_job["corpus"]),
               "-o", str(outdir), "--src-lang", "eng_Latn", "--tgt-lang", "ces_Latn", "--shard-pairs", "40",
               "--quiet"]
    kill_at_a_random_shard(command, outdir)
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
    monkeypatch.setattr("transalign.corpus.shards.CHUNK_PAIRS", 3)  # shards of 7 written in chunks of 3
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
    monkeypatch.setattr("transalign.corpus.shards.CHUNK_PAIRS", 5)  # each shard written in pieces
    formats = ["id", "jsonl"]
    if importlib.util.find_spec("pyarrow"):  # the `ray` extra
        formats.append("parquet")
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


# ---- rejects --------------------------------------------------------------------------------------

def bad_fast_align(n: int, seed: int, every: int) -> tuple[list[bytes], dict[int, str]]:
    """``n`` `src ||| tgt` lines (bytes), every ``every``-th one malformed in a rotating way, and
    {0-based row: a piece of the expected reason} for the malformed ones."""
    src, tgt = sentences(n, seed), sentences(n, seed + 1)
    kinds = [(b"no separator here", "missing ` ||| `"), (b"a ||| b ||| c", "more than one `|||`"),
             (b" ".join([b"word"] * 400) + b" ||| z", "more tokens than the model's maximum"),
             (b"\xff\xfe bad ||| x", "invalid UTF-8"), (b"", "missing ` ||| `")]
    lines, bad = [], {}
    for k in range(n):
        if k % every == every - 1:
            raw, reason = kinds[len(bad) % len(kinds)]
            lines.append(raw)
            bad[k] = reason
        else:
            lines.append(f"{' '.join(src[k])} ||| {' '.join(tgt[k])}".encode())
    return lines, bad


def test_rejects_keep_row_positions_and_name_every_bad_row(tmp_path, tiny_bundle, aligner):
    lines, bad = bad_fast_align(30, 11, 5)  # rows 4, 9, 14, 19, 24, 29 malformed, one of each kind
    corpus = tmp_path / "c.txt"
    corpus.write_bytes(b"".join(x + b"\n" for x in lines))
    rejects = tmp_path / "rejects.jsonl"
    summary = align_corpus(tiny_bundle, corpus, tmp_path / "out", src_lang="eng_Latn", tgt_lang="ces_Latn",
                           output_format="id", shard_pairs=8, rejects=rejects)
    assert (summary.shards, summary.pairs, summary.rejected, summary.rejects) == (4, 24, 6, rejects.resolve())
    good = [k for k in range(30) if k not in bad]
    texts = [lines[k].decode() for k in good]
    expected = aligner.align([t.split(" ||| ")[0].split() for t in texts], [t.split(" ||| ")[1].split() for t in texts],
                             "eng_Latn", "ces_Latn")
    records = [r for p in shard_files(tmp_path / "out") for r in read_shard(p, "id")]
    assert [(r.id, list(r.links)) for r in records] == [(str(k), list(e.links)) for k, e in zip(good, expected)]
    entries = [json.loads(x) for x in rejects.read_text(encoding="utf-8").splitlines()]
    assert [(e["file"], e["line"]) for e in entries] == [(str(corpus), k + 1) for k in sorted(bad)]
    assert all(bad[e["line"] - 1] in e["reason"] for e in entries), entries
    assert [e["raw"] for e in entries] == [lines[k].decode("utf-8", "backslashreplace") for k in sorted(bad)]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["options"]["rejects"] == str(rejects.resolve())
    assert manifest["rejected"] == {"0": 1, "1": 2, "2": 1, "3": 2} and manifest["pairs"] == 24
    # the option is part of the job: resuming without it (or with another file) is refused
    with pytest.raises(JobError, match="options.rejects None"):
        align_corpus(tiny_bundle, corpus, tmp_path / "out", src_lang="eng_Latn", tgt_lang="ces_Latn",
                     output_format="id", shard_pairs=8, resume=True)
    with pytest.raises(ValueError, match="--rejects .* is also an input"):
        align_corpus(tiny_bundle, corpus, tmp_path / "other", src_lang="eng_Latn", tgt_lang="ces_Latn",
                     rejects=corpus)


def test_rejects_jsonl_types_languages_and_parquet_rows(tmp_path, tiny_bundle, aligner):
    rows = mixed_rows(24)
    bad = {3: ('{"src": "a", "tgt": ', "bad JSON"), 8: ('{"src": 3, "tgt": "b"}', "'src' must be a string"),
           12: ('["a", "b"]', "expected a JSON object"), 17: ('{"src": "a"}', "missing 'tgt'"),
           21: ('{"src": "a b", "tgt": "c", "src_lang": "eng_Latm", "tgt_lang": "ces_Latn"}', "eng_Latm")}
    text = [bad[k][0] if k in bad else json.dumps({c: v for c, v in r.items() if c != "id"}, ensure_ascii=False)
            for k, r in enumerate(rows)]
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(t + "\n" for t in text), encoding="utf-8")
    summary = align_corpus(tiny_bundle, corpus, tmp_path / "out", src_lang="eng_Latn", tgt_lang="ces_Latn",
                           output_format="jsonl", shard_pairs=10, rejects=tmp_path / "rejects.jsonl")
    assert (summary.pairs, summary.rejected) == (19, 5)
    good = [r for k, r in enumerate(rows) if k not in bad]
    expected = expected_mixed(aligner, good)
    records = [r for p in shard_files(tmp_path / "out") for r in read_shard(p, "jsonl")]
    assert [(r.id, list(r.links)) for r in records] == [(str(k), expected[r["id"]]) for k, r in enumerate(rows)
                                                          if k not in bad]
    entries = [json.loads(x) for x in (tmp_path / "rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(e["line"], e["raw"]) for e in entries] == [(k + 1, bad[k][0]) for k in sorted(bad)]
    assert all(bad[e["line"] - 1][1] in e["reason"] for e in entries), entries
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"id": ["a", "b", "c", "d"], "src": ["x y", None, "z", "w"], "tgt": ["u", "v", None, "t"]})
    pq.write_table(table, tmp_path / "c.parquet", row_group_size=2)
    summary = align_corpus(tiny_bundle, tmp_path / "c.parquet", tmp_path / "pq", src_lang="eng_Latn",
                           tgt_lang="ces_Latn", output_format="id", rejects=tmp_path / "pq-rejects.jsonl")
    assert [r.id for r in read_shard(tmp_path / "pq" / "part-00000.txt", "id")] == ["a", "d"]
    entries = [json.loads(x) for x in (tmp_path / "pq-rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(e["line"], e["reason"], json.loads(e["raw"])) for e in entries] == [
        (2, "src is null", {"id": "b", "src": None, "tgt": "v"}), (3, "tgt is null", {"id": "c", "src": "z", "tgt": None})]


@pytest.fixture(scope="module")
def rejects_job(tmp_path_factory, tiny_bundle):
    """1,000 `src ||| tgt` rows, every 23rd malformed (all five kinds, spread over the shards),
    and the uninterrupted job with rejects in 25 shards of 40."""
    root = tmp_path_factory.mktemp("rejects")
    lines, bad = bad_fast_align(1000, 21, 23)
    corpus = root / "corpus.txt"
    corpus.write_bytes(b"".join(x + b"\n" for x in lines))
    summary = align_corpus(tiny_bundle, corpus, root / "full", src_lang="eng_Latn", tgt_lang="ces_Latn",
                           output_format="id", shard_pairs=40, rejects=root / "full-rejects.jsonl")
    assert (summary.shards, summary.rejected, summary.pairs) == (25, len(bad), 1000 - len(bad))
    return {"root": root, "corpus": corpus, "full": root / "full", "rejects": root / "full-rejects.jsonl",
            "bad": bad}


def job_files(outdir: Path) -> dict[str, bytes]:
    """Every shard and rejects part of a job (not the manifest, which holds paths)."""
    return {p.name: p.read_bytes() for p in sorted(outdir.glob("part-*")) + sorted(outdir.glob("rejects-*"))}


def test_rejects_after_sigkill_and_resume_equal_the_uninterrupted_run(rejects_job, tiny_bundle, tmp_path):
    outdir, rejects = tmp_path / "killed", tmp_path / "rejects.jsonl"
    args = ["align-corpus", str(tiny_bundle), str(rejects_job["corpus"]), "-o", str(outdir), "--src-lang",
            "eng_Latn", "--tgt-lang", "ces_Latn", "--output-format", "id", "--shard-pairs", "40", "--rejects",
            str(rejects), "--quiet"]
    kill_at_a_random_shard([sys.executable, "-m", "transalign", *args], outdir)
    assert 2 <= len(shard_files(outdir)) < 25 and not rejects.exists()
    assert main(args + ["--resume"]) == 0
    assert job_files(outdir) == job_files(rejects_job["full"])
    assert rejects.read_bytes() == rejects_job["rejects"].read_bytes()
    entries = [json.loads(x) for x in rejects.read_text(encoding="utf-8").splitlines()]
    assert [e["line"] for e in entries] == [k + 1 for k in sorted(rejects_job["bad"])]  # none lost or repeated
    records = [r for p in shard_files(outdir) for r in read_shard(p, "id")]
    assert [r.id for r in records] == [str(k) for k in range(1000) if k not in rejects_job["bad"]]
    mine = json.loads((outdir / "manifest.json").read_text())
    full = json.loads((rejects_job["full"] / "manifest.json").read_text())
    assert mine["rejected"] == full["rejected"] and sum(mine["rejected"].values()) == len(rejects_job["bad"])
    assert not [p for p in outdir.iterdir() if p.name.startswith(".")]


def test_cli_choices_are_the_owning_modules():
    """The CLI's choice lists and defaults are the ones the code checks against, not copies."""
    import argparse

    from transalign.cli import align_corpus_cmd
    from transalign.corpus import formats, job, writers
    from transalign.engine import options

    sub = argparse.ArgumentParser().add_subparsers()
    align_corpus_cmd.register(sub)
    actions = {a.dest: a for a in sub.choices["align-corpus"]._actions}
    assert actions["shard_pairs"].default == job.DEFAULT_SHARD_PAIRS
    assert actions["input_format"].choices is formats.INPUT_FORMATS
    assert actions["output_format"].choices is writers.OUTPUT_FORMATS
    assert actions["precision"].choices is options.PRECISIONS
    assert actions["provider"].choices is options.PROVIDER_CHOICES


# ---- Ray ---------------------------------------------------------------------------------------

def test_ray_shards_equal_the_in_process_ones(ray_cluster, tmp_path, tiny_bundle, aligner, monkeypatch):
    # the driver writes shards 8 records at a time (read tasks, in Ray workers, keep 4096)
    monkeypatch.setattr("transalign.corpus.shards.CHUNK_PAIRS", 8)
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


def test_ray_rejects_equal_the_in_process_ones(ray_cluster, tmp_path, tiny_bundle, rejects_job):
    """Rejects found by the reader (in the read tasks), by language and length (in the actors):
    the same shards, parts and rejects file as in process."""
    lines = rejects_job["corpus"].read_bytes().splitlines(keepends=True)[:200]
    lines[57] = b'not json either\n'  # fast_align rejects are in the first 200 rows too
    corpus = tmp_path / "c.txt"
    corpus.write_bytes(b"".join(lines))
    options = {"src_lang": "eng_Latn", "tgt_lang": "ces_Latn", "output_format": "jsonl", "shard_pairs": 30}
    local = align_corpus(tiny_bundle, corpus, tmp_path / "local", rejects=tmp_path / "local.jsonl", **options)
    remote = align_corpus(tiny_bundle, corpus, tmp_path / "ray", ray=True, workers=2, threads=1,
                          rejects=tmp_path / "ray.jsonl", **options)
    assert local.rejected == remote.rejected > 5 and local.pairs == remote.pairs
    assert job_files(tmp_path / "ray") == job_files(tmp_path / "local")
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()
    reasons = [json.loads(x)["reason"] for x in (tmp_path / "ray.jsonl").read_text(encoding="utf-8").splitlines()]
    assert any("more tokens than the model's maximum" in r for r in reasons)  # found by an actor
    # an unknown language code (checked by the actors with rejects, by the driver without)
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text('{"src": "a", "tgt": "b"}\n{"src": "a", "tgt": "b", "src_lang": "eng_Latm"}\n{"src": "c", '
                     '"tgt": "d"}\n', encoding="utf-8")
    summary = align_corpus(tiny_bundle, jsonl, tmp_path / "lang", ray=True, workers=1, threads=1,
                           rejects=tmp_path / "lang.jsonl", **options)
    [entry] = [json.loads(x) for x in (tmp_path / "lang.jsonl").read_text(encoding="utf-8").splitlines()]
    assert summary.rejected == 1 and entry["line"] == 2 and "eng_Latm" in entry["reason"]
    assert [r.id for r in read_shard(tmp_path / "lang" / "part-00000.jsonl", "jsonl")] == ["0", "2"]


def test_ray_extraction_scores_positions_and_repair_equal_in_process(ray_cluster, tmp_path, tiny_bundle, rejects_job):
    """--method/--scores, pharaoh positions with rejects, and a damaged shard repaired on resume:
    the Ray runner writes exactly the in-process bytes."""
    lines = rejects_job["corpus"].read_bytes().splitlines(keepends=True)[:120]
    corpus = tmp_path / "c.txt"
    corpus.write_bytes(b"".join(lines))
    options = {"src_lang": "eng_Latn", "tgt_lang": "ces_Latn", "shard_pairs": 40, "method": "itermax",
               "scores": True}
    align_corpus(tiny_bundle, corpus, tmp_path / "local", rejects=tmp_path / "local.jsonl", **options)
    ray_options = dict(options, ray=True, workers=1, threads=1, rejects=tmp_path / "ray.jsonl")
    align_corpus(tiny_bundle, corpus, tmp_path / "ray", **ray_options)
    assert job_files(tmp_path / "ray") == job_files(tmp_path / "local")
    assert concat(tmp_path / "ray").count(b"\n") == 120 and b":" in concat(tmp_path / "ray")  # positions, scores
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()
    damaged = tmp_path / "ray" / "part-00001.txt"
    damaged.write_bytes(damaged.read_bytes()[:50])
    summary = align_corpus(tiny_bundle, corpus, tmp_path / "ray", resume=True, **ray_options)
    assert summary.repaired == (1,) and summary.written == 1
    assert job_files(tmp_path / "ray") == job_files(tmp_path / "local")


def test_ray_without_rejects_stops_at_the_bad_row(ray_cluster, tmp_path, tiny_bundle):
    """A too-long pair found by an actor stops a Ray job as in process: FILE:LINE, the shards
    before it kept, nothing of its shard or after."""
    src, tgt = sentences(50, 91), sentences(50, 92)
    src[33] = ["word"] * 400
    corpus = write_fast_align(tmp_path / "c.txt", src, tgt)
    with pytest.raises(FormatError, match=f"^{corpus}:34: .*--skip-long.*--rejects FILE"):
        align_corpus(tiny_bundle, corpus, tmp_path / "ray", src_lang="eng_Latn", tgt_lang="ces_Latn", shard_pairs=10,
                     ray=True, workers=1, threads=1)
    assert [p.name for p in shard_files(tmp_path / "ray")] == [f"part-{k:05d}.txt" for k in range(3)]


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise TimeoutError in this (the main) thread after ``seconds``: a hung job fails the test."""
    def expire(signum, frame):
        raise TimeoutError(f"gave up after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def align_actors(ray) -> dict[str, dict]:
    """The live AlignBatch actors of the cluster (actor id -> GCS actor-table entry, with Pid).

    ``ray.util.state.list_actors`` needs the dashboard, which these tests do not start; the GCS
    actor table (``ray._private.state.actors``, Ray's debugging accessor behind ``ray.state``)
    holds the same Pid, State and NumRestarts without it."""
    from ray._private import state

    return {aid: info for aid, info in state.actors().items()
            if "AlignBatch" in info.get("ActorClassName", "") and info.get("State") == "ALIVE" and info.get("Pid")}


def test_ray_survives_sigkill_of_an_actor(ray_cluster, tmp_path, tiny_bundle):
    """SIGKILL one of two actors after a few of 40 shards: Ray restarts it and retries its batch
    (Ray Data's actor-pool defaults: max_restarts=-1, max_task_retries=-1) and the job ends with
    exactly the in-process result: every row once, in order."""
    from ray._private import state

    src, tgt = sentences(4000, 31), sentences(4000, 32)
    corpus = write_fast_align(tmp_path / "c.txt", src, tgt)
    options = {"src_lang": "eng_Latn", "tgt_lang": "ces_Latn", "output_format": "id", "shard_pairs": 100}
    manifest = tmp_path / "ray" / "manifest.json"
    killed: dict = {}
    stop = threading.Event()

    def watch():
        """Kill one AlignBatch actor once 2 shards are written and both actors are up."""
        while not stop.is_set():
            with contextlib.suppress(OSError, ValueError):  # the manifest is replaced atomically
                done = len(json.loads(manifest.read_text())["completed"]) if manifest.exists() else 0
                actors = align_actors(ray_cluster)
                if done >= 2 and len(actors) == 2:
                    actor_id, info = sorted(actors.items())[0]
                    os.kill(info["Pid"], signal.SIGKILL)
                    killed.update(actor=actor_id, pid=info["Pid"], shards_done=done)
                    return
            stop.wait(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with time_limit(150):
            summary = align_corpus(tiny_bundle, corpus, tmp_path / "ray", ray=True, workers=2, threads=1, **options)
    finally:
        stop.set()
        watcher.join(5)
    assert killed, "the job ended before an actor could be killed (make the corpus bigger)"
    assert killed["shards_done"] < 40, killed
    after = state.actors(actor_id=killed["actor"])
    assert after["NumRestarts"] >= 1 and after["Pid"] != killed["pid"], f"Ray did not restart {killed}: {after}"
    record(f"Ray actor SIGKILL: pid {killed['pid']} killed with {killed['shards_done']}/40 shards written; "
           f"restarted {after['NumRestarts']}x as pid {after['Pid']}; output equals the in-process run")
    assert (summary.shards, summary.pairs) == (40, 4000)
    align_corpus(tiny_bundle, corpus, tmp_path / "local", **options)
    assert job_files(tmp_path / "ray") == job_files(tmp_path / "local")
    records = [r for p in shard_files(tmp_path / "ray") for r in read_shard(p, "id")]
    assert [r.id for r in records] == [str(k) for k in range(4000)]  # no loss, no duplication
