"""Moved: the BERT-family tokenizer lives in `transalign.engine.tokenizers.hf`."""
from transalign.engine.tokenizers.hf import *  # noqa: F401,F403
