"""Session fixtures: tiny local models, cached under .cache/fixtures between runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixture_models import build_tiny_lora, build_tiny_nllb, cache_key, cached_dir

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FIXTURE_CACHE = ROOT / ".cache" / "fixtures"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"{SHARED} is missing: the tests need ../shared beside the repository")
    return SHARED


@pytest.fixture(scope="session")
def tiny_nllb() -> Path:
    """A tiny random M2M100 checkpoint with an NLLB tokenizer trained on tests/data."""
    return cached_dir(FIXTURE_CACHE, f"tiny-nllb-{cache_key()}", build_tiny_nllb)


@pytest.fixture(scope="session")
def tiny_lora(tiny_nllb: Path) -> Path:
    """A PEFT LoRA adapter (fc1/fc2, keys relative to the encoder) for `tiny_nllb`."""
    return cached_dir(FIXTURE_CACHE, f"tiny-lora-{cache_key()}", lambda out: build_tiny_lora(tiny_nllb, out))
