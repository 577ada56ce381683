"""Issue 26.5, export's part: what `transalign export` says when it cannot run or has run.

- without the `export` extra: one line naming what is missing and "pip install 'transalign[export]'";
- a hub id with HF_HUB_OFFLINE set, or a hub that does not answer, and the model not cached:
  refused at once (no network at all when offline; one probe when unreachable) saying what to do;
  cached: exported from the cache without the network, the manifest naming the hub id;
- a human summary after an export (the manifest as JSON with --json: test_tune_write.py).

The environment cases run in a subprocess: huggingface_hub reads its settings at import time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from transalign.cli import main

ROOT = Path(__file__).resolve().parents[1]
# counts connection attempts of the child process and refuses them: "no network" is checked, not timed
_GUARD = """
import socket, sys
_attempts = []
def _connect(self, address):
    _attempts.append(address)
    sys.stderr.write(f"NETWORK ATTEMPT {address}\\n")
    raise ConnectionRefusedError(111, "refused by the test")
socket.socket.connect = _connect
"""


def _run_cli(args: list[str], env: dict, tmp_path: Path, prelude: str = "") -> subprocess.CompletedProcess:
    code = prelude + _GUARD + f"from transalign.cli import main\nsys.exit(main({args!r}))\n"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "HUGGINGFACE"))}
    full = {**base, "HF_HOME": str(tmp_path / "hf-home"), "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=full, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("module", ["torch", "onnx"])
def test_export_without_its_extra_says_what_to_install(tmp_path, module):
    out = tmp_path / "b"
    done = _run_cli(["export", "some/model", "-o", str(out)], {}, tmp_path,
                    prelude=f"import sys\nsys.modules[{module!r}] = None  # as if not installed\n")
    assert done.returncode == 2, done.stderr
    assert f"{module} is not installed: pip install 'transalign[export]'" in done.stderr
    assert "Traceback" not in done.stderr and "NETWORK ATTEMPT" not in done.stderr and not out.exists()


def test_hub_id_offline_and_not_cached_fails_without_network(tmp_path):
    done = _run_cli(["export", "facebook/nllb-200-distilled-600M", "-o", str(tmp_path / "b")],
                    {"HF_HUB_OFFLINE": "1"}, tmp_path)
    assert done.returncode == 2, done.stderr
    assert "not in the local Hugging Face cache" in done.stderr and "HF_HUB_OFFLINE is set" in done.stderr
    assert "huggingface-cli download facebook/nllb-200-distilled-600M" in done.stderr
    assert "NETWORK ATTEMPT" not in done.stderr and "Traceback" not in done.stderr


def test_unreachable_hub_is_probed_once_then_refused(tmp_path):
    done = _run_cli(["export", "facebook/nllb-200-distilled-600M", "-o", str(tmp_path / "b")],
                    {"HF_ENDPOINT": "http://127.0.0.1:9"}, tmp_path)
    assert done.returncode == 2, done.stderr
    assert "http://127.0.0.1:9 did not answer" in done.stderr and "not in the local Hugging Face cache" in done.stderr
    assert done.stderr.count("NETWORK ATTEMPT") == 1  # the probe; transformers' retries never start


def _hub_cache(model_dir: Path, cache: Path, repo: str) -> None:
    """``model_dir`` laid out as huggingface_hub caches ``repo`` at revision main."""
    folder = cache / ("models--" + repo.replace("/", "--"))
    snapshot = folder / "snapshots" / ("0" * 40)
    shutil.copytree(model_dir, snapshot)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("0" * 40)


@pytest.mark.parametrize("env", [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9"}],
                         ids=["offline", "unreachable"])
def test_cached_hub_id_exports_offline_and_keeps_its_name(tiny_nllb, tmp_path, env):
    _hub_cache(tiny_nllb, tmp_path / "hub", "test-org/tiny-nllb")
    out = tmp_path / "b"
    done = _run_cli(["export", "test-org/tiny-nllb", "-o", str(out), "--layer", "2", "--precision", "fp32"],
                    {**env, "HF_HUB_CACHE": str(tmp_path / "hub")}, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("NETWORK ATTEMPT") == (0 if "HF_HUB_OFFLINE" in env else 1)
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["base_model"], manifest["family"]) == ("test-org/tiny-nllb", "nllb")


def test_export_prints_a_human_summary(tiny_nllb, tmp_path, capsys):
    out = tmp_path / "b"
    assert main(["export", str(tiny_nllb), "-o", str(out), "--layer", "2", "--precision", "fp32,int8"]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0] == f"wrote bundle {out}"
    assert "  default    softmax, word level any, threshold 0.001 (used when `align` is given no" in text
    assert any(line.startswith("  fp32       validated against PyTorch (cpu-onnxruntime): max rel diff ")
               for line in lines)
    assert any(line.startswith("  int8       validated against PyTorch (cpu-onnxruntime): max rel diff ")
               and "mean cosine " in line for line in lines)
    assert lines[-1].startswith(f"next: transalign align {out} --src SRC.txt --tgt TGT.txt --src-lang CODE")
    assert "{" not in text  # no JSON blob without --json
