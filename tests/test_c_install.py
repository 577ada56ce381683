"""`make install-c PREFIX=DIR` and the documented C example built against the installed copy
(issue 26.3): headers, libraries, pkg-config file and tool land in DIR/include, lib,
lib/pkgconfig, bin; `cc app.c $(pkg-config --cflags --libs transalign)` builds the example of
docs/c-library.md as written, and it runs from any directory and prints the Python engine's links.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from transalign import Aligner

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "c-library.md"


@pytest.fixture(scope="module")
def prefix(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prefix") / "usr"
    run = subprocess.run(["make", "-j2", "install-c", f"PREFIX={out}", f"PYTHON={sys.executable}"], cwd=ROOT,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return out


def test_install_layout(prefix):
    for name in ("include/transalign.h", "lib/libtransalign.so.0", "lib/libtransalign.so", "lib/libtransalign.a",
                 "lib/pkgconfig/transalign.pc", "bin/transalign-align"):
        assert (prefix / name).exists(), name
    pc = (prefix / "lib" / "pkgconfig" / "transalign.pc").read_text()
    assert f"prefix={prefix}" in pc and "includedir=${prefix}/include" in pc and "libdir=${exec_prefix}/lib" in pc
    assert re.search(r"^Libs: .*-ltransalign", pc, re.M) and re.search(r"^Requires.private: ", pc, re.M)


def example_source() -> tuple[str, str]:
    """The first C program of docs/c-library.md and the bundle path its ta_open names."""
    blocks = re.findall(r"```c\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert blocks, f"no ```c block in {DOC}"
    source = blocks[0]
    bundle = re.search(r'ta_open\("([^"]+)"', source)
    assert bundle, "the example opens no bundle by name"
    return source, bundle.group(1)


def test_the_documented_example_builds_with_pkg_config_and_runs_anywhere(prefix, tiny_bundle, tmp_path):
    """Run with the bundle it names being the tests' tiny NLLB bundle (NLLB takes the codes)."""
    app = build_example(prefix, tmp_path)
    run_example(app, tiny_bundle, tmp_path / "elsewhere")


def test_the_documented_example_on_the_demo_bundle(prefix, tmp_path):
    """...and the real demo bundle (multilingual-e5-small), built as `make demo` builds it."""
    from test_c_xlmr import demo_bundle_copy

    bundle = demo_bundle_copy(tmp_path)
    run_example(build_example(prefix, tmp_path), bundle, tmp_path / "demo-run")


def build_example(prefix: Path, tmp_path: Path) -> Path:
    source, _ = example_source()
    app = tmp_path / "build" / "app"
    app.parent.mkdir()
    (app.parent / "app.c").write_text(source, encoding="utf-8")
    env = dict(os.environ, PKG_CONFIG_PATH=str(prefix / "lib" / "pkgconfig"))
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "transalign"], env=env, capture_output=True, text=True)
    assert flags.returncode == 0, flags.stderr
    assert str(prefix / "include") in flags.stdout and str(prefix / "lib") in flags.stdout
    build = subprocess.run(["cc", "-std=c99", "-Wall", "-Werror", "app.c", *flags.stdout.split(), "-o", "app"],
                           cwd=app.parent, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    ldd = subprocess.run(["ldd", str(app)], capture_output=True, text=True).stdout
    assert str(prefix / "lib" / "libtransalign.so.0") in ldd, ldd
    return app


def run_example(app: Path, bundle: Path, elsewhere: Path) -> None:
    """Run `app` in `elsewhere`, where the path its ta_open names leads to `bundle`; it must print
    the Python engine's links for its pair."""
    source, bundle_name = example_source()
    (elsewhere / Path(bundle_name).parent).mkdir(parents=True, exist_ok=True)
    (elsewhere / bundle_name).symlink_to(bundle, target_is_directory=True)  # the bundle the example names
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    run = subprocess.run([str(app)], cwd=elsewhere, capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    words = [re.findall(r'"([^"]*)"', m) for m in re.findall(r"const char \*\w+\[\] = \{([^}]*)\}", source)]
    assert len(words) == 2, source
    precision = re.search(r'options\.precision = "(\w+)"', source)
    langs = re.search(r'ta_align\(aligner, &src, &tgt, 1, ("?\w+"?), ("?\w+"?)', source)
    src_lang, tgt_lang = (None if v == "NULL" else v.strip('"') for v in langs.groups())
    python = Aligner.load(bundle, provider="cpu", precision=precision.group(1) if precision else "fp32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # codes given to a bundle without any: ignored, as in C
        links = python.align([words[0]], [words[1]], src_lang, tgt_lang)[0].links
    assert links and run.stdout == " ".join(f"{i}-{j}" for i, j in links) + "\n"


def test_the_installed_tool_runs_from_any_directory(prefix, tiny_bundle, tmp_path):
    (tmp_path / "s.txt").write_text("Ne bɛ taa\n", encoding="utf-8")
    (tmp_path / "t.txt").write_text("I am going\n", encoding="utf-8")
    tool = tmp_path / "copy" / "transalign-align"
    tool.parent.mkdir()
    shutil.copy(prefix / "bin" / "transalign-align", tool)
    run = subprocess.run([str(tool), str(tiny_bundle), "--src", "s.txt", "--tgt", "t.txt", "--src-lang", "bam_Latn",
                          "--tgt-lang", "eng_Latn", "--threads", "1"], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.count("\n") == 1, run.stderr


def test_the_readme_c_example_runs_as_written(prefix, tmp_path):
    """README.md's C example (the block after `<!-- c-example -->`), built against `make install-c`'s
    copy with pkg-config exactly as its shell block shows, run as `./app .cache/bundles/e5-small-l6`
    on the bundle `make demo` builds: it prints the Python engine's links for its pair."""
    from test_c_xlmr import demo_bundle_copy

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("<!-- c-example -->", 1)[1]
    shell, source = re.search(r"```bash\n(.*?)```\s*```c\n(.*?)```", section, re.S).groups()
    run_line = next(line for line in shell.splitlines() if line.startswith("./app "))
    bundle_arg = run_line.split()[1]
    assert "pkg-config --cflags --libs transalign" in shell and bundle_arg == ".cache/bundles/e5-small-l6"
    build = tmp_path / "readme"
    build.mkdir()
    (build / "app.c").write_text(source, encoding="utf-8")
    env = dict(os.environ, PKG_CONFIG_PATH=str(prefix / "lib" / "pkgconfig"))
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "transalign"], env=env, capture_output=True,
                           text=True, check=True).stdout.split()
    made = subprocess.run(["cc", "app.c", *flags, "-o", "app"], cwd=build, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    bundle = demo_bundle_copy(tmp_path)
    (build / ".cache" / "bundles").mkdir(parents=True)
    (build / bundle_arg).symlink_to(bundle, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    run = subprocess.run(["./app", bundle_arg], cwd=build, capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    words = [re.findall(r'"([^"]*)"', m) for m in re.findall(r"const char \*\w+\[\] = \{([^}]*)\}", source)]
    links = Aligner.load(bundle, provider="cpu").align([words[0]], [words[1]])[0].links
    assert links and run.stdout == " ".join(f"{i}-{j}" for i, j in links) + "\n"
    assert "# " + run.stdout.strip() in run_line  # the output the README shows is the real one
