"""The service's settings: one frozen dataclass, validated on construction (so `transalign serve`
refuses a bad flag before it listens), shared by the CLI, the app and the tests. The defaults
here are the ones `transalign serve --help` shows.

Two token budgets, each with one meaning:
- the *merge budget* (``max_batch_tokens``, ``--max-batch-tokens``): real tokens (both sides,
  special tokens included) of the requests the worker merges into one `Aligner.align_prepared`
  call; it bounds the hidden states one call holds and how long a request may wait behind others;
- the *encoder budget* (``batch_tokens``, ``--batch-tokens``, the engine's
  `LoadOptions.batch_tokens`): padded tokens per ONNX Runtime run inside that call; the engine
  cuts a merged call into such runs itself.
Errors are `OptionError`s naming the field; the CLI shows them under the flag (`cli.options.flag_of`).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from pathlib import Path

from transalign.engine.defaults import MAX_BATCH_TOKENS
from transalign.engine.options import LoadOptions, OptionError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_WAIT_MS = 2.0
DEFAULT_MAX_BATCH_REQUESTS = 64
DEFAULT_MAX_PAIRS_PER_REQUEST = 64
DEFAULT_MAX_QUEUE_PAIRS = 1024
DEFAULT_MAX_BODY_BYTES = 2 * 1024 * 1024
# a client has this long, from its request's headers, to send the whole body (2 MB at 200 KB/s)
DEFAULT_BODY_TIMEOUT_S = 10.0
# open connections (idle keep-alive ones included); a request beyond it gets 503 and is closed.
# Bounds what slow clients can hold: at most this many bodies of --max-body-bytes in memory.
DEFAULT_MAX_CONNECTIONS = 256
# after SIGTERM, how long requests already received may take to finish before they are cancelled
DEFAULT_SHUTDOWN_TIMEOUT_S = 30.0
RETRY_AFTER_S = 1  # what a 429 tells the client to wait; the queue drains in well under that


@dataclass(frozen=True)
class ServeConfig:
    """What to load and the limits of the service.

    precision, provider, threads, batch_tokens, pipeline: the engine's `LoadOptions`
    (``load_options``); pipeline on: the worker encodes the next group while another thread
    extracts the last one (`batcher._Extractor`); auto: on with CUDA.
    max_batch_tokens: the merge budget (module docstring), 1..MAX_BATCH_TOKENS; None: the encoder
    budget of the provider that runs. A single request over it still runs, alone.
    max_wait_ms: how long the worker waits after the first queued request for others to join.
    max_batch_requests: requests per batch; 1 turns cross-request batching off.
    max_queue_pairs: pairs waiting for the worker; a request that would exceed it gets 429.
    max_body_bytes, body_timeout: a body larger than this gets 413, one slower than this 408.
    max_connections: open connections a request may find (`middleware.Guard`; beyond: 503).
    shutdown_timeout: seconds a SIGTERM waits for requests in flight before cancelling them.
    docs: serve Swagger UI at /docs (it loads its scripts from a CDN: blank offline); /openapi.json
    is always served.
    api_key: the Bearer token /v1/* requires (None: no authentication).
    """

    bundle: Path
    precision: str = "fp32"
    provider: str = "auto"
    threads: int | None = None
    batch_tokens: int | None = None
    pipeline: str = "auto"
    max_batch_tokens: int | None = None
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS
    max_batch_requests: int = DEFAULT_MAX_BATCH_REQUESTS
    max_pairs_per_request: int = DEFAULT_MAX_PAIRS_PER_REQUEST
    max_queue_pairs: int = DEFAULT_MAX_QUEUE_PAIRS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    body_timeout: float = DEFAULT_BODY_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT_S
    docs: bool = False
    api_key: str | None = None
    load_options: LoadOptions = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bundle", Path(self.bundle))
        object.__setattr__(self, "load_options", LoadOptions(precision=self.precision, provider=self.provider,
                                                             threads=self.threads, batch_tokens=self.batch_tokens,
                                                             pipeline=self.pipeline))
        for name in ("max_batch_requests", "max_pairs_per_request", "max_queue_pairs", "max_body_bytes",
                     "max_connections"):
            _integer(name, getattr(self, name), 1, None, "must be an integer >= 1")
        if self.max_batch_tokens is not None:
            _integer("max_batch_tokens", self.max_batch_tokens, 1, MAX_BATCH_TOKENS,
                     f"must be an integer in 1..{MAX_BATCH_TOKENS}: real tokens (both sides) merged from concurrent "
                     "requests into one align call (default: the encoder budget, --batch-tokens)")
        _seconds("max_wait_ms", self.max_wait_ms, 60_000.0, "milliseconds")
        _seconds("body_timeout", self.body_timeout, 3600.0, "seconds", positive=True)
        _seconds("shutdown_timeout", self.shutdown_timeout, 3600.0, "seconds")
        if self.max_pairs_per_request > self.max_queue_pairs:
            raise OptionError("max_pairs_per_request", self.max_pairs_per_request,
                              f"is larger than max_queue_pairs ({self.max_queue_pairs}): such a request could never "
                              "be queued; raise --max-queue-pairs or lower --max-pairs-per-request")
        if not isinstance(self.docs, bool):
            raise OptionError("docs", self.docs, "must be true or false")
        if self.api_key is not None and not self.api_key:
            raise OptionError("api_key", "", "the API key is empty; put the token in the --api-key-file")

    def merge_budget(self, encoder_budget: int) -> int:
        """The merge budget once the encoder's budget (of the provider that runs) is known."""
        return encoder_budget if self.max_batch_tokens is None else int(self.max_batch_tokens)


def _integer(name: str, value: object, low: int, high: int | None, reason: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low \
            or (high is not None and value > high):
        raise OptionError(name, value, reason)


def _seconds(name: str, value: object, high: float, unit: str, positive: bool = False) -> None:
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and \
        (0.0 < value if positive else 0.0 <= value) and value <= high
    if not ok:
        low = "(0" if positive else "[0"
        raise OptionError(name, value, f"must be a number of {unit} in {low}, {high:g}]")


def read_api_key(path: str | Path) -> str:
    """The token in `path` (surrounding whitespace removed); an empty file is refused."""
    key = Path(path).read_text(encoding="utf-8").strip()
    if not key:
        raise ValueError(f"API key file {path} is empty; write the Bearer token into it")
    return key
