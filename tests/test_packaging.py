"""Packaging (issue 26.7): `python -m build` gives an sdist and a wheel, and the wheel installed
into a fresh virtual environment runs `transalign --help` and aligns with the runtime
dependencies only, giving the links the in-repository Aligner gives.

How it is built: `python -m build --no-isolation` with this environment's setuptools (no index
needed), from a copy of the source tree without its ignored build state (.venv, .cache, build/,
*.egg-info), so neither a stale build nor the checkout's own files leak in. `build` makes the
sdist first and then the wheel *from the unpacked sdist*, so the sdist is proven complete too.

How the fresh environment gets its dependencies: `python -m venv` (no system site packages), then
`pip install WHEEL`, which resolves the wheel's *declared* dependencies from pip's configured
index, the same index `.ci/run` installs everything else from (a local mirror on the
development machines: about 15 s). Copying the development environment's packages instead would
be faster but would not test the metadata: a runtime dependency missing from pyproject.toml
only shows up here. torch is not among them, so the align path running in that environment
proves it needs no torch (also asserted: torch, transformers and peft are not installed there).
The environment is deleted at the end (it weighs about 450 MB).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

from measurements import record
from transalign.engine.aligner import Aligner
from transalign.formats.text import read_sentences

ROOT = Path(__file__).resolve().parents[1]
NAME, VERSION = "transalign", "0.1.0"
# ignored build state and what is not the package's (pyproject's packages.find takes transalign*)
NOT_COPIED = {".git", ".venv", ".cache", "build", "dist", "__pycache__", ".pytest_cache", ".benchmarks"}
NOT_PACKAGED = ("tests/", "data/", ".cache/", "tools/", "benchmarks/", "c/", "docs/", ".ci/", ".venv/")
N_PAIRS = 30  # csen pairs aligned in the fresh environment
LANGS = ("ces_Latn", "eng_Latn")

pytestmark = pytest.mark.slow  # about a minute: a build, a venv, a pip install, a numba JIT


def _copy_source(dest: Path) -> Path:
    """The source tree without the ignored build state, as a clone would have it."""
    def ignore(folder: str, names: list[str]) -> set[str]:
        return {n for n in names if n in NOT_COPIED or n.endswith(".egg-info")}
    shutil.copytree(ROOT, dest, ignore=ignore)
    return dest


def _run(args: list, **kwargs) -> subprocess.CompletedProcess:
    """A subprocess outside the repository (no PYTHONPATH, neutral cwd), failing with its output."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env, **kwargs)
    assert run.returncode == 0, f"{args} exited {run.returncode}\n{run.stdout}\n{run.stderr}"
    return run


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, Path]:
    """The sdist and the wheel `python -m build` makes from a copy of this source tree."""
    work = tmp_path_factory.mktemp("build")
    src = _copy_source(work / "src")
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", work / "dist", src], cwd=work, timeout=300)
    sdists = list((work / "dist").glob("*.tar.gz"))
    wheels = list((work / "dist").glob("*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, sorted((work / "dist").iterdir())
    return {"sdist": sdists[0], "wheel": wheels[0]}


def _package_sources() -> set[str]:
    """Every module of the package in this checkout, as a path relative to the repository."""
    return {p.relative_to(ROOT).as_posix() for p in (ROOT / "transalign").rglob("*.py")
            if "__pycache__" not in p.parts}


def test_wheel_holds_the_package_and_its_licences_only(dists):
    names = zipfile.ZipFile(dists["wheel"]).namelist()
    info = f"{NAME}-{VERSION}.dist-info/"
    strays = [n for n in names if not (n.startswith("transalign/") or n.startswith(info))]
    assert not strays, f"the wheel holds files outside the package: {strays}"
    assert not [n for n in names for bad in NOT_PACKAGED if f"/{bad}" in f"/{n}"]
    assert {n for n in names if n.endswith(".py")} == _package_sources()  # every module, nothing else
    assert not [n for n in names if n.startswith("transalign/") and not n.endswith(".py")]
    assert {info + "licenses/LICENSE", info + "licenses/NOTICE"} <= set(names)
    entry_points = zipfile.ZipFile(dists["wheel"]).read(info + "entry_points.txt").decode()
    assert "transalign = transalign.cli:main" in entry_points
    metadata = zipfile.ZipFile(dists["wheel"]).read(info + "METADATA").decode()
    assert "License-Expression: Apache-2.0" in metadata
    assert "torch" not in [line.split()[1].split(";")[0] for line in metadata.splitlines()
                           if line.startswith("Requires-Dist:") and "extra ==" not in line]
    record(f"packaging: wheel {dists['wheel'].name} {dists['wheel'].stat().st_size / 1e3:.0f} kB "
           f"({len(names)} files), sdist {dists['sdist'].stat().st_size / 1e3:.0f} kB")


def test_sdist_holds_the_source_and_its_licences_only(dists):
    top = f"{NAME}-{VERSION}/"
    with tarfile.open(dists["sdist"]) as tar:
        names = [m.name[len(top):] for m in tar.getmembers() if m.isfile()]
    assert {"pyproject.toml", "README.md", "LICENSE", "NOTICE"} <= set(names)
    assert _package_sources() <= set(names)
    assert not [n for n in names for bad in NOT_PACKAGED if n.startswith(bad)], names


def test_installed_wheel_aligns_without_torch(dists, tmp_path, tiny_bundle, data_dir):
    """In a fresh venv: `transalign --help`, then `transalign align` on csen pairs with the tiny
    bundle; its Pharaoh lines equal the in-repository Aligner's for the same pairs."""
    venv = tmp_path / "venv"
    try:
        _run([sys.executable, "-m", "venv", venv], timeout=120)
        python, cli = venv / "bin" / "python", venv / "bin" / "transalign"
        _run([python, "-m", "pip", "install", "-q", dists["wheel"]], cwd=tmp_path, timeout=900)

        help_text = _run([cli, "--help"], cwd=tmp_path, timeout=120).stdout
        assert "align" in help_text and "usage:" in help_text

        where = _run([python, "-c", textwrap.dedent("""
            import importlib.util, transalign
            print(transalign.__file__)
            print([m for m in ("torch", "transformers", "peft") if importlib.util.find_spec(m)])
        """)], cwd=tmp_path, timeout=120).stdout.splitlines()
        assert Path(where[0]).resolve().is_relative_to(venv.resolve()), where[0]  # the wheel's copy
        assert where[1] == "[]", f"the fresh environment has {where[1]}: the runtime must not need them"

        gold = data_dir / "gold" / "csen"
        src, tgt = tmp_path / "src.txt", tmp_path / "tgt.txt"
        for name, path in (("src.txt", src), ("tgt.txt", tgt)):
            lines = (gold / name).read_text(encoding="utf-8").splitlines()[:N_PAIRS]
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        out = tmp_path / "links.txt"
        _run([cli, "align", tiny_bundle, "--src", src, "--tgt", tgt, "--src-lang", LANGS[0],
              "--tgt-lang", LANGS[1], "--provider", "cpu", "-o", out], cwd=tmp_path, timeout=600)
    finally:
        shutil.rmtree(venv, ignore_errors=True)

    aligner = Aligner.load(tiny_bundle, provider="cpu")
    expected = [r.pharaoh() for r in aligner.align(read_sentences(src), read_sentences(tgt), *LANGS)]
    got = out.read_text(encoding="utf-8").splitlines()
    assert len(got) == N_PAIRS and any(got)
    assert got == expected
