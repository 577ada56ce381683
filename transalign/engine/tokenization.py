"""Moved: the runtime tokenizers live in the package `transalign.engine.tokenizers`."""
from transalign.engine.tokenizers import Encoded, WordTokenizer, load_tokenizer  # noqa: F401
