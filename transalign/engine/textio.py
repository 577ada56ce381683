"""Sentence files: kept as an import path; the readers live in `transalign.formats.text`."""

from transalign.formats.text import INPUT_FORMATS, InputError, iter_sentences, read_sentences

__all__ = ["INPUT_FORMATS", "InputError", "iter_sentences", "read_sentences"]
