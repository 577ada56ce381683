"""A SIGKILLed `align-corpus --ray` driver leaves no Ray process behind (issue 24.1).

Without `transalign.corpus.reaper`, the raylet's agents (ray::DashboardAgent,
ray::RuntimeEnvAgent) outlived the killed driver by more than a minute (Ray 2.60)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from test_corpus import ROOT, sentences, write_fast_align


def test_killed_ray_driver_takes_its_cluster_with_it(tiny_bundle, tmp_path):
    pytest.importorskip("ray")
    psutil = pytest.importorskip("psutil")
    corpus = write_fast_align(tmp_path / "c.txt", sentences(3000, 81), sentences(3000, 82))
    outdir = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "transalign", "align-corpus", str(tiny_bundle), str(corpus), "-o",
                             str(outdir), "--src-lang", "eng_Latn", "--tgt-lang", "ces_Latn", "--shard-pairs", "100",
                             "--ray", "--threads", "1", "--quiet"], cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not list(outdir.glob("part-*")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)  # a shard on disk: the cluster, its agents and an AlignBatch actor are up
        assert proc.poll() is None, "the job ended before it could be killed"
        tree = psutil.Process(proc.pid).children(recursive=True)
        names = {p.name() for p in tree}
        assert {"raylet", "gcs_server"} <= names and any("AlignBatch" in n for n in names), names
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        alive = [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not alive:
            break
        time.sleep(0.2)
    left = [(p.pid, p.name()) for p in alive]
    for p in alive:  # do not leave them to the rest of the suite either
        p.kill()
    assert not left, f"left behind 30 s after the driver was killed: {left}"
    assert len(list(outdir.glob("part-*"))) < 30  # it really was killed mid-job
