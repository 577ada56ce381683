"""Sessions run where they were asked to, or say why not (issue 27: no silent CUDA -> CPU fallback).

ONNX Runtime given [CUDA, CPU] on a machine where CUDA cannot start keeps only the CPU provider
and carries on. On this CPU-only build the real InferenceSession does exactly that when CUDA is
requested (it warns "not in available provider names" and keeps CPU), so the tests make
`available_providers` claim CUDA and let the real session fall back; a fake session class covers
the other cases (CUDA that did start, a session on neither provider).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from transalign.engine import session as session_mod
from transalign.engine.defaults import DEFAULT_BATCH_TOKENS
from transalign.engine.options import OptionError
from transalign.engine.session import ProviderFallback, check_fallback, open_session, session_provider

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


@pytest.fixture
def cuda_claimed(monkeypatch):
    """This onnxruntime says it has CUDA (as onnxruntime-gpu does on a machine whose CUDA is broken)."""
    monkeypatch.setattr(session_mod, "available_providers", lambda: [CUDA, CPU])


class FakeSession:
    def __init__(self, providers):
        self._providers = providers

    def get_providers(self):
        return list(self._providers)


def _quiet_open(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not in available provider names")  # ORT's own
        return open_session(*args, **kwargs)


def test_cuda_by_name_that_falls_back_to_cpu_is_an_error_naming_what_is_available(tiny_bundle, cuda_claimed):
    with pytest.raises(OptionError) as info:
        _quiet_open(tiny_bundle / "model.onnx", "cuda", requested="cuda")
    err = info.value
    assert err.option == "provider" and err.value == "cuda"
    message = str(err)
    assert "could not start CUDAExecutionProvider" in message and "fell back to CPUExecutionProvider" in message
    assert f"available in this onnxruntime: {CUDA}, {CPU}" in message and "provider cpu" in message
    # the same without `requested`: the engine's own call (Aligner.load resolves first)
    with pytest.raises(OptionError, match="fell back to CPUExecutionProvider"):
        _quiet_open(tiny_bundle / "model.onnx", "cuda")


def test_aligner_asked_for_cuda_refuses_the_fallback(tiny_bundle, cuda_claimed):
    from transalign.engine.aligner import Aligner

    with pytest.raises(ValueError, match="could not start CUDAExecutionProvider"):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*not in available provider names")
            Aligner.load(tiny_bundle, provider="cuda", precision="fp32")


def test_auto_that_falls_back_warns_with_the_cpu_budget_and_runs(tiny_bundle, cuda_claimed):
    with pytest.warns(ProviderFallback) as caught:
        session = _quiet_open(tiny_bundle / "model.onnx", "cuda", requested="auto")
    message = str(caught[0].message)
    assert f"CPU token budget ({DEFAULT_BATCH_TOKENS['cpu']} padded tokens" in message
    assert "running on CPUExecutionProvider" in message
    assert session_provider(session) == "cpu"
    ids = np.array([[5, 6, 7, 2]], np.int64)
    hidden = session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0]
    assert hidden.shape[:2] == (1, 4) and np.isfinite(hidden).all()


def test_cpu_sessions_pass_without_a_word(tiny_bundle):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        session = open_session(tiny_bundle / "model.onnx", "cpu", 1)
    assert session_provider(session) == "cpu"


@pytest.mark.parametrize("kept, provider, expected", [
    ([CUDA, CPU], "cuda", "cuda"),  # CUDA started: CPU stays listed for ORT's own use
    ([CPU], "cpu", "cpu"),
    (["AzureExecutionProvider", CPU], "cpu", "cpu"),
])
def test_session_provider_reads_what_the_session_kept(kept, provider, expected):
    assert session_provider(FakeSession(kept)) == expected
    assert check_fallback(FakeSession(kept), provider) == expected


def test_a_session_on_neither_provider_is_an_internal_error():
    with pytest.raises(RuntimeError, match="runs on AzureExecutionProvider, none of"):
        session_provider(FakeSession(["AzureExecutionProvider"]))


def test_fake_fallback_session_cuda_by_name_and_by_auto():
    with pytest.raises(OptionError, match="fell back to CPUExecutionProvider"):
        check_fallback(FakeSession([CPU]), "cuda", "cuda")
    with pytest.warns(ProviderFallback, match="provider auto"):
        assert check_fallback(FakeSession([CPU]), "cuda", "auto") == "cpu"
