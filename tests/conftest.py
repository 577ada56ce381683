"""Session fixtures: tiny local models, cached under .cache/fixtures between runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixture_models import build_tiny_lora, build_tiny_nllb, cache_key, cached_dir

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"  # third-party data vendored with the repository (data/README.md)
FIXTURE_CACHE = ROOT / ".cache" / "fixtures"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The repository's data/ (the authors' adapters and Bambara sample, the csen gold)."""
    if not (DATA / "README.md").is_file():
        pytest.fail(f"{DATA} is missing or incomplete: it is part of the repository (git checkout data/)")
    return DATA


@pytest.fixture(scope="session")
def tiny_nllb() -> Path:
    """A tiny random M2M100 checkpoint with an NLLB tokenizer trained on tests/data."""
    return cached_dir(FIXTURE_CACHE, f"tiny-nllb-{cache_key()}", build_tiny_nllb)


@pytest.fixture(scope="session")
def tiny_lora(tiny_nllb: Path) -> Path:
    """A PEFT LoRA adapter (fc1/fc2, keys relative to the encoder) for `tiny_nllb`."""
    return cached_dir(FIXTURE_CACHE, f"tiny-lora-{cache_key()}", lambda out: build_tiny_lora(tiny_nllb, out))


TINY_LAYER = 3  # the last layer of the tiny model: exercises the final layer_norm path


@pytest.fixture(scope="session")
def tiny_bundle(tiny_nllb: Path, tiny_lora: Path) -> Path:
    """The tiny model + LoRA exported at its last layer in all three precisions."""
    from transalign.export.api import export_bundle

    def build(out: Path) -> None:
        export_bundle(str(tiny_nllb), out / "bundle", lora=str(tiny_lora), layer=TINY_LAYER,
                      precisions="fp32,int8,fp16", force=True)

    return cached_dir(FIXTURE_CACHE, f"tiny-bundle-{cache_key(_export_sources())}", build) / "bundle"


def _export_sources() -> str:
    """The export code's text, so a cached bundle is rebuilt whenever the exporter changes."""
    files = sorted((ROOT / "transalign" / "export").glob("*.py")) + [ROOT / "transalign" / "engine" / "bundle.py"]
    return "".join(p.read_text() for p in files)


def pytest_terminal_summary(terminalreporter):
    """Print what the tests measured (tests/measurements.py), even without -s."""
    from measurements import LINES

    if LINES:
        terminalreporter.section("transalign measurements")
        for line in LINES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="module")
def ray_cluster():
    """A local 2-CPU Ray cluster for one test module (the corpus tests' `--ray` path)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
