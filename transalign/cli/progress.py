"""A dependency-free progress line on stderr (tqdm is not a runtime dependency)."""

from __future__ import annotations

import sys
import time


class Progress:
    """Rewrites one stderr line at most every ``interval`` seconds; silent when disabled.
    ``total`` None: the count is shown without a percentage (streamed input)."""

    def __init__(self, total: int | None, label: str, enabled: bool, interval: float = 0.5):
        self.total, self.label, self.enabled, self.interval = total, label, enabled, interval
        self.done = 0
        self.start = self.last = time.perf_counter()
        self._base = label

    def ran(self, provider: str, precision: str) -> None:
        """Name the provider and precision that really run in the label, `aligned pairs (cpu,
        fp32)`: read back from the Aligner, so a CUDA that fell back shows as the CPU. Called
        again (a Ray worker on another engine), it names the new ones."""
        self.label = f"{self._base} ({provider}, {precision})"

    def update(self, n: float = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if self.enabled and (now - self.last >= self.interval or self.done == self.total):
            self.last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        rate = self.done / max(now - self.start, 1e-9)
        done = int(self.done)
        if self.total is None:  # streamed input of unknown length
            sys.stderr.write(f"\r{self.label}: {done}, {rate:,.0f}/s ")
        else:
            share = 100.0 * min(self.done, self.total) / self.total if self.total else 100.0
            eta = f", ETA {_duration(max(self.total - self.done, 0) / rate)}" if rate > 0 else ""
            sys.stderr.write(f"\r{self.label}: {done}/{self.total} ({share:5.1f}%), {rate:,.0f}/s{eta} ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(time.perf_counter())
            sys.stderr.write("\n")


def _duration(seconds: float) -> str:
    """'42s', '7m05s', '3h12m': short enough for a progress line."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
