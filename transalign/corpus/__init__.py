"""Corpus jobs: whole parallel corpora aligned into atomic, resumable shards, in this process
or on Ray Data actors (`align_corpus`); readers and writers of parallel-corpus formats.

Heavy dependencies (the engine, pyarrow, ray) are imported only when used.
"""

from __future__ import annotations

__all__ = ["align_corpus", "align_dataset", "JobSummary", "JobError"]

_LAZY = {
    "align_corpus": "transalign.corpus.job",
    "JobSummary": "transalign.corpus.job",
    "JobError": "transalign.corpus.manifest",
    "align_dataset": "transalign.corpus.ray_job",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'transalign.corpus' has no attribute {name!r}")
