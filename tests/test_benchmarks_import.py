"""Every benchmark module imports (`make bench` and the README's benchmark commands start with an
import): a name moved or removed elsewhere (the old data paths, 2026-12-06) must fail here, in CI,
not in the next half-hour benchmark run."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCHMARKS = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py")
                    if p.stem != "__init__")


def test_there_are_benchmarks():
    assert {"run", "workload", "full_size", "device_check"} <= set(BENCHMARKS)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_module_imports(name):
    importlib.import_module(f"benchmarks.{name}")
