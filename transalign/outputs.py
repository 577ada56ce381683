"""Where a command's output goes: files written atomically, streams written directly.

Every command that writes a result (``align``, ``project``, ...) opens it with
:func:`open_output`, after checking it with :func:`check_output` *before* any work:

- ``-`` (or no path): standard output, streamed;
- an existing FIFO, character device or socket: opened and streamed, never replaced
  (``-o /dev/stdout`` or a named pipe keep working, and the device node is never touched);
- a regular file, a path that does not exist yet, or a symlink to either: the data goes to a
  hidden temporary file beside the real target and is renamed over it only when complete, so
  the file appears whole or not at all; a symlink stays a symlink (its target is replaced) and
  an existing file keeps its permission bits; a file with several hard links is rewritten in
  place at the end (renaming would cut the other links);
- a directory, or a path that is one of the command's inputs: refused before any work.

Commands that write a whole directory (``export``'s bundle, ``finetune``'s adapter) build it in a
hidden staging directory beside the target and move it into place with
:func:`replace_directory`, so the target is the old directory or the complete new one.

A temporary file is removed on any exception, on Ctrl-C and on SIGTERM (the CLI turns SIGTERM
into an exception). A process killed with SIGKILL cannot clean up; its temporary file carries
its PID and the next write to the same target removes it once that PID is gone.
This module depends on the standard library only.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO

__all__ = ["OutputError", "STDIO", "check_output", "open_output", "process_umask", "replace_directory"]

STDIO = "-"
_TMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[^.]+\.tmp$")


class OutputError(ValueError):
    """An output path that cannot (or must not) be written."""


def _is_stream(path: str) -> bool:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)


def check_output(path: str | os.PathLike | None, inputs: Iterable[str | os.PathLike | None] = (),
                 flag: str = "-o") -> None:
    """Refuse, before any work, an output that is a directory, one of ``inputs`` or unwritable."""
    if path is None or os.fspath(path) == STDIO:
        return
    target = os.fspath(path)
    if os.path.isdir(target):
        raise OutputError(f"{flag} {target} is a directory; give a file name, e.g. {os.path.join(target, 'out.txt')}")
    if _is_stream(target):
        return
    for source in inputs:
        if source is None or os.fspath(source) == STDIO:
            continue
        with contextlib.suppress(OSError):
            if os.path.exists(target) and os.path.samefile(target, source):
                raise OutputError(f"{flag} {target} is also an input ({os.fspath(source)}); writing it would destroy "
                                  "the input: choose another output file")
    directory = os.path.dirname(os.path.realpath(target))
    if not os.path.isdir(directory):
        raise OutputError(f"cannot write {flag} {target}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {flag} {target}: directory {directory} is not writable")


def process_umask() -> int:
    """The process umask without changing it (Linux reports it in /proc); else the usual 022."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    return 0o022


def replace_directory(staging: str | os.PathLike, target: str | os.PathLike) -> None:
    """Move the complete directory ``staging`` to ``target`` (a sibling), replacing what is there.

    An existing ``target`` is first renamed aside to ``.NAME.old-PID`` and removed only after the
    new one is in place: a directory cannot be renamed over a non-empty one, and at no moment is
    there neither the old nor the new directory at ``target``.
    """
    target = os.fspath(target)
    old = None
    if os.path.exists(target):
        directory, name = os.path.split(target)
        old = os.path.join(directory, f".{name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_temporaries(directory: str, name: str) -> None:
    """Delete ``.NAME.PID.*.tmp`` files left by killed writers (their PID no longer runs)."""
    with contextlib.suppress(OSError):
        for entry in os.listdir(directory):
            match = _TMP.match(entry)
            if match and match["name"] == name and int(match["pid"]) != os.getpid() and not _pid_alive(int(match["pid"])):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(directory, entry))


@contextlib.contextmanager
def open_output(path: str | os.PathLike | None, inputs: Iterable[str | os.PathLike | None] = ()) -> Iterator[IO[str]]:
    """A text handle (UTF-8, ``\\n`` newlines) for ``path`` as the module docstring describes."""
    check_output(path, inputs)
    if path is None or os.fspath(path) == STDIO:
        yield sys.stdout
        sys.stdout.flush()
        return
    target = os.fspath(path)
    if _is_stream(target):
        with open(target, "w", encoding="utf-8", newline="\n") as handle:
            yield handle
        return
    yield from _atomic(os.path.realpath(target))


def _atomic(real: str) -> Iterator[IO[str]]:
    directory, name = os.path.split(real)
    _remove_stale_temporaries(directory, name)
    try:
        old = os.stat(real)
    except FileNotFoundError:
        old = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.{os.getpid()}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise OutputError(f"cannot write {real}: {exc.strerror} (in {directory})") from None
    try:
        with open(fd, "w", encoding="utf-8", newline="\n") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if old is not None and old.st_nlink > 1:
            with open(tmp, "rb") as src, open(real, "wb") as dst:  # keep every hard link
                shutil.copyfileobj(src, dst)
            os.unlink(tmp)
            return
        # mkstemp makes the file 0600: keep the old file's bits, or give a new one the umask's
        os.chmod(tmp, stat.S_IMODE(old.st_mode) if old is not None else 0o666 & ~process_umask())
        os.replace(tmp, real)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
