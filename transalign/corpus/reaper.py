"""A local Ray cluster dies with the corpus job that started it.

``ray.init()`` starts gcs_server, raylet and helpers as children of the driver with Linux's
parent-death signal, so they die when the driver is SIGKILLed; but the raylet's own children
(measured with Ray 2.60: ``ray::DashboardAgent`` and ``ray::RuntimeEnvAgent``) outlived a killed
driver by more than a minute. A corpus job that starts its own cluster therefore also starts this
small watcher, in its own session (a Ctrl-C meant for the job does not reach it): it learns the
cluster's process tree once a second and, when the driver's end of its standard input closes
(the driver ended, however), kills every process of that tree still running. psutil (a Ray
dependency) identifies each process by PID *and* start time, so a reused PID is never killed.
A cluster given by address is never touched.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys

POLL_SECONDS = 1.0


def start(roots: list[int]) -> subprocess.Popen:
    """Watch the trees under ``roots`` (the PIDs Ray started) until `stop` or the caller dies."""
    return subprocess.Popen([sys.executable, "-m", "transalign.corpus.reaper", *map(str, roots)],
                            stdin=subprocess.PIPE, start_new_session=True)


def stop(watcher: subprocess.Popen, timeout: float = 30.0) -> None:
    """After ``ray.shutdown()``: the watcher kills whatever survived it, and exits."""
    with contextlib.suppress(OSError):
        watcher.stdin.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        watcher.wait(timeout)


def cluster_roots(ray) -> list[int]:
    """The PIDs of the processes ``ray.init()`` started in this process (Ray's node record)."""
    try:  # no public accessor; tests/test_corpus_ray_kill.py checks that this still finds them
        node = ray._private.worker._global_node
        return [info.process.pid for infos in node.all_processes.values() for info in infos if info.process]
    except AttributeError:  # another Ray version: no watcher rather than no job
        return []


def main(argv: list[str]) -> int:
    import psutil

    roots = []
    for pid in argv:
        with contextlib.suppress(psutil.Error):
            roots.append(psutil.Process(int(pid)))
    known: dict[int, psutil.Process] = {}
    while True:
        for root in roots:
            with contextlib.suppress(psutil.Error):
                known.setdefault(root.pid, root)
                for child in root.children(recursive=True):
                    known.setdefault(child.pid, child)
        ready, _, _ = select.select([sys.stdin], [], [], POLL_SECONDS)
        if ready and not os.read(sys.stdin.fileno(), 4096):
            break  # the driver closed its end or died
    for process in known.values():
        with contextlib.suppress(psutil.Error):
            if process.pid != os.getpid():
                process.kill()  # psutil refuses a PID that now belongs to another process
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
