"""`transalign.ray.align_dataset`: TransAlign links for a `ray.data.Dataset` with src/tgt columns
(one Aligner per Ray actor). Needs the `ray` extra; see `transalign.corpus.ray_job`."""

from __future__ import annotations

from transalign.corpus.ray_job import AlignBatch, align_dataset

__all__ = ["AlignBatch", "align_dataset"]
