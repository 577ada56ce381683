"""Numbers the tests measure (quality tables, memory), printed after every run.

Tests `record(...)` lines here; conftest's `pytest_terminal_summary` prints them in a
"transalign measurements" section, so the README's numbers can be read from any CI log without
`-s`.
"""

from __future__ import annotations

LINES: list[str] = []


def record(*lines: str) -> None:
    """Print now (visible with -s) and keep for the end-of-run summary."""
    for line in lines:
        print(line)
        LINES.append(line)
