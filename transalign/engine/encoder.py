"""Token sequences in, packed hidden rows out: the one place ONNX Runtime runs the encoder.

Two steps, so a pipeline can do the first on another thread than the second
(`engine.pipeline`, `Aligner.align_iter` with ``LoadOptions.pipeline``):

- `Encoder.plan`: from tokenized sentences (ids and word ids per sentence) and a mask of those
  to run, length-sorted batches by the padded-token budget (`engine.batching`), each with its
  inputs ready (padded ids, attention mask) and where its content rows go;
- `Encoder.run`: run each batch and pack every sentence's content rows (its tokens with a word
  id; the special tokens, the reference's ``[:, 1:-1]``, are dropped) contiguously, sentence by
  sentence, into a new array or a caller's reused buffer.

`Encoder.hidden_rows` is the two in a row. Which batch a sentence shares never changes its rows
(fp32 and static int8 are batch-invariant).

On the CUDA provider each run uses I/O binding: the inputs are bound from numpy and the output
to a host buffer made once per `run` (the largest batch's size), so ONNX Runtime copies the
hidden states back into it directly. That path has not run on a GPU yet; on CPU sessions it is
tested against ``session.run`` (tests/test_pipeline.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from transalign.engine.batching import plan_batches


class NonFiniteError(ValueError):
    """The encoder produced NaN or infinity for a sentence (damaged weights, fp16 overflow)."""


@dataclass(frozen=True)
class HiddenRows:
    """Content rows of a call's sentences: ``hidden`` [rows, d]; sentence s owns rows
    ``offsets[s] : offsets[s] + lengths[s]`` (0 rows when it was not run); ``word_ids`` [rows]."""

    hidden: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    word_ids: np.ndarray
    real_tokens: int
    padded_tokens: int


@dataclass(frozen=True)
class Batch:
    """One encoder run with its inputs ready: ``ids``/``mask`` [B, W] int64; ``is_content``
    [B, W] marks the content tokens, whose rows go, in row-major order, to rows ``dest`` of the
    packed hidden array."""

    ids: np.ndarray
    mask: np.ndarray
    is_content: np.ndarray
    dest: np.ndarray

    @property
    def sentences(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class EncodePlan:
    """What `Encoder.run` needs: the batches, and the layout of the packed rows (`HiddenRows`)."""

    batches: tuple[Batch, ...]
    offsets: np.ndarray
    lengths: np.ndarray
    word_ids: np.ndarray
    real_tokens: int
    padded_tokens: int

    @property
    def rows(self) -> int:
        return int(self.lengths.sum())


def check_finite(rows: HiddenRows, n_pairs: int, start: int) -> None:
    """Refuse non-finite hidden states, naming the first affected pair: silently empty links
    (every comparison with NaN is false) would look like a real, if poor, alignment.

    Exact and cheap: a row holding NaN or an infinity has a non-finite sum, so only rows whose
    sum is not finite (those, or rows of huge finite values whose sum overflows) are examined
    element by element."""
    with np.errstate(over="ignore", invalid="ignore"):
        sums = rows.hidden.sum(axis=1, dtype=np.float32)
    suspects = np.flatnonzero(~np.isfinite(sums))
    if not len(suspects):
        return
    bad = suspects[~np.isfinite(rows.hidden[suspects]).all(axis=1)]
    if not len(bad):
        return
    row = int(bad[0])
    seq = int(np.flatnonzero((rows.offsets <= row) & (row < rows.offsets + rows.lengths))[0])
    side, pair = ("source", seq) if seq < n_pairs else ("target", seq - n_pairs)
    raise NonFiniteError(f"pair {start + pair}: the encoder produced NaN or infinite values for the {side} "
                         "sentence; the bundle's weights may be damaged (check it without verify=False) or this "
                         "precision overflows on it (try fp32)")


class Encoder:
    """One ONNX Runtime session and how to batch for it (``overhead_tokens``: the fixed cost of
    one run in padded tokens, `engine.defaults.DEFAULT_BATCH_OVERHEAD_TOKENS`; ``io_binding``:
    run through ONNX Runtime's I/O binding, for the CUDA provider)."""

    def __init__(self, session, hidden_size: int, pad_id: int, overhead_tokens: int, *, io_binding: bool = False):
        self.session, self.hidden_size, self.pad_id = session, hidden_size, pad_id
        self.overhead_tokens = overhead_tokens
        self.io_binding = io_binding

    def hidden_rows(self, encoded, keep: np.ndarray, batch_tokens: int,
                    progress: Callable[[int], None] | None = None) -> HiddenRows:
        """Run every kept sequence through the encoder; ``progress(sentences)`` after each batch,
        so a progress display moves every few seconds even when a call takes minutes."""
        return self.run(self.plan(encoded, keep, batch_tokens), progress)

    def plan(self, encoded, keep: np.ndarray, batch_tokens: int) -> EncodePlan:
        """Batches of the kept sequences of ``encoded`` ((ids, word ids) per sentence) under the
        padded-token budget, their inputs built, and the packed layout of their content rows."""
        word_lists = [w for _, w in encoded]
        content = np.fromiter(((w >= 0).sum() for w in word_lists), dtype=np.int64, count=len(encoded))
        content[~keep] = 0
        offsets = np.zeros(len(encoded), dtype=np.int64)
        np.cumsum(content[:-1], out=offsets[1:])
        word_ids = np.concatenate([w[w >= 0] for w, k in zip(word_lists, keep) if k] or [np.empty(0, np.int32)])
        kept = np.flatnonzero(keep)
        seq_lengths = np.fromiter((len(encoded[i][0]) for i in kept), dtype=np.int64, count=len(kept))
        plan = plan_batches(seq_lengths, batch_tokens, self.overhead_tokens)
        batches = tuple(self._batch([int(kept[b]) for b in batch], encoded, offsets) for batch in plan.batches)
        return EncodePlan(batches, offsets, content, word_ids.astype(np.int64), plan.real_tokens, plan.padded_tokens)

    def run(self, plan: EncodePlan, progress: Callable[[int], None] | None = None, out: np.ndarray | None = None,
            stop: Callable[[], bool] | None = None) -> HiddenRows | None:
        """Run the plan's batches. ``out``: a float32 buffer of at least ``plan.rows * d`` values
        to fill (reused by a pipeline; None: a new array); ``stop()``, asked before each batch,
        abandons the run (returns None) when the caller has gone."""
        size = plan.rows * self.hidden_size
        if out is None:
            hidden = np.empty((plan.rows, self.hidden_size), dtype=np.float32)
        else:
            hidden = out[:size].reshape(plan.rows, self.hidden_size)
        bound = self._output_buffer(plan) if self.io_binding else None
        for batch in plan.batches:
            if stop is not None and stop():
                return None
            full = self._run_bound(batch, bound) if bound is not None else \
                self.session.run(["hidden"], {"input_ids": batch.ids, "attention_mask": batch.mask})[0]
            hidden[batch.dest] = full[batch.is_content]  # row-major: sequence by sequence, token order kept
            if progress is not None:
                progress(batch.sentences)
        return HiddenRows(hidden, plan.offsets, plan.lengths, plan.word_ids, plan.real_tokens, plan.padded_tokens)

    def _batch(self, seqs: list[int], encoded, offsets: np.ndarray) -> Batch:
        width = max(len(encoded[s][0]) for s in seqs)
        ids = np.full((len(seqs), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        is_content = np.zeros((len(seqs), width), dtype=bool)
        for row, s in enumerate(seqs):
            seq_ids, seq_words = encoded[s]
            ids[row, :len(seq_ids)] = seq_ids
            mask[row, :len(seq_ids)] = 1
            is_content[row, :len(seq_ids)] = seq_words >= 0
        counts = is_content.sum(axis=1)
        starts = offsets[seqs]
        dest = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(counts.sum())
        return Batch(ids, mask, is_content, dest)

    # -- I/O binding (CUDA) ----------------------------------------------------------------------

    def _output_buffer(self, plan: EncodePlan) -> np.ndarray:
        """One host buffer for every batch of the plan: the largest batch's [B * W * d] floats."""
        largest = max((b.ids.size for b in plan.batches), default=0)
        return np.empty(largest * self.hidden_size, dtype=np.float32)

    def _run_bound(self, batch: Batch, buffer: np.ndarray) -> np.ndarray:
        """``session.run`` through I/O binding: inputs bound from the batch's numpy arrays, the
        output ``hidden`` [B, W, d] float32 (the export keeps fp16 graphs' outputs float32) bound
        to the front of ``buffer``, which ONNX Runtime fills in one copy from the device."""
        shape = (*batch.ids.shape, self.hidden_size)
        view = buffer[:batch.ids.size * self.hidden_size].reshape(shape)
        binding = self.session.io_binding()
        binding.bind_cpu_input("input_ids", batch.ids)
        binding.bind_cpu_input("attention_mask", batch.mask)
        binding.bind_output("hidden", "cpu", 0, np.float32, list(shape), view.ctypes.data)
        self.session.run_with_iobinding(binding)
        return view
