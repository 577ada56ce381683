"""`transalign serve`: an HTTP alignment service with dynamic micro-batching.

The HTTP layer (`app`) validates each request and tokenizes and length-checks its pairs once
(`Aligner.prepare`); a single worker thread (`batcher`) owns the `Aligner` and merges the
prepared pairs of concurrent requests into one `Aligner.align_prepared` call per extraction
setting (source language, target language, threshold, method, word level, scores), bounded by
a token budget, a maximum wait and a maximum number of requests. Results are exactly
`Aligner.align`'s with the same options.

This package needs the optional `serve` extra (FastAPI, uvicorn, prometheus-client) only in
`app`, `metrics`, `middleware` and `schema`; `config`, `batcher` and `prepare` use the standard
library and the engine, and nothing here imports torch, transformers or peft.
"""

from __future__ import annotations

__all__ = ["ServeConfig", "create_app"]


def __getattr__(name: str):
    if name == "ServeConfig":
        from transalign.serve.config import ServeConfig

        return ServeConfig
    if name == "create_app":
        from transalign.serve.app import create_app

        return create_app
    raise AttributeError(f"module 'transalign.serve' has no attribute {name!r}")
