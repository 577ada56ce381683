"""Dynamic micro-batching: one worker thread owns the Aligner and merges concurrent requests.

Why one worker: an ONNX Runtime session already uses every core it is given for one run, and
the encoder is almost all of the time, so the win under concurrency comes from bigger encoder
batches, not from more threads calling the session.

The worker loads the Aligner itself, warms it up, then loops: take the queued requests in
arrival order up to ``max_batch_tokens`` tokens and ``max_batch_requests`` requests, waiting at
most ``max_wait_ms`` after the first one arrived, and only while the HTTP layer holds requests
that are on their way to the queue (`expect` tickets): a lone client never waits for company
that is not coming, and requests that queued while the worker was busy go straight into one
batch (continuous batching, as text-embeddings-inference does); group them by their full
extraction setting (languages and the frozen `Extraction`: `prepare.Prepared.key`); call
`Aligner.align_prepared` once per group on the requests' already tokenized pairs (the engine cuts
it into encoder runs of its own padded budget); hand each request its slice of the results. A
request that still fails inside a group is retried alone, so it fails only itself. Results never depend on which requests share a batch as long as the
engine is batch-invariant (every precision is). The metrics come from each call's own
`AlignStats`.

A request whose client went away is `abandon`ed: taken out of the queue at once, so its pairs
never reach the encoder (a job the worker already runs finishes; its answer is dropped).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field

from transalign.serve.prepare import Prepared

log = logging.getLogger("transalign.serve")


class QueueFull(Exception):
    """The queue holds ``max_queue_pairs`` pairs already: answer 429, do not grow."""


class NotReady(Exception):
    """The model is not loaded (yet, or it failed to load)."""


class ShuttingDown(Exception):
    """The server is stopping and accepts no new work."""


class BatchMetrics:
    """What the batcher reports; the default does nothing (`metrics.Metrics` records it)."""

    def batch(self, requests: int, stats: list, seconds: float) -> None:
        """One batch of ``requests``; ``stats``: the `AlignStats` of its successful align calls."""

    def queue_depth(self, pairs: int) -> None: ...

    def dropped(self, pairs: int) -> None:
        """A queued request of ``pairs`` pairs was abandoned before the encoder saw it."""


class Ticket:
    """A request the HTTP layer has received and not yet queued (or refused)."""

    __slots__ = ("open",)

    def __init__(self) -> None:
        self.open = True


@dataclass(eq=False)
class Job:
    prepared: Prepared
    future: Future = field(default_factory=Future)
    arrived: float = field(default_factory=time.monotonic)


class Batcher:
    """The queue and the worker thread; `submit` is safe from any thread."""

    def __init__(self, load: Callable[[], object], *, max_batch_tokens: int | None, max_wait_ms: float,
                 max_batch_requests: int, max_queue_pairs: int, metrics: BatchMetrics | None = None,
                 on_ready: Callable[[object], None] | None = None,
                 on_fatal: Callable[[BaseException], None] | None = None):
        self._load, self._on_ready, self._on_fatal = load, on_ready, on_fatal
        self.max_batch_tokens = max_batch_tokens  # the merge budget; None: the Aligner's encoder budget
        self._max_wait = max_wait_ms / 1000.0
        self._max_requests, self._max_queue_pairs = max_batch_requests, max_queue_pairs
        self._metrics = metrics or BatchMetrics()
        self._queue: deque[Job] = deque()
        self._queued_pairs = 0
        self._expected = 0  # open tickets: requests being read or checked by the HTTP layer
        self._cond = threading.Condition()
        self._closing = False
        self.ready = threading.Event()
        self.load_error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="transalign-batcher", daemon=True)

    # -- client side ----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def expect(self) -> Ticket:
        """Announce a request that will be submitted (or refused) soon; see `release`."""
        with self._cond:
            self._expected += 1
        return Ticket()

    def release(self, ticket: Ticket | None) -> None:
        """The announced request is queued or refused: the worker stops waiting for it."""
        if ticket is None:
            return
        with self._cond:
            self._release_locked(ticket)

    def _release_locked(self, ticket: Ticket | None) -> None:
        if ticket is not None and ticket.open:
            ticket.open = False
            self._expected -= 1
            self._cond.notify()

    def submit(self, prepared: Prepared, ticket: Ticket | None = None) -> Job:
        """Queue a checked request; the job's future gets the list of `AlignResult` (or the
        exception). ``ticket`` (from `expect`) is released in the same step."""
        if not self.ready.is_set():
            self.release(ticket)
            raise NotReady()
        job = Job(prepared)
        with self._cond:
            self._release_locked(ticket)
            if self._closing:
                raise ShuttingDown()
            if self._queued_pairs + prepared.pairs > self._max_queue_pairs:
                raise QueueFull(f"{self._queued_pairs} pairs are queued; the limit is {self._max_queue_pairs} "
                                "(--max-queue-pairs)")
            self._queue.append(job)
            self._queued_pairs += prepared.pairs
            self._metrics.queue_depth(self._queued_pairs)
            self._cond.notify()
        return job

    def abandon(self, job: Job) -> bool:
        """The client of ``job`` went away: drop it from the queue (True) unless the worker has
        taken it already (False; its result is then simply not used)."""
        with self._cond:
            if not job.future.cancel():  # running or done: the worker has it
                return False
            try:
                self._queue.remove(job)
            except ValueError:  # not queued (cancelled before submit, or popped and skipped)
                return True
            self._queued_pairs -= job.prepared.pairs
            self._metrics.queue_depth(self._queued_pairs)
            self._metrics.dropped(job.prepared.pairs)
            self._cond.notify()
        return True

    def close(self, timeout: float | None = None) -> None:
        """Stop taking new work, finish everything queued, stop the worker."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def queued_pairs(self) -> int:
        return self._queued_pairs

    # -- worker side ----------------------------------------------------------------------------

    def _main(self) -> None:
        try:
            aligner = self._load()
            if self.max_batch_tokens is None:
                self.max_batch_tokens = aligner.batch_tokens
            _warm_up(aligner)
            if self._on_ready is not None:
                self._on_ready(aligner)
        except BaseException as exc:  # noqa: BLE001 - reported to the server, which stops
            self.load_error = exc
            log.error("transalign serve: could not load the model: %s", exc)
            if self._on_fatal is not None:
                self._on_fatal(exc)
            return
        self.ready.set()
        while (batch := self._next_batch()) is not None:
            try:
                self._run(aligner, batch)
            except BaseException as exc:  # noqa: BLE001 - a bug must fail its requests, not hang them
                log.exception("transalign serve: batch failed")
                for job in batch:
                    _settle(job.future, exc=exc)

    def _next_batch(self) -> list[Job] | None:
        """Jobs for one batch, in arrival order; None once closing and the queue is empty."""
        with self._cond:
            while not self._queue:
                if self._closing:
                    return None
                self._cond.wait()
            deadline = self._queue[0].arrived + self._max_wait
            batch: list[Job] = []
            tokens = 0
            while True:
                full = len(batch) >= self._max_requests
                while self._queue and not full:
                    job = self._queue[0]
                    if batch and tokens + job.prepared.tokens > self.max_batch_tokens:
                        full = True
                        break
                    self._queue.popleft()
                    self._queued_pairs -= job.prepared.pairs
                    if job.future.set_running_or_notify_cancel():  # False: the client went away
                        batch.append(job)
                        tokens += job.prepared.tokens
                    full = len(batch) >= self._max_requests
                remaining = deadline - time.monotonic()
                if full or self._closing or remaining <= 0 or self._expected == 0:
                    break
                self._cond.wait(remaining)
            self._metrics.queue_depth(self._queued_pairs)
        return batch

    def _run(self, aligner, batch: list[Job]) -> None:
        clock = time.perf_counter()
        groups: dict[tuple, list[Job]] = {}
        for job in batch:
            groups.setdefault(job.prepared.key, []).append(job)
        stats: list = []
        for key, jobs in groups.items():
            self._align_group(aligner, key, jobs, stats)
        self._metrics.batch(len(batch), stats, time.perf_counter() - clock)

    def _align_group(self, aligner, key: tuple, jobs: list[Job], stats: list) -> None:
        from transalign.engine.prepare import PreparedPairs

        try:
            merged = PreparedPairs.concat([job.prepared.encoded for job in jobs])
            results = aligner.align_prepared(merged, extraction=jobs[0].prepared.extraction)
        except Exception as exc:  # noqa: BLE001 - isolate the request that caused it
            if len(jobs) == 1:
                _settle(jobs[0].future, exc=exc)
            else:
                for job in jobs:
                    self._align_group(aligner, key, [job], stats)
            return
        stats.append(results.stats)
        start = 0
        for job in jobs:
            _settle(job.future, result=results[start:start + job.prepared.pairs])
            start += job.prepared.pairs


def _warm_up(aligner) -> None:
    """One tiny alignment per method: compiles (or loads) the Numba kernels and runs the session
    once before /ready."""
    from transalign.engine.options import any_language
    from transalign.kernels.names import METHODS

    lang = any_language(aligner.manifest)
    prepared = aligner.prepare([["warm", "up"]], [["warm", "up"]], lang, lang)
    for method in METHODS:
        aligner.align_prepared(prepared, method=method, with_scores=method != "softmax")


def _settle(future: Future, result=None, exc: BaseException | None = None) -> None:
    try:
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)
    except InvalidStateError:  # already settled (a failed batch after a partial success)
        pass
