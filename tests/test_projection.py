"""BIO label projection through word alignments (transalign.projection)."""

from __future__ import annotations

from pathlib import Path

import pytest

from transalign.formats.alignments import FormatError
from transalign.projection import Entity, ProjectionStats, extract_entities, project_labels, project_sentence


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def conll(*sentences: list[tuple[str, str]]) -> str:
    return "".join("".join(f"{tok} {lab}\n" for tok, lab in sent) + "\n" for sent in sentences)


# ------------------------------------------------------------------ the authors' sample, byte for byte


@pytest.fixture(scope="module")
def bam(data_dir):
    root = data_dir / "reference" / "bam-sample"
    return (root / "test-translate-bam-en-preds.txt", root / "test-bam.txt",
            root / "bam-en-alignments.txt", root / "test-translate-bam-projected.txt")


def test_reproduces_reference_bambara_projection(bam, tmp_path):
    labeled, unlabeled, alignments, expected = bam
    out = tmp_path / "projected.txt"
    result = project_labels(labeled, unlabeled, alignments, out)
    assert out.read_bytes() == expected.read_bytes()
    assert result.labels is None
    s = result.stats
    assert s.sentences == 1274
    # entities in = B- tags + I- tags that do not continue an entity of their type (rule 1)
    lines = labeled.read_text(encoding="utf-8").splitlines()
    labels = [line.split()[-1] if line.strip() else "O" for line in lines]
    starts = sum(1 for prev, lab in zip(["O"] + labels, labels)
                 if lab.startswith("B-") or (lab.startswith("I-") and prev[2:] != lab[2:]))
    assert s.entities_in == starts
    assert s.entities_in == s.projected + s.dropped_unaligned + s.dropped_complete_from + s.dropped_complete_to
    assert s.dropped_complete_from == s.dropped_complete_to == s.restricted == 0
    assert s.orphan_starts > 0 and s.overlapping > 0  # the sample exercises rules 1 and 5


def test_reference_sample_with_filters_keeps_invariants(bam):
    labeled, unlabeled, alignments, _ = bam
    default = project_labels(labeled, unlabeled, alignments).stats
    for option in ("complete_from", "complete_to", "restrict_to"):
        s = project_labels(labeled, unlabeled, alignments, **{option: True}).stats
        assert s.entities_in == s.projected + s.dropped_unaligned + s.dropped_complete_from + s.dropped_complete_to
        assert s.dropped_unaligned == default.dropped_unaligned
        assert getattr(s, {"complete_from": "dropped_complete_from", "complete_to": "dropped_complete_to",
                           "restrict_to": "restricted"}[option]) > 0


# ------------------------------------------------------------------ entities


def test_extract_entities_rules():
    labels = ["B-PER", "I-PER", "O", "I-ORG", "I-ORG", "B-LOC", "I-PER", "B-LOC", "B-LOC"]
    assert extract_entities(labels) == [
        Entity("PER", 0, 1, "B-PER"), Entity("ORG", 3, 4, "I-ORG"), Entity("LOC", 5, 5, "B-LOC"),
        Entity("PER", 6, 6, "I-PER"), Entity("LOC", 7, 7, "B-LOC"), Entity("LOC", 8, 8, "B-LOC"),
    ]
    assert [e.orphan for e in extract_entities(["I-X", "B-X"])] == [True, False]
    for bad in ("PER", "B-", "E-PER", "o", ""):
        with pytest.raises(ValueError, match="not BIO"):
            extract_entities(["O", bad])


# ------------------------------------------------------------------ default rules, hand-made


def test_span_fills_gaps_and_keeps_types():
    # labelled: John Smith visited New York .   links (unlabelled i, labelled j)
    # PER {0,1} -> image {0, 2} -> span 0..2 (the unlinked word 1 is filled); LOC {3,4} -> {5, 4}
    labels = ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O"]
    links = [(0, 0), (2, 1), (3, 2), (5, 3), (4, 4)]
    assert project_sentence(labels, 6, links) == ["B-PER", "I-PER", "I-PER", "O", "B-LOC", "I-LOC"]


