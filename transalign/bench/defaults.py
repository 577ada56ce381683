"""Defaults of `transalign bench`, in a module without imports so `transalign --help` stays cheap."""

DEFAULT_SYNTHETIC = 256  # synthetic pairs when no files are given
DEFAULT_REPEAT = 3  # timed passes per variant
DEFAULT_LATENCY_PAIRS = 20  # pairs of median length timed one per call
WARMUP_PAIRS = 64  # aligned untimed before the timed passes
# Precisions measured on each provider by default (int8 on CUDA runs its quantized ops on the
# CPU fallback: it is measured only when asked for).
DEFAULT_PRECISIONS = {"cpu": ("fp32", "int8"), "cuda": ("fp32", "fp16")}
