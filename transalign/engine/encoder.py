"""Token sequences in, packed hidden rows out: the one place ONNX Runtime runs the encoder.

`Encoder.hidden_rows` takes tokenized sentences (ids and word ids per sentence) and a mask of
those to run, plans length-sorted batches by the padded-token budget (`engine.batching`), runs
each batch and packs every sentence's content rows (its tokens with a word id; the special
tokens, the reference's ``[:, 1:-1]``, are dropped) contiguously, sentence by sentence. Which
batch a sentence shares never changes its rows (fp32 and static int8 are batch-invariant).
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


def check_finite(rows: HiddenRows, n_pairs: int, start: int) -> None:
    """Refuse non-finite hidden states, naming the first affected pair: silently empty links
    (every comparison with NaN is false) would look like a real, if poor, alignment."""
    finite_rows = np.isfinite(rows.hidden).all(axis=1)
    if finite_rows.all():
        return
    row = int(np.flatnonzero(~finite_rows)[0])
    seq = int(np.flatnonzero((rows.offsets <= row) & (row < rows.offsets + rows.lengths))[0])
    side, pair = ("source", seq) if seq < n_pairs else ("target", seq - n_pairs)
    raise NonFiniteError(f"pair {start + pair}: the encoder produced NaN or infinite values for the {side} "
                         "sentence; the bundle's weights may be damaged (check it without verify=False) or this "
                         "precision overflows on it (try fp32)")


class Encoder:
    """One ONNX Runtime session and how to batch for it (``overhead_tokens``: the fixed cost of
    one run in padded tokens, `engine.defaults.DEFAULT_BATCH_OVERHEAD_TOKENS`)."""

    def __init__(self, session, hidden_size: int, pad_id: int, overhead_tokens: int):
        self.session, self.hidden_size, self.pad_id = session, hidden_size, pad_id
        self.overhead_tokens = overhead_tokens

    def hidden_rows(self, encoded, keep: np.ndarray, batch_tokens: int,
                    progress: Callable[[int], None] | None = None) -> HiddenRows:
        """Run every kept sequence through the encoder; ``progress(sentences)`` after each batch,
        so a progress display moves every few seconds even when a call takes minutes."""
        word_lists = [w for _, w in encoded]
        content = np.fromiter(((w >= 0).sum() for w in word_lists), dtype=np.int64, count=len(encoded))
        content[~keep] = 0
        offsets = np.zeros(len(encoded), dtype=np.int64)
        np.cumsum(content[:-1], out=offsets[1:])
        hidden = np.empty((int(content.sum()), self.hidden_size), dtype=np.float32)
        word_ids = np.concatenate([w[w >= 0] for w, k in zip(word_lists, keep) if k] or [np.empty(0, np.int32)])
        kept = np.flatnonzero(keep)
        seq_lengths = np.fromiter((len(encoded[i][0]) for i in kept), dtype=np.int64, count=len(kept))
        plan = plan_batches(seq_lengths, batch_tokens, self.overhead_tokens)
        for batch in plan.batches:
            self._run_batch([int(kept[b]) for b in batch], encoded, offsets, hidden)
            if progress is not None:
                progress(len(batch))
        return HiddenRows(hidden, offsets, content, word_ids.astype(np.int64), plan.real_tokens, plan.padded_tokens)

    def _run_batch(self, seqs: list[int], encoded, offsets: np.ndarray, hidden: np.ndarray) -> None:
        width = max(len(encoded[s][0]) for s in seqs)
        ids = np.full((len(seqs), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        is_content = np.zeros((len(seqs), width), dtype=bool)
        for row, s in enumerate(seqs):
            seq_ids, seq_words = encoded[s]
            ids[row, :len(seq_ids)] = seq_ids
            mask[row, :len(seq_ids)] = 1
            is_content[row, :len(seq_ids)] = seq_words >= 0
        out = self.session.run(["hidden"], {"input_ids": ids, "attention_mask": mask})[0]
        rows = out[is_content]  # row-major: sequence by sequence, token order kept
        counts = is_content.sum(axis=1)
        starts = offsets[seqs]
        dest = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(counts.sum())
        hidden[dest] = rows