def test_orphan_type_change_and_unaligned():
    # 'b' is an orphan I-ORG (after O): starts an entity and keeps its I- tag on the first word;
    # 'd' (I-LOC after B-PER) starts a LOC entity; 'e' has no link and is dropped.
    labels = ["O", "I-ORG", "B-PER", "I-LOC", "B-MISC"]
    links = [(1, 1), (0, 2), (2, 3), (3, 3)]
    assert project_sentence(labels, 4, links) == ["B-PER", "I-ORG", "I-LOC", "I-LOC"]


def test_overlapping_spans_later_entity_wins():
    # ORG {0,1} -> span 0..3; PER {2} -> word 1, written after ORG, overwrites it there
    assert project_sentence(["B-ORG", "I-ORG", "B-PER"], 4, [(0, 0), (3, 1), (1, 2)]) == [
        "B-ORG", "B-PER", "I-ORG", "I-ORG"]
    # a later entity covering an earlier one replaces it completely
    assert project_sentence(["B-PER", "B-LOC"], 3, [(1, 0), (0, 1), (2, 1)]) == ["B-LOC", "I-LOC", "I-LOC"]


def test_links_are_validated():
    with pytest.raises(ValueError, match=r"link 3-0 is out of range: I indexes the unlabelled sentence \(3 words\)"):
        project_sentence(["B-PER"], 3, [(3, 0)])
    with pytest.raises(ValueError, match="link 0-1 is out of range"):
        project_sentence(["B-PER"], 3, [(0, 1)])
    assert project_sentence([], 2, []) == ["O", "O"]
    assert project_sentence(["B-PER"], 0, []) == []


# ------------------------------------------------------------------ options, hand-made


def test_complete_from():
    # New York: only 'York' has a link -> projected by default, dropped with complete_from
    labels, links = ["B-LOC", "I-LOC", "O"], [(1, 1), (2, 2)]
    assert project_sentence(labels, 3, links) == ["O", "B-LOC", "O"]
    assert project_sentence(labels, 3, links, complete_from=True) == ["O", "O", "O"]
    # fully linked entities are unaffected
    assert project_sentence(labels, 3, [(0, 0), (1, 1)], complete_from=True) == ["B-LOC", "I-LOC", "O"]


def test_complete_to():
    # image {0, 2} has a gap -> default fills it, complete_to drops the entity
    labels, links = ["B-ORG", "I-ORG"], [(0, 0), (2, 1)]
    assert project_sentence(labels, 3, links) == ["B-ORG", "I-ORG", "I-ORG"]
    assert project_sentence(labels, 3, links, complete_to=True) == ["O", "O", "O"]
    # a contiguous image (in any order) is kept
    assert project_sentence(labels, 3, [(2, 0), (1, 1)], complete_to=True) == ["O", "B-ORG", "I-ORG"]


def test_restrict_to():
    # a one-word entity linked to words 1 and 2: default B- I-, restrict_to only the B- word
    assert project_sentence(["B-PER"], 3, [(1, 0), (2, 0)]) == ["O", "B-PER", "I-PER"]
    assert project_sentence(["B-PER"], 3, [(1, 0), (2, 0)], restrict_to=True) == ["O", "B-PER", "O"]
    # an orphan one-word entity keeps its first tag, as in rule 4
    assert project_sentence(["I-PER"], 2, [(0, 0), (1, 0)], restrict_to=True) == ["I-PER", "O"]
    # multi-word entities are unaffected
    assert project_sentence(["B-PER", "I-PER"], 3, [(0, 0), (2, 0)], restrict_to=True) == [
        "B-PER", "I-PER", "I-PER"]


def test_stats_per_filter(tmp_path):
    # one sentence, four entities: A unaligned, B partly aligned, C gappy image, D single word -> 2 words
    labels = ["B-A", "O", "B-B", "I-B", "O", "B-C", "I-C", "B-D"]
    lab = write(tmp_path / "l.txt", conll([(f"w{k}", lab) for k, lab in enumerate(labels)]))
    unl = write(tmp_path / "u.txt", conll([(f"u{k}", "O") for k in range(8)]))
    ali = write(tmp_path / "a.txt", "0-2 2-5 4-6 6-7 7-7\n")
    cases = {
        (): dict(projected=3, dropped_unaligned=1),
        ("complete_from",): dict(projected=2, dropped_unaligned=1, dropped_complete_from=1),
        ("complete_to",): dict(projected=2, dropped_unaligned=1, dropped_complete_to=1),
        ("restrict_to",): dict(projected=3, dropped_unaligned=1, restricted=1),
        ("complete_from", "complete_to", "restrict_to"): dict(
            projected=1, dropped_unaligned=1, dropped_complete_from=1, dropped_complete_to=1, restricted=1),
    }
    for options, expected in cases.items():
        stats = project_labels(lab, unl, ali, **dict.fromkeys(options, True)).stats
        want = ProjectionStats(sentences=1, entities_in=4, entities_out=expected["projected"], **expected)
        assert stats == want, options


