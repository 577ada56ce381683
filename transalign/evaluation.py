"""Alignment quality against a gold standard: precision, recall, F1 and AER.

Definitions (Och & Ney 2003; as in SimAlign's ``calc_align_score``), with A the predicted
links, S the gold sure links and P the gold possible links *including* S::

    precision = |A ∩ P| / |A|
    recall    = |A ∩ S| / |S|
    F1        = 2 * precision * recall / (precision + recall)
    AER       = 1 - (|A ∩ S| + |A ∩ P|) / (|A| + |S|)

Corpus-level numbers are *micro* averages, the standard: the counts are summed over all sentence
pairs first, then the formulas are applied once. Per-sentence scores apply the same formulas to
one pair's counts.

Empty sets (no division-by-zero errors, and a perfect prediction always scores perfectly):

- nothing predicted (|A| = 0): precision = 1.0 (vacuously: no predicted link is wrong);
- nothing to find (|S| = 0): recall = 1.0 (vacuously: no sure link was missed);
- both empty (|A| + |S| = 0): AER = 0.0;
- precision + recall = 0: F1 = 0.0.

So predicting nothing for a gold set with sure links gives precision 1.0, recall 0.0, F1 0.0
and AER 1.0: F1 and AER still mark it as the worst possible prediction.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from transalign.formats.alignments import AlignmentLine, FormatError, Link, alignment_lines

__all__ = ["AlignmentScores", "EvaluationResult", "evaluate_alignments", "score_counts", "score_sentence"]


@dataclass(frozen=True)
class AlignmentScores:
    """Scores and the link counts they come from (for one sentence pair or a whole corpus)."""

    precision: float
    recall: float
    f1: float
    aer: float
    predicted: int  # |A|
    sure: int  # |S|
    possible: int  # |P|, sure links included
    hits_sure: int  # |A ∩ S|
    hits_possible: int  # |A ∩ P|
    sentences: int = 1

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class EvaluationResult:
    """``corpus``: micro-averaged scores; ``per_sentence``: one entry per line, if requested."""

    corpus: AlignmentScores
    per_sentence: tuple[AlignmentScores, ...] | None = None
    ids: tuple[str | None, ...] | None = None  # the pairs' ids (gold's, else pred's), with per_sentence

    def to_dict(self) -> dict:
        out: dict = {"corpus": self.corpus.to_dict()}
        if self.per_sentence is not None:
            ids = self.ids or (None,) * len(self.per_sentence)
            out["per_sentence"] = [
                {"line": k, "id": ident, **scores.to_dict()}
                for k, (ident, scores) in enumerate(zip(ids, self.per_sentence), start=1)
            ]
        return out


def score_counts(
    predicted: int, sure: int, possible: int, hits_sure: int, hits_possible: int, sentences: int = 1
) -> AlignmentScores:
    """Apply the formulas of the module docstring to link counts (|P| includes |S|)."""
    if not (0 <= hits_sure <= min(predicted, sure) and hits_sure <= hits_possible <= min(predicted, possible)):
        raise ValueError(
            f"inconsistent counts: |A|={predicted} |S|={sure} |P|={possible} "
            f"|A∩S|={hits_sure} |A∩P|={hits_possible}"
        )
    precision = hits_possible / predicted if predicted else 1.0
    recall = hits_sure / sure if sure else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    total = predicted + sure
    aer = 1.0 - (hits_sure + hits_possible) / total if total else 0.0
    return AlignmentScores(precision, recall, f1, aer, predicted, sure, possible, hits_sure, hits_possible, sentences)


def score_sentence(predicted: Iterable[Link], sure: Iterable[Link], possible: Iterable[Link] = ()) -> AlignmentScores:
    """Scores of one sentence pair; ``possible`` may or may not repeat the sure links."""
    a, s = set(predicted), set(sure)
    p = s | set(possible)
    return score_counts(len(a), len(s), len(p), len(a & s), len(a & p))


def evaluate_alignments(
    gold: str | os.PathLike | Iterable[AlignmentLine],
    pred: str | os.PathLike | Iterable[AlignmentLine | Iterable[Link]],
    *,
    per_sentence: bool = False,
) -> EvaluationResult:
    """Score predicted word alignments against a gold standard (see the module docstring).

    ``gold``: a file with ``i-j`` (sure) and ``ipj`` (possible) links, or parsed lines.
    ``pred``: a ``pharaoh`` or ``id`` file, or per pair an iterable of ``(i, j)`` links (an
    :class:`AlignmentLine` counts all its links as predicted).
    Line k of one is pair k of the other; when both carry ids they must be equal. Files are
    streamed, so memory does not grow with their size unless ``per_sentence`` is set.
    Raises :class:`~transalign.formats.alignments.FormatError` (a ValueError) naming file and line for
    malformed links, different line counts and mismatched ids.
    """
    gold_lines, gold_name = alignment_lines(gold, "gold", allow_possible=True)
    pred_lines, pred_name = alignment_lines(pred, "pred")
    totals = [0, 0, 0, 0, 0]
    rows: list[AlignmentScores] = []
    ids: list[str | None] = []
    done = AlignmentLine()  # sentinel, compared by identity
    k = 0
    while True:
        g, p = next(gold_lines, done), next(pred_lines, done)
        if g is done or p is done:
            break
        k += 1
        if g.id is not None and p.id is not None and g.id != p.id:
            raise FormatError(f"id {p.id!r} does not match id {g.id!r} of {gold_name} line {k}", pred_name, k)
        scores = score_sentence(p.links, g.sure, g.possible)
        for idx, value in enumerate(
            (scores.predicted, scores.sure, scores.possible, scores.hits_sure, scores.hits_possible)
        ):
            totals[idx] += value
        if per_sentence:
            rows.append(scores)
            ids.append(g.id if g.id is not None else p.id)
    if g is not done or p is not done:
        n_gold = k + (g is not done) + sum(1 for _ in gold_lines)
        n_pred = k + (p is not done) + sum(1 for _ in pred_lines)
        shorter, longer = (pred_name, gold_name) if n_pred < n_gold else (gold_name, pred_name)
        raise FormatError(
            f"{gold_name} has {n_gold} lines but {pred_name} has {n_pred}: "
            f"{shorter} ends before line {k + 1} of {longer} (one line per sentence pair, empty lines included)"
        )
    corpus = score_counts(*totals, sentences=k)
    if not per_sentence:
        return EvaluationResult(corpus)
    return EvaluationResult(corpus, tuple(rows), tuple(ids))
