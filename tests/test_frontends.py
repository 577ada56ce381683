"""One policy, every front end (issue 25): the same bad language code, threshold and token budget
give the same class of error from `align`, `align-corpus` (in process and `--ray`), `serve`
(start-up flags and request fields), `bench`, `tune`, `project-with` and the C tool, each naming
its own flag or field and stating the engine's rule (`transalign.engine.options`) in the same
words, before any work is done.

The expected words are the engine's own, read from an `OptionError` it raises in this test, so
a change of the rule's text changes every front end's expectation at once.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from transalign.cli import main
from transalign.engine.bundle import read_manifest
from transalign.engine.options import LoadOptions, OptionError, resolve_extraction, resolve_languages

ROOT = Path(__file__).resolve().parents[1]
LANGS = ("eng_Latn", "ces_Latn")
BAD = {"language": "xyz", "threshold": "1.5", "budget": "100000"}


def engine_reason(tiny_bundle: Path, case: str) -> str:
    """The engine's words for the rule ``case`` breaks (what every front end must say)."""
    manifest = read_manifest(tiny_bundle, verify_hashes=False)
    with pytest.raises(OptionError) as info:
        if case == "language":
            resolve_languages(manifest, BAD["language"], LANGS[1])
        elif case == "threshold":
            resolve_extraction(manifest, threshold=float(BAD["threshold"]))
        else:
            LoadOptions(batch_tokens=int(BAD["budget"]))
    return info.value.reason.split(";")[0].split(" (")[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("frontends")
    (root / "src.txt").write_text("a b c\nd e\n", encoding="utf-8")
    (root / "tgt.txt").write_text("x y\nz\n", encoding="utf-8")
    (root / "corpus.txt").write_text("a b c ||| x y\nd e ||| z\n", encoding="utf-8")
    gold = root / "gold"
    gold.mkdir()
    for name, text in (("src.txt", "a b c\nd e\n"), ("tgt.txt", "x y\nz\n"), ("gold.txt", "0-0 1-1\n0-0\n")):
        (gold / name).write_text(text, encoding="utf-8")
    conll = root / "labeled.conll"
    conll.write_text("a B-PER\nb O\n\nc O\n\n", encoding="utf-8")
    (root / "unlabeled.conll").write_text("x\ny\n\nz\n\n", encoding="utf-8")
    return root


def flags_for(case: str, threshold_flag: str = "--threshold", budget_flag: str = "--batch-tokens"):
    """(arguments, the flag the error must name) of a front end whose flags are the usual ones."""
    if case == "language":
        return ["--src-lang", BAD["language"], "--tgt-lang", LANGS[1]], "--src-lang"
    if case == "threshold":
        return ["--src-lang", LANGS[0], "--tgt-lang", LANGS[1], threshold_flag, BAD["threshold"]], threshold_flag
    return ["--src-lang", LANGS[0], "--tgt-lang", LANGS[1], budget_flag, BAD["budget"]], budget_flag


def cli_case(front: str, case: str, bundle: Path, files: Path, tmp: Path) -> tuple[list[str], str]:
    """The `transalign` command line of ``front`` breaking ``case``, and the flag it must name."""
    out = str(tmp / f"{front}-{case}.out")
    if front == "tune":
        extra, flag = flags_for(case, threshold_flag="--thresholds")
        return ["tune", str(bundle), "--gold-dir", str(files / "gold"), *extra], flag
    extra, flag = flags_for(case)
    if front == "align":
        return ["align", str(bundle), "--src", str(files / "src.txt"), "--tgt", str(files / "tgt.txt"), "-o", out,
                *extra], flag
    if front in ("align-corpus", "align-corpus --ray"):
        ray = ["--ray", "--workers", "1"] if front.endswith("--ray") else []
        return ["align-corpus", str(bundle), str(files / "corpus.txt"), "-o", out, "--quiet", *ray, *extra], flag
    if front == "project-with":
        return ["project-with", str(bundle), str(files / "labeled.conll"), str(files / "unlabeled.conll"), "-o", out,
                *extra], flag
    if front == "bench":
        return ["bench", str(bundle), "--synthetic", "4", "--latency-pairs", "0", "--repeat", "1", *extra], flag
    if front == "serve":
        return ["serve", str(bundle), "--port", "0", "--provider", "cpu", "--batch-tokens", BAD["budget"]], \
            "--batch-tokens"
    raise AssertionError(front)


# bench measures speed with the bundle's extraction (no threshold flag); serve takes languages and
# thresholds per request (test_serve_request_fields) and its budgets as start-up flags
CASES = [(front, case) for front in ("align", "align-corpus", "align-corpus --ray", "project-with", "tune")
         for case in ("language", "threshold", "budget")] + \
    [("bench", "language"), ("bench", "budget"), ("serve", "budget")]


@pytest.mark.parametrize("front,case", CASES)
def test_cli_front_ends_name_their_flag_with_the_engines_words(front, case, tiny_bundle, files, tmp_path, capsys):
    argv, flag = cli_case(front, case, tiny_bundle, files, tmp_path)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, (argv, err)
    reason = engine_reason(tiny_bundle, case)
    assert f"error: {flag} " in err and reason in err and "Traceback" not in err, (argv, err)
    assert not list(tmp_path.glob("*.out")) or not any(p.stat().st_size for p in tmp_path.glob("*.out"))


def test_serve_start_up_refuses_a_merge_budget_the_engine_cannot_take(tiny_bundle, capsys):
    assert main(["serve", str(tiny_bundle), "--port", "0", "--provider", "cpu", "--max-batch-tokens",
                 BAD["budget"]]) == 2
    assert "--max-batch-tokens" in capsys.readouterr().err


@pytest.mark.parametrize("case", ("language", "threshold"))
def test_serve_request_fields(case, tiny_bundle):
    """The service names the JSON field, with a 4xx and the engine's words."""
    from fastapi.testclient import TestClient

    from transalign.serve import ServeConfig, create_app

    body = {"pairs": [{"src": "a b", "tgt": "x y"}], "src_lang": LANGS[0], "tgt_lang": LANGS[1]}
    field = "src_lang" if case == "language" else "threshold"
    body[field] = BAD["language"] if case == "language" else float(BAD["threshold"])
    from test_serve import wait_ready

    with TestClient(create_app(ServeConfig(tiny_bundle, provider="cpu"))) as client:
        wait_ready(client.get)
        response = client.post("/v1/align", json=body)
    assert 400 <= response.status_code < 500, response.text
    message = response.json()["error"]["message"]
    assert field in message and engine_reason(tiny_bundle, case) in message, message


@pytest.fixture(scope="module")
def c_tool():
    """The C tool, built by `make c` like tests/test_c_library.py does."""
    import sys

    result = subprocess.run(["make", "-j2", "c", f"PYTHON={sys.executable}"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    tool = ROOT / "build" / "c" / "transalign-align"
    assert tool.is_file()
    return tool


@pytest.mark.parametrize("case", ("language", "threshold", "budget"))
def test_the_c_tool_names_its_flag_with_the_engines_words(case, c_tool, tiny_bundle, files, tmp_path):
    extra, flag = flags_for(case)
    out = tmp_path / "c.out"
    run = subprocess.run([str(c_tool), str(tiny_bundle), "--src", str(files / "src.txt"), "--tgt",
                          str(files / "tgt.txt"), "--provider", "cpu", *extra, "-o", str(out)],
                         capture_output=True, text=True)
    assert run.returncode != 0 and not out.exists(), run.stderr
    assert flag in run.stderr and engine_reason(tiny_bundle, case) in run.stderr, run.stderr


def test_the_c_tool_reads_languages_by_the_engines_rule(c_tool, tiny_bundle, files, tmp_path):
    """A bare ISO 639-3 code with one script is that code in C as in Python (`canonical_language`);
    a two-letter code gets the same advice."""
    def run(src_lang: str):
        return subprocess.run([str(c_tool), str(tiny_bundle), "--src", str(files / "src.txt"), "--tgt",
                               str(files / "tgt.txt"), "--provider", "cpu", "--src-lang", src_lang, "--tgt-lang",
                               "ces"], capture_output=True, text=True)

    bare, full = run("eng"), run("eng_Latn")
    assert bare.returncode == 0 and bare.stdout == full.stdout and full.stdout.count("\n") == 2, bare.stderr
    two = run("en")
    assert two.returncode != 0 and "--src-lang 'en': unknown language code" in two.stderr
    assert "two-letter ISO 639-1 codes are not used" in two.stderr
