"""Choose an extraction setting on gold alignments: every method and threshold from one pass.

`tune` runs the encoder once over a gold set (``src.txt``, ``tgt.txt``, ``gold.txt`` as in
``data/gold/csen``), extracts links by every requested setting (transalign.kernels.methods)
from the same hidden states, scores each with `transalign.evaluation` and picks the lowest AER.
Ties go to the earlier setting in the evaluated order, which starts with the bundle's own
(reference) setting, so the reference is kept unless another setting is strictly better.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from transalign.formats.alignments import read_alignments
from transalign.evaluation import AlignmentScores, evaluate_alignments

__all__ = ["DEFAULT_THRESHOLDS", "TuneResult", "TuneRow", "read_gold_dir", "score_settings", "settings", "tune",
           "tuning_record", "write_default"]

DEFAULT_THRESHOLDS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
GOLD_FILES = ("src.txt", "tgt.txt", "gold.txt")


@dataclass(frozen=True)
class TuneRow:
    extraction: object  # transalign.kernels.Extraction
    scores: AlignmentScores

    def flags(self) -> str:
        """The `transalign align` options of this setting."""
        e = self.extraction
        out = f"--method {e.method} --word-level {e.word_level}"
        return out + f" --threshold {e.threshold:g}" if e.method == "softmax" else out

    def to_dict(self) -> dict:
        e = self.extraction
        return {"method": e.method, "word_level": e.word_level,
                "threshold": e.threshold if e.method == "softmax" else None, **self.scores.to_dict()}


@dataclass(frozen=True)
class TuneResult:
    rows: tuple[TuneRow, ...]  # in the evaluated order
    best: TuneRow  # lowest AER (first of equals)

    def to_dict(self) -> dict:
        return {"rows": [r.to_dict() for r in self.rows], "best": self.best.to_dict()}


def settings(aligner, thresholds: Sequence[float] = DEFAULT_THRESHOLDS, methods: Sequence[str] | None = None,
             word_levels: Sequence[str] | None = None) -> list:
    """The Extractions to evaluate: the bundle's default first (when among the requested
    methods and word levels), then softmax at each threshold (the bundle's first), argmax,
    itermax; each at every word level (any first)."""
    from transalign.kernels import METHODS, WORD_LEVELS

    methods = list(methods or METHODS)
    word_levels = list(word_levels or WORD_LEVELS)
    m = aligner.manifest
    default = m.default_threshold
    ordered = [default] + [t for t in dict.fromkeys(float(t) for t in thresholds) if t != default]
    out = []
    if m.default_method in methods and m.default_word_level in word_levels:
        out.append(aligner.extraction(m.default_method, m.default_word_level,
                                      default if m.default_method == "softmax" else None))
    for method in methods:
        for word_level in word_levels:
            for t in (ordered if method == "softmax" else [None]):
                extraction = aligner.extraction(method, word_level, t)
                if extraction not in out:
                    out.append(extraction)
    return out


def read_gold_dir(directory: str | os.PathLike) -> tuple[list[list[str]], list[list[str]], list]:
    """(source sentences, target sentences, gold AlignmentLines) of a gold directory."""
    root = Path(directory)
    missing = [name for name in GOLD_FILES if not (root / name).is_file()]
    if missing:
        raise ValueError(f"gold directory {root} lacks {', '.join(missing)} (it needs {', '.join(GOLD_FILES)}: "
                         "one sentence per line, and i-j / ipj links per line)")
    src = [line.split() for line in (root / "src.txt").read_text(encoding="utf-8").splitlines()]
    tgt = [line.split() for line in (root / "tgt.txt").read_text(encoding="utf-8").splitlines()]
    gold = read_alignments(root / "gold.txt", allow_possible=True)
    if not len(src) == len(tgt) == len(gold):
        raise ValueError(f"{root}: src.txt has {len(src)} lines, tgt.txt {len(tgt)}, gold.txt {len(gold)}; "
                         "they must be equal (one line per sentence pair)")
    return src, tgt, gold


def tune(aligner, src, tgt, gold, extractions: Sequence, src_lang: str | None = None, tgt_lang: str | None = None,
         *, batch_tokens: int | None = None) -> TuneResult:
    """Score every extraction on the gold links (one encoder pass) and pick the lowest AER."""
    if not extractions:
        raise ValueError("no setting to evaluate")
    every = aligner.align_settings(src, tgt, extractions, src_lang, tgt_lang, batch_tokens=batch_tokens)
    return score_settings(extractions, every, gold)


def score_settings(extractions: Sequence, every: Sequence, gold) -> TuneResult:
    """Rows and best setting from `Aligner.align_settings` results (one list per extraction)."""
    rows = tuple(TuneRow(e, evaluate_alignments(gold, [r.links for r in results]).corpus)
                 for e, results in zip(extractions, every))
    best = min(rows, key=lambda row: row.scores.aer)  # min keeps the first of equals
    return TuneResult(rows, best)


def tuning_record(gold_dir: str | os.PathLike, pairs: int, precision: str, best: TuneRow) -> dict:
    """What `write_default` stores about how a setting was chosen (manifest ``default_tuning``)."""
    s = best.scores
    return {"gold": Path(gold_dir).name, "pairs": f"1-{pairs}", "graph": precision, "tool": "transalign tune",
            "aer": round(s.aer, 4), "precision": round(s.precision, 4), "recall": round(s.recall, 4)}


def write_default(bundle: str | os.PathLike, extraction, record: dict | None = None):
    """Store ``extraction`` (method, word level and, for softmax, threshold) as the bundle's
    default, with ``record`` (how it was chosen: gold set, pairs, AER...) as ``default_tuning``;
    returns the new Manifest. A non-softmax setting keeps the stored threshold, which stays the
    softmax default. Refuses anything `read_manifest` would refuse, before writing."""
    from transalign.engine.bundle import (MANIFEST_NAME, Manifest, check_manifest_ranges, check_manifest_types,
                                          read_manifest)
    from transalign.outputs import open_output

    root = Path(bundle)
    read_manifest(root, verify_hashes=False)  # a readable, well-formed bundle (and no manifest symlink out)
    path = root / MANIFEST_NAME
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(default_method=extraction.method, default_word_level=extraction.word_level,
                default_tuning=dict(record or {}))
    if extraction.method == "softmax":
        data["default_threshold"] = float(extraction.threshold)
    check_manifest_types(data, path)
    manifest = Manifest.from_json(data)
    check_manifest_ranges(root, manifest)
    with open_output(path) as handle:
        handle.write(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return manifest
