"""Atomic bundle writing: build in a sibling temp dir, then rename into place.

A crash or a failed validation leaves at most a hidden ``.name.partial-*`` directory, never a
directory with a manifest that looks valid. The manifest is the last file written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from transalign.engine.bundle import MANIFEST_NAME, Manifest
from transalign.export.errors import ExportError
from transalign.outputs import process_umask as _umask
from transalign.outputs import replace_directory


def check_output(out: Path, force: bool) -> None:
    """Fail before any expensive work if the output cannot be written."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"output {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MANIFEST_NAME).is_file():
            shown = sorted(p.name for p in out.iterdir())
            listing = ", ".join(shown[:5]) + (f" and {len(shown) - 5} more" if len(shown) > 5 else "")
            raise ExportError(f"output directory {out} is not empty and is not a transalign bundle (no {MANIFEST_NAME}; "
                              f"it holds {listing}); refusing to replace it even with --force: choose another "
                              "directory")
        if not force:
            raise ExportError(f"output directory {out} already holds a bundle; pass --force to replace it")
    parent = out.parent if str(out.parent) else Path(".")
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ExportError(f"cannot write {out}: {probe} is not writable")


def staging_dir(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it private; a bundle is meant to be shared
    return staging


def finish(staging: Path, out: Path, manifest: Manifest) -> None:
    """Write the manifest last, then swap the staging dir into place."""
    _shareable(staging)
    text = json.dumps(manifest.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    (staging / MANIFEST_NAME).write_text(text, encoding="utf-8")
    replace_directory(staging, out)


def _shareable(staging: Path) -> None:
    """Some writers (onnx's external data) create files readable by their owner only; a bundle
    is meant to be shared, so every file gets the usual umask-based permissions."""
    umask = _umask()
    for file in staging.iterdir():
        if file.is_file():
            os.chmod(file, 0o666 & ~umask)


def discard(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)
