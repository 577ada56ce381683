"""ONNX Runtime sessions: explicit, checked execution providers and thread settings.

ONNX Runtime does not fail when the CUDA provider cannot start (no driver, a CUDA or cuDNN
library missing, an unsupported card): it logs and runs the graph on the CPU provider it was
given as a fallback, hundreds of times slower and with CUDA's token budget. So every session is
checked after it is made (`session_provider`, `check_fallback`): asking for CUDA and getting the
CPU is an error naming what is available; ``auto`` that hoped for CUDA and got the CPU goes on,
with a notice and the CPU's token budget.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from transalign.engine.defaults import DEFAULT_BATCH_TOKENS
from transalign.engine.options import OptionError

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
PROVIDER_CHOICES = ("auto", *PROVIDERS)
_NAMES = {ort_name: short for short, ort_name in PROVIDERS.items()}
CUDA_HINT = ("install the `gpu` extra (pip install 'transalign[gpu]') with the CUDA and cuDNN versions that "
             "onnxruntime-gpu names, and check that `nvidia-smi` sees the card")


class ProviderFallback(UserWarning):
    """``auto`` asked ONNX Runtime for CUDA and the session runs on the CPU instead."""


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
        hint = f" ({CUDA_HINT})" if provider == "cuda" else ""
        raise OptionError("provider", provider, f"execution provider {PROVIDERS[provider]} is not available in this "
                                                f"onnxruntime; available: {', '.join(available)}{hint}")
    return provider


def session_provider(session) -> str:
    """The provider that runs ``session``'s graph: "cuda" or "cpu" (ONNX Runtime lists the
    providers it kept, the preferred first; a CUDA session that could not start keeps only CPU)."""
    kept = list(session.get_providers())
    for name in kept:
        if name in _NAMES:
            return _NAMES[name]
    raise RuntimeError(f"the ONNX Runtime session runs on {', '.join(kept) or 'no provider'}, "
                       f"none of {', '.join(PROVIDERS.values())}")


def check_fallback(session, provider: str, requested: str | None = None) -> str:
    """The provider ``session`` really runs on, after checking it against the one asked for.

    ``provider``: what the session was made for ("cpu" or "cuda"); ``requested``: what the user
    asked for ("auto", "cpu" or "cuda"; None: the same as ``provider``). CUDA asked for by name
    and not running is an `OptionError` naming the providers this onnxruntime has and the ones
    the session kept; CUDA chosen by ``auto`` and not running warns (`ProviderFallback`) with the
    CPU budget the caller should now use.
    """
    ran = session_provider(session)
    if ran == provider:
        return ran
    requested = provider if requested is None else requested
    kept = ", ".join(session.get_providers())
    if requested != "auto":
        raise OptionError("provider", requested,
                          f"ONNX Runtime could not start {PROVIDERS[provider]} and fell back to {kept}; available "
                          f"in this onnxruntime: {', '.join(available_providers())} ({CUDA_HINT}; or choose "
                          "provider cpu)")
    warnings.warn(f"provider auto: ONNX Runtime lists {PROVIDERS[provider]} but could not start it; running on "
                  f"{kept} with the CPU token budget ({DEFAULT_BATCH_TOKENS[ran]} padded tokens per batch). "
                  f"For CUDA: {CUDA_HINT}; to silence this, choose provider cpu", ProviderFallback, stacklevel=3)
    return ran


# How ONNX Runtime may hold activation memory on the CPU (benchmarks/int8_memory.py measures
# them): "default" (its arena, growing by powers of two, and per-shape memory patterns),
# "no-arena" (plain malloc/free per tensor), "no-pattern" (no pre-planned block per input shape),
# "lean" (both off), "same-as-requested" (an arena that grows by what is asked, shared by the
# process's sessions).
MEMORY_MODES = ("default", "no-arena", "no-pattern", "lean", "same-as-requested")
_ENV_ARENA = []  # the process-wide arena of "same-as-requested", registered once


def _memory_options(options, memory: str) -> None:
    import onnxruntime as ort

    if memory not in MEMORY_MODES:
        raise ValueError(f"memory mode {memory!r} is not one of {', '.join(MEMORY_MODES)}")
    if memory in ("no-arena", "lean"):
        options.enable_cpu_mem_arena = False
    if memory in ("no-pattern", "lean"):
        options.enable_mem_pattern = False
    if memory == "same-as-requested":
        if not _ENV_ARENA:
            info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
            ort.create_and_register_allocator(info, ort.OrtArenaCfg({"arena_extend_strategy": 1}))
            _ENV_ARENA.append(info)
        options.add_session_config_entry("session.use_env_allocators", "1")


def open_session(model: Path | str | bytes, provider: str = "cpu", threads: int | None = None, *,
                 profile_prefix: str | None = None, requested: str | None = None, memory: str = "default"):
    """An InferenceSession on exactly one provider, checked after it is made (`check_fallback`).

    The one place sessions are made, so the engine, the export's validation and the benchmarks
    measure the same thing: full graph optimisation, quiet logging, and with ``threads`` that
    many intra-op threads and no inter-op parallelism (None: ONNX Runtime's default).
    ``model``: a path, or a serialized ModelProto (benchmarks build one-node graphs in memory);
    ``provider``: "cpu" or "cuda" (see `resolve_provider`); ``requested``: what the user asked
    for ("auto" turns a CUDA fallback into a warning; the caller then reads `session_provider`);
    ``profile_prefix`` turns on ONNX Runtime's profiler, writing ``<prefix>*.json``; ``memory``:
    one of MEMORY_MODES (CPU activation memory; see benchmarks/int8_memory.py).
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
    _memory_options(options, memory)
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    providers = [PROVIDERS[provider]]
    if provider == "cuda":
        providers.append(PROVIDERS["cpu"])  # ORT needs it for the few ops CUDA lacks; checked below
    session = ort.InferenceSession(model if isinstance(model, bytes) else str(model), options, providers=providers)
    check_fallback(session, provider, requested)
    return session
