"""The repository is self-contained (issue 26.1): everything the tests, the demo and the benchmarks
read lies under data/, every file there is accounted for in data/README.md (provenance, licence,
SHA-256), and no file of the project points at a folder beside the repository (../shared)."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
# ignored build state and tool folders (see .gitignore): not the project's files
SKIPPED_DIRS = {".git", ".venv", ".cache", "build", "dist", "__pycache__", ".pytest_cache", ".benchmarks", "work"}
TEXT_SUFFIXES = {".py", ".md", ".toml", ".txt", ".cfg", ".in", ".c", ".h", ".cpp", ".hpp", ".sh", ".pc", ".json", ""}
# a path to a folder beside the checkout: "../shared", or Path(...).parent / "shared" and the like
OUTSIDE = re.compile(r"\.\./shared\b|parents?(\[\d\])?\s*/\s*[\"']shared[\"']")


def _checksums() -> dict[str, str]:
    """The `SHA-256  path` lines of data/README.md's checksum block."""
    text = (DATA / "README.md").read_text(encoding="utf-8")
    return {path: digest for digest, path in re.findall(r"^([0-9a-f]{64})  (\S+)$", text, re.MULTILINE)}


def test_every_data_file_is_listed_with_its_checksum():
    on_disk = {p.relative_to(DATA).as_posix() for p in DATA.rglob("*") if p.is_file() and p.name != "README.md"}
    listed = _checksums()
    assert on_disk == set(listed), f"data/README.md lists {sorted(set(listed) - on_disk)} not on disk " \
                                   f"and misses {sorted(on_disk - set(listed))}"
    for path, digest in listed.items():
        assert hashlib.sha256((DATA / path).read_bytes()).hexdigest() == digest, path


def test_licences_are_kept_beside_the_data():
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    assert "CC BY-SA 4.0" in readme and "http://hdl.handle.net/11234/1-1804" in readme  # CzEnAli attribution
    authors = (DATA / "reference" / "LICENSE-transalign-apache-2.0.txt").read_text(encoding="utf-8")
    assert "Apache License" in authors and "Version 2.0" in authors
    project = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in project and "Version 2.0" in project
    assert "data/README.md" in (ROOT / "NOTICE").read_text(encoding="utf-8")


def _project_text_files():
    """(relative path, path) of the project's text files, pruning ignored folders and data/."""
    for folder, dirs, files in os.walk(ROOT):
        here = Path(folder)
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info")
                   and not (here == ROOT and d == "data")]
        for name in files:
            path = here / name
            if path.suffix in TEXT_SUFFIXES and path.stat().st_size < 2_000_000:
                yield path.relative_to(ROOT), path


def test_no_file_refers_to_a_folder_beside_the_repository():
    assert OUTSIDE.search('SHARED = ROOT.parent / "shared"') and OUTSIDE.search("see ../shared/gold")
    me = Path(__file__).resolve().relative_to(ROOT)
    hits = []
    for rel, path in _project_text_files():
        if rel == me:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        hits += [f"{rel}:{n}: {line.strip()}" for n, line in enumerate(text.splitlines(), 1) if OUTSIDE.search(line)]
    assert not hits, "files refer to ../shared (data lives in data/):\n" + "\n".join(hits)
