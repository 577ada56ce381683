"""Corpus jobs against `align` and the engine's policy (issues 24.3, 25, 26.4): extraction flags give
`align`'s links and scores, JSON that is not text is a bad row with its line, pharaoh output with
--rejects keeps row positions, progress per encoder batch, one import direction.

Expected outputs come from `transalign align` (or `Aligner.align`) on the same pairs.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from test_corpus import bad_fast_align, sentences, shard_files, write_fast_align
from transalign.cli import main
from transalign.corpus.job import align_corpus
from transalign.corpus.writers import read_shard

ROOT = Path(__file__).resolve().parents[1]
LANGS = ["--src-lang", "eng_Latn", "--tgt-lang", "ces_Latn"]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("options")
    src, tgt = sentences(60, 51), sentences(60, 52)
    (root / "src.txt").write_text("".join(" ".join(s) + "\n" for s in src), encoding="utf-8")
    (root / "tgt.txt").write_text("".join(" ".join(t) + "\n" for t in tgt), encoding="utf-8")
    return {"root": root, "corpus": write_fast_align(root / "corpus.txt", src, tgt), "src": src, "tgt": tgt}


def run_align(bundle, pairs, out: Path, *flags: str) -> bytes:
    assert main(["align", str(bundle), "--src", str(pairs["root"] / "src.txt"), "--tgt", str(pairs["root"] / "tgt.txt"),
                 *LANGS, "-o", str(out), *flags]) == 0
    return out.read_bytes()


def run_corpus(bundle, pairs, outdir: Path, *flags: str) -> bytes:
    assert main(["align-corpus", str(bundle), str(pairs["corpus"]), "-o", str(outdir), *LANGS, "--shard-pairs", "25",
                 "--quiet", *flags]) == 0
    return b"".join(p.read_bytes() for p in shard_files(outdir))


@pytest.mark.parametrize("flags", [
    ["--method", "argmax"],
    ["--method", "itermax", "--word-level", "mean"],
    ["--threshold", "0.3"],
    ["--word-level", "mean", "--threshold", "0.05"],
])
def test_extraction_flags_give_the_links_and_scores_of_align(tiny_bundle, pairs, tmp_path, flags):
    links = run_align(tiny_bundle, pairs, tmp_path / "align.txt", *flags)
    assert run_corpus(tiny_bundle, pairs, tmp_path / "plain", *flags) == links
    scored = run_align(tiny_bundle, pairs, tmp_path / "align.scores", *flags, "--output-format", "pharaoh-scores")
    assert run_corpus(tiny_bundle, pairs, tmp_path / "scored", *flags, "--scores") == scored
    # one jsonl record schema: a corpus without ids gives align's records, byte for byte
    records = run_align(tiny_bundle, pairs, tmp_path / "align.jsonl", *flags, "--output-format", "jsonl")
    assert run_corpus(tiny_bundle, pairs, tmp_path / "jsonl", *flags, "--scores", "--output-format", "jsonl") == records
    assert [json.loads(line)["id"] for line in records.splitlines()] == list(range(60))
    # the flags are part of the job: resuming with other ones is refused
    assert main(["align-corpus", str(tiny_bundle), str(pairs["corpus"]), "-o", str(tmp_path / "plain"), *LANGS,
                 "--shard-pairs", "25", "--quiet", "--resume"]) == 2


def test_extraction_errors_name_the_align_corpus_flag(tiny_bundle, pairs, tmp_path, capsys):
    for flags, named in ((["--method", "argmax", "--threshold", "0.2"], "--threshold 0.2"),
                         (["--threshold", "1.5"], "--threshold 1.5"), (["--batch-tokens", "0"], "--batch-tokens 0"),
                         (["--src-lang", "xyz"], "--src-lang 'xyz'"), (["--threads", "0"], "--threads 0"),
                         (["--shard-pairs", "0"], "--shard-pairs 0"), (["--workers", "2"], "--workers 2: is a Ray"),
                         (["--ray", "--gpus-per-worker", "-1"], "--gpus-per-worker -1.0")):
        code = main(["align-corpus", str(tiny_bundle), str(pairs["corpus"]), "-o", str(tmp_path / "x"), *LANGS,
                     "--quiet", *flags])
        err = capsys.readouterr().err
        assert code == 2 and named in err and "Traceback" not in err, (flags, err)
        assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())  # refused before any work


# ---- JSON that is not text (24.3) -----------------------------------------------------------------

SURROGATE_ROWS = [
    (b'{"src": "a b", "tgt": "c"}', None),
    (b'{"src": "a \\ud800 b", "tgt": "c"}', "'src' holds a lone surrogate U+D800"),
    (b'{"src": ["a", "\\udc00"], "tgt": "c"}', "'src' holds a lone surrogate U+DC00"),
    (b'{"id": "x\\ud83d", "src": "a", "tgt": "c"}', "'id' holds a lone surrogate U+D83D"),
    (b'{"src": "a", "tgt": "b", "tgt_lang": "ces\\udfff"}', "'tgt_lang' holds a lone surrogate U+DFFF"),
    (b'{"src": "\xff\xfe", "tgt": "c"}', "invalid UTF-8"),
    (b'{"src": "x \\ud83d\\ude00 y", "tgt": "z"}', None),  # a surrogate *pair* is text (an emoji)
]


def test_json_that_is_not_text_is_a_bad_row_with_its_line(tiny_bundle, tmp_path, capsys, aligner):
    corpus = tmp_path / "c.jsonl"
    corpus.write_bytes(b"".join(row + b"\n" for row, _ in SURROGATE_ROWS))
    code = main(["align-corpus", str(tiny_bundle), str(corpus), "-o", str(tmp_path / "strict"), *LANGS, "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and f"{corpus}:2: 'src' holds a lone surrogate U+D800" in err and "--rejects FILE" in err, err
    assert "Traceback" not in err and err.count("\n") == 1
    rejects = tmp_path / "rejects.jsonl"
    assert main(["align-corpus", str(tiny_bundle), str(corpus), "-o", str(tmp_path / "kept"), *LANGS, "--quiet",
                 "--output-format", "id", "--rejects", str(rejects)]) == 0
    entries = [json.loads(line) for line in rejects.read_text(encoding="utf-8").splitlines()]
    bad = [(k + 1, reason) for k, (_, reason) in enumerate(SURROGATE_ROWS) if reason]
    assert [(e["file"], e["line"]) for e in entries] == [(str(corpus), line) for line, _ in bad]
    assert all(reason in e["reason"] for e, (_, reason) in zip(entries, bad)), entries
    records = [r for p in shard_files(tmp_path / "kept") for r in read_shard(p, "id")]
    expected = aligner.align([["a", "b"], ["x", "\U0001F600", "y"]], [["c"], ["z"]], "eng_Latn", "ces_Latn")
    assert [(r.id, list(r.links)) for r in records] == [("0", list(expected[0].links)), ("6", list(expected[1].links))]


@pytest.fixture(scope="module")
def aligner(tiny_bundle):
    from transalign.engine.aligner import Aligner

    return Aligner.load(tiny_bundle)


# ---- pharaoh keeps positions (26.4) --------------------------------------------------------------

def test_pharaoh_output_with_rejects_keeps_line_k_for_row_k(tiny_bundle, tmp_path, aligner):
    lines, bad = bad_fast_align(30, 61, 4)  # rows 3, 7, 11, ... malformed or too long
    corpus = tmp_path / "c.txt"
    corpus.write_bytes(b"".join(x + b"\n" for x in lines))
    summary = align_corpus(tiny_bundle, corpus, tmp_path / "out", src_lang="eng_Latn", tgt_lang="ces_Latn",
                           shard_pairs=8, rejects=tmp_path / "rejects.jsonl")
    assert summary.rejected == len(bad) == 7
    out = b"".join(p.read_bytes() for p in shard_files(tmp_path / "out")).decode().split("\n")
    assert out[-1] == "" and len(out) - 1 == 30  # one line per input row
    good = [k for k in range(30) if k not in bad]
    texts = [lines[k].decode().split(" ||| ") for k in good]
    results = dict(zip(good, aligner.align([s.split() for s, _ in texts], [t.split() for _, t in texts],
                                           "eng_Latn", "ces_Latn")))
    assert out[:-1] == [results[k].pharaoh() if k in results else "" for k in range(30)]


# ---- progress inside a shard (26.4) ---------------------------------------------------------------

class Recorder:
    def __init__(self, total):
        self.total, self.updates = total, []

    def update(self, n):
        self.updates.append(n)


def test_progress_moves_per_encoder_batch_and_counts_every_row(tiny_bundle, tmp_path):
    lines, bad = bad_fast_align(120, 71, 10)
    corpus = tmp_path / "c.txt"
    corpus.write_bytes(b"".join(x + b"\n" for x in lines))
    bars = []

    def progress(total):
        bars.append(Recorder(total))
        return bars[-1]

    # one shard, one chunk (4096 rows) but a small token budget: many encoder batches
    align_corpus(tiny_bundle, corpus, tmp_path / "out", src_lang="eng_Latn", tgt_lang="ces_Latn",
                 rejects=tmp_path / "r.jsonl", batch_tokens=256, progress=progress)
    [bar] = bars
    assert bar.total == 120 and sum(bar.updates) == 120
    assert len(bar.updates) >= 5, bar.updates  # more than one update per chunk
    # a resumed job counts only what is left
    outdir = tmp_path / "resumed"
    align_corpus(tiny_bundle, corpus, outdir, src_lang="eng_Latn", tgt_lang="ces_Latn", shard_pairs=50,
                 rejects=tmp_path / "r2.jsonl")
    manifest = json.loads((outdir / "manifest.json").read_text())
    manifest.update(complete=False, completed=[0, 1])
    (outdir / "manifest.json").write_text(json.dumps(manifest))
    bars.clear()
    align_corpus(tiny_bundle, corpus, outdir, src_lang="eng_Latn", tgt_lang="ces_Latn", shard_pairs=50,
                 rejects=tmp_path / "r2.jsonl", resume=True, progress=progress)
    assert bars[0].total == 20 and sum(bars[0].updates) == 20


def test_cli_progress_line_has_rate_and_eta(tiny_bundle, pairs, tmp_path, capsys):
    run_corpus(tiny_bundle, pairs, tmp_path / "out", "--progress", "always", "--batch-tokens", "256")
    err = capsys.readouterr().err
    assert "pairs (cpu, fp32): 60/60 (100.0%)" in err and "/s" in err and "ETA" in err, err


# ---- structure (25) ------------------------------------------------------------------------------

def test_corpus_modules_import_one_way():
    """No import cycle among transalign/corpus modules, counting imports inside functions."""
    graph = {}
    for path in (ROOT / "transalign" / "corpus").glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("transalign.corpus."):
                deps.add(node.module.rsplit(".", 1)[1])
        graph[path.stem] = deps
    done, active = set(), []

    def visit(name):
        assert name not in active, f"import cycle: {' -> '.join(active + [name])}"
        if name in done:
            return
        active.append(name)
        for dep in graph.get(name, ()):
            visit(dep)
        active.pop()
        done.add(name)

    for name in graph:
        visit(name)
    assert graph["ray_job"] and "job" not in graph["ray_job"] and "ray_job" in graph["job"]


def test_parquet_scores_are_the_aligners(tiny_bundle, pairs, tmp_path, aligner):
    pytest.importorskip("pyarrow")
    align_corpus(tiny_bundle, pairs["corpus"], tmp_path / "pq", src_lang="eng_Latn", tgt_lang="ces_Latn",
                 output_format="parquet", shard_pairs=25, method="argmax", scores=True)
    records = [r for p in shard_files(tmp_path / "pq") for r in read_shard(p, "parquet")]
    expected = aligner.align(pairs["src"], pairs["tgt"], "eng_Latn", "ces_Latn", method="argmax", with_scores=True)
    assert [r.id for r in records] == [str(k) for k in range(60)]
    assert [(list(r.links), list(r.scores)) for r in records] == \
        [(list(e.links), [float(v) for v in e.scores]) for e in expected]
