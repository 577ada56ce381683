"""The manifest of a corpus job: what OUTDIR holds and whether it may be resumed.

``OUTDIR/manifest.json`` records the input (path, format, size, sha256), the bundle (path and the
sha256 of its manifest, which itself lists the sha256 of every bundle file), every option that
can change a result, and the shards that are complete. It is rewritten atomically after each
shard, *after* that shard's file was renamed into place: a shard listed as complete is always
there and whole. A shard file that exists but is not listed (killed between the two renames) is
simply aligned and written again; the result is the same. With the rejects option each shard's
rejected rows go to ``rejects-0000k.jsonl``, renamed into place before the shard file, and the
manifest records their count per shard (``rejected``) when it lists the shard.

Resuming requires the same identity (input hash and format, bundle hash, options); anything
else is refused with the differences named, because mixing shards of two jobs would give a
result that no single run produces.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transalign.formats.alignments import atomic_open
from transalign.engine.bundle import MANIFEST_NAME, sha256_file

JOB_FORMAT = "transalign-corpus-job"
JOB_VERSION = 1
JOB_FILE = "manifest.json"


class JobError(ValueError):
    """OUTDIR cannot be used for this job (another job's output, different options...)."""


@dataclass
class JobManifest:
    input: dict[str, Any]
    bundle: dict[str, Any]
    options: dict[str, Any]
    completed: list[int] = field(default_factory=list)
    # start (byte offset or Parquet row, 1-based line) of the last completed shard of the
    # completed prefix, so a resume seeks there instead of re-reading the whole input
    last_start: dict[str, int] | None = None
    # rows set aside per complete shard ({"0": 2, ...}), with the rejects option only
    rejected: dict[str, int] = field(default_factory=dict)
    shards: int | None = None  # known once the whole input was read
    pairs: int | None = None  # output records: input rows less the rejected ones
    complete: bool = False
    format: str = JOB_FORMAT
    format_version: int = JOB_VERSION

    def identity(self) -> dict[str, Any]:
        return {"input": {k: self.input[k] for k in ("format", "size", "sha256")},
                "bundle": {"manifest_sha256": self.bundle["manifest_sha256"]}, "options": self.options}

    def save(self, outdir: Path) -> None:
        with atomic_open(outdir / JOB_FILE) as out:
            json.dump(asdict(self), out, indent=1, sort_keys=True)
            out.write("\n")

    @classmethod
    def load(cls, outdir: Path) -> "JobManifest":
        path = outdir / JOB_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise JobError(f"{path}: cannot read the job manifest ({exc})") from None
        if data.get("format") != JOB_FORMAT or data.get("format_version") != JOB_VERSION:
            raise JobError(f"{path} is not a version {JOB_VERSION} {JOB_FORMAT} manifest")
        return cls(**data)


def describe_job(input_path: Path, input_format: str, bundle: Path, options: dict[str, Any]) -> JobManifest:
    """A fresh manifest for this job (hashes the input once: a streaming read)."""
    return JobManifest(
        input={"path": str(input_path.resolve()), "format": input_format, "size": input_path.stat().st_size,
               "sha256": sha256_file(input_path)},
        bundle={"path": str(bundle.resolve()), "manifest_sha256": sha256_file(bundle / MANIFEST_NAME)},
        options=dict(options),
    )


def prepare_outdir(outdir: Path, job: JobManifest, resume: bool) -> JobManifest:
    """Create OUTDIR for ``job`` or, with ``resume``, reopen the same job there.

    Returns the manifest to continue from (``job`` itself for a fresh start). Refuses a
    non-empty OUTDIR without ``resume``, and a different job with it. Leftover temporary files
    of an interrupted run are removed.
    """
    outdir.mkdir(parents=True, exist_ok=True)
    if (outdir / JOB_FILE).exists():
        old = JobManifest.load(outdir)
        if not resume:
            raise JobError(f"{outdir} already holds a job ({len(old.completed)} shards complete, input "
                           f"{old.input['path']}); pass --resume to continue it, or choose an empty directory")
        differences = _differences(old.identity(), job.identity())
        if differences:
            raise JobError(f"{outdir} holds a different job; refusing to resume it with "
                           + "; ".join(differences) + " (use an empty directory for a new job)")
        _remove_temporaries(outdir)
        old.input["path"], old.bundle["path"] = job.input["path"], job.bundle["path"]
        return old
    leftovers = [p.name for p in outdir.iterdir() if not p.name.startswith(".")]
    if leftovers:
        raise JobError(f"{outdir} is not empty ({', '.join(sorted(leftovers)[:3])}...) and holds no "
                       f"{JOB_FILE}; choose an empty or new directory")
    _remove_temporaries(outdir)
    job.save(outdir)
    return job


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} {b!r} (the job has {a!r})")
    return out


def _remove_temporaries(outdir: Path) -> None:
    for path in outdir.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            os.unlink(path)
