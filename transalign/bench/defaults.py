"""Defaults of `transalign bench`, in a module without imports so `transalign --help` stays cheap."""

DEFAULT_SYNTHETIC = 256  # synthetic pairs when no files are given
DEFAULT_REPEAT = 3  # timed passes per variant
DEFAULT_LATENCY_PAIRS = 20  # pairs of median length timed one per call
WARMUP_PAIRS = 64  # aligned untimed before the timed passes
# Precisions measured on each provider by default (int8 on CUDA runs its quantized ops on the
# CPU fallback: it is measured only when asked for).
DEFAULT_PRECISIONS = {"cpu": ("fp32", "int8"), "cuda": ("fp32", "fp16")}
# `--batch-tokens sweep`: padded-token budgets measured per provider to find the knee (bench/knee.py).
# Powers of two around the engine's default (engine/defaults.py: 2048 CPU, 32768 CUDA), up to its
# MAX_BATCH_TOKENS; tests/test_bench_knee.py checks both.
SWEEP = "sweep"
SWEEP_BATCH_TOKENS = {"cpu": (512, 1024, 2048, 4096, 8192), "cuda": (4096, 8192, 16384, 32768, 65536)}
