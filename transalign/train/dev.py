"""Dev-set AER with the reference extraction (threshold on both softmaxes, as the aligner)."""

from __future__ import annotations

import numpy as np

from transalign.evaluation import AlignmentScores, score_counts
from transalign.train.batches import pad


def hidden_pairs(module, examples, pad_id: int, device: str):
    """Per example (x [n, d], y [m, d]): the alignment layer without the specials, one forward
    pass for the sources and targets of the batch together."""
    import torch

    rows = [e.src.ids for e in examples] + [e.tgt.ids for e in examples]
    ids, mask = pad(rows, pad_id)
    hidden = module(torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device))
    count = len(examples)
    return [(hidden[k, 1:len(e.src.ids) - 1], hidden[count + k, 1:len(e.tgt.ids) - 1])
            for k, e in enumerate(examples)]


def predicted_links(x, y, src_words: np.ndarray, tgt_words: np.ndarray, threshold: float) -> set:
    import torch

    sim = x @ y.T
    keep = (torch.softmax(sim, dim=1) > threshold) & (torch.softmax(sim, dim=0) > threshold)
    a, b = (t.cpu().numpy() for t in torch.nonzero(keep, as_tuple=True))
    return set(zip(src_words[a].tolist(), tgt_words[b].tolist()))


def dev_scores(module, examples, pairs, threshold: float, pad_id: int, device: str,
               batch_size: int = 32) -> AlignmentScores:
    """Micro-averaged scores of the current model on ``examples`` (gold from ``pairs``)."""
    import torch

    was_training = module.training
    module.eval()
    totals = np.zeros(5, dtype=np.int64)
    try:
        with torch.no_grad():
            for start in range(0, len(examples), batch_size):
                chunk = examples[start:start + batch_size]
                for (x, y), e, p in zip(hidden_pairs(module, chunk, pad_id, device), chunk,
                                        pairs[start:start + batch_size]):
                    links = predicted_links(x, y, e.src.word_ids, e.tgt.word_ids, threshold)
                    everything = p.sure | p.possible
                    totals += (len(links), len(p.sure), len(everything), len(links & p.sure),
                               len(links & everything))
    finally:
        module.train(was_training)
    return score_counts(*map(int, totals), sentences=len(examples))
