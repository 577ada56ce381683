"""One variant in its own process, so its load time and peak RSS are its own.

The parent (``Worker``) sends JSON commands on the worker's stdin and reads one JSON reply per
command: ``block`` (align pairs start..stop once), ``latency`` (each index as a one-pair call,
after one untimed round), ``exit`` (peak RSS, then stop). Library chatter goes to stderr.

    python -m benchmarks.worker SPEC_JSON      # started by Worker; also `benchmarks.run --worker`
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.variants import make_variant
from benchmarks.workload import load_pairs
from transalign.bench.stats import peak_rss_mb

ROOT = Path(__file__).resolve().parent.parent


def worker_main(spec: dict) -> None:
    """JSON lines on stdin -> JSON lines on the original stdout (library chatter goes to stderr)."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    start = time.perf_counter()
    variant = make_variant(spec)
    proto.write(json.dumps({"load_s": time.perf_counter() - start, "rss_after_load_mb": peak_rss_mb(),
                            "torch_imported": "torch" in sys.modules}) + "\n")
    src, tgt = load_pairs(spec["pairs"])
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["cmd"] == "block":
            a, b = msg["start"], msg["stop"]
            reply = variant.run(src[a:b], tgt[a:b], a)
        elif msg["cmd"] == "latency":
            reply = {"samples_s": _latency(variant, src, tgt, msg["indices"], msg["repeats"])}
        elif msg["cmd"] == "exit":
            proto.write(json.dumps({"peak_rss_mb": peak_rss_mb(), "torch_imported": "torch" in sys.modules}) + "\n")
            return
        else:
            reply = {"error": f"unknown command {msg['cmd']!r}"}
        proto.write(json.dumps(reply) + "\n")


def _latency(variant, src, tgt, indices: list[int], repeats: int) -> list[float]:
    """Seconds of one-pair calls, ``repeats`` rounds over ``indices``, after one untimed round
    (batch-1 shapes, page faults)."""
    for i in indices:
        variant.run(src[i:i + 1], tgt[i:i + 1], i)
    samples = []
    for _ in range(repeats):
        for i in indices:
            samples.append(variant.run(src[i:i + 1], tgt[i:i + 1], i)["e2e"])
    return samples


class Worker:
    """A variant in its own process; ``request`` sends one command and waits for the reply."""

    def __init__(self, spec: dict):
        self.name = spec["variant"]
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.worker", json.dumps(spec)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        self.ready = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.name} died (exit code {self.proc.wait()}); see its stderr above")
        return json.loads(line)

    def request(self, **msg) -> dict:
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> dict:
        reply = self.request(cmd="exit")
        self.proc.wait(timeout=120)
        return reply


if __name__ == "__main__":
    worker_main(json.loads(sys.argv[1]))
