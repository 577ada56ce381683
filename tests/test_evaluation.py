"""Alignment file I/O and AER evaluation (transalign.formats.alignments, transalign.evaluation)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from transalign.formats.alignments import (
    AlignmentLine,
    FormatError,
    atomic_open,
    format_line,
    parse_line,
    read_alignments,
    write_alignments,
)
from transalign.evaluation import evaluate_alignments, score_counts, score_sentence


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------ formats.alignments


def test_parse_line_pharaoh_id_and_possible():
    assert parse_line("0-1 2-3") == AlignmentLine(frozenset({(0, 1), (2, 3)}))
    line = parse_line("s7\t0-1 1p1 0p1", allow_possible=True)
    assert line.id == "s7" and line.sure == {(0, 1)} and line.possible == {(1, 1)}  # 0p1 is also sure
    assert line.links == {(0, 1), (1, 1)}
    assert parse_line("") == AlignmentLine() and parse_line("   ") == AlignmentLine()
    assert parse_line("3\t") == AlignmentLine(id="3")


@pytest.mark.parametrize(
    "text, fragment",
    [("0-1 2", "malformed link '2'"), ("0--1", "malformed link"), ("a-1", "malformed link 'a-1'"),
     ("-1-2", "malformed"), ("0p1", "only allowed in gold"), ("\t0-1", "empty ID"),
     ("a\tb\t0-1", "more than one tab"), ("1\uff10-1", "malformed")],
)
def test_parse_line_errors(text, fragment):
    with pytest.raises(FormatError, match=fragment):
        parse_line(text)


def test_parse_line_explicit_formats():
    with pytest.raises(FormatError, match="missing ID"):
        parse_line("0-1", fmt="id")
    with pytest.raises(FormatError, match="pharaoh"):
        parse_line("x\t0-1", fmt="pharaoh")
    with pytest.raises(ValueError, match="unknown alignment format"):
        parse_line("0-1", fmt="moses")


def test_reader_reports_file_and_line(tmp_path):
    path = write(tmp_path / "a.txt", "0-0\n\n1-1 x\n")
    with pytest.raises(FormatError) as info:
        read_alignments(path)
    assert info.value.lineno == 3 and str(info.value).startswith(f"{path}:3: malformed link 'x'")
    # the first line fixes the format: an id line after pharaoh lines is an error, and vice versa
    with pytest.raises(FormatError, match=r":2: found an ID<TAB> prefix.*line 1 is in the pharaoh format"):
        read_alignments(write(tmp_path / "b.txt", "0-0\n7\t1-1\n"))
    with pytest.raises(FormatError, match=r":2: missing ID<TAB> prefix.*line 1 is in the id format"):
        read_alignments(write(tmp_path / "c.txt", "0\t0-0\n1-1\n"))
    bad = tmp_path / "d.txt"
    bad.write_bytes(b"0-0\n\xff\xfe\n")
    with pytest.raises(FormatError, match="not valid UTF-8"):
        read_alignments(bad)


def test_reader_keeps_empty_lines_and_line_numbers(tmp_path):
    lines = read_alignments(write(tmp_path / "a.txt", "\ufeff0-0\n\n2-1 1-2\r\n"))
    assert [line.sure for line in lines] == [{(0, 0)}, set(), {(2, 1), (1, 2)}]
    assert [line.lineno for line in lines] == [1, 2, 3]


def test_write_read_roundtrip_both_formats(tmp_path):
    pairs = [[(2, 1), (0, 0)], [], [(10, 3)]]
    path = tmp_path / "p.txt"
    assert write_alignments(path, pairs) == 3
    assert path.read_text() == "0-0 2-1\n\n10-3\n"
    assert [set(x.sure) for x in read_alignments(path)] == [set(p) for p in pairs]
    write_alignments(path, pairs, fmt="id")
    assert path.read_text() == "0\t0-0 2-1\n1\t\n2\t10-3\n"
    write_alignments(path, pairs, fmt="id", ids=["a", "b", "c"])
    assert [x.id for x in read_alignments(path)] == ["a", "b", "c"]
    gold = [AlignmentLine(frozenset({(0, 0)}), frozenset({(1, 1)}))]
    write_alignments(path, gold)
    assert path.read_text() == "0-0 1p1\n"
    assert read_alignments(path, allow_possible=True) == gold
    assert format_line([(1, 2)], id=5, possible=[(1, 2), (0, 3)]) == "5\t0p3 1-2"


def test_writer_rejects_bad_input_and_leaves_target_untouched(tmp_path):
    path = write(tmp_path / "keep.txt", "old\n")
    with pytest.raises(ValueError, match="ids"):
        write_alignments(path, [[(0, 0)], [(1, 1)]], fmt="id", ids=["only-one"])
    with pytest.raises(ValueError, match="ids"):
        write_alignments(path, [[(0, 0)]], fmt="id", ids=["a", "b"])
    with pytest.raises(ValueError, match="negative"):
        write_alignments(path, [[(0, -1)]])
    with pytest.raises(ValueError, match="tabs"):
        write_alignments(path, [[(0, 0)]], fmt="id", ids=["a\tb"])
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]  # no temp files left


def test_atomic_open_replaces_only_on_success(tmp_path):
    path = write(tmp_path / "out.txt", "old\n")
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(path) as handle:
            handle.write("half")
            raise KeyboardInterrupt
    assert path.read_text() == "old\n" and len(list(tmp_path.iterdir())) == 1
    with atomic_open(path) as handle:
        handle.write("new\n")
    assert path.read_text() == "new\n" and len(list(tmp_path.iterdir())) == 1
    with pytest.raises(ValueError, match="cannot write .*missing.*out.txt"):
        with atomic_open(tmp_path / "missing" / "out.txt"):
            pass


# ------------------------------------------------------------------ formulas


def test_hand_computed_example(tmp_path):
    # Sentence 1: S = {0-0, 1-1, 3-4}, P = S + {2-2, 3-3}; A = {0-0, 2-2, 3-3, 4-5, 5-4}
    #   |A|=5 |S|=3 |P|=5 |A∩S|=1 |A∩P|=3 -> P=3/5, R=1/3, F1=2*(3/5)(1/3)/(3/5+1/3)=3/7, AER=1-4/8=1/2
    # Sentence 2: S = {0-0}, A = {} -> P=1 (nothing predicted), R=0, F1=0, AER=1
    # Sentence 3: nothing in gold, nothing predicted -> P=R=F1=1, AER=0
    # Corpus (micro): |A|=5 |S|=4 |P|=6 |A∩S|=1 |A∩P|=3 -> P=3/5, R=1/4, F1=0.3/0.85=6/17, AER=1-4/9=5/9
    gold = write(tmp_path / "gold.txt", "0-0 1-1 2p2 3p3 3-4\n0-0\n\n")
    pred = write(tmp_path / "pred.txt", "0-0 2-2 3-3 4-5 5-4\n\n\n")
    result = evaluate_alignments(gold, pred, per_sentence=True)
    c = result.corpus
    assert (c.predicted, c.sure, c.possible, c.hits_sure, c.hits_possible, c.sentences) == (5, 4, 6, 1, 3, 3)
    assert c.precision == pytest.approx(3 / 5) and c.recall == pytest.approx(1 / 4)
    assert c.f1 == pytest.approx(6 / 17) and c.aer == pytest.approx(5 / 9)
    s1, s2, s3 = result.per_sentence
    assert (s1.precision, s1.recall, s1.f1, s1.aer) == pytest.approx((3 / 5, 1 / 3, 3 / 7, 1 / 2))
    assert (s2.precision, s2.recall, s2.f1, s2.aer) == (1.0, 0.0, 0.0, 1.0)
    assert (s3.precision, s3.recall, s3.f1, s3.aer) == (1.0, 1.0, 1.0, 0.0)
    assert result.ids == (None, None, None)
    assert evaluate_alignments(gold, pred).per_sentence is None
    # the same from in-memory data: gold lines, predictions as plain link lists
    in_memory = evaluate_alignments(read_alignments(gold, allow_possible=True),
                                    [[(0, 0), (2, 2), (3, 3), (4, 5), (5, 4)], [], []])
    assert in_memory.corpus == c


def test_score_counts_edge_cases():
    assert score_counts(0, 0, 0, 0, 0).aer == 0.0
    nothing = score_counts(0, 10, 12, 0, 0)
    assert (nothing.precision, nothing.recall, nothing.f1, nothing.aer) == (1.0, 0.0, 0.0, 1.0)
    all_wrong = score_counts(4, 10, 12, 0, 0)
    assert (all_wrong.precision, all_wrong.recall, all_wrong.f1, all_wrong.aer) == (0.0, 0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="inconsistent"):
        score_counts(1, 1, 1, 2, 2)
    # possible may repeat the sure links or not: same result
    assert score_sentence([(0, 0)], [(0, 0)], [(1, 1)]) == score_sentence([(0, 0)], [(0, 0)], [(0, 0), (1, 1)])


def test_json_roundtrip_of_result(tmp_path):
    gold = write(tmp_path / "g.txt", "a\t0-0\nb\t1-1\n")
    pred = write(tmp_path / "p.txt", "a\t0-0\nb\t\n")
    out = evaluate_alignments(gold, pred, per_sentence=True).to_dict()
    json.dumps(out)
    assert [row["id"] for row in out["per_sentence"]] == ["a", "b"]
    assert out["corpus"]["recall"] == 0.5 and out["per_sentence"][1]["line"] == 2


# ------------------------------------------------------------------ errors


def test_line_count_mismatch(tmp_path):
    gold = write(tmp_path / "gold.txt", "0-0\n1-1\n\n")
    pred = write(tmp_path / "pred.txt", "0-0\n")
    with pytest.raises(FormatError, match=r"gold.txt has 3 lines but .*pred.txt has 1: .*pred.txt ends before line 2"):
        evaluate_alignments(gold, pred)


def test_id_mismatch_names_the_line(tmp_path):
    gold = write(tmp_path / "gold.txt", "s1\t0-0\ns2\t1-1\n")
    pred = write(tmp_path / "pred.txt", "s1\t0-0\ns3\t1-1\n")
    with pytest.raises(FormatError, match=r"pred.txt:2: id 's3' does not match id 's2'"):
        evaluate_alignments(gold, pred)
    # ids on one side only: lines are matched by position
    plain = write(tmp_path / "plain.txt", "0-0\n1-1\n")
    assert evaluate_alignments(plain, pred).corpus.aer == 0.0


def test_malformed_and_possible_links_in_pred(tmp_path):
    gold = write(tmp_path / "gold.txt", "0-0\n1-1\n")
    with pytest.raises(FormatError, match=r"pred.txt:2: malformed link '1_1'"):
        evaluate_alignments(gold, write(tmp_path / "pred.txt", "0-0\n1_1\n"))
    with pytest.raises(FormatError, match=r"pred.txt:1: possible link '0p0'"):
        evaluate_alignments(gold, write(tmp_path / "pred.txt", "0p0\n1-1\n"))
    with pytest.raises(FormatError, match=r"gold.txt:2: malformed link '1x1'"):
        evaluate_alignments(write(tmp_path / "gold.txt", "0-0\n1x1\n"), write(tmp_path / "pred.txt", "\n\n"))


# ------------------------------------------------------------------ the real Czech-English gold


@pytest.fixture(scope="module")
def csen(data_dir):
    root = data_dir / "gold" / "csen"
    meta = json.loads((root / "meta.json").read_text())
    return root / "gold.txt", read_alignments(root / "gold.txt", allow_possible=True), meta["counts"]


def test_real_gold_counts_match_meta(csen):
    _, lines, counts = csen
    assert len(lines) == counts["sentences"]
    assert sum(len(x.sure) for x in lines) == counts["sure_links"]
    assert sum(len(x.possible) for x in lines) == counts["possible_links"]
    assert sum(1 for x in lines if not x.sure) == counts["sentences_without_sure_links"]


def test_real_gold_against_itself(csen, tmp_path):
    path, lines, counts = csen
    n_sure, n_poss = counts["sure_links"], counts["possible_links"]
    # every gold link (sure and possible) predicted: |A| = |P| = |A∩P|, |A∩S| = |S|
    pred = tmp_path / "all.txt"
    write_alignments(pred, [x.links for x in lines])
    c = evaluate_alignments(path, pred, per_sentence=True)
    assert (c.corpus.precision, c.corpus.recall, c.corpus.f1, c.corpus.aer) == (1.0, 1.0, 1.0, 0.0)
    assert (c.corpus.predicted, c.corpus.hits_possible) == (n_sure + n_poss, n_sure + n_poss)
    # per sentence too, including the pair without sure links (recall 1 by convention)
    assert all(s.aer == 0.0 and s.f1 == 1.0 for s in c.per_sentence)
    # the same with the gold objects themselves as the prediction
    assert evaluate_alignments(path, lines).corpus.aer == 0.0


def test_real_gold_sure_only(csen, tmp_path):
    path, lines, counts = csen
    pred = tmp_path / "sure.txt"
    write_alignments(pred, [x.sure for x in lines])
    c = evaluate_alignments(path, pred).corpus
    # A = S: |A∩S| = |A∩P| = |A| = |S| -> P = R = F1 = 1, AER = 1 - 2|S|/2|S| = 0
    assert (c.predicted, c.hits_sure, c.hits_possible) == (counts["sure_links"],) * 3
    assert (c.precision, c.recall, c.f1, c.aer) == (1.0, 1.0, 1.0, 0.0)


def test_real_gold_possible_only(csen, tmp_path):
    path, lines, counts = csen
    pred = tmp_path / "possible.txt"
    write_alignments(pred, [x.possible for x in lines])
    c = evaluate_alignments(path, pred).corpus
    n_sure, n_poss = counts["sure_links"], counts["possible_links"]
    # A = P \ S: every link is allowed (precision 1) but no sure link is found (recall 0)
    # AER = 1 - (0 + |A|) / (|A| + |S|) = |S| / (|A| + |S|)
    assert (c.predicted, c.hits_sure, c.hits_possible) == (n_poss, 0, n_poss)
    assert (c.precision, c.recall, c.f1) == (1.0, 0.0, 0.0)
    assert c.aer == pytest.approx(n_sure / (n_poss + n_sure))
    assert math.isclose(c.aer, 44292 / 67423)  # the counts of meta.json, for the reader


def test_real_gold_nothing_predicted(csen, tmp_path):
    path, lines, counts = csen
    pred = write(tmp_path / "empty.txt", "\n" * len(lines))
    c = evaluate_alignments(path, pred).corpus
    # documented convention: P = 1 (no wrong link), R = 0, F1 = 0, AER = 1 - 0/|S| = 1
    assert (c.predicted, c.sure) == (0, counts["sure_links"])
    assert (c.precision, c.recall, c.f1, c.aer) == (1.0, 0.0, 0.0, 1.0)


def test_public_names_and_no_heavy_imports():
    import transalign
    from transalign import evaluation, projection

    assert transalign.evaluate_alignments is evaluation.evaluate_alignments
    assert transalign.project_labels is projection.project_labels
    code = ("import sys, transalign.evaluation, transalign.projection, transalign.formats.alignments; "
            "print(sorted(m for m in ('torch', 'transformers', 'onnxruntime', 'numba') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    assert out.strip() == "[]"
