"""Corpus jobs: whole parallel corpora aligned into atomic, resumable shards, in this process
or on Ray Data actors (`align_corpus`); readers and writers of parallel-corpus formats.

Heavy dependencies (the engine, pyarrow, ray) are imported only when used.
"""

from __future__ import annotations

from transalign.lazy import lazy_exports

__all__ = ["align_corpus", "align_dataset", "JobSummary", "JobError"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "align_corpus": "transalign.corpus.job",
    "JobSummary": "transalign.corpus.job",
    "JobError": "transalign.corpus.manifest",
    "align_dataset": "transalign.corpus.ray_job",
})
