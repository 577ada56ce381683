"""`transalign eval` and `transalign project` through the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from transalign.cli import main

ROOT = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def eval_files(tmp_path):
    # S = {0-0, 1-1}, P = S + {2-2}; A = {0-0, 2-2, 3-3}: |A∩S|=1 |A∩P|=2
    # P = 2/3, R = 1/2, F1 = 2(2/3)(1/2)/(2/3+1/2) = 4/7, AER = 1 - 3/5 = 0.4
    gold = write(tmp_path / "gold.txt", "a\t0-0 1-1 2p2\nb\t\n")
    pred = write(tmp_path / "pred.txt", "a\t0-0 2-2 3-3\nb\t\n")
    return gold, pred


def test_eval_text(eval_files, capsys):
    assert main(["eval", *map(str, eval_files)]) == 0
    out = capsys.readouterr().out
    assert "precision  0.6667" in out and "recall     0.5000" in out
    assert "F1         0.5714" in out and "AER        0.4000" in out
    assert "predicted 3, gold sure 2, gold possible 3" in out
    assert "line\tid" not in out


def test_eval_json_and_per_sentence(eval_files, capsys):
    assert main(["eval", *map(str, eval_files), "--json", "--per-sentence"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["corpus"]["aer"] == pytest.approx(0.4) and data["corpus"]["f1"] == pytest.approx(4 / 7)
    rows = data["per_sentence"]
    assert [r["id"] for r in rows] == ["a", "b"] and rows[1]["aer"] == 0.0
    assert main(["eval", *map(str, eval_files), "--per-sentence", "--digits", "2"]) == 0
    out = capsys.readouterr().out
    assert "1\ta\t0.67\t0.50\t0.57\t0.40\t3\t2\t3" in out and "2\tb\t1.00\t1.00\t1.00\t0.00\t0\t0\t0" in out


def test_eval_errors_exit_2_with_file_and_line(eval_files, tmp_path, capsys):
    gold, _ = eval_files
    bad = write(tmp_path / "bad.txt", "a\t0-0\nc\t\n")
    assert main(["eval", str(gold), str(bad)]) == 2
    assert f"transalign eval: error: {bad}:2: id 'c' does not match id 'b'" in capsys.readouterr().err
    short = write(tmp_path / "short.txt", "a\t0-0\n")
    assert main(["eval", str(gold), str(short)]) == 2
    assert "has 2 lines but" in capsys.readouterr().err
    assert main(["eval", str(gold), str(tmp_path / "missing.txt")]) == 2
    assert "missing.txt" in capsys.readouterr().err
    assert main(["eval", str(gold), str(gold)]) == 2  # possible links in the prediction
    assert "gold.txt:1: possible link '2p2'" in capsys.readouterr().err


@pytest.fixture
def project_files(tmp_path):
    labeled = write(tmp_path / "en.txt", "New B-LOC\nYork I-LOC\nis O\nbig O\n\nBob B-PER\nSmith I-PER\n\nAl B-PER\n\n")
    unlabeled = write(tmp_path / "xx.txt", "u0 O\nu1 O\nu2 O\n\nv0 O\nv1 O\n\nw0 O\nw1 O\n\n")
    # 1: LOC -> {0, 2} (a gap at 1); 2: PER -> {0, 1}, 'Smith' has no link; 3: one-word PER -> {0, 1}
    alignments = write(tmp_path / "xx-en.txt", "0\t0-0 2-1\n1\t0-0 1-0\n2\t0-0 1-0\n")
    return labeled, unlabeled, alignments


@pytest.mark.parametrize(
    "options, expected",
    [
        ([], "u0 B-LOC\nu1 I-LOC\nu2 I-LOC\n\nv0 B-PER\nv1 I-PER\n\nw0 B-PER\nw1 I-PER\n\n"),
        (["--complete-to"], "u0 O\nu1 O\nu2 O\n\nv0 B-PER\nv1 I-PER\n\nw0 B-PER\nw1 I-PER\n\n"),
        (["--complete-from"], "u0 B-LOC\nu1 I-LOC\nu2 I-LOC\n\nv0 O\nv1 O\n\nw0 B-PER\nw1 I-PER\n\n"),
        (["--restrict-to"], "u0 B-LOC\nu1 I-LOC\nu2 I-LOC\n\nv0 B-PER\nv1 I-PER\n\nw0 B-PER\nw1 O\n\n"),
    ],
)
def test_project_options(project_files, tmp_path, capsys, options, expected):
    out = tmp_path / "out.txt"
    assert main(["project", *map(str, project_files), "-o", str(out), *options]) == 0
    assert out.read_text(encoding="utf-8") == expected
    printed = capsys.readouterr().out
    assert f"wrote {out}: 3 sentences" in printed and "entities in" in printed


def test_project_json_counts_and_reverse(project_files, tmp_path, capsys):
    labeled, unlabeled, _ = project_files
    reversed_links = write(tmp_path / "en-xx.txt", "0-0 1-2\n0-0 0-1\n0-0 0-1\n")
    out = tmp_path / "out.txt"
    assert main(["project", str(labeled), str(unlabeled), str(reversed_links), "-o", str(out),
                 "--reverse", "--complete-to", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["entities_in"] == 3 and stats["projected"] == 2 and stats["dropped_complete_to"] == 1
    assert out.read_text() == "u0 O\nu1 O\nu2 O\n\nv0 B-PER\nv1 I-PER\n\nw0 B-PER\nw1 I-PER\n\n"


def test_project_errors_exit_2_and_keep_no_output(project_files, tmp_path, capsys):
    labeled, unlabeled, _ = project_files
    out = tmp_path / "out.txt"
    broken = write(tmp_path / "broken.txt", "0-0\n0-5\n\n")
    assert main(["project", str(labeled), str(unlabeled), str(broken), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"transalign project: error: {broken}:2: link 0-5 is out of range" in err and "--reverse" in err
    assert not out.exists()
    one_line = write(tmp_path / "one.txt", "0-0\n\n")
    assert main(["project", str(labeled), str(unlabeled), str(one_line), "-o", str(out)]) == 2
    assert "different numbers of sentences" in capsys.readouterr().err
    assert not out.exists()


def test_project_help_states_link_direction(capsys):
    with pytest.raises(SystemExit):
        main(["project", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "I on the UNLABELED side" in text and "--reverse" in text and "atomically" in text


def test_python_m_transalign_reproduces_reference(data_dir, tmp_path):
    sample = data_dir / "reference" / "bam-sample"
    out = tmp_path / "projected.txt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(
        [sys.executable, "-m", "transalign", "project", str(sample / "test-translate-bam-en-preds.txt"),
         str(sample / "test-bam.txt"), str(sample / "bam-en-alignments.txt"), "-o", str(out), "--json"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == (sample / "test-translate-bam-projected.txt").read_bytes()
    assert json.loads(proc.stdout)["sentences"] == 1274
    assert "torch" not in proc.stderr
