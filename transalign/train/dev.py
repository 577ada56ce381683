"""Dev-set AER with the reference extraction (threshold on both softmaxes, as the aligner), and
with argmax (row and column maximum of S, `--method argmax --word-level any`), the best
threshold-free method on e5-small (README "Extraction methods"). Both are computed from the
same similarity matrices, so the second costs no extra encoder pass."""

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


def predicted_links(sim, src_words: np.ndarray, tgt_words: np.ndarray, threshold: float) -> set:
    """Reference rule on S: word pairs with a subword cell above ``threshold`` in both softmaxes."""
    import torch

    keep = (torch.softmax(sim, dim=1) > threshold) & (torch.softmax(sim, dim=0) > threshold)
    return _word_links(keep, src_words, tgt_words)


def argmax_links(sim, src_words: np.ndarray, tgt_words: np.ndarray) -> set:
    """Argmax rule on S: cell (i, j) is linked when j is the first maximum of row i and i the
    first maximum of column j (torch.argmax returns the first maximum, as numpy's)."""
    import torch

    n, m = sim.shape
    keep = torch.zeros((n, m), dtype=torch.bool, device=sim.device)
    rows = torch.arange(n, device=sim.device)
    best_col = sim.argmax(dim=1)
    keep[rows, best_col] = sim.argmax(dim=0)[best_col] == rows
    return _word_links(keep, src_words, tgt_words)


def _word_links(keep, src_words: np.ndarray, tgt_words: np.ndarray) -> set:
    import torch

    a, b = (t.cpu().numpy() for t in torch.nonzero(keep, as_tuple=True))
    return set(zip(src_words[a].tolist(), tgt_words[b].tolist()))


def dev_scores(module, examples, pairs, threshold: float, pad_id: int, device: str,
               batch_size: int = 32) -> dict[str, AlignmentScores]:
    """Micro-averaged scores of the current model on ``examples`` (gold from ``pairs``), by rule:
    ``{"reference": ..., "argmax": ...}``."""
    import torch

    was_training = module.training
    module.eval()
    totals = {"reference": np.zeros(5, dtype=np.int64), "argmax": np.zeros(5, dtype=np.int64)}
    try:
        with torch.no_grad():
            for start in range(0, len(examples), batch_size):
                chunk = examples[start:start + batch_size]
                for (x, y), e, p in zip(hidden_pairs(module, chunk, pad_id, device), chunk,
                                        pairs[start:start + batch_size]):
                    everything, sim = p.sure | p.possible, x @ y.T
                    for rule, links in (("reference", predicted_links(sim, e.src.word_ids, e.tgt.word_ids,
                                                                      threshold)),
                                        ("argmax", argmax_links(sim, e.src.word_ids, e.tgt.word_ids))):
                        totals[rule] += (len(links), len(p.sure), len(everything), len(links & p.sure),
                                         len(links & everything))
    finally:
        module.train(was_training)
    return {rule: score_counts(*map(int, t), sentences=len(examples)) for rule, t in totals.items()}
