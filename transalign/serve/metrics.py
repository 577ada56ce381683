"""Prometheus metrics of one server, in their own registry (several apps can live in one
process, e.g. in tests, without clashing in the global one)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from transalign.serve.batcher import BatchMetrics

_LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
_POWERS_OF_TWO = tuple(float(2 ** k) for k in range(11))  # 1 .. 1024
_TOKEN_BUCKETS = tuple(float(2 ** k) for k in range(4, 18))  # 16 .. 131072


class Metrics(BatchMetrics):
    """Requests by status, latency, batch sizes in requests/pairs/tokens, queue depth, pairs."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("transalign_requests", "HTTP requests by path and status code",
                                ("path", "status"), registry=r)
        self.latency = Histogram("transalign_request_latency_seconds", "HTTP request latency by path",
                                 ("path",), buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_requests = Histogram("transalign_batch_requests",
                                        "requests the worker took from the queue as one batch",
                                        buckets=_POWERS_OF_TWO, registry=r)
        self.batch_pairs = Histogram("transalign_batch_pairs", "sentence pairs per encoder call",
                                     buckets=_POWERS_OF_TWO, registry=r)
        self.batch_tokens = Histogram("transalign_batch_tokens", "tokens (both sides) per encoder call",
                                      buckets=_TOKEN_BUCKETS, registry=r)
        self.batch_seconds = Histogram("transalign_batch_seconds",
                                       "seconds from an encoder call's start to its answers",
                                       buckets=_LATENCY_BUCKETS, registry=r)
        self.queue = Gauge("transalign_queue_pairs", "pairs waiting for the worker", registry=r)
        self.in_flight = Gauge("transalign_align_requests_in_flight",
                               "POST /v1/align requests received and not yet answered", registry=r)
        self.pairs = Counter("transalign_pairs_aligned", "sentence pairs aligned", registry=r)
        self.padded = Counter("transalign_padded_tokens", "tokens the encoder ran, padding included "
                              "(transalign_batch_tokens_sum of them were real)", registry=r)
        self.abandoned = Counter("transalign_requests_abandoned", "POST /v1/align requests whose client "
                                 "disconnected before its answer", registry=r)
        self.dropped_pairs = Counter("transalign_pairs_dropped", "pairs of abandoned requests taken out of the queue "
                                     "before the encoder saw them", registry=r)
        self.engine_seconds = Counter("transalign_engine_seconds", "time of the align calls by phase (tokenize: "
                                      "in the HTTP layer, before queueing)", ("phase",), registry=r)

    def taken(self, requests: int) -> None:
        """The worker took ``requests`` queued requests as one batch."""
        self.batch_requests.observe(requests)

    def batch(self, requests: int, stats: list, seconds: float) -> None:
        """One encoder call: ``requests`` of the batch with one setting, from their own
        `AlignStats` (never a shared Aligner.stats)."""
        pairs = sum(s.pairs for s in stats)
        self.batch_pairs.observe(pairs)
        self.batch_tokens.observe(sum(s.real_tokens for s in stats))
        self.batch_seconds.observe(seconds)
        self.pairs.inc(pairs)
        self.padded.inc(sum(s.padded_tokens for s in stats))
        for phase in ("tokenize", "encode", "extract"):
            self.engine_seconds.labels(phase).inc(sum(s.seconds.get(phase, 0.0) for s in stats))

    def queue_depth(self, pairs: int) -> None:
        self.queue.set(pairs)

    def dropped(self, pairs: int) -> None:
        self.dropped_pairs.inc(pairs)

    def request(self, path: str, status: int, seconds: float) -> None:
        self.requests.labels(path, str(status)).inc()
        self.latency.labels(path).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
