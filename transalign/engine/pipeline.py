"""A bounded, ordered pipeline of worker threads: the CPU stages of `Aligner.align_iter` overlap
the encoder instead of waiting for it.

Why: on a GPU the encoder is fast, and tokenizing, batch planning and extracting links, run in
series with it, leave it idle most of the time. With the pipeline, while the encoder runs chunk
k, one thread tokenizes and plans chunk k+1 and the caller's thread extracts chunk k-1 (and
reads the input, and does whatever the caller does with the results). ONNX Runtime and the
Numba kernels release the GIL while they compute.

How (`run_ahead`): the caller's thread reads items from its input and submits them; each stage
is one thread that takes items from its inbox in order, applies its function and passes the
result on; the caller takes results in the order it submitted them. At most ``depth`` items are
in flight (submitted, not yet taken), so memory stays bounded whatever the input size; the
queues themselves are unbounded, which is safe because of that count and means no thread ever
blocks on a full queue (no deadlock between the caller and the stages).

Errors keep their place: an exception raised by a stage travels down the line in its item's
place and is raised in the caller's thread, the same object (type and message), when the caller
reaches that item, after every result before it. An exception from reading the input is raised
likewise, after the results of the items read before it.

Cleanup: when the caller stops (the generator is closed, exhausted, or raises), `Pipeline.close`
sets ``cancelled`` (stage functions check it between units of work: the encoder between
batches), sends a stop marker down the line and joins every thread. The stage threads only wait
on their inbox (or, through their function, on `BufferPool.take`, which watches ``cancelled``),
so joining waits at most for the unit of work in progress. The threads are daemons, so a
generator abandoned without being closed cannot keep the interpreter from exiting.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

_STOP = object()


class _Failed:
    """An exception travelling down the line in the place of the item that raised it."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException):
        self.error = error


class Pipeline:
    """Stage threads connected by queues; `submit` items, `take` results in the same order."""

    def __init__(self, stages: Sequence[Callable[[Any], Any]], cancelled: threading.Event | None = None,
                 name: str = "transalign-pipeline", keep_results: bool = True):
        self.cancelled = threading.Event() if cancelled is None else cancelled
        self._queues = [queue.SimpleQueue() for _ in range(len(stages) + 1)]
        if not keep_results:  # the last stage delivers its results itself (the service): drop them
            self._queues[-1] = _Discard()
        self._threads = [threading.Thread(target=self._work, args=(stage, self._queues[k], self._queues[k + 1]),
                                          name=f"{name}-{k}", daemon=True) for k, stage in enumerate(stages)]
        for thread in self._threads:
            thread.start()

    def _work(self, stage, inbox, outbox) -> None:
        while True:
            item = inbox.get()
            if item is _STOP:
                outbox.put(_STOP)
                return
            if not isinstance(item, _Failed) and not self.cancelled.is_set():
                try:
                    item = stage(item)
                except BaseException as error:  # raised in the caller's thread by `take`
                    item = _Failed(error)
            outbox.put(item)

    def submit(self, item) -> None:
        self._queues[0].put(item)

    def take(self):
        """The next result, in submission order; raises what the stage that failed raised."""
        item = self._queues[-1].get()
        if isinstance(item, _Failed):
            raise item.error
        return item

    def close(self) -> None:
        """Cancel what is in flight and join every stage thread."""
        self.cancelled.set()
        self.finish()

    def finish(self) -> None:
        """Let every submitted item through all stages, then join the stage threads."""
        self._queues[0].put(_STOP)
        for thread in self._threads:
            thread.join()


class _Discard:
    """The output queue of a pipeline that keeps no results."""

    def put(self, item) -> None:
        pass


def run_ahead(items: Iterable, stages: Sequence[Callable[[Any], Any]], depth: int,
              cancelled: threading.Event | None = None) -> Iterator:
    """Each item through ``stages`` (each on its own thread), yielded in input order, at most
    ``depth`` items in flight; see the module docstring for errors and cleanup."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    pipeline = Pipeline(stages, cancelled)
    try:
        source = iter(items)
        in_flight, exhausted, deferred = 0, False, None
        while True:
            while not exhausted and in_flight < depth:
                try:
                    item = next(source)
                except StopIteration:
                    exhausted = True
                except Exception as error:  # raised after the results of the items read before it
                    exhausted, deferred = True, error
                else:
                    pipeline.submit(item)
                    in_flight += 1
            if not in_flight:
                break
            result = pipeline.take()
            in_flight -= 1
            yield result
        if deferred is not None:
            raise deferred
    finally:
        pipeline.close()


class BufferPool:
    """``count`` float32 buffers passed between the encoder stage and the caller: reused chunk
    after chunk (no fresh pages to fault in per chunk), and at most ``count`` chunks' hidden
    states alive at once (two: the one being extracted, the one being encoded)."""

    def __init__(self, count: int):
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(count):
            self._free.put(np.empty(0, dtype=np.float32))

    def take(self, size: int, cancelled: threading.Event) -> np.ndarray | None:
        """A buffer of at least ``size`` floats (grown when smaller); None once ``cancelled``."""
        while True:
            try:
                buffer = self._free.get(timeout=0.05)
            except queue.Empty:
                if cancelled.is_set():
                    return None
                continue
            if buffer.size >= size:
                return buffer
            return np.empty(max(size, buffer.size * 5 // 4), dtype=np.float32)  # headroom: chunks vary

    def give(self, buffer: np.ndarray) -> None:
        self._free.put(buffer)
