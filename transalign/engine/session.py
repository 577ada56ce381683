"""ONNX Runtime sessions: explicit, checked execution providers and thread settings."""

from __future__ import annotations

from pathlib import Path

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
PROVIDER_CHOICES = ("auto", *PROVIDERS)


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def resolve_provider(provider: str) -> str:
    """'auto' -> CUDA when this onnxruntime has it, else CPU; 'cuda' without CUDA is an error."""
    if provider not in PROVIDER_CHOICES:
        raise ValueError(f"provider {provider!r} is not one of {', '.join(PROVIDER_CHOICES)}")
    available = available_providers()
    if provider == "auto":
        return "cuda" if PROVIDERS["cuda"] in available else "cpu"
    if PROVIDERS[provider] not in available:
        hint = " (install the `gpu` extra: pip install 'transalign[gpu]', and a matching CUDA)" \
            if provider == "cuda" else ""
        raise ValueError(f"execution provider {PROVIDERS[provider]} is not available in this onnxruntime; "
                         f"available: {', '.join(available)}{hint}")
    return provider


def open_session(model: Path | str | bytes, provider: str = "cpu", threads: int | None = None, *,
                 profile_prefix: str | None = None):
    """An InferenceSession on exactly one provider (CUDA keeps CPU only as ORT's own fallback).

    The one place sessions are made, so the engine, the export's validation and the benchmarks
    measure the same thing: full graph optimisation, quiet logging, and with ``threads`` that
    many intra-op threads and no inter-op parallelism (None: ONNX Runtime's default).
    ``model``: a path, or a serialized ModelProto (benchmarks build one-node graphs in memory);
    ``provider``: "cpu" or "cuda" (see `resolve_provider`); ``profile_prefix`` turns on ONNX
    Runtime's profiler, writing ``<prefix>*.json``.
    """
    import onnxruntime as ort

    if provider not in PROVIDERS:
        raise ValueError(f"provider {provider!r} is not one of {', '.join(PROVIDERS)} (resolve 'auto' first)")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    providers = [PROVIDERS[provider]]
    if provider == "cuda":
        providers.append(PROVIDERS["cpu"])
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options, providers=providers)
