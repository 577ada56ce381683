"""A description of the machine a measurement ran on, so results from different machines compare."""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = ("transalign", "numpy", "onnxruntime", "onnxruntime-gpu", "numba", "sentencepiece", "tokenizers",
            "torch", "transformers", "peft", "onnx")
SIMD = {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8"}


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def gpus() -> list[str]:
    """GPU names and memory as ``nvidia-smi`` reports them; empty without an NVIDIA driver."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run([smi, "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def machine_info() -> dict:
    """CPU model and SIMD flags, cores (logical and usable by this process), RAM, GPUs, host,
    platform and the versions of the libraries that do the timed work (installed ones only)."""
    cpuinfo = _read("/proc/cpuinfo")
    field = lambda key: next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()  # noqa: E731
                              if line.startswith(key)), "")
    flags = set(field("flags").split())
    meminfo = _read("/proc/meminfo") or "MemTotal: 0 kB"
    ram_kb = int(next((line.split()[1] for line in meminfo.splitlines() if line.startswith("MemTotal")), 0))
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"host": socket.gethostname(), "cpu": field("model name") or platform.processor() or platform.machine(),
            "cpus_logical": os.cpu_count(), "cpus_usable": usable, "ram_gb": ram_kb / 1e6,
            "simd": sorted(flags & SIMD), "gpus": gpus(),
            "platform": platform.platform(), "python": platform.python_version(), "versions": versions}
