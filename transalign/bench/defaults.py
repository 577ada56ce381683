"""Defaults of `transalign bench`, in a module without imports so `transalign --help` stays cheap."""

DEFAULT_SYNTHETIC = 256  # synthetic pairs when no files are given
DEFAULT_REPEAT = 3  # timed passes per variant
DEFAULT_LATENCY_PAIRS = 20  # pairs of median length timed one per call
WARMUP_PAIRS = 64  # aligned untimed before the timed passes
