"""The service's settings: one frozen dataclass, validated on construction, shared by the CLI,
the app and the tests (defaults here are the ones `transalign serve --help` shows)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_WAIT_MS = 2.0
DEFAULT_MAX_BATCH_REQUESTS = 64
DEFAULT_MAX_PAIRS_PER_REQUEST = 64
DEFAULT_MAX_QUEUE_PAIRS = 1024
DEFAULT_MAX_BODY_BYTES = 2 * 1024 * 1024
RETRY_AFTER_S = 1  # what a 429 tells the client to wait; the queue drains in well under that


@dataclass(frozen=True)
class ServeConfig:
    """What to load and the limits of the service.

    max_batch_tokens: tokens (both sides, special tokens included) the worker merges into one
    `Aligner.align` call, also passed as its encoder budget; None: the engine's default for the
    provider (2048 CPU, 32768 CUDA). A single request over the budget still runs, alone.
    max_wait_ms: how long the worker waits after the first queued request for others to join.
    max_batch_requests: requests per batch; 1 turns cross-request batching off.
    max_queue_pairs: pairs waiting for the worker; a request that would exceed it gets 429.
    api_key: the Bearer token /v1/* requires (None: no authentication).
    """

    bundle: Path
    precision: str = "fp32"
    provider: str = "auto"
    threads: int | None = None
    max_batch_tokens: int | None = None
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS
    max_batch_requests: int = DEFAULT_MAX_BATCH_REQUESTS
    max_pairs_per_request: int = DEFAULT_MAX_PAIRS_PER_REQUEST
    max_queue_pairs: int = DEFAULT_MAX_QUEUE_PAIRS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    api_key: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "bundle", Path(self.bundle))
        for name in ("max_batch_requests", "max_pairs_per_request", "max_queue_pairs", "max_body_bytes"):
            _at_least_one(name, getattr(self, name))
        if self.max_batch_tokens is not None:
            _at_least_one("max_batch_tokens", self.max_batch_tokens)
        if self.threads is not None:
            _at_least_one("threads", self.threads)
        if not 0.0 <= self.max_wait_ms <= 60_000.0:
            raise ValueError(f"max_wait_ms must be in [0, 60000], got {self.max_wait_ms}")
        if self.max_pairs_per_request > self.max_queue_pairs:
            raise ValueError(f"max_pairs_per_request ({self.max_pairs_per_request}) is larger than "
                             f"max_queue_pairs ({self.max_queue_pairs}): such a request could never be queued; "
                             "raise --max-queue-pairs or lower --max-pairs-per-request")
        if self.api_key is not None and not self.api_key:
            raise ValueError("the API key is empty; put the token in the --api-key-file")


def _at_least_one(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def read_api_key(path: str | Path) -> str:
    """The token in `path` (surrounding whitespace removed); an empty file is refused."""
    key = Path(path).read_text(encoding="utf-8").strip()
    if not key:
        raise ValueError(f"API key file {path} is empty; write the Bearer token into it")
    return key
