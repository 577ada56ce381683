"""Extraction methods through the Aligner and the CLI (align --method, scored formats, tune,
eval-bio, project-with), on the tiny fixture bundle and the vendored data (data/)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from transalign.formats.alignments import read_alignments
from transalign.cli import main
from transalign.engine.aligner import Aligner
from transalign.formats.text import read_sentences
from transalign.evaluation import evaluate_alignments
from transalign.kernels import METHODS, WORD_LEVELS

SETTINGS = list(itertools.product(METHODS, WORD_LEVELS))
LANGS = ("ces_Latn", "eng_Latn")


@pytest.fixture(scope="module")
def aligner(tiny_bundle):
    return Aligner.load(tiny_bundle, provider="cpu")


@pytest.fixture(scope="module")
def corpus(data_dir):
    """80 varied pairs: Czech-English gold sentences and Bambara-English sample sentences."""
    cs = (data_dir / "gold/csen/src.txt").read_text(encoding="utf-8").splitlines()[:50]
    en = (data_dir / "gold/csen/tgt.txt").read_text(encoding="utf-8").splitlines()[:50]
    bam = data_dir / "reference/bam-sample"
    src = [s.split() for s in cs] + read_sentences(bam / "test-bam.txt", "conll")[:30]
    tgt = [t.split() for t in en] + read_sentences(bam / "test-translate-bam-en-preds.txt", "conll")[:30]
    return src, tgt


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_default_is_the_reference_and_scores_do_not_change_links(aligner, corpus):
    src, tgt = corpus
    default = aligner.align(src, tgt, *LANGS)
    explicit = aligner.align(src, tgt, *LANGS, method="softmax", word_level="any")
    scored = aligner.align(src, tgt, *LANGS, with_scores=True)
    assert explicit == default and all(r.scores is None for r in default)
    assert [r.links for r in scored] == [r.links for r in default]
    t = aligner.manifest.default_threshold
    assert all(len(r.scores) == len(r.links) and all(t < s <= 1.0 for s in r.scores) for r in scored)


@pytest.mark.parametrize("method, word_level", SETTINGS)
def test_every_method_is_batch_invariant(aligner, corpus, method, word_level):
    """fp32: one call, one pair per call and token budgets 256 / 8192 give identical links and scores."""
    src, tgt = corpus
    kwargs = dict(method=method, word_level=word_level, with_scores=True)
    together = aligner.align(src, tgt, *LANGS, **kwargs)
    extraction = aligner.extraction(method, word_level, None, True)
    one_by_one = [aligner.align_settings([s], [t], [extraction], *LANGS)[0][0] for s, t in zip(src, tgt)]
    small = aligner.align(src, tgt, *LANGS, batch_tokens=256, **kwargs)
    large = aligner.align_settings(src, tgt, [extraction], *LANGS, batch_tokens=8192)[0]
    assert one_by_one == together == small == large
    assert sum(len(r.links) for r in together) > len(src)


def test_method_options_are_checked(aligner):
    with pytest.raises(ValueError, match="threshold 0.1: applies to method softmax only"):
        aligner.align([["a"]], [["b"]], *LANGS, threshold=0.1, method="argmax")
    with pytest.raises(ValueError, match="method 'best': not one of softmax, argmax, itermax"):
        aligner.align([["a"]], [["b"]], *LANGS, method="best")
    with pytest.raises(ValueError, match="word_level 'max': not one of any, mean"):
        aligner.align([["a"]], [["b"]], *LANGS, word_level="max")


@pytest.mark.parametrize("method, word_level", [("itermax", "mean"), ("softmax", "any")])
def test_align_scored_formats_match_the_api(tmp_path, tiny_bundle, aligner, corpus, method, word_level):
    src, tgt = corpus
    src_file = write(tmp_path / "src.txt", "".join(" ".join(s) + "\n" for s in src))
    tgt_file = write(tmp_path / "tgt.txt", "".join(" ".join(t) + "\n" for t in tgt))
    expected = aligner.align(src, tgt, *LANGS, method=method, word_level=word_level, with_scores=True)
    outputs = {}
    for fmt in ("jsonl", "pharaoh-scores", "pharaoh"):
        out = tmp_path / f"out.{fmt}"
        assert main(["align", str(tiny_bundle), "--src", str(src_file), "--tgt", str(tgt_file), "--src-lang", LANGS[0],
                     "--tgt-lang", LANGS[1], "--method", method, "--word-level", word_level, "--output-format", fmt,
                     "--provider", "cpu", "-o", str(out)]) == 0
        outputs[fmt] = out
    records = [json.loads(line) for line in outputs["jsonl"].read_text(encoding="utf-8").splitlines()]
    assert [[tuple(link) for link in r["links"]] for r in records] == [list(r.links) for r in expected]
    # the one jsonl record schema (formats.alignments.format_record): id, links, scores to 6 significant digits
    assert [r["id"] for r in records] == list(range(len(expected)))
    assert [r["scores"] for r in records] == [[float(f"{v:.6g}") for v in r.scores] for r in expected]
    lines = outputs["pharaoh-scores"].read_text(encoding="utf-8").splitlines()
    for line, r in zip(lines, expected):
        tokens = [token.partition(":") for token in line.split()]
        assert [t[0] for t in tokens] == [f"{i}-{j}" for i, j in r.links]
        assert [float(t[2]) for t in tokens] == pytest.approx(list(r.scores), rel=1e-5)
    # the readers take pharaoh-scores and jsonl records like pharaoh (eval and project read every output format)
    assert read_alignments(outputs["pharaoh-scores"]) == read_alignments(outputs["pharaoh"])
    assert [line.sure for line in read_alignments(outputs["jsonl"])] == \
        [line.sure for line in read_alignments(outputs["pharaoh"])]


def test_align_refuses_a_threshold_for_argmax(tmp_path, tiny_bundle, capsys):
    src = write(tmp_path / "s.txt", "a b\n")
    out = tmp_path / "out.txt"
    assert main(["align", str(tiny_bundle), "--src", str(src), "--tgt", str(src), "--src-lang", LANGS[0],
                 "--tgt-lang", LANGS[1], "--method", "argmax", "--threshold", "0.1", "-o", str(out)]) == 2
    assert "--threshold 0.1: applies to method softmax only, not to argmax" in capsys.readouterr().err and not out.exists()


@pytest.fixture
def gold_dir(tmp_path, data_dir):
    """The first 120 pairs of the csen gold."""
    root = tmp_path / "gold"
    root.mkdir()
    for name in ("src.txt", "tgt.txt", "gold.txt"):
        lines = (data_dir / "gold/csen" / name).read_text(encoding="utf-8").splitlines()[:120]
        write(root / name, "\n".join(lines) + "\n")
    return root


def test_tune_scores_every_setting_as_align_then_eval_would(tiny_bundle, aligner, gold_dir, capsys):
    assert main(["tune", str(tiny_bundle), "--gold-dir", str(gold_dir), "--src-lang", LANGS[0], "--tgt-lang", LANGS[1],
                 "--thresholds", "0.01,0.2", "--provider", "cpu", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = report["rows"]
    assert len(rows) == 3 * 2 + 2 * 2  # softmax at the bundle's 0.001, 0.01, 0.2; argmax; itermax; x 2 word levels
    assert (rows[0]["method"], rows[0]["word_level"], rows[0]["threshold"]) == ("softmax", "any", 0.001)
    src = read_sentences(gold_dir / "src.txt")
    tgt = read_sentences(gold_dir / "tgt.txt")
    for row in rows:
        results = aligner.align(src, tgt, *LANGS, row["threshold"], method=row["method"], word_level=row["word_level"])
        want = evaluate_alignments(gold_dir / "gold.txt", [r.links for r in results]).corpus
        assert (row["aer"], row["precision"], row["recall"], row["predicted"]) == \
            (want.aer, want.precision, want.recall, want.predicted)
    best = min(rows, key=lambda r: r["aer"])
    assert report["best"] == best
    assert len({r["aer"] for r in rows}) > 1  # the settings differ: choosing among them means something

    assert main(["tune", str(tiny_bundle), "--gold-dir", str(gold_dir), "--src-lang", LANGS[0], "--tgt-lang", LANGS[1],
                 "--methods", "argmax,softmax", "--word-levels", "any", "--thresholds", "0.001"]) == 0
    text = capsys.readouterr().out
    assert "<- best" in text and "use: transalign align" in text and "--method" in text


def test_tune_checks_the_gold_dir(tmp_path, tiny_bundle, capsys):
    assert main(["tune", str(tiny_bundle), "--gold-dir", str(tmp_path)]) == 2
    assert "lacks src.txt, tgt.txt, gold.txt" in capsys.readouterr().err


def test_eval_bio_on_the_authors_files_is_seqeval(data_dir, capsys):
    """The authors' projected bam labels against the gold test-bam.txt: exactly seqeval's numbers."""
    seqeval = pytest.importorskip("seqeval.metrics", reason="needs the eval extra: pip install -e '.[eval]'")
    sample = data_dir / "reference/bam-sample"
    pred, gold = sample / "test-translate-bam-projected.txt", sample / "test-bam.txt"
    assert main(["eval-bio", str(pred), str(gold), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)

    def labels(path):  # the last column of each sentence, read here independently
        sentences = [[]]
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.split():
                sentences[-1].append(line.split()[-1])
            elif sentences[-1]:
                sentences.append([])
        return [s for s in sentences if s]

    y_pred, y_true = labels(pred), labels(gold)
    assert len(y_true) == 1274
    assert got["overall"] == {"precision": seqeval.precision_score(y_true, y_pred),
                              "recall": seqeval.recall_score(y_true, y_pred),
                              "f1": seqeval.f1_score(y_true, y_pred),
                              "accuracy": seqeval.accuracy_score(y_true, y_pred)}
    # as measured independently on these files (seqeval run by hand on a development machine)
    measured = (0.5033, 0.6063, 0.5500)  # 4 decimals there
    for key, value in zip(("precision", "recall", "f1"), measured):
        assert abs(got["overall"][key] - value) <= 0.5e-4 + 1e-12, key
    from seqeval.metrics.sequence_labeling import get_entities

    gold_entities = get_entities(y_true)
    types = {kind for kind, _, _ in gold_entities + get_entities(y_pred)}
    assert set(got["per_type"]) == types and len(types) >= 3
    for name, row in got["per_type"].items():
        assert row["number"] == sum(1 for kind, _, _ in gold_entities if kind == name)
    assert main(["eval-bio", str(pred), str(gold)]) == 0
    assert "1274 sentences: precision 0.5033" in capsys.readouterr().out


def test_eval_bio_refuses_mismatched_files(tmp_path, capsys):
    pytest.importorskip("seqeval")
    a = write(tmp_path / "a.txt", "x O\ny B-PER\n\n")
    b = write(tmp_path / "b.txt", "x O\n\n")
    assert main(["eval-bio", str(a), str(b)]) == 2
    assert "sentence 1:" in capsys.readouterr().err


@pytest.mark.parametrize("options", [[], ["--method", "itermax", "--word-level", "mean", "--complete-to"],
                                     ["--reverse", "--restrict-to"]])
def test_project_with_is_align_then_project(tmp_path, tiny_bundle, data_dir, options):
    """200 sentences of the bam sample: project-with gives byte for byte what align + project give."""
    sample = data_dir / "reference/bam-sample"

    def head(name):
        text = (sample / name).read_text(encoding="utf-8")
        return write(tmp_path / name, "\n\n".join(text.split("\n\n")[:200]) + "\n\n")

    labeled, unlabeled = head("test-translate-bam-en-preds.txt"), head("test-bam.txt")
    reverse = "--reverse" in options
    align_opts = [o for o in options if o in ("--method", "itermax", "--word-level", "mean")]
    project_opts = [o for o in options if o not in align_opts]
    src, tgt = (labeled, unlabeled) if reverse else (unlabeled, labeled)
    langs = ["--src-lang", "eng_Latn", "--tgt-lang", "bam_Latn"] if reverse else \
        ["--src-lang", "bam_Latn", "--tgt-lang", "eng_Latn"]
    links = tmp_path / "links.txt"
    assert main(["align", str(tiny_bundle), "--src", str(src), "--tgt", str(tgt), "--input-format", "conll",
                 "--provider", "cpu", "-o", str(links), *langs, *align_opts]) == 0
    two_steps, one_step = tmp_path / "two.txt", tmp_path / "one.txt"
    assert main(["project", str(labeled), str(unlabeled), str(links), "-o", str(two_steps), *project_opts]) == 0
    assert main(["project-with", str(tiny_bundle), str(labeled), str(unlabeled), "-o", str(one_step),
                 "--provider", "cpu", *langs, *options]) == 0
    assert one_step.read_bytes() == two_steps.read_bytes()
    assert "B-" in one_step.read_text(encoding="utf-8")  # something was projected


def test_project_with_refuses_different_sentence_counts(tmp_path, tiny_bundle, capsys):
    labeled = write(tmp_path / "l.txt", "A B-PER\n\nb O\n\n")
    unlabeled = write(tmp_path / "u.txt", "a\n\n")
    out = tmp_path / "out.txt"
    assert main(["project-with", str(tiny_bundle), str(labeled), str(unlabeled), "-o", str(out),
                 "--src-lang", "ces_Latn", "--tgt-lang", "eng_Latn"]) == 2
    assert "has 2 sentences but" in capsys.readouterr().err and not out.exists()
