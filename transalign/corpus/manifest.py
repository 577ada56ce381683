"""The manifest of a corpus job: what OUTDIR holds and whether it may be resumed.

``OUTDIR/manifest.json`` records the input (path, format, size, sha256), the bundle (path and the
sha256 of its manifest, which itself lists the sha256 of every bundle file), every option that
can change a result, and the shards that are complete, each with the size and sha256 of its file
and of its rejects part (``files``) as committed. It is rewritten atomically after each shard,
*after* that shard's files were renamed into place. A shard file that exists but is not listed
(killed between the renames) is simply aligned and written again; the result is the same.

Resuming requires the same identity (input hash and format, bundle hash, options); anything
else is refused with the differences named, because mixing shards of two jobs would give a
result that no single run produces. On resume every listed file is checked against its recorded
size and sha256 (`damaged_shards`): a shard whose file or rejects part was truncated, extended,
deleted, replaced by a directory or otherwise changed is aligned again, never trusted.

The manifest also lists the job's ``runs``: one entry per call that wrote shards, with what was
asked (provider, precision), what really ran (read back from the loaded Aligner: an ``auto``
that ran on the CPU records "cpu"; on Ray, every engine the workers reported) and the shards it
wrote. The provider is not part of the job's identity (a job may be resumed on another
provider), so `Run` warns when a resume runs on another engine than the shards it keeps; the
precision is part of the options, so a resume with another precision is refused.

The manifest is read strictly (`JobManifest.load`): an unknown field or a field of the wrong type
is an error naming it, not a traceback. Older versions are read and upgraded: version 1 (no
digests; its shards have nothing to be verified against and are aligned again) and version 2
(no ``runs``: what ran before is unknown, so nothing is compared with it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from datetime import datetime, timezone
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transalign.engine.bundle import MANIFEST_NAME
from transalign.outputs import open_output

JOB_FORMAT = "transalign-corpus-job"
JOB_VERSION = 3  # 3: runs (what ran); 2: file digests
JOB_FILE = "manifest.json"


class JobError(ValueError):
    """OUTDIR cannot be used for this job (another job's output, different options...)."""


@dataclass
class JobManifest:
    input: dict[str, Any]
    bundle: dict[str, Any]
    options: dict[str, Any]
    completed: list[int] = field(default_factory=list)
    # where each shard that was ever committed starts ({"3": {"pos": byte offset or Parquet row,
    # "lineno": 1-based line}}), so a resume seeks instead of re-reading the whole input
    starts: dict[str, dict[str, int]] = field(default_factory=dict)
    # rows set aside per complete shard ({"0": 2, ...}), with the rejects option only
    rejected: dict[str, int] = field(default_factory=dict)
    # size and sha256 of every committed file of a complete shard ({"part-00000.txt": {...}})
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    # one entry per call that wrote shards: {"started", "asked": {"provider", "precision"},
    # "ran": [{"provider", "precision"}, ...] (read back from the Aligner(s)), "shards": [k, ...]}
    runs: list[dict[str, Any]] = field(default_factory=list)
    shards: int | None = None  # known once the whole input was read
    pairs: int | None = None  # output records: input rows less the rejected ones
    complete: bool = False
    format: str = JOB_FORMAT
    format_version: int = JOB_VERSION

    def identity(self) -> dict[str, Any]:
        return {"input": {k: self.input[k] for k in ("format", "size", "sha256")},
                "bundle": {"manifest_sha256": self.bundle["manifest_sha256"]}, "options": self.options}

    def save(self, outdir: Path) -> None:
        with open_output(outdir / JOB_FILE) as out:
            json.dump(asdict(self), out, indent=1, sort_keys=True)
            out.write("\n")

    @classmethod
    def load(cls, outdir: Path) -> "JobManifest":
        path = outdir / JOB_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise JobError(f"{path}: cannot read the job manifest ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != JOB_FORMAT \
                or data.get("format_version") not in (1, 2, JOB_VERSION):
            raise JobError(f"{path} is not a version {JOB_VERSION} {JOB_FORMAT} manifest (nor an older version "
                           "this transalign reads)")
        if data["format_version"] < 3 and "runs" in data:  # an edited manifest, not one to trust
            raise JobError(f"{path}: unknown field 'runs' in a version {data['format_version']} manifest (it came "
                           "with version 3); this manifest was edited")
        if data["format_version"] == 1:
            data = _upgrade_v1(data)
        if data["format_version"] == 2:
            data = _upgrade_v2(data)
        check_fields(data, SCHEMA, path)
        return cls(**data)


# The manifest's fields and their types: a type (or tuple), {"field": spec} for an object with
# exactly these fields, ("list", spec) and ("map", spec) for a list / an object of any keys.
_DIGEST = {"bytes": int, "sha256": str}
_ENGINE = {"provider": str, "precision": str}
SCHEMA: dict[str, Any] = {
    "input": {"path": str, "format": str, "size": int, "sha256": str},
    "bundle": {"path": str, "manifest_sha256": str},
    "options": ("map", (str, int, float, bool, type(None))),
    "completed": ("list", int), "starts": ("map", {"pos": int, "lineno": int}), "rejected": ("map", int),
    "files": ("map", _DIGEST),
    "runs": ("list", {"started": str, "asked": _ENGINE, "ran": ("list", _ENGINE), "shards": ("list", int)}),
    "shards": (int, type(None)), "pairs": (int, type(None)), "complete": bool,
    "format": str, "format_version": int,
}


def check_fields(value: Any, spec: Any, path: Path, name: str = "") -> None:
    """Raise `JobError` naming the first field of ``value`` that ``spec`` does not allow."""
    where = f"{path}: field {name!r}" if name else f"{path}:"
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            raise JobError(f"{where} must be an object, got {type(value).__name__}")
        for key in value:
            if key not in spec:
                raise JobError(f"{path}: unknown field {_join(name, key)!r} (known: {', '.join(sorted(spec))}); "
                               "this manifest was not written by this transalign version or was edited")
        for key, sub in spec.items():
            if key not in value:
                raise JobError(f"{path}: missing field {_join(name, key)!r}")
            check_fields(value[key], sub, path, _join(name, key))
    elif isinstance(spec, tuple) and spec and spec[0] in ("list", "map"):
        kind, sub = spec
        if not isinstance(value, list if kind == "list" else dict):
            raise JobError(f"{where} must be {'a list' if kind == 'list' else 'an object'}, "
                           f"got {type(value).__name__}")
        items = enumerate(value) if kind == "list" else value.items()
        for key, item in items:
            check_fields(item, sub, path, f"{name}[{key}]" if kind == "list" else _join(name, str(key)))
    else:
        types = spec if isinstance(spec, tuple) else (spec,)
        # bool is an int in Python; a JSON true is not a count, nor 1 a flag
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            expected = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise JobError(f"{where} must be {expected}, got {json.dumps(value)[:60]}")


def _join(name: str, key: str) -> str:
    return f"{name}.{key}" if name else key


def _upgrade_v1(data: dict) -> dict:
    """A version 1 manifest as version 2: no digests (its shards will be aligned again)."""
    data = dict(data, format_version=2, files={}, starts={})
    if isinstance(data.get("options"), dict):  # options added since, at the values that meant v1's behaviour
        data["options"] = {"method": None, "word_level": None, "scores": False, **data["options"]}
    last = data.pop("last_start", None)
    if isinstance(last, dict) and {"shard", "pos", "lineno"} <= set(last):
        data["starts"] = {str(last["shard"]): {"pos": last["pos"], "lineno": last["lineno"]}}
    return data


def _upgrade_v2(data: dict) -> dict:
    """A version 2 manifest as version 3: no runs recorded (what ran then is unknown)."""
    return dict(data, format_version=JOB_VERSION, runs=[])


class Run:
    """This call's entry in the manifest's ``runs``: what was asked, what ran, the shards it wrote.

    The entry joins ``job.runs`` with the first shard this call writes (a call that writes none
    leaves no trace). `ran` is told each engine that aligns rows: in process the Aligner's
    provider and precision once, on Ray those every batch's worker reported. A new engine is
    compared with the other engines of this run (Ray workers that disagree) and with those that
    wrote the complete shards kept from earlier runs (a resume on another provider); either
    difference is warned about, since fp32 links can differ in their last bits between providers.
    """

    def __init__(self, job: JobManifest, provider: str, precision: str, warn):
        self.job, self.warn = job, warn
        self.entry = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                      "asked": {"provider": provider, "precision": precision}, "ran": [], "shards": []}

    def ran(self, provider: str, precision: str) -> bool:
        """Note an engine that aligns this run's rows; True when it is new to this run."""
        engine = {"provider": provider, "precision": precision}
        if engine in self.entry["ran"]:
            return False
        if self.entry["ran"]:
            self.warn(f"workers ran different engines: {_engines(self.entry['ran'] + [engine])}; fp32 links can "
                      "differ in their last bits between providers (the manifest's runs list them all)")
        else:
            kept = [e for e in self.kept_engines() if e != engine]
            if kept:
                self.warn(f"this run aligns on {_engines([engine])}; complete shards of an earlier run were aligned "
                          f"on {_engines(kept)}: fp32 links can differ in their last bits between providers (the "
                          "manifest's runs say which shards ran where; start a new job for one provider throughout)")
        self.entry["ran"].append(engine)
        return True

    def kept_engines(self) -> list[dict]:
        """The engines that wrote the complete shards this job keeps, as recorded (a shard written
        by more than one run counts by its last)."""
        owner = {}
        for run in self.job.runs:
            if run is not self.entry:
                owner.update({k: run["ran"] for k in run["shards"]})
        engines = []
        for k in self.job.completed:
            engines += [e for e in owner.get(k, []) if e not in engines]
        return engines

    def wrote(self, k: int) -> None:
        """Shard ``k`` was written by this run (called before the manifest is saved)."""
        if not any(run is self.entry for run in self.job.runs):
            self.job.runs.append(self.entry)
        self.entry["shards"].append(k)


def _engines(engines: list[dict]) -> str:
    return ", ".join(f"{e['provider']} {e['precision']}" for e in engines)


def file_digest(path: Path) -> dict[str, Any]:
    """{"bytes", "sha256"} of a file, streamed."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
            size += len(block)
    return {"bytes": size, "sha256": digest.hexdigest()}


def describe_job(input_path: Path, input_format: str, bundle: Path, options: dict[str, Any]) -> JobManifest:
    """A fresh manifest for this job (hashes the input once: a streaming read)."""
    return JobManifest(
        input={"path": str(input_path.resolve()), "format": input_format, "size": input_path.stat().st_size,
               "sha256": file_digest(input_path)["sha256"]},
        bundle={"path": str(bundle.resolve()), "manifest_sha256": file_digest(bundle / MANIFEST_NAME)["sha256"]},
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


def damaged_shards(job: JobManifest, outdir: Path, names) -> dict[int, str]:
    """{shard: what is wrong} for every complete shard whose files (``names(k)``: the shard's
    file names that must match their digests) are not exactly as committed."""
    damaged = {}
    for k in job.completed:
        for name in names(k):
            problem = _check_file(outdir / name, job.files.get(name))
            if problem:
                damaged[k] = f"{name} {problem}"
                break
    return damaged


def _check_file(path: Path, recorded: dict | None) -> str | None:
    if recorded is None:
        return "has no recorded size and sha256 (a version 1 manifest)"
    if path.is_symlink() or not path.exists():
        return "is missing" if not path.is_symlink() else "is a symbolic link, not the file written"
    if not path.is_file():
        return "is not a regular file"
    actual = file_digest(path)
    if actual["bytes"] != recorded["bytes"]:
        return f"has {actual['bytes']} bytes, {recorded['bytes']} were written"
    if actual["sha256"] != recorded["sha256"]:
        return "has other content than was written (sha256 differs)"
    return None


def forget_shard(job: JobManifest, outdir: Path, k: int, names) -> None:
    """Drop shard ``k`` from the complete ones and remove what is at its files' names (a damaged
    file, or a directory put in its place), so it is aligned and written again."""
    files = list(names(k))  # before the shard's record goes
    job.completed = [c for c in job.completed if c != k]
    job.rejected.pop(str(k), None)
    job.complete = False
    for name in files:
        job.files.pop(name, None)
        remove(outdir / name)


def remove(path: Path) -> None:
    """Remove a file, link or directory at one of the job's own names in OUTDIR, if any."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            flag = f"--{key.replace('_', '-')}; " if prefix == "options." else ""  # each option is a flag
            out.append(f"{prefix}{key} {b!r} ({flag}the job has {a!r})")
    return out


def _remove_temporaries(outdir: Path) -> None:
    for path in outdir.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            os.unlink(path)
