"""`transalign serve`: an HTTP alignment service with dynamic micro-batching.

The HTTP layer (`app`, `middleware`) bounds what each client may hold (body size and time,
headers' time, connections, the shutdown drain) and watches for clients that leave; preparation
threads parse each body (`body`: one 422 for every bad body, strict types), resolve its options
with the engine's policy and tokenize and length-check its pairs once (`prepare`,
`Aligner.prepare`); a single worker thread (`batcher`) owns the `Aligner` and merges the prepared
pairs of concurrent requests into one `Aligner.align_prepared` call per setting (languages and
`Extraction`), bounded by a merge budget of real tokens, a maximum wait and a maximum number of
requests; the engine cuts each call into encoder runs of its own padded budget. Results are
exactly `Aligner.align`'s with the same options. `openapi` states the bundle's constraints in
/openapi.json; `protocol` adds the header deadline uvicorn lacks.

This package needs the optional `serve` extra (FastAPI, uvicorn, prometheus-client, pydantic)
only in `app`, `metrics`, `middleware`, `openapi`, `protocol` and `schema` (and `body` when it
parses); `config`, `batcher` and `prepare` use the standard library and the engine, and nothing
here imports torch, transformers or peft.
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
