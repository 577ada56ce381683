"""Issue 12, parts 3-5: bundles stay inside themselves, bounded resources, one reader, messages."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import transalign
from measurements import record
from transalign.cli import main
from transalign.engine.aligner import Aligner, NonFiniteError, TooLongError
from transalign.engine.bundle import MANIFEST_NAME, BundleError, read_manifest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_bert_bundle(tmp_path_factory):
    """A tiny random BERT bundle (no language codes), fp32."""
    from fixture_bert import bert_cache_key, build_tiny_bert
    from fixture_models import cached_dir

    from transalign.export.api import export_bundle

    model = cached_dir(ROOT / ".cache" / "fixtures", f"tiny-bert-{bert_cache_key()}", build_tiny_bert)
    out = tmp_path_factory.mktemp("bert") / "bundle"
    export_bundle(str(model), out, layer=2)
    return out


@pytest.fixture()
def bundle_copy(tiny_bundle, tmp_path):
    """A private copy of the tiny bundle (fp32 + tokenizer only) whose manifest a test may edit."""
    from test_bundle_ranges import fp32_copy

    return fp32_copy(tiny_bundle, tmp_path / "bundle")


def _edit(bundle: Path, change) -> None:
    path = bundle / MANIFEST_NAME
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# ---------------------------------------------------------------- bundles stay inside


@pytest.mark.parametrize("name", ["/etc/hostname", "../outside.model", "sub/dir.model", ".."])
def test_tokenizer_path_must_be_a_plain_name(bundle_copy, name):
    _edit(bundle_copy, lambda m: m["tokenizer"].update(file=name))
    with pytest.raises(BundleError, match="not a plain file name inside the bundle"):
        Aligner.load(bundle_copy, provider="cpu")


def test_files_outside_the_bundle_are_not_probed(bundle_copy):
    _edit(bundle_copy, lambda m: m["files"].update({"../../etc/passwd": "0" * 64}))
    with pytest.raises(BundleError, match="not a plain file name"):
        read_manifest(bundle_copy)


def test_empty_or_partial_files_table_is_an_error(bundle_copy):
    tokenizer = json.loads((bundle_copy / MANIFEST_NAME).read_text())["tokenizer"]["file"]
    _edit(bundle_copy, lambda m: m["files"].pop(tokenizer))
    with pytest.raises(BundleError, match=f"{tokenizer} is used by the runtime but not listed"):
        Aligner.load(bundle_copy, provider="cpu", verify=False)
    _edit(bundle_copy, lambda m: m.update(files={}))
    with pytest.raises(BundleError, match="'files' table is empty"):
        Aligner.load(bundle_copy, provider="cpu", verify=False)


def test_symlink_leaving_the_bundle_is_refused(bundle_copy, tmp_path):
    tokenizer = json.loads((bundle_copy / MANIFEST_NAME).read_text())["tokenizer"]["file"]
    outside = tmp_path / "elsewhere.model"
    shutil.move(bundle_copy / tokenizer, outside)
    (bundle_copy / tokenizer).symlink_to(outside)
    with pytest.raises(BundleError, match="symlink that leaves the bundle"):
        Aligner.load(bundle_copy, provider="cpu")


@pytest.mark.parametrize("field,value,message", [
    ("layer", "12", "'layer' must be an integer"),
    ("default_threshold", None, "'default_threshold' must be a number"),
    ("files", [], "'files' must be an object"),
    ("tokenizer.pad_id", 1.5, "'tokenizer.pad_id' must be an integer"),
    ("tokenizer.lang_code_ids", {"eng_Latn": "x"}, "'tokenizer.lang_code_ids' must be an object of string -> integer"),
    ("precisions.fp32", {"file": "../model.onnx"}, "'precisions.fp32' must be an object with file 'model.onnx'"),
])
def test_manifest_types_are_checked_with_a_clear_error(bundle_copy, field, value, message):
    def change(data):
        parts = field.split(".")
        target = data
        for part in parts[:-1]:
            target = target[part]
        target[parts[-1]] = value

    _edit(bundle_copy, change)
    with pytest.raises(BundleError, match=message):
        read_manifest(bundle_copy)


def test_non_finite_hidden_states_are_an_error_naming_the_pair(tiny_bundle):
    aligner = Aligner.load(tiny_bundle, provider="cpu")
    real_run = aligner.session.run

    src = ["a b", "a much longer source sentence here", "c"]
    longest = max(len(ids) for ids, _ in aligner.tokenizer.encode_batch([s.split() for s in src], "eng_Latn"))

    class Poisoned:
        """NaN in the row of the one sequence with ``longest`` tokens, whichever batch holds it."""

        def run(self, names, feed):
            out = real_run(names, feed)[0].copy()
            for row in np.flatnonzero(feed["attention_mask"].sum(1) == longest):
                out[row, 1, 0] = np.nan
            return [out]

    aligner.encoder.session = Poisoned()  # the engine's one ONNX Runtime caller (engine.encoder)
    with pytest.raises(NonFiniteError, match="pair 1: the encoder produced NaN or infinite values for the source"):
        aligner.align(src, ["x", "y", "z"], "eng_Latn", "ces_Latn")


# ---------------------------------------------------------------- bounded resources


def test_hopeless_sentence_is_refused_before_tokenization(tiny_bundle):
    aligner = Aligner.load(tiny_bundle, provider="cpu")
    seen = []
    real = aligner.tokenizer.encode_batch

    class Recording:
        def encode_batch(self, sentences, lang):
            seen.extend(len(s) for s in sentences)
            return real(sentences, lang)

        def check_lang(self, lang):
            aligner_tokenizer.check_lang(lang)

    aligner_tokenizer = aligner.tokenizer
    aligner.preparer.tokenizer = Recording()  # engine.prepare tokenizes
    huge = ["word"] * 1_000_000
    with pytest.raises(TooLongError) as info:
        aligner.align([["ok"], huge], [["x"], ["y"]], "eng_Latn", "ces_Latn")
    assert info.value.pair == 1 and info.value.side == "source"
    assert max(seen) < 10  # the million-word sentence never reached the tokenizer
    [skipped] = [r for r in aligner.align([huge], [["y"]], "eng_Latn", "ces_Latn", on_too_long="skip")]
    assert skipped.skipped == "too_long"


@pytest.mark.parametrize("budget", [0, -5, 10**9, 2.5, True])
def test_absurd_batch_budgets_are_clear_errors(tiny_bundle, budget):
    aligner = Aligner.load(tiny_bundle, provider="cpu")
    with pytest.raises(ValueError, match="batch_tokens .* must be an integer in 1..65536"):
        aligner.align(["a"], ["b"], "eng_Latn", "ces_Latn", batch_tokens=budget)


def test_threads_are_checked_and_clamped(tiny_bundle):
    import os

    cores = len(os.sched_getaffinity(0))
    with pytest.raises(ValueError, match="threads 0: must be an integer >= 1"):
        Aligner.load(tiny_bundle, provider="cpu", threads=0)
    with pytest.warns(UserWarning, match=f"threads {cores + 62} is more than the {cores} cores available"):
        aligner = Aligner.load(tiny_bundle, provider="cpu", threads=cores + 62)
    assert aligner.align(["a b"], ["x y"], "eng_Latn", "ces_Latn")[0].links


def test_cli_batch_tokens_zero_is_a_clear_error(tmp_path, tiny_bundle, capsys):
    src, tgt = tmp_path / "s.txt", tmp_path / "t.txt"
    src.write_text("a\n")
    tgt.write_text("b\n")
    assert main(["align", str(tiny_bundle), "--src", str(src), "--tgt", str(tgt), "--src-lang", "eng_Latn",
                 "--tgt-lang", "ces_Latn", "--batch-tokens", "0"]) == 2
    assert "must be an integer in 1..65536" in capsys.readouterr().err


def test_progress_runs_every_encoder_batch(tiny_bundle):
    aligner = Aligner.load(tiny_bundle, provider="cpu")
    calls = []
    aligner.align(["a b c"] * 50, ["x y"] * 50, "eng_Latn", "ces_Latn", batch_tokens=64, progress=calls.append)
    assert len(calls) > 3 and sum(calls) == 100  # 100 sentences, in several batches, all counted


def _peak_rss_mb(tmp_path, bundle, pairs: int) -> float:
    line = "Ne bɛ taa sugu la .\n"
    src, tgt = tmp_path / f"s{pairs}.txt", tmp_path / f"t{pairs}.txt"
    src.write_text(line * pairs, encoding="utf-8")
    tgt.write_text("I am going to the market .\n" * pairs, encoding="utf-8")
    code = ("import sys, resource; from transalign.cli import main; rc = main(sys.argv[1:]); "
            "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1], file=sys.stderr); "
            "sys.exit(rc)")
    run = subprocess.run([sys.executable, "-c", code, "align", str(bundle), "--src", str(src), "--tgt", str(tgt),
                          "--src-lang", "bam_Latn", "--tgt-lang", "eng_Latn", "--precision", "int8",
                          "-o", str(tmp_path / f"out{pairs}.txt")], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert len((tmp_path / f"out{pairs}.txt").read_text().splitlines()) == pairs
    return int(run.stderr.strip().splitlines()[-1]) / 1024


@pytest.mark.slow
def test_align_memory_is_flat_in_the_input_size(tmp_path, tiny_bundle):
    small, large = _peak_rss_mb(tmp_path, tiny_bundle, 5_000), _peak_rss_mb(tmp_path, tiny_bundle, 50_000)
    record(f"align peak RSS (tiny bundle, int8): 5,000 pairs {small:.0f} MB, 50,000 pairs {large:.0f} MB "
           f"({large / small:.2f}x)")
    assert large <= 1.3 * small


# ---------------------------------------------------------------- one reader, messages

ODD_LINES = ["plain words", "\u00a0", "a\x0cb", "c\x85d", "e\x0bf", "g\rh", "", "last"]


def test_every_command_reads_the_same_lines(tmp_path):
    """align's sentence reader, eval's alignment reader and project's CoNLL reader agree."""
    from transalign.formats.alignments import iter_lines
    from transalign.formats.text import iter_sentences, read_sentences
    from transalign.projection import _conll_sentences

    path = tmp_path / "odd.txt"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(ODD_LINES).encode() + b"\n")
    sentences = read_sentences(path)
    assert len(sentences) == len(ODD_LINES) == sum(1 for _ in iter_lines(path))
    assert sentences[1] == [] and sentences[3] == ["c", "d"] and sentences[5] == ["g", "h"]
    conll_align = [words for _, words in iter_sentences(path, "conll")]
    conll_project = [tokens for _, tokens, _ in _conll_sentences(path, labelled=False)]
    assert conll_align == conll_project and [w for s in conll_align for w in s][0] == "plain"
    bom_only = tmp_path / "bom.txt"
    bom_only.write_bytes(b"\xef\xbb\xbf")
    assert read_sentences(bom_only) == [[]] and [t for _, t in iter_lines(bom_only)] == [""]


