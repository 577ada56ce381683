"""Entity-level scores of BIO labels with seqeval, as the authors' ``evaluate_bio.py``.

The authors score projected labels with Hugging Face ``evaluate.load("seqeval")``, which calls
``seqeval.metrics.classification_report(references, predictions, output_dict=True)`` in
seqeval's default mode (conlleval-compatible: an entity is a maximal run B-X I-X ... or an
orphan I-X run, and it counts only when its type and both boundaries match) and
``accuracy_score`` for token accuracy. This module calls the same two functions of the
``seqeval`` library itself (the ``eval`` extra), nothing re-implemented, and returns what
``evaluate`` returns: overall micro precision / recall / F1 and accuracy, and per type
precision / recall / F1 / number (of gold entities).

Files are CoNLL style: one token per line, the label in the last column (spaces or tabs), a
blank line between sentences; the two files must have the same sentences and tokens counts.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from transalign.formats.alignments import FormatError, iter_lines

__all__ = ["BioScores", "evaluate_bio", "read_bio_labels"]

_COLUMNS = re.compile(r"[ \t]+")
INSTALL_HINT = "pip install 'transalign[eval]' (or: pip install seqeval)"


@dataclass(frozen=True)
class BioScores:
    overall: dict  # precision, recall, f1, accuracy
    per_type: dict  # TYPE -> precision, recall, f1, number
    sentences: int

    def to_dict(self) -> dict:
        return {"overall": self.overall, "per_type": self.per_type}


def read_bio_labels(path: str | os.PathLike) -> list[list[str]]:
    """The label sequence (last column) of every sentence of a CoNLL file."""
    sentences: list[list[str]] = []
    current: list[str] = []
    for lineno, text in iter_lines(path):
        text = text.strip(" \t\r")
        if not text:
            if current:
                sentences.append(current)
                current = []
            continue
        columns = _COLUMNS.split(text)
        if len(columns) < 2:
            raise FormatError(f"expected TOKEN ... LABEL (label in the last column), got {text!r}", path, lineno)
        current.append(columns[-1])
    if current:
        sentences.append(current)
    return sentences


def evaluate_bio(pred: str | os.PathLike | list, gold: str | os.PathLike | list) -> BioScores:
    """seqeval's scores of ``pred`` against ``gold`` (files, or lists of label sequences)."""
    try:
        from seqeval.metrics import accuracy_score, classification_report
    except ImportError:
        raise ImportError(f"eval-bio needs the seqeval library: {INSTALL_HINT}") from None
    pred_name = os.fspath(pred) if isinstance(pred, (str, os.PathLike)) else "<pred>"
    gold_name = os.fspath(gold) if isinstance(gold, (str, os.PathLike)) else "<gold>"
    predictions = read_bio_labels(pred) if isinstance(pred, (str, os.PathLike)) else [list(s) for s in pred]
    references = read_bio_labels(gold) if isinstance(gold, (str, os.PathLike)) else [list(s) for s in gold]
    if len(predictions) != len(references):
        raise ValueError(f"{pred_name} has {len(predictions)} sentences but {gold_name} has {len(references)}; "
                         "they must pair up")
    for k, (p, g) in enumerate(zip(predictions, references), start=1):
        if len(p) != len(g):
            raise ValueError(f"sentence {k}: {pred_name} has {len(p)} tokens but {gold_name} has {len(g)}")
    report = classification_report(y_true=references, y_pred=predictions, output_dict=True)
    report.pop("macro avg", None)
    report.pop("weighted avg", None)
    micro = report.pop("micro avg")
    per_type = {name: {"precision": float(v["precision"]), "recall": float(v["recall"]),
                       "f1": float(v["f1-score"]), "number": int(v["support"])}
                for name, v in sorted(report.items())}
    overall = {"precision": float(micro["precision"]), "recall": float(micro["recall"]),
               "f1": float(micro["f1-score"]), "accuracy": float(accuracy_score(y_true=references, y_pred=predictions))}
    return BioScores(overall, per_type, len(references))
