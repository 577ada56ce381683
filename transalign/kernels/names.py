"""The names of the extraction methods and word levels (see `methods.py`), standard library only:
the CLI builds its choices from them without importing numpy or numba. Their order is the
kernels' integer codes (jit.py)."""

METHODS = ("softmax", "argmax", "itermax")
WORD_LEVELS = ("any", "mean")
DEFAULT_METHOD, DEFAULT_WORD_LEVEL = METHODS[0], WORD_LEVELS[0]