def test_cli_names_the_missing_language_flag(tmp_path, tiny_bundle, capsys):
    src, tgt = tmp_path / "s.txt", tmp_path / "t.txt"
    src.write_text("a\n")
    tgt.write_text("b\n")
    assert main(["align", str(tiny_bundle), "--src", str(src), "--tgt", str(tgt), "--tgt-lang", "ces_Latn"]) == 2
    assert "--src-lang is required: this m2m100 bundle starts every source sentence with its language code" in capsys.readouterr().err


def test_language_suggestions_ignore_case(tiny_bundle):
    aligner = Aligner.load(tiny_bundle, provider="cpu")
    with pytest.raises(ValueError, match="closest: ces_Latn"):
        aligner.align(["a"], ["b"], "eng_Latn", "CES_latn")


def test_language_codes_for_a_bundle_without_codes_warn(tiny_bert_bundle):
    aligner = Aligner.load(tiny_bert_bundle, provider="cpu")
    with pytest.warns(UserWarning, match="language codes 'eng_Latn'/None are ignored"):
        with_codes = aligner.align(["a b"], ["c d"], "eng_Latn")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert aligner.align(["a b"], ["c d"]) == with_codes


def test_public_names_are_listed():
    assert {"Aligner", "AlignResult", "export_bundle", "evaluate_alignments", "project_labels"} <= set(dir(transalign))


def test_align_help_documents_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit):
        main(["align", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--provider", "--precision", "--batch-tokens", "--threads", "--input-format", "--output-format",
                 "--method", "--word-level", "--progress", "--threshold", "-o"):
        start = text.index(flag + " ", text.index("options:"))
        assert "default" in text[start:start + 400], flag
