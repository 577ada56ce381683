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
extraction setting (languages and the frozen `Extraction`: `prepare.Prepared.key`); run each
group through the engine's two halves on the requests' already tokenized pairs (the engine
cuts them into encoder runs of its own padded budget): `Aligner.encode_prepared` on this
thread, the encoder's one owner, then
`Aligner.extract_encoded`, which hands each request its slice of the results. When the
Aligner is pipelined (``LoadOptions.pipeline``: on CUDA by default, ``--pipeline on``), the
extraction runs on a second thread (`_Extractor`, the engine's `Pipeline`) while this one
encodes the next group, at most two groups in flight; otherwise on this thread, in series.
A request whose group still fails is retried alone, so it fails only itself. Results never
depend on which requests share a batch, nor on the pipeline, as long as the engine is
batch-invariant (every precision is). The metrics: requests per batch as the worker takes
it; pairs, tokens and seconds from each encoder call's own `AlignStats`.

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

from transalign.engine.pipeline import BufferPool, Pipeline
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

    def taken(self, requests: int) -> None:
        """The worker took ``requests`` queued requests as one batch (retries alone not counted)."""

    def batch(self, requests: int, stats: list, seconds: float) -> None:
        """One encoder call for ``requests`` merged requests (a batch's group of one extraction
        setting); ``stats``: its `AlignStats`; ``seconds``: from its encoding to its answers."""

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
    alone: bool = False  # retried after its group failed: runs in a batch of its own


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
        extractor = _Extractor(aligner, self) if getattr(aligner, "pipelined", False) else None
        self._buffers = extractor.buffers if extractor is not None else BufferPool(1)
        self.ready.set()
        try:
            while True:
                if extractor is not None:  # wait for room before taking requests: they merge meanwhile
                    extractor.slot()
                if (batch := self._next_batch()) is None:
                    break
                try:
                    self._run(aligner, batch, extractor)
                except BaseException as exc:  # noqa: BLE001 - a bug must fail its requests, not hang them
                    log.exception("transalign serve: batch failed")
                    for job in batch:
                        _settle(job.future, exc=exc)
        finally:
            if extractor is not None:
                extractor.finish()  # the groups it holds are extracted and answered first
                while (batch := self._next_batch()) is not None:  # retries it queued meanwhile
                    self._run(aligner, batch, None)

    def _next_batch(self) -> list[Job] | None:
        """Jobs for one batch, in arrival order; None once closing and the queue is empty."""
        with self._cond:
            while not self._queue:
                if self._closing:
                    return None
                self._cond.wait()
            if self._queue[0].alone:  # a retry: its future is running already
                job = self._queue.popleft()
                self._queued_pairs -= job.prepared.pairs
                self._metrics.queue_depth(self._queued_pairs)
                return [job]
            deadline = self._queue[0].arrived + self._max_wait
            batch: list[Job] = []
            tokens = 0
            while True:
                full = len(batch) >= self._max_requests
                while self._queue and not full:
                    job = self._queue[0]
                    if job.alone or (batch and tokens + job.prepared.tokens > self.max_batch_tokens):
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
        if batch:
            self._metrics.taken(len(batch))
        return batch

    def _run(self, aligner, batch: list[Job], extractor: "_Extractor | None") -> None:
        """Each group of the batch through the encoder (with an extractor: the caller holds a
        slot for the first group)."""
        groups: dict[tuple, list[Job]] = {}
        for job in batch:
            groups.setdefault(job.prepared.key, []).append(job)
        for k, jobs in enumerate(groups.values()):
            if k and extractor is not None:
                extractor.slot()
            self._encode(aligner, jobs, extractor)

    def _encode(self, aligner, jobs: list[Job], extractor: "_Extractor | None") -> None:
        """The encoder half for one group (this thread owns the encoder; with an extractor, it
        holds one of its slots); extraction follows here, or on the extractor's thread while
        this one encodes the next group. A group that fails is retried request by request, so a
        request fails only itself."""
        from transalign.engine.prepare import PreparedPairs

        clock = time.perf_counter()
        try:
            merged = PreparedPairs.concat([job.prepared.encoded for job in jobs])
            encoded = aligner.encode_prepared(merged, extraction=jobs[0].prepared.extraction, buffers=self._buffers)
        except Exception as exc:  # noqa: BLE001 - isolate the request that caused it
            if len(jobs) == 1:
                _settle(jobs[0].future, exc=exc)
                if extractor is not None:
                    extractor.free()
            else:
                for k, job in enumerate(jobs):  # the slot held goes to the first retry
                    if k and extractor is not None:
                        extractor.slot()
                    self._encode(aligner, [job], extractor)
            return
        if extractor is None:
            self._extract(aligner, (jobs, encoded, clock))
        else:
            extractor.submit((jobs, encoded, clock))  # it frees the slot once answered

    def _extract(self, aligner, item: tuple) -> None:
        """The extraction half: each request gets its slice of the group's results. A group whose
        extraction fails (non-finite hidden states) goes back to the front of the queue request
        by request, each then encoded alone."""
        jobs, encoded, clock = item
        try:
            results = aligner.extract_encoded(encoded)
        except Exception as exc:  # noqa: BLE001 - isolate the request that caused it
            if len(jobs) == 1:
                _settle(jobs[0].future, exc=exc)
            else:
                self._retry_alone(jobs)
            return
        finally:
            if encoded.buffer is not None:  # the results are Python values: the hidden states are done with
                self._buffers.give(encoded.buffer)
        self._metrics.batch(len(jobs), [results.stats], time.perf_counter() - clock)
        start = 0
        for job in jobs:
            _settle(job.future, result=results[start:start + job.prepared.pairs])
            start += job.prepared.pairs

    def _retry_alone(self, jobs: list[Job]) -> None:
        """Queue ``jobs`` again, first, each to run in a batch of its own (their futures are
        running already: the worker took them)."""
        with self._cond:
            for job in reversed(jobs):
                job.alone = True
                self._queue.appendleft(job)
                self._queued_pairs += job.prepared.pairs
            self._cond.notify()


class _Extractor:
    """The service's side of the engine pipeline (`engine.pipeline`): one thread extracts links
    from group k while the worker, the encoder's one owner, encodes group k+1. At most
    ``PIPELINE_BUFFERS`` groups are between the encoder and their answers, so hidden states in
    memory stay bounded whatever the load. Used when the Aligner is pipelined (CUDA by default;
    ``--pipeline on``); results are those of the serial worker (the same two engine halves)."""

    def __init__(self, aligner, batcher: Batcher):
        from transalign.engine.aligner import PIPELINE_BUFFERS

        self._slots = threading.Semaphore(PIPELINE_BUFFERS)
        self.buffers = BufferPool(PIPELINE_BUFFERS)  # hidden states, reused group after group
        self._batcher, self._aligner = batcher, aligner
        self._pipeline = Pipeline([self._stage], name="transalign-extract", keep_results=False)

    def slot(self) -> None:
        """Wait until fewer than ``PIPELINE_BUFFERS`` groups are being encoded or waiting for
        their answers; the slot is the worker's until `free` (the extractor frees it)."""
        self._slots.acquire()

    def free(self) -> None:
        self._slots.release()

    def submit(self, item: tuple) -> None:
        self._pipeline.submit(item)

    def finish(self) -> None:
        self._pipeline.finish()

    def _stage(self, item: tuple) -> None:
        try:
            self._batcher._extract(self._aligner, item)
        except BaseException as exc:  # noqa: BLE001 - a bug must fail its requests, not hang them
            log.exception("transalign serve: extraction failed")
            for job in item[0]:
                _settle(job.future, exc=exc)
        finally:
            self.free()


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
