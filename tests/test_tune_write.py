"""Issue 26.2: a bundle carries its recommended extraction.

`tune --write` stores the best setting in the bundle's manifest (only the manifest changes,
atomically, checked before it is written); `align` with no method flags then uses it, giving the
links of the explicit flags; `export --method/--word-level/--threshold` stores one at export;
the NLLB family keeps the paper's rule (softmax, any, 0.001).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from transalign.cli import main
from transalign.engine.aligner import Aligner
from transalign.engine.bundle import MANIFEST_NAME, BundleError, read_manifest
from transalign.formats.alignments import read_alignments
from transalign.kernels import Extraction
from transalign.tuning import write_default

LANGS = ("ces_Latn", "eng_Latn")
CHANGED = {"default_method", "default_word_level", "default_threshold", "default_tuning"}


@pytest.fixture()
def bundle(tiny_bundle, tmp_path):
    """A private copy of the tiny bundle (every precision), whose manifest these tests rewrite."""
    out = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, out)
    return out


@pytest.fixture()
def gold_dir(tmp_path, data_dir):
    """The first 60 pairs of the csen gold."""
    root = tmp_path / "gold"
    root.mkdir()
    for name in ("src.txt", "tgt.txt", "gold.txt"):
        lines = (data_dir / "gold/csen" / name).read_text(encoding="utf-8").splitlines()[:60]
        (root / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def _align(bundle: Path, gold_dir: Path, out: Path, *flags: str) -> list:
    assert main(["align", str(bundle), "--src", str(gold_dir / "src.txt"), "--tgt", str(gold_dir / "tgt.txt"),
                 "--src-lang", LANGS[0], "--tgt-lang", LANGS[1], "--provider", "cpu", "-o", str(out), *flags]) == 0
    return [line.links for line in read_alignments(out)]


def test_tune_write_round_trips_and_align_uses_the_stored_default(bundle, gold_dir, tmp_path, capsys):
    before = json.loads((bundle / MANIFEST_NAME).read_text())
    assert (before["default_method"], before["default_word_level"]) == ("softmax", "any")
    paper = _align(bundle, gold_dir, tmp_path / "paper.txt")
    # only argmax/mean is offered, so the written setting differs from the bundle's default
    assert main(["tune", str(bundle), "--gold-dir", str(gold_dir), "--src-lang", LANGS[0], "--tgt-lang", LANGS[1],
                 "--methods", "argmax", "--word-levels", "mean", "--provider", "cpu", "--first", "50", "--write",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["written"] and (report["best"]["method"], report["best"]["word_level"]) == ("argmax", "mean")

    after = json.loads((bundle / MANIFEST_NAME).read_text())
    assert {k: v for k, v in after.items() if k not in CHANGED} == {k: v for k, v in before.items() if k not in CHANGED}
    assert (after["default_method"], after["default_word_level"]) == ("argmax", "mean")
    assert after["default_threshold"] == before["default_threshold"]  # still the softmax default
    assert after["default_tuning"] == {"gold": "gold", "pairs": "1-50", "graph": "fp32", "tool": "transalign tune",
                                       "aer": round(report["best"]["aer"], 4),
                                       "precision": round(report["best"]["precision"], 4),
                                       "recall": round(report["best"]["recall"], 4)}
    assert [p.name for p in bundle.iterdir() if p.name.startswith(".")] == []  # no temporary left
    manifest = Aligner.load(bundle, provider="cpu").manifest  # hashes still verify
    assert (manifest.default_method, manifest.default_word_level) == ("argmax", "mean")

    stored = _align(bundle, gold_dir, tmp_path / "stored.txt")
    explicit = _align(bundle, gold_dir, tmp_path / "explicit.txt", "--method", "argmax", "--word-level", "mean")
    assert stored == explicit and stored != paper
    back = _align(bundle, gold_dir, tmp_path / "back.txt", "--method", "softmax", "--word-level", "any")
    assert back == paper  # softmax without --threshold: the stored softmax default, unchanged


def test_write_default_stores_a_softmax_threshold(bundle, gold_dir):
    manifest = write_default(bundle, Extraction("softmax", "mean", 0.25), {"gold": "test"})
    assert manifest == read_manifest(bundle)
    assert (manifest.default_method, manifest.default_word_level, manifest.default_threshold) == ("softmax", "mean", 0.25)
    aligner = Aligner.load(bundle, provider="cpu")
    src = [s.split() for s in (gold_dir / "src.txt").read_text(encoding="utf-8").splitlines()]
    tgt = [s.split() for s in (gold_dir / "tgt.txt").read_text(encoding="utf-8").splitlines()]
    default = aligner.align(src, tgt, *LANGS)
    assert default == aligner.align(src, tgt, *LANGS, 0.25, method="softmax", word_level="mean")
    assert default != aligner.align(src, tgt, *LANGS, 0.001, method="softmax", word_level="any")


def test_write_default_refuses_before_writing(bundle):
    text = (bundle / MANIFEST_NAME).read_text()
    # not an Extraction (which checks itself): the manifest's own checks run before the write
    for setting, field in ((SimpleNamespace(method="softmax", word_level="any", threshold=1.5), "default_threshold"),
                           (SimpleNamespace(method="max", word_level="any", threshold=None), "default_method")):
        with pytest.raises(BundleError, match=f"field '{field}'"):
            write_default(bundle, setting)
        assert (bundle / MANIFEST_NAME).read_text() == text
    data = json.loads(text)
    data["tokenizer"]["eos_id"] = -1
    (bundle / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(BundleError, match="field 'tokenizer.eos_id'"):
        write_default(bundle, Extraction("argmax", "any", 0.001))
    assert json.loads((bundle / MANIFEST_NAME).read_text()) == data


def test_tune_first_is_checked(bundle, gold_dir, capsys):
    assert main(["tune", str(bundle), "--gold-dir", str(gold_dir), "--first", "61"]) == 2
    assert "--first 61" in capsys.readouterr().err


def test_tune_without_write_leaves_the_bundle_alone(bundle, gold_dir, capsys):
    text = (bundle / MANIFEST_NAME).read_text()
    assert main(["tune", str(bundle), "--gold-dir", str(gold_dir), "--src-lang", LANGS[0], "--tgt-lang", LANGS[1],
                 "--methods", "argmax", "--provider", "cpu"]) == 0
    assert "(or store it: --write)" in capsys.readouterr().out
    assert (bundle / MANIFEST_NAME).read_text() == text


def test_export_stores_the_extraction_flags(tiny_nllb, tmp_path, capsys):
    out = tmp_path / "b"
    assert main(["export", str(tiny_nllb), "-o", str(out), "--layer", "2", "--precision", "fp32",
                 "--method", "itermax", "--word-level", "mean", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    manifest = read_manifest(out)
    assert (manifest.default_method, manifest.default_word_level) == ("itermax", "mean")
    assert manifest.default_threshold == 0.001 and manifest.default_tuning is None  # softmax's, the family's
    assert printed == {"bundle": str(out), "manifest": manifest.to_json()}


def test_nllb_export_keeps_the_papers_rule(tiny_bundle):
    m = read_manifest(tiny_bundle)
    assert (m.family, m.default_method, m.default_word_level, m.default_threshold) == ("nllb", "softmax", "any", 0.001)


def test_export_refuses_a_threshold_for_another_method_before_any_work(tiny_nllb, tmp_path, capsys):
    out = tmp_path / "b"
    assert main(["export", str(tiny_nllb), "-o", str(out), "--method", "argmax", "--threshold", "0.1"]) == 2
    assert "threshold applies to method softmax only" in capsys.readouterr().err and not out.exists()


def test_tune_write_says_what_it_stored(bundle, gold_dir, capsys):
    assert main(["tune", str(bundle), "--gold-dir", str(gold_dir), "--src-lang", LANGS[0], "--tgt-lang", LANGS[1],
                 "--methods", "itermax", "--word-levels", "any", "--provider", "cpu", "--write"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("best: itermax/any (AER ") and f"stored as the default of {bundle}" in last
    assert read_manifest(bundle).default_method == "itermax"


def test_tune_language_errors_name_the_flag(bundle, gold_dir, capsys):
    text = (bundle / MANIFEST_NAME).read_text()
    assert main(["tune", str(bundle), "--gold-dir", str(gold_dir), "--src-lang", "ces_Latm", "--tgt-lang", LANGS[1],
                 "--provider", "cpu", "--write"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("transalign tune: error: --src-lang") and "ces_Latn" in err  # the close match
    assert (bundle / MANIFEST_NAME).read_text() == text
