"""Moved: word-alignment files are read and written by `transalign.formats.alignments`."""
from transalign.formats.alignments import *  # noqa: F401,F403
