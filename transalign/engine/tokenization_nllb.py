"""Moved: the NLLB tokenizer lives in `transalign.engine.tokenizers.nllb`."""
from transalign.engine.tokenizers.nllb import *  # noqa: F401,F403
