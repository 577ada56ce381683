"""`transalign align` end to end: formats, the bam sample, refusals that write nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from transalign.cli import main
from transalign.engine.aligner import Aligner
from transalign.formats.text import read_sentences

ROOT = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_lines_to_pharaoh_matches_the_api(tmp_path, tiny_bundle):
    src = write(tmp_path / "src.txt", "Hello world !\nA b c\n\nlast one\n")
    tgt = write(tmp_path / "tgt.txt", "Ahoj světe !\nx y\nnonempty\nposlední\n")
    out = tmp_path / "out.txt"
    assert main(["align", str(tiny_bundle), "--src", str(src), "--tgt", str(tgt), "--src-lang", "eng_Latn",
                 "--tgt-lang", "ces_Latn", "-o", str(out), "--provider", "cpu"]) == 0
    aligner = Aligner.load(tiny_bundle, provider="cpu")
    expected = aligner.align(read_sentences(src), read_sentences(tgt), "eng_Latn", "ces_Latn")
    lines = out.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "" and len(lines) - 1 == 4
    assert lines[:-1] == [r.pharaoh() for r in expected]
    assert lines[2] == ""  # the empty source sentence


def test_bam_sample_conll_to_id(tmp_path, tiny_bundle, data_dir):
    """The real bam sample end to end: 1274 lines in the reference's `ID<TAB>links` format."""
    sample = data_dir / "reference/bam-sample"
    out = tmp_path / "bam-en.txt"
    code = main(["align", str(tiny_bundle), "--src", str(sample / "test-bam.txt"), "--tgt",
                 str(sample / "test-translate-bam-en-preds.txt"), "--src-lang", "bam_Latn", "--tgt-lang",
                 "eng_Latn", "--input-format", "conll", "--output-format", "id", "-o", str(out),
                 "--precision", "int8"])
    assert code == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    reference_ids = [line.split("\t")[0] for line in (sample / "bam-en-alignments.txt").read_text().splitlines()]
    assert len(lines) == 1274
    assert [line.split("\t")[0] for line in lines] == reference_ids
    src = read_sentences(sample / "test-bam.txt", "conll")
    tgt = read_sentences(sample / "test-translate-bam-en-preds.txt", "conll")
    for line, s, t in zip(lines, src, tgt):
        for link in line.split("\t")[1].split():
            i, j = map(int, link.split("-"))
            assert 0 <= i < len(s) and 0 <= j < len(t)


def test_mismatched_counts_write_nothing(tmp_path, tiny_bundle, capsys):
    src = write(tmp_path / "src.txt", "a\nb\nc\n")
    tgt = write(tmp_path / "tgt.txt", "x\ny\n")
    out = tmp_path / "out.txt"
    assert main(["align", str(tiny_bundle), "--src", str(src), "--tgt", str(tgt), "--src-lang", "eng_Latn",
                 "--tgt-lang", "ces_Latn", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "has 3 lines but" in err and "has 2" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.txt", "tgt.txt"]


def test_invalid_utf8_names_the_line(tmp_path, tiny_bundle, capsys):
    src = tmp_path / "src.txt"
    src.write_bytes(b"ok line\nbad \xff byte\n")
    tgt = write(tmp_path / "tgt.txt", "x\ny\n")
    assert main(["align", str(tiny_bundle), "--src", str(src), "--tgt", str(tgt), "--src-lang", "eng_Latn",
                 "--tgt-lang", "ces_Latn", "-o", str(tmp_path / "out.txt")]) == 2
    assert "src.txt, line 2: not valid UTF-8" in capsys.readouterr().err
    assert not (tmp_path / "out.txt").exists()


def test_failure_midway_keeps_no_partial_output(tmp_path, tiny_bundle, capsys):
    long = " ".join(["word"] * 400)
    src = write(tmp_path / "src.txt", "\n".join(["a b"] * 3000 + [long]) + "\n")
    tgt = write(tmp_path / "tgt.txt", "\n".join(["x y"] * 3001) + "\n")
    out = write(tmp_path / "out.txt", "previous content\n")
    args = ["align", str(tiny_bundle), "--src", str(src), "--tgt", str(tgt), "--src-lang", "eng_Latn",
            "--tgt-lang", "ces_Latn", "-o", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "src.txt, line 3001: the source sentence has" in err and "--skip-long" in err and "skip_long" not in err
    assert out.read_text() == "previous content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt", "src.txt", "tgt.txt"]
    assert main(args + ["--skip-long"]) == 0
    lines = out.read_text().split("\n")
    assert len(lines) == 3002 and lines[3000] == ""
    assert "1 of 3001 pairs were longer" in capsys.readouterr().err


def test_unknown_language_code(tmp_path, tiny_bundle, capsys):
    src = write(tmp_path / "src.txt", "a\n")
    assert main(["align", str(tiny_bundle), "--src", str(src), "--tgt", str(src), "--src-lang", "english",
                 "--tgt-lang", "ces_Latn"]) == 2
    assert "english" in capsys.readouterr().err


def test_missing_bundle(tmp_path, capsys):
    src = write(tmp_path / "src.txt", "a\n")
    assert main(["align", str(tmp_path / "nope"), "--src", str(src), "--tgt", str(src)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_stdout_via_subprocess(tmp_path, tiny_bundle):
    src = write(tmp_path / "src.txt", "a b\nc\n")
    tgt = write(tmp_path / "tgt.txt", "x\ny z\n")
    out = subprocess.run([sys.executable, "-m", "transalign", "align", str(tiny_bundle), "--src", str(src),
                          "--tgt", str(tgt), "--src-lang", "eng_Latn", "--tgt-lang", "ces_Latn",
                          "--output-format", "id"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    assert len(lines) == 3 and lines[0].startswith("0\t") and lines[1].startswith("1\t")


@pytest.mark.parametrize("fmt", ["lines", "conll"])
def test_read_sentences_formats(tmp_path, fmt):
    text = "a b\n\nc\n" if fmt == "lines" else "a X\nb Y\n\n\nc Z\n"
    path = write(tmp_path / "in.txt", text)
    expected = [["a", "b"], [], ["c"]] if fmt == "lines" else [["a", "b"], ["c"]]
    assert read_sentences(path, fmt) == expected
