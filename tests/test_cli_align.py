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


def test_plain_lines_given_as_conll_are_refused_naming_the_line(tmp_path, tiny_bundle, capsys):
    """A one-sentence-per-line file read with --input-format conll used to become one sentence made of
    the first word of every line (garbage links, exit 0)."""
    src = write(tmp_path / "src.txt", "the house is red\nthe cat\n")
    tgt = write(tmp_path / "tgt.txt", "das Haus ist rot\ndie Katze\n")
    out = tmp_path / "out.txt"
    assert main(["align", str(tiny_bundle), "--src", str(src), "--tgt", str(tgt), "--src-lang", "eng_Latn",
                 "--tgt-lang", "ces_Latn", "--input-format", "conll", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "src.txt, line 2: 2 columns where line 1 has 4" in err and "--input-format lines" in err
    assert not out.exists()


def test_input_reads_src_tgt_lines_like_two_files(tmp_path, tiny_bundle, capsys, monkeypatch):
    """`--input` (fast_align / awesome-align `src ||| tgt`, or a tab) gives exactly the links of --src/--tgt,
    also from standard input; a line that is not a pair stops the job naming its line."""
    import io
    import sys

    pairs = [("Das Haus ist rot .", "The house is red ."), ("a b c", "x y"), ("ein", "one")]
    src = write(tmp_path / "s.txt", "".join(s + "\n" for s, _ in pairs))
    tgt = write(tmp_path / "t.txt", "".join(t + "\n" for _, t in pairs))
    parallel = write(tmp_path / "p.txt", f"{pairs[0][0]} ||| {pairs[0][1]}\n{pairs[1][0]}\t{pairs[1][1]}\n"
                                         f"{pairs[2][0]}|||{pairs[2][1]}\n")
    langs = ["--src-lang", "eng_Latn", "--tgt-lang", "ces_Latn"]
    two, one = tmp_path / "two.txt", tmp_path / "one.txt"
    assert main(["align", str(tiny_bundle), "--src", str(src), "--tgt", str(tgt), *langs, "-o", str(two)]) == 0
    assert main(["align", str(tiny_bundle), "--input", str(parallel), *langs, "-o", str(one)]) == 0
    assert one.read_text() == two.read_text() and len(two.read_text().splitlines()) == 3
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(parallel.read_bytes())))
    capsys.readouterr()
    assert main(["align", str(tiny_bundle), "--input", "-", *langs]) == 0
    assert capsys.readouterr().out == two.read_text()
    bad = write(tmp_path / "bad.txt", "a ||| b\nno separator here\n")
    assert main(["align", str(tiny_bundle), "--input", str(bad), *langs, "-o", str(tmp_path / "x")]) == 2
    assert "bad.txt:2: no separator" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main(["align", str(tiny_bundle), "--input", str(parallel), "--src", str(src), *langs]) == 2
    assert "--input replaces --src and --tgt" in capsys.readouterr().err


def test_empty_sentences_are_counted_and_reported(tmp_path, tiny_bundle, capsys):
    src = write(tmp_path / "s.txt", "a b\n\nc\n")
    tgt = write(tmp_path / "t.txt", "x y\nz\n\n")
    assert main(["align", str(tiny_bundle), "--src", str(src), "--tgt", str(tgt), "--src-lang", "eng_Latn",
                 "--tgt-lang", "ces_Latn"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.split("\n")
    assert lines[1] == lines[2] == "" and lines[0]
    assert "2 of 3 pairs have an empty sentence (first: " in captured.err and "s.txt, line 2)" in captured.err


def test_align_bundle_help_shows_the_bundle_default_extraction(tiny_bundle, capsys):
    import json

    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    with pytest.raises(SystemExit) as info:
        main(["align", str(tiny_bundle), "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--skip-long" in out
    assert out.rstrip().endswith(f"defaults of {tiny_bundle}: --method {manifest.get('default_method', 'softmax')} "
                                 f"--word-level {manifest.get('default_word_level', 'any')} "
                                 f"--threshold {manifest['default_threshold']:g}")


def test_pipeline_flag_gives_the_same_bytes(tmp_path, tiny_bundle):
    src = write(tmp_path / "s.txt", "".join(f"a b c {'d ' * (k % 7)}\n" for k in range(50)))
    tgt = write(tmp_path / "t.txt", "".join(f"x y {'z ' * (k % 5)}\n" for k in range(50)))
    outs = []
    for mode in ("on", "off"):
        out = tmp_path / f"{mode}.txt"
        assert main(["align", str(tiny_bundle), "--src", str(src), "--tgt", str(tgt), "--src-lang", "eng_Latn",
                     "--tgt-lang", "ces_Latn", "--pipeline", mode, "--batch-tokens", "64", "-o", str(out)]) == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] and outs[0].count(b"\n") == 50