# ------------------------------------------------------------------ files


def test_files_reverse_columns_and_output_format(tmp_path):
    lab = write(tmp_path / "en.txt", "Anna\tNNP\tB-PER\nsleeps VBZ O\n\n\n\nParis B-LOC\n")
    unl = write(tmp_path / "xx.txt", "aa O\nbb B-PER\n\ncc\ndd\nee\n\n")  # gold labels are not copied
    forward = write(tmp_path / "fwd.txt", "1-0 0-1\n0\t4-0\n")
    backward = write(tmp_path / "bwd.txt", "0-1 1-0\n0-2\n")
    out = tmp_path / "out.txt"
    expected = "aa O\nbb B-PER\n\ncc O\ndd O\nee B-LOC\n\n"
    with pytest.raises(FormatError, match=r"fwd.txt:2: .*found an ID"):
        project_labels(lab, unl, forward, out)
    write(forward, "1-0 0-1\n2-0\n")
    project_labels(lab, unl, forward, out)
    assert out.read_text() == expected
    with pytest.raises(FormatError, match=r"fwd.txt:2: link 2-0 is out of range: with --reverse, I indexes the "
                                          r"labelled sentence \(1 words\) and J the unlabelled one \(3 words\)$"):
        project_labels(lab, unl, forward, out, reverse=True)
    project_labels(lab, unl, backward, out, reverse=True)
    assert out.read_text() == expected


def test_in_memory_inputs():
    result = project_labels([["B-PER", "O"], []], [["x", "y", "z"], ["w"]], [[(2, 0)], []])
    assert result.labels == (("O", "O", "B-PER"), ("O",))
    assert result.stats.projected == 1 and result.stats.sentences == 2
    with pytest.raises(FormatError, match="sentence 2: label 'PER' is not BIO"):
        project_labels([["O"], ["PER"]], [["x"], ["y"]], [[], []])


@pytest.mark.parametrize(
    "lab, unl, ali, message",
    [
        (conll([("a", "B-X")], [("b", "O")]), conll([("a", "O")]), "0-0\n\n",
         r"different numbers of sentences: .*l.txt has 2, .*u.txt has 1, .*a.txt has 2; "
         r"sentence 2 \(line 3 of .*l.txt\) has no counterpart"),
        (conll([("a", "B-X")]), conll([("a", "O")]), "0-0\n\n",
         r"a.txt has 2; sentence 2 \(line 2 of .*a.txt\)"),
        ("a B-X\nb\n\n", conll([("a", "O")]), "0-0\n", r"l.txt:2: expected TOKEN ... LABEL"),
        ("a B-X\nb PER\n\n", conll([("a", "O")]), "0-0\n", r"l.txt:2: label 'PER' is not BIO"),
        ("a B-X\nb S-X\n\n", conll([("a", "O")]), "0-0\n", r"l.txt:2: label 'S-X' is not BIO"),
        (conll([("a", "O")], [("b", "B-X")]), conll([("a", "O")], [("b", "O")]), "\n0-1\n",
         r"a.txt:2: link 0-1 is out of range: I indexes the unlabelled sentence \(1 words\) and J the labelled "
         r"one \(1 words\); if the file has the labelled side first, use --reverse"),
        (conll([("a", "O")]), conll([("a", "O")]), "0-0 1:1\n", r"a.txt:1: malformed link '1:1'"),
    ],
)
def test_broken_inputs_name_file_and_line(tmp_path, lab, unl, ali, message):
    out = write(tmp_path / "out.txt", "previous\n")
    with pytest.raises(FormatError, match=message):
        project_labels(write(tmp_path / "l.txt", lab), write(tmp_path / "u.txt", unl),
                       write(tmp_path / "a.txt", ali), out)
    assert out.read_text() == "previous\n"  # atomic: the old output survives a failed run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "l.txt", "out.txt", "u.txt"]
